/*
 * One secret policy (issue 17 item 4): the same requests, to services with credentials, a
 * secret header, parameters of their own and a password in their URL, called with a
 * secret-named query parameter, leave no secret in any output: HEP traces (request and reply,
 * sent and cached answers), the shared cache's keys and values, the MI listing, and the log
 * (checked by tests/c_harness.rs on this test's stderr).
 * usage: test_secrets module.so secrets.cfg
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* Every secret the requests carry. */
static const char *const secrets[] = {
	"SECRETU", /* the URL's password */
	"SECRETP", /* param=api_key=... */
	"SECRETA", /* param=appid=...: a name that does not look secret */
	"SECRETH", /* header=X-Api-Key: ... */
	"SECRETB", /* auth=bearer:... */
	"SECRETT", /* ?token=... in the called URL */
};
#define SECRET_COUNT (int)(sizeof secrets / sizeof *secrets)
#define ITEMS "param=api_key=SECRETP; param=appid=SECRETA; header=X-Api-Key: SECRETH"

static struct h_call call;

static int get(const char *url)
{
	h_call_reset(&call);
	return H_CALL("rest_get", A_STR(url), A_VAR(&call.body), A_NONE, A_VAR(&call.code));
}

/* The first secret found in `text`, or NULL. */
static const char *leaked(const char *text)
{
	for (int i = 0; text && i < SECRET_COUNT; i++)
		if (strstr(text, secrets[i]))
			return secrets[i];
	return NULL;
}

static void check_traces(void)
{
	CHECK(h_trace_count() >= 6);
	for (int i = 0; i < h_trace_count(); i++) {
		const struct h_trace *t = h_trace_get(i);
		for (int j = 0; j < t->part_count; j++) {
			const char *secret = leaked(t->values[j]);
			if (secret)
				fprintf(stderr, "  %s in trace %d part %s: %s\n", secret, i, t->keys[j],
					t->values[j]);
			CHECK(secret == NULL);
		}
	}
	/* Masked, not dropped: the request line still names the parameters. */
	const char *line = h_trace_part(h_trace_get(0), "first_line");
	CHECK(line && strstr(line, "appid=***") && strstr(line, "token=***"));
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	int port = h_start_server(NULL);
	h_load(argv[1]);
	CHECK_INT(h_load_cfg(argv[2]), 0);
	CHECK_INT(h_service("name=echoing; url=http://user:SECRETU@127.0.0.1:%d/; " ITEMS
			    "; auth=bearer:SECRETB", port), 0);
	CHECK_INT(h_service("name=cached; url=http://user:SECRETU@127.0.0.1:%d/; " ITEMS
			    "; auth=bearer:SECRETB; cache_ttl=30; cache=local://; cache_timeout_ms=1000",
			    port), 0);
	CHECK_INT(h_service("name=down; url=http://user:SECRETU@127.0.0.1:%d/; " ITEMS,
			    h_closed_port()), 0);
	h_tracer_load();
	CHECK_INT(h_mod_init(), 0);
	CHECK_INT(h_child_init(1), 0);
	h_set_call_id("secrets@example.com");
	h_trace_message(1);

	/* The server echoes the whole request back: the reply's trace holds it. */
	CHECK_INT(get("echoing://echo?token=SECRETT"), 1);
	CHECK_INT(call.code.ri, 200);
	CHECK(leaked(call.body.s) != NULL); /* the script itself gets the answer as it is */
	/* Stored in the shared cache, then answered from it. */
	CHECK_INT(get("cached://body?size=16&token=SECRETT"), 1);
	CHECK_INT(get("cached://body?size=16&token=SECRETT"), 1);
	CHECK_INT(h_cachedb_stat("answers"), 1);
	/* Failures log their URL. */
	CHECK_INT(H_CALL("rest_timeout", A_INT(200)), 1);
	CHECK_INT(get("echoing://delay?ms=1500&token=SECRETT"), -3);
	CHECK_INT(get("down://x?token=SECRETT"), -1);

	check_traces();
	for (int i = 0; i < SECRET_COUNT; i++) {
		if (h_cachedb_holds(secrets[i]))
			fprintf(stderr, "  %s in the shared cache\n", secrets[i]);
		CHECK(!h_cachedb_holds(secrets[i]));
	}
	char *listing = h_mi("rest_list_services", NULL);
	CHECK(listing && strstr(listing, "\"echoing\"") && leaked(listing) == NULL);
	free(listing);
	return h_finish();
}

/*
 * enable_expect_100 (Expect: 100-continue above 1024 bytes, issue 13) and curl_http_version,
 * seen from the server.
 * usage: test_options module.so cfg 1.0|1.1   (cfg: expect_http10.cfg / expect_http11.cfg)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static int async_rc;

static void resumed(int rc, void *arg)
{
	(void)arg;
	async_rc = rc;
}

static int expect_header_sent(const char *echo)
{
	return strcasestr(echo, "[\"Expect\", \"100-continue\"]") != NULL;
}

/* PUTs a body of `size` bytes to /echo; the server's echo in *body. */
static int put(const char *url, int size, hvar *body)
{
	char *data = malloc((size_t)size + 1);
	memset(data, 'e', (size_t)size);
	data[size] = 0;
	hvar_reset(body);
	int rc = H_CALL("rest_put", A_STR(url), A_STR(data), A_STR("text/plain"), A_VAR(body));
	free(data);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	int http10 = strcmp(argv[3], "1.0") == 0;
	h_start_as_worker(argv[1], argv[2]);
	int port = h_start_server(NULL);

	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/echo", port);
	hvar body = { 0 };
	CHECK_INT(put(url, 1100 * 1024, &body), 1);
	CHECK(body.is_set && strstr(body.s, "\"body_len\": 1126400"));
	if (http10) {
		CHECK(body.is_set && strstr(body.s, "\"version\": \"HTTP/1.0\""));
		/* HTTP/1.0 has no 100 Continue. */
		CHECK(body.is_set && !expect_header_sent(body.s));
		CHECK_INT(put(url, 2000, &body), 1);
		CHECK(body.is_set && !expect_header_sent(body.s));
		return h_finish();
	}
	CHECK(body.is_set && strstr(body.s, "\"version\": \"HTTP/1.1\""));
	CHECK(body.is_set && expect_header_sent(body.s));
	/* Above 1024 bytes, as the C module's guide says (libcurl alone: above 1 MiB). */
	CHECK_INT(put(url, 1025, &body), 1);
	CHECK(body.is_set && expect_header_sent(body.s) && strstr(body.s, "\"body_len\": 1025"));
	CHECK_INT(put(url, 1024, &body), 1);
	CHECK(body.is_set && !expect_header_sent(body.s) && strstr(body.s, "\"body_len\": 1024"));
	/* Async too; an empty Expect header from the script still turns it off. */
	char data[2000];
	memset(data, 'a', sizeof data - 1);
	data[sizeof data - 1] = 0;
	hvar_reset(&body);
	H_ASYNC("rest_post", 0, resumed, NULL, A_STR(url), A_STR(data), A_NONE, A_VAR(&body));
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(async_rc, 1);
	CHECK(body.is_set && expect_header_sent(body.s) && strstr(body.s, "\"body_len\": 1999"));
	CHECK_INT(H_CALL("rest_append_hf", A_STR("Expect:")), 1);
	CHECK_INT(put(url, 2000, &body), 1);
	CHECK(body.is_set && !strcasestr(body.s, "\"Expect\"") && strstr(body.s, "\"body_len\": 2000"));
	return h_finish();
}

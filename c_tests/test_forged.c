/*
 * Issue 22: a hostile or broken server cannot forge an answer. For blocking and async calls,
 * over HTTP and HTTPS:
 *   - a response nobody asked for, written on a kept-alive connection after the answer, or
 *     bytes past a Content-Length or past the last chunk: the next call gets its own answer,
 *     and a connection that held bytes is never used again (the server's connection ids);
 *   - conflicting Content-Length values, and Content-Length with Transfer-Encoding: -10, and
 *     that connection is closed; one value repeated is one length.
 * usage: test_forged module.so forged.cfg
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static char dir[] = "/tmp/rest_client_forged_XXXXXX";
static int async_mode;
static const char *scheme;
static int port;
static struct h_call last;

/* One GET, blocking or async (as the current mode says); the outputs land in `last`. */
static int get(const char *path)
{
	h_call_reset(&last);
	const char *u = h_url(scheme, port, path);
	if (!async_mode) {
		last.rc = H_CALL("rest_get", A_STR(u), A_VAR(&last.body), A_NONE, A_VAR(&last.code));
		return last.rc;
	}
	H_ASYNC("rest_get", 0, h_record_route, &last, A_STR(u), A_VAR(&last.body), A_NONE,
		A_VAR(&last.code));
	CHECK_INT(h_reactor_run(5000), 0);
	CHECK_INT(last.runs, 1);
	return last.rc;
}

/* The server's id of the connection an /echo went out on, checking it is that echo's answer. */
static int echo_connection(int *request_on_connection)
{
	CHECK_INT(get("/echo"), 1);
	int is_echo = last.body.is_set && strstr(last.body.s, "\"path\": \"/echo\"") != NULL;
	if (!is_echo)
		fprintf(stderr, "  %s %s: /echo answered '%s'\n", scheme, async_mode ? "async" : "blocking",
			last.body.is_set ? last.body.s : "");
	CHECK(is_echo);
	if (request_on_connection)
		*request_on_connection = is_echo ? h_json_int(last.body.s, "request_on_connection") : -1;
	return is_echo ? h_json_int(last.body.s, "connection_id") : -1;
}

/*
 * `path` answers "ok" on the kept-alive connection of an /echo, then leaves bytes on it (at
 * once, or `wait_ms` later): the next call gets its own answer on another connection.
 */
static void answer_then_bytes(const char *path, int wait_ms)
{
	int first = echo_connection(NULL);
	CHECK_INT(get(path), 1);
	CHECK_STR(&last.body, "ok");
	usleep(wait_ms * 1000);
	int request = 0;
	int next = echo_connection(&request);
	if (next == first)
		fprintf(stderr, "  %s %s after %s: reused connection %d\n", scheme,
			async_mode ? "async" : "blocking", path, first);
	CHECK(next != first && next > 0);
	CHECK_INT(request, 1);
}

/* `path` is refused with -10 and its connection is not used again. */
static void refused(const char *path)
{
	int first = echo_connection(NULL);
	CHECK_INT(get(path), -10);
	CHECK(!last.body.is_set || strcmp(last.body.s, "SMUGGLED") != 0);
	int next = echo_connection(NULL);
	CHECK(next != first && next > 0);
}

static void forged_answers(void)
{
	/* A whole response nobody asked for, 50 ms after the answer (the module log says so). */
	answer_then_bytes("/unsolicited?ms=50", 300);
	/* Bytes past the Content-Length that libcurl did not read (the head came alone). */
	answer_then_bytes("/past-end?split=1", 100);
	/* Bytes past the Content-Length in the same read (libcurl closes that connection). */
	answer_then_bytes("/past-end", 100);

	/* Bytes past the last chunk in the same read: libcurl drops them; the next call still
	 * gets its own answer. */
	CHECK_INT(get("/past-end?chunked=1"), 1);
	CHECK_STR(&last.body, "ok");
	echo_connection(NULL);

	/* Conflicting Content-Length values, in either order or in one line. */
	refused("/framing?cl=12&cl=10");
	refused("/framing?cl=10&cl=12");
	refused("/framing?cl=10,%2012");
	/* Content-Length with Transfer-Encoding, in either order. */
	refused("/framing?cl=12&te=chunked");
	refused("/framing?te=chunked&cl=12");
	/* The same length twice is one length. */
	CHECK_INT(get("/framing?cl=10&cl=10&size=10"), 1);
	CHECK_STR(&last.body, "0123456789");
	CHECK_INT(get("/framing?cl=10,%2010&size=10"), 1);
	CHECK_STR(&last.body, "0123456789");

	/* After all that, a connection that held nothing is reused as before. */
	int first = echo_connection(NULL);
	CHECK_INT(echo_connection(NULL), first);
}

int main(int argc, char **argv)
{
	if (argc < 3 || !mkdtemp(dir))
		return 2;
	char cmd[600], capath[512], cert[512], key[512];
	snprintf(cmd, sizeof cmd, "sh c_tests/make_certs.sh %s", dir);
	if (system(cmd) != 0)
		return 2;
	snprintf(capath, sizeof capath, "%s/capath", dir);
	snprintf(cert, sizeof cert, "%s/server.pem", dir);
	snprintf(key, sizeof key, "%s/server.key", dir);
	h_load(argv[1]);
	CHECK_INT(h_load_cfg(argv[2]), 0);
	CHECK_INT(h_modparam("ssl_capath", 1, capath, 0), 0);
	CHECK_INT(h_mod_init(), 0);
	CHECK_INT(h_child_init(1), 0);
	int plain = h_start_server(NULL);
	const char *tls_args[] = { "--tls-cert", cert, "--tls-key", key, NULL };
	int tls = h_start_server(tls_args);

	for (int i = 0; i < 4; i++) {
		scheme = i < 2 ? "http" : "https";
		port = i < 2 ? plain : tls;
		async_mode = i % 2;
		printf("%s, %s calls\n", scheme, async_mode ? "async" : "blocking");
		fflush(stdout);
		forged_answers();
	}
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	CHECK_INT(system(cmd), 0);
	CHECK_INT(h_resumed_twice(), 0);
	return h_finish();
}

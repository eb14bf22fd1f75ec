/*
 * What a script can reach and what reaches the log (issue 9, items 9 and 14): only http://
 * and https:// URLs start a transfer, blocking or async; log lines mask credentials in URLs
 * and escape CR, LF and other control characters. tests/c_harness.rs reads the log (stderr).
 * usage: test_boundaries module.so blocking.cfg
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "harness.h"

static int port;
static hvar body;

static int get(const char *u)
{
	hvar_reset(&body);
	return H_CALL("rest_get", A_STR(u), A_VAR(&body));
}

static void test_only_http_and_https(void)
{
	char dict[128], gopher[128], tftp[128];
	snprintf(dict, sizeof dict, "dict:/127.0.0.1:%d/d:x", port);
	snprintf(gopher, sizeof gopher, "gopher:/127.0.0.1:%d/x", port);
	snprintf(tftp, sizeof tftp, "tftp:/127.0.0.1:%d/x", port);
	const char *refused[] = { "file:/etc/hostname", "FILE:/etc/hostname", dict, gopher, tftp };
	int before = h_server_stat(port, "connections");
	for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
		CHECK_INT(get(refused[i]), -10);
		CHECK(!body.is_set);

		hvar_reset(&body);
		struct h_call resumed = { 0 };
		H_ASYNC("rest_get", 0, h_record_route, &resumed, A_STR(refused[i]), A_VAR(&body));
		h_reactor_run(2000);
		CHECK_INT(resumed.runs, 1);
		CHECK_INT(resumed.rc, -10);
		CHECK(!body.is_set);
	}
	/* Nothing reached the server but the two /stats requests. */
	CHECK_INT(h_server_stat(port, "connections"), before + 1);

	CHECK_INT(get(h_url("http", port, "/echo")), 1);
	CHECK_INT(get(h_url("HTTP", port, "/echo")), 1);
}

static void test_log_lines(void)
{
	char u[256];
	int closed = h_closed_port();
	snprintf(u, sizeof u, "http://alice:pw0rd@127.0.0.1:%d/x?page=2&access_token=T0KEN&api_key=K3Y"
		 "&Signature=S1G", closed);
	CHECK_INT(get(u), -1);
	snprintf(u, sizeof u, "http://127.0.0.1:%d/a\r\nINJECTED: by the URL", closed);
	CHECK_INT(get(u), -10);
	CHECK_INT(get("no\r\nINJECTED: by a service name://x"), -10);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	h_start_as_worker(argv[1], argv[2]);
	port = h_start_server(NULL);
	test_only_http_and_https();
	test_log_lines();
	CHECK_INT(h_resumed_twice(), 0);
	return h_finish();
}

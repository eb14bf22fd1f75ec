/*
 * enable_expect_100 and curl_http_version, seen from the server.
 * usage: test_options module.so cfg 1.0|1.1   (cfg: expect_http10.cfg / expect_http11.cfg)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	int http10 = strcmp(argv[3], "1.0") == 0;
	h_start_as_worker(argv[1], argv[2]);
	int port = h_start_server(NULL);

	/* libcurl 7.88 asks for 100-continue above 1 MiB. */
	enum { BIG = 1100 * 1024 };
	char url[128], *big = malloc(BIG + 1);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/echo", port);
	memset(big, 'e', BIG);
	big[BIG] = 0;
	hvar body = { 0 };
	CHECK_INT(H_CALL("rest_put", A_STR(url), A_STR(big), A_STR("text/plain"), A_VAR(&body)), 1);
	CHECK(body.is_set && strstr(body.s, "\"body_len\": 1126400"));
	free(big);
	if (http10) {
		CHECK(body.is_set && strstr(body.s, "\"version\": \"HTTP/1.0\""));
	} else {
		CHECK(body.is_set && strstr(body.s, "\"version\": \"HTTP/1.1\""));
		/* libcurl asks for 100-continue on large bodies once the module allows it. */
		CHECK(body.is_set && strcasestr(body.s, "[\"Expect\", \"100-continue\"]"));
	}
	return h_finish();
}

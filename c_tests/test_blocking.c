/*
 * Blocking rest_get / rest_post / rest_put / rest_append_hf against the scripted server:
 * result codes, which variables are written, trimming, Content-Type capture, the one-shot
 * header list, Expect handling, max_transfer_size, keep-alive reuse and bad input.
 * cfg: c_tests/cfg/blocking.cfg (curl_timeout 2, connection_timeout 1, max_transfer_size 64).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static int port;
static hvar body = { .name = "body" }, ctype = { .name = "ctype" }, code = { .name = "code" };

static const char *url(const char *path)
{
	return h_url("http", port, path);
}

static void reset_vars(void)
{
	hvar_reset(&body);
	hvar_reset(&ctype);
	hvar_reset(&code);
	body.name = "body";
	ctype.name = "ctype";
	code.name = "code";
}

static int get(const char *u)
{
	reset_vars();
	return H_CALL("rest_get", A_STR(u), A_VAR(&body), A_VAR(&ctype), A_VAR(&code));
}

static int send_body(const char *fn, const char *u, const char *data, const char *type)
{
	reset_vars();
	return H_CALL(fn, A_STR(u), A_STR(data), type ? A_STR(type) : A_NONE, A_VAR(&body),
		      A_VAR(&ctype), A_VAR(&code));
}

/* The value of a header in /echo's JSON output, or NULL. */
static const char *echoed_header(const char *json, const char *name, char *out, size_t size)
{
	char needle[128];
	snprintf(needle, sizeof needle, "[\"%s\", \"", name);
	const char *p = strcasestr(json, needle);
	if (!p)
		return NULL;
	p += strlen(needle);
	const char *end = strchr(p, '"');
	snprintf(out, size, "%.*s", (int)(end - p), p);
	return out;
}

static void test_status_and_content_type(void)
{
	CHECK_INT(get(url("/ctype?value=text/plain;%20charset=utf-8")), 1);
	CHECK_INT(code.ri, 200);
	CHECK(code.is_int);
	CHECK_STR(&ctype, "text/plain; charset=utf-8");
	CHECK_STR(&body, "ok");

	CHECK_INT(get(url("/status/404")), 1);
	CHECK_INT(code.ri, 404);
	CHECK_STR(&body, "status 404");

	CHECK_INT(get(url("/status/503")), 1);
	CHECK_INT(code.ri, 503);

	/* Deviation from the C module: lowercase names and long values are captured whole. */
	CHECK_INT(get(url("/ctype?value=application/json&name=content-type")), 1);
	CHECK_STR(&ctype, "application/json");
	char longtype[400], path[600];
	memset(longtype, 'x', 300);
	longtype[300] = 0;
	snprintf(path, sizeof path, "/ctype?value=text/%s", longtype);
	CHECK_INT(get(url(path)), 1);
	CHECK_INT(ctype.len, 305);

	/* An empty Content-Type: the variable is set to an empty string. */
	CHECK_INT(get(url("/ctype?value=")), 1);
	CHECK(ctype.is_set && ctype.len == 0);
}

static void test_bodies(void)
{
	CHECK_INT(get(url("/body?size=10&pad=1")), 1);
	CHECK_STR(&body, "0123456789");

	CHECK_INT(get(url("/body?size=60000&chunked=1")), 1);
	CHECK_INT(body.len, 60000);
	CHECK(body.is_set && memcmp(body.s + 36, "0123456789abcdef", 16) == 0);

	/* max_transfer_size is 64 KB: the code is set, the body is not. */
	CHECK_INT(get(url("/body?size=70000")), -10);
	CHECK_INT(code.ri, 200);
	CHECK(!body.is_set);
	CHECK_INT(get(url("/body?size=65536")), 1);
	CHECK_INT(body.len, 65536);

	/* Optional outputs omitted. */
	reset_vars();
	CHECK_INT(H_CALL("rest_get", A_STR(url("/body?size=5")), A_VAR(&body)), 1);
	CHECK_STR(&body, "01234");
	CHECK_INT(H_CALL("rest_get", A_STR(url("/body?size=3")), A_VAR(&body), A_NONE, A_VAR(&code)), 1);
	CHECK_STR(&body, "012");
	CHECK_INT(code.ri, 200);
}

static void test_failures(void)
{
	char u[128];
	snprintf(u, sizeof u, "http://127.0.0.1:%d/", h_closed_port());
	CHECK_INT(get(u), -1);
	CHECK_INT(code.ri, 0);
	CHECK(code.is_set && !body.is_set && !ctype.is_set);

	snprintf(u, sizeof u, "http://127.0.0.1:%d/", h_full_backlog_port());
	long long t0 = h_now_us();
	CHECK_INT(get(u), -2);
	long long ms = (h_now_us() - t0) / 1000;
	CHECK(ms >= 900 && ms < 1800); /* connection_timeout = 1 */
	CHECK(!body.is_set);

	/* Accepted but never answered: a transfer timeout (-3) after curl_timeout = 2 s. */
	t0 = h_now_us();
	CHECK_INT(get(url("/stall-headers")), -3);
	ms = (h_now_us() - t0) / 1000;
	CHECK(ms >= 1900 && ms < 2900);
	CHECK_INT(code.ri, 0);
	CHECK(body.is_set && body.len == 0);

	/* Headers then a stall: -3, with the code and the partial body. */
	CHECK_INT(get(url("/stall-body?sent=100")), -3);
	CHECK_INT(code.ri, 200);
	CHECK_INT(body.len, 100);

	/* The server closes mid-body: an error, the body is not set. */
	CHECK_INT(get(url("/close-mid-body?sent=100")), -10);
	CHECK(!body.is_set);

	CHECK_INT(get(url("/garbage")), -10);
	CHECK(!body.is_set);

	CHECK_INT(get("http://unresolvable.invalid/"), -10);
	CHECK_INT(get("not a url"), -10);
	CHECK_INT(get(""), -10);
	reset_vars();
	CHECK_INT(H_CALL("rest_get", A_STRN("http://127.0.0.1/\0x", 19), A_VAR(&body)), -10);
}

static void test_requests(void)
{
	char value[256];
	CHECK_INT(send_body("rest_post", url("/echo"), "{\"a\":1}", "application/json"), 1);
	CHECK(strstr(body.s, "\"method\": \"POST\"") != NULL);
	CHECK(echoed_header(body.s, "Content-Type", value, sizeof value) &&
	      strcmp(value, "application/json") == 0);
	CHECK(strstr(body.s, "\"body\": \"{\\\"a\\\":1}\"") != NULL);
	CHECK_STR(&ctype, "application/json");

	/* No type given, or an empty one: no Content-Type header at all, not libcurl's
	 * application/x-www-form-urlencoded (as the C module 3.x; issue 13). */
	CHECK_INT(send_body("rest_post", url("/echo"), "x=1", NULL), 1);
	CHECK(!echoed_header(body.s, "Content-Type", value, sizeof value));
	CHECK_INT(send_body("rest_put", url("/echo"), "x=1", NULL), 1);
	CHECK(strstr(body.s, "\"body\": \"x=1\"") && !echoed_header(body.s, "Content-Type", value, sizeof value));
	CHECK_INT(send_body("rest_post", url("/echo"), "x=1", " "), 1);
	CHECK(strstr(body.s, "\"body\": \"x=1\"") && !echoed_header(body.s, "Content-Type", value, sizeof value));

	/* Large body: no Expect: 100-continue by default. */
	char big[1300];
	memset(big, 'b', sizeof big - 1);
	big[sizeof big - 1] = 0;
	CHECK_INT(send_body("rest_put", url("/echo"), big, "text/plain"), 1);
	CHECK(strstr(body.s, "\"method\": \"PUT\"") != NULL);
	CHECK(strstr(body.s, "\"body_len\": 1299") != NULL);
	CHECK(!echoed_header(body.s, "Expect", value, sizeof value));

	/* Empty body. */
	CHECK_INT(send_body("rest_post", url("/echo"), "", "text/plain"), 1);
	CHECK(strstr(body.s, "\"body_len\": 0") != NULL);

	/* Appended headers go to the next transfer only. */
	CHECK_INT(H_CALL("rest_append_hf", A_STR("X-Token: abc")), 1);
	CHECK_INT(H_CALL("rest_append_hf", A_STR("X-Other: 2")), 1);
	CHECK_INT(get(url("/echo")), 1);
	CHECK(echoed_header(body.s, "X-Token", value, sizeof value) && strcmp(value, "abc") == 0);
	CHECK(echoed_header(body.s, "X-Other", value, sizeof value) && strcmp(value, "2") == 0);
	CHECK_INT(get(url("/echo")), 1);
	CHECK(!echoed_header(body.s, "X-Token", value, sizeof value));

	/* ... even when that transfer fails. */
	CHECK_INT(H_CALL("rest_append_hf", A_STR("X-Lost: 1")), 1);
	CHECK_INT(get("not a url"), -10);
	CHECK_INT(get(url("/echo")), 1);
	CHECK(!echoed_header(body.s, "X-Lost", value, sizeof value));

	/* An appended Content-Type replaces the empty default of a POST without type. */
	CHECK_INT(H_CALL("rest_append_hf", A_STR("Content-Type: text/csv")), 1);
	CHECK_INT(send_body("rest_post", url("/echo"), "a,b", NULL), 1);
	CHECK(echoed_header(body.s, "Content-Type", value, sizeof value) && strcmp(value, "text/csv") == 0);

	char longhdr[1100];
	memset(longhdr, 'h', sizeof longhdr - 1);
	longhdr[sizeof longhdr - 1] = 0;
	longhdr[1] = ':';
	CHECK_INT(H_CALL("rest_append_hf", A_STR(longhdr)), -1);
	CHECK_INT(H_CALL("rest_append_hf", A_STR("X-A: 1\r\nX-Injected: 1")), -1);
	CHECK_INT(get(url("/echo")), 1);
	CHECK(!echoed_header(body.s, "X-Injected", value, sizeof value));
}

/* Issue 9 (8): at most 32 pending headers of at most 16 KB in all, and what one SIP message
 * left pending never reaches the request of the next one. */
static void test_pending_headers_bounded_and_per_message(void)
{
	char line[1024], value[256];
	for (int i = 0; i < 32; i++) {
		snprintf(line, sizeof line, "X-Pending-%d: v", i);
		CHECK_INT(H_CALL("rest_append_hf", A_STR(line)), 1);
	}
	CHECK_INT(H_CALL("rest_append_hf", A_STR("X-One-Too-Many: v")), -1);
	CHECK_INT(get(url("/echo")), 1);
	CHECK(echoed_header(body.s, "X-Pending-31", value, sizeof value));
	CHECK(!echoed_header(body.s, "X-One-Too-Many", value, sizeof value));

	/* 16 lines of 1023 bytes fit in 16384 bytes, a 17th does not. */
	for (int i = 0; i < 17; i++) {
		int n = snprintf(line, sizeof line, "X-Big-%02d: ", i);
		memset(line + n, 'v', sizeof line - 1 - (size_t)n);
		line[sizeof line - 1] = 0;
		CHECK_INT(H_CALL("rest_append_hf", A_STR(line)), i < 16 ? 1 : -1);
	}
	CHECK_INT(get(url("/echo")), 1);
	CHECK(echoed_header(body.s, "X-Big-15", value, sizeof value));
	CHECK(!echoed_header(body.s, "X-Big-16", value, sizeof value));

	/* A header, then a 1 ms limit, set while processing a message that made no request. */
	CHECK_INT(H_CALL("rest_append_hf", A_STR("X-Stale: 1")), 1);
	h_new_message();
	CHECK_INT(get(url("/echo")), 1);
	CHECK(!echoed_header(body.s, "X-Stale", value, sizeof value));
	CHECK_INT(H_CALL("rest_timeout", A_INT(1)), 1);
	h_new_message();
	CHECK_INT(get(url("/delay?ms=50")), 1);
}

static void test_keep_alive(void)
{
	CHECK_INT(get(url("/echo")), 1);
	int conn1 = h_json_int(body.s, "connection_id");
	CHECK_INT(get(url("/echo")), 1);
	CHECK_INT(h_json_int(body.s, "connection_id"), conn1);
	CHECK(h_json_int(body.s, "request_on_connection") > 1);

	/* After a Connection: close the next request opens a new connection and works. */
	CHECK_INT(get(url("/close")), 1);
	CHECK_STR(&body, "closing");
	CHECK_INT(get(url("/echo")), 1);
	CHECK_INT(h_json_int(body.s, "request_on_connection"), 1);
	CHECK(h_json_int(body.s, "connection_id") != conn1);
}

static void test_parse_time_checks(void)
{
	/* What the core refuses at parse time, from the module's parameter tables. */
	CHECK_INT(H_CALL("rest_get", A_STR(url("/"))), H_PARSE_ERROR);
	CHECK_INT(H_CALL("rest_get", A_STR("u"), A_VAR(&body), A_VAR(&ctype), A_VAR(&code),
			 A_VAR(&code)), H_PARSE_ERROR);
	CHECK_INT(H_CALL("rest_post", A_STR("u"), A_STR("b")), H_PARSE_ERROR);
	CHECK_INT(H_CALL("rest_append_hf", A_VAR(&body)), H_PARSE_ERROR);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s module.so cfg\n", argv[0]);
		return 2;
	}
	h_start_as_worker(argv[1], argv[2]);
	port = h_start_server(NULL);

	test_status_and_content_type();
	test_bodies();
	test_failures();
	test_requests();
	test_pending_headers_bounded_and_per_message();
	test_keep_alive();
	test_parse_time_checks();
	return h_finish();
}

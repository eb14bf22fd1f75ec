/*
 * Beyond the C module: rest_patch, rest_delete, rest_request for any method, response headers
 * and reason phrase, millisecond limits (module parameters and rest_timeout), bodies as
 * received (rest_raw_body), blocking and async.
 * usage: test_extensions module.so extensions.cfg
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "harness.h"

static int port;
static hvar body, ctype, code, out;
static int async_rc, async_done;

static const char *url(const char *path)
{
	return h_url("http", port, path);
}

static void resumed(int rc, void *arg)
{
	(void)arg;
	async_rc = rc;
	async_done++;
}

static void reset(void)
{
	hvar_reset(&body);
	hvar_reset(&ctype);
	hvar_reset(&code);
	hvar_reset(&out);
}

static int request(const char *method, const char *path, const char *data)
{
	reset();
	return H_CALL("rest_request", A_STR(method), A_STR(url(path)), data ? A_STR(data) : A_NONE,
		      A_NONE, A_VAR(&body), A_VAR(&ctype), A_VAR(&code));
}

/* Runs an async call to its resume route; returns its $rc and the elapsed ms in *ms. */
static int async_request(const char *method, const char *path, long long *ms)
{
	reset();
	async_done = 0;
	long long t0 = h_now_us();
	H_ASYNC("rest_request", 0, resumed, NULL, A_STR(method), A_STR(url(path)), A_NONE, A_NONE,
		A_VAR(&body), A_NONE, A_VAR(&code));
	h_reactor_run(5000);
	if (ms)
		*ms = (h_now_us() - t0) / 1000;
	CHECK_INT(async_done, 1);
	return async_rc;
}

static void test_methods(void)
{
	reset();
	CHECK_INT(H_CALL("rest_patch", A_STR(url("/echo")), A_STR("{\"op\":1}"), A_STR("application/json"),
			 A_VAR(&body), A_NONE, A_VAR(&code)), 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"PATCH\"") && strstr(body.s, "\"body_len\": 8") &&
	      strstr(body.s, "[\"Content-Type\", \"application/json\"]"));

	reset();
	CHECK_INT(H_CALL("rest_delete", A_STR(url("/echo")), A_NONE, A_NONE, A_VAR(&body)), 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"DELETE\"") && strstr(body.s, "\"body_len\": 0") &&
	      !strstr(body.s, "Content-Type"));
	reset();
	CHECK_INT(H_CALL("rest_delete", A_STR(url("/echo")), A_STR("id=3"), A_STR("text/plain"), A_VAR(&body)), 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"DELETE\"") && strstr(body.s, "\"body\": \"id=3\""));

	CHECK_INT(request("OPTIONS", "/echo", NULL), 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"OPTIONS\""));
	CHECK_INT(request("PURGE", "/echo", "x"), 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"PURGE\"") && strstr(body.s, "\"body\": \"x\""));
	CHECK_INT(request("GET", "/echo", NULL), 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"GET\""));

	/* HEAD: status and headers, no body. */
	CHECK_INT(request("HEAD", "/body?size=100", NULL), 1);
	CHECK_INT(code.ri, 200);
	CHECK(body.is_set && body.len == 0);
	CHECK_INT(H_CALL("rest_response_header", A_STR("content-length"), A_VAR(&out)), 1);
	CHECK_STR(&out, "100");

	CHECK_INT(request("GET /x", "/echo", NULL), -10);
	CHECK(!body.is_set);
	/* No method: GET, or POST when a body is given (issue 13). */
	CHECK_INT(request("", "/echo", NULL), 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"GET\""));
	CHECK_INT(request("", "/echo", ""), 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"GET\""));
	CHECK_INT(request("", "/echo", "a=1"), 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"POST\"") && strstr(body.s, "\"body\": \"a=1\""));
	/* A method is sent as written. */
	CHECK_INT(request("get", "/echo", NULL), 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"get\""));

	/* A content type cannot smuggle header lines, and it replaces an appended one. */
	reset();
	CHECK_INT(H_CALL("rest_post", A_STR(url("/echo")), A_STR("x"), A_STR("text/plain\r\nX-Injected: 1"),
			 A_VAR(&body)), -10);
	CHECK(!body.is_set);
	CHECK_INT(H_CALL("rest_append_hf", A_STR("Content-Type: text/csv")), 1);
	CHECK_INT(H_CALL("rest_post", A_STR(url("/echo")), A_STR("x"), A_STR("text/plain"), A_VAR(&body)), 1);
	CHECK(body.is_set && strstr(body.s, "[\"Content-Type\", \"text/plain\"]") &&
	      !strstr(body.s, "text/csv"));

	long long ms;
	CHECK_INT(async_request("PATCH", "/echo", &ms), 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"PATCH\""));
	reset();
	async_done = 0;
	H_ASYNC("rest_delete", 0, resumed, NULL, A_STR(url("/echo")), A_NONE, A_NONE, A_VAR(&body));
	h_reactor_run(3000);
	CHECK_INT(async_rc, 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"DELETE\""));
}

static void test_response_headers(void)
{
	const char *created = "/headers?status=201&reason=Created%20Here&h=Location:/v2/devices/7"
			      "&h=Retry-After:%20120&h=Link:%3Ca%3E&h=Link:%3Cb%3E";
	reset();
	CHECK_INT(H_CALL("rest_get", A_STR(url(created)), A_VAR(&body), A_NONE, A_VAR(&code)), 1);
	CHECK_INT(code.ri, 201);
	CHECK_INT(H_CALL("rest_response_header", A_STR("location"), A_VAR(&out)), 1);
	CHECK_STR(&out, "/v2/devices/7");
	CHECK_INT(H_CALL("rest_response_header", A_STR("RETRY-AFTER"), A_VAR(&out)), 1);
	CHECK_STR(&out, "120");
	CHECK_INT(H_CALL("rest_response_header", A_STR("Link"), A_VAR(&out)), 1);
	CHECK_STR(&out, "<a>, <b>");
	hvar_reset(&out);
	CHECK_INT(H_CALL("rest_response_header", A_STR("X-Missing"), A_VAR(&out)), -1);
	CHECK(!out.is_set);
	CHECK_INT(H_CALL("rest_response_reason", A_VAR(&out)), 1);
	CHECK_STR(&out, "Created Here");

	/* In the resume route of an async call: that transfer's headers. */
	CHECK_INT(async_request("GET", "/headers?status=202&h=X-Job:%2042", NULL), 1);
	CHECK_INT(H_CALL("rest_response_header", A_STR("x-job"), A_VAR(&out)), 1);
	CHECK_STR(&out, "42");
	CHECK_INT(H_CALL("rest_response_reason", A_VAR(&out)), 1);
	CHECK_STR(&out, "Accepted");

	/* No response at all: nothing to read. */
	char refused[128];
	snprintf(refused, sizeof refused, "http://127.0.0.1:%d/", h_closed_port());
	CHECK_INT(H_CALL("rest_get", A_STR(refused), A_VAR(&body)), -1);
	CHECK_INT(H_CALL("rest_response_reason", A_VAR(&out)), -1);
	CHECK_INT(H_CALL("rest_response_header", A_STR("location"), A_VAR(&out)), -1);
	CHECK_INT(H_CALL("rest_response_header", A_STR(""), A_VAR(&out)), -1);
}

static void test_millisecond_limits(void)
{
	long long t0 = h_now_us();
	CHECK_INT(request("GET", "/stall-headers", NULL), -3); /* curl_timeout_ms 1500 */
	long long ms = (h_now_us() - t0) / 1000;
	CHECK(ms >= 1400 && ms < 2000);

	CHECK_INT(H_CALL("rest_timeout", A_INT(300)), 1);
	t0 = h_now_us();
	CHECK_INT(request("GET", "/stall-headers", NULL), -3);
	ms = (h_now_us() - t0) / 1000;
	CHECK(ms >= 250 && ms < 700);

	CHECK_INT(H_CALL("rest_timeout", A_INT(400)), 1);
	CHECK_INT(async_request("GET", "/stall-headers", &ms), -3);
	CHECK(ms >= 350 && ms < 900);

	/* connection_timeout_ms 300, then a connect limit of 100 ms for one call. */
	char hang[128];
	snprintf(hang, sizeof hang, "http://127.0.0.1:%d/", h_full_backlog_port());
	t0 = h_now_us();
	reset();
	CHECK_INT(H_CALL("rest_get", A_STR(hang), A_VAR(&body)), -2);
	ms = (h_now_us() - t0) / 1000;
	CHECK(ms >= 250 && ms < 800);
	CHECK_INT(H_CALL("rest_timeout", A_INT(1000), A_INT(100)), 1);
	t0 = h_now_us();
	CHECK_INT(H_CALL("rest_get", A_STR(hang), A_VAR(&body)), -2);
	ms = (h_now_us() - t0) / 1000;
	CHECK(ms >= 80 && ms < 500);

	/* The limits were for one call: the next one has curl_timeout_ms again. */
	CHECK_INT(request("GET", "/delay?ms=800", NULL), 1);

	CHECK_INT(H_CALL("rest_timeout", A_INT(0)), -1);
	CHECK_INT(H_CALL("rest_timeout", A_INT(-5)), -1);
	CHECK_INT(H_CALL("rest_timeout", A_INT(100), A_INT(0)), -1);
}

static int body_is(const char *want, int len)
{
	return body.is_set && body.len == len && memcmp(body.s, want, (size_t)len) == 0;
}

/* A binary body that starts and ends with whitespace bytes: trimmed by default (as the C
 * module), as received for the transfer after rest_raw_body() (issue 13). */
static void test_raw_body(void)
{
	static const char received[] = "\n\0\xff A\0\r\n \t";
	const char *path = "/bytes?hex=0a00ff2041000d0a2009";
	reset();
	CHECK_INT(H_CALL("rest_get", A_STR(url(path)), A_VAR(&body), A_VAR(&ctype)), 1);
	CHECK(body_is(received + 1, 5));

	CHECK_INT(h_call("rest_raw_body", 0, NULL), 1);
	reset();
	CHECK_INT(H_CALL("rest_get", A_STR(url(path)), A_VAR(&body), A_VAR(&ctype)), 1);
	CHECK(body_is(received, 10));
	CHECK_STR(&ctype, "application/octet-stream");
	/* For the next transfer only. */
	reset();
	CHECK_INT(H_CALL("rest_get", A_STR(url(path)), A_VAR(&body)), 1);
	CHECK(body_is(received + 1, 5));

	CHECK_INT(h_call("rest_raw_body", 0, NULL), 1);
	reset();
	async_done = 0;
	H_ASYNC("rest_get", 0, resumed, NULL, A_STR(url(path)), A_VAR(&body));
	h_reactor_run(3000);
	CHECK_INT(async_done, 1);
	CHECK_INT(async_rc, 1);
	CHECK(body_is(received, 10));
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	h_start_as_worker(argv[1], argv[2]);
	port = h_start_server(NULL);
	test_methods();
	test_response_headers();
	test_millisecond_limits();
	test_raw_body();
	CHECK_INT(h_resumed_twice(), 0);
	return h_finish();
}

/*
 * Beyond the C module: rest_patch, rest_delete, rest_request for any method, response headers
 * and reason phrase, millisecond limits (module parameters and rest_timeout), bodies as
 * received (rest_raw_body), blocking and async.
 * usage: test_extensions module.so extensions.cfg
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

/* What a resume route read of its call's response: header `name` and the reason phrase, then
 * the same header after a blocking call made in the route (its response from then on). */
struct head_read {
	const char *name;
	int rc;
	char value[64], reason[64], after_blocking[64];
};

static void read_into(const char *name, char *dest, size_t size)
{
	hvar v = { 0 };
	int found = name ? H_CALL("rest_response_header", A_STR(name), A_VAR(&v))
			 : H_CALL("rest_response_reason", A_VAR(&v));
	snprintf(dest, size, "%s", found == 1 && v.is_set ? v.s : "(none)");
	hvar_reset(&v);
}

static void read_own_head(int rc, void *arg)
{
	struct head_read *r = arg;
	r->rc = rc;
	read_into(r->name, r->value, sizeof r->value);
	read_into(NULL, r->reason, sizeof r->reason);
	hvar b = { 0 };
	H_CALL("rest_get", A_STR(url("/headers?h=X-Id:blocking")), A_VAR(&b));
	hvar_reset(&b);
	read_into(r->name, r->after_blocking, sizeof r->after_blocking);
}

/* Issue 9 (6): each resume route reads its own call's response, even when the transfers of
 * several calls end in one reactor round and a route before it made a blocking call. */
static void test_each_call_reads_its_own_response(void)
{
	struct head_read one = { .name = "X-Id" }, two = { .name = "X-Id" };
	hvar body2 = { 0 };
	reset();
	H_ASYNC("rest_get", 0, read_own_head, &one,
		A_STR(url("/headers?ms=600&reason=First&h=X-Id:one")), A_VAR(&body));
	H_ASYNC("rest_get", 0, read_own_head, &two,
		A_STR(url("/headers?ms=600&reason=Second&h=X-Id:two")), A_VAR(&body2));
	h_reactor_run(200); /* both requests go out */
	usleep(900 * 1000); /* both answers wait in their sockets: one round ends both calls */
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK(one.rc == 1 && two.rc == 1);
	CHECK(!strcmp(one.value, "one") && !strcmp(one.reason, "First"));
	CHECK(!strcmp(two.value, "two") && !strcmp(two.reason, "Second"));
	CHECK(!strcmp(one.after_blocking, "blocking") && !strcmp(two.after_blocking, "blocking"));
	hvar_reset(&body2);

	/* A new SIP message reads no response of the previous one's calls. */
	reset();
	CHECK_INT(H_CALL("rest_get", A_STR(url("/headers?h=X-Id:old")), A_VAR(&body)), 1);
	CHECK_INT(H_CALL("rest_response_header", A_STR("X-Id"), A_VAR(&out)), 1);
	h_new_message();
	CHECK_INT(H_CALL("rest_response_header", A_STR("X-Id"), A_VAR(&out)), -1);
	CHECK_INT(H_CALL("rest_response_reason", A_VAR(&out)), -1);
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
	struct head_read job = { .name = "x-job" };
	H_ASYNC("rest_get", 0, read_own_head, &job, A_STR(url("/headers?status=202&h=X-Job:%2042")),
		A_VAR(&body));
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(job.rc, 1);
	CHECK(!strcmp(job.value, "42") && !strcmp(job.reason, "Accepted"));

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
	test_each_call_reads_its_own_response();
	test_millisecond_limits();
	test_raw_body();
	CHECK_INT(h_resumed_twice(), 0);
	return h_finish();
}

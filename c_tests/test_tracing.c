/*
 * HEP tracing through the tracer module (issue 11): with the tracer's globals set (tracer +
 * proto_hep loaded) and the SIP message traced with the "rest" type, every transfer sends a
 * request and a reply, correlated with each other and with the SIP Call-ID: every method,
 * blocking and async (from the resume, in the message's context), cache hits marked,
 * credentials masked, failures with a reason. Untraced messages and launch() jobs send
 * nothing.
 * usage: test_tracing module.so tracing.cfg
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define CALL_ID "a84b4c76e66710@pc33.example.com"

static int port, tls_port;
/* The last call's variables and its resume (or report) route's record. */
static struct h_call call;

static const char *url(const char *path) { return h_url("http", port, path); }

static const struct h_trace *trace(int i) { return h_trace_get(i); }

/* Whether payload part `key` of trace `i` is `want` (exact) or contains it. */
static int part_matches(int i, const char *key, const char *want, int exact)
{
	const char *value = h_trace_part(trace(i), key);
	if (value && (exact ? !strcmp(value, want) : strstr(value, want) != NULL))
		return 1;
	fprintf(stderr, "  trace %d part %s = '%s', want %s'%s'\n", i, key,
		value ? value : "(absent)", exact ? "" : "in it ", want);
	return 0;
}

static int part_has(int i, const char *key, const char *text) { return part_matches(i, key, text, 0); }

static int part_is(int i, const char *key, const char *want) { return part_matches(i, key, want, 1); }

/* No part, correlation or address of any trace contains `secret`. */
static int nowhere(const char *secret)
{
	for (int i = 0; i < h_trace_count(); i++)
		for (int j = 0; j < trace(i)->part_count; j++)
			if (strstr(trace(i)->values[j], secret)) {
				fprintf(stderr, "  '%s' leaked in trace %d part %s: %s\n", secret, i,
					trace(i)->keys[j], trace(i)->values[j]);
				return 0;
			}
	return 1;
}

/* The two messages of one transfer: request local -> server, reply back, one correlation,
 * the SIP Call-ID, TCP, the "rest" type. */
static void check_pair(int first, int server_port)
{
	const struct h_trace *req = trace(first), *rpl = trace(first + 1);
	CHECK(req && rpl);
	if (!req || !rpl)
		return;
	char server[64];
	snprintf(server, sizeof server, "127.0.0.1:%d", server_port);
	CHECK_INT(req->id, 0x58);
	CHECK_INT(req->net_proto, 6);
	CHECK(!strcmp(req->to, server) && !strcmp(rpl->from, server));
	CHECK(!strcmp(req->from, rpl->to) && strncmp(req->from, "127.0.0.1:", 10) == 0);
	CHECK(!strcmp(req->correlation, rpl->correlation));
	CHECK(!strncmp(req->correlation, "RESTCORR", 8));
	CHECK(!strcmp(req->sip_correlation, CALL_ID) && !strcmp(rpl->sip_correlation, CALL_ID));
}

static int get(const char *u)
{
	h_call_reset(&call);
	return H_CALL("rest_get", A_STR(u), A_VAR(&call.body), A_NONE, A_VAR(&call.code));
}

static void test_startup_registers_the_rest_type(void)
{
	CHECK_INT(h_rest_type_registered(), 1);
}

static void test_untraced_message_sends_nothing(void)
{
	h_trace_message(0);
	h_trace_reset();
	CHECK_INT(get(url("/echo")), 1);
	CHECK_INT(h_trace_count(), 0);
	CHECK_INT(h_traces_outside_context(), 0);
}

static void test_blocking_get(void)
{
	h_trace_message(1);
	h_trace_reset();
	CHECK_INT(get(url("/body?size=20")), 1);
	CHECK_INT(h_trace_count(), 2);
	check_pair(0, port);
	CHECK(part_is(0, "first_line", "GET /body?size=20 HTTP/1.1"));
	char host[64];
	snprintf(host, sizeof host, "Host: 127.0.0.1:%d\r\n", port);
	CHECK(part_has(0, "headers", host));
	CHECK(h_trace_part(trace(0), "payload") == NULL);
	CHECK(part_is(1, "first_line", "HTTP/1.1 200 OK"));
	CHECK(part_has(1, "headers", "Content-Length: 20\r\n"));
	CHECK(part_is(1, "payload", "0123456789abcdefghij"));
	CHECK(h_trace_part(trace(1), "error") == NULL);
	CHECK(h_call_id_parses() > 0);
}

/* The C module recognised GET, POST and PUT request lines only. */
static void test_every_method(void)
{
	h_trace_message(1);
	struct { const char *fn, *line; } sends[] = {
		{ "rest_post", "POST /echo HTTP/1.1" },
		{ "rest_put", "PUT /echo HTTP/1.1" },
		{ "rest_patch", "PATCH /echo HTTP/1.1" },
		{ "rest_delete", "DELETE /echo HTTP/1.1" },
	};
	for (size_t i = 0; i < sizeof sends / sizeof sends[0]; i++) {
		h_trace_reset();
		h_call_reset(&call);
		CHECK_INT(H_CALL(sends[i].fn, A_STR(url("/echo")), A_STR("{\"n\":1}"),
				 A_STR("application/json"), A_VAR(&call.body)), 1);
		CHECK_INT(h_trace_count(), 2);
		check_pair(0, port);
		CHECK(part_is(0, "first_line", sends[i].line));
		CHECK(part_is(0, "payload", "{\"n\":1}"));
		CHECK(part_has(0, "headers", "Content-Type: application/json\r\n"));
		CHECK(part_has(1, "payload", "\"body_len\": 7"));
	}
	h_trace_reset();
	h_call_reset(&call);
	CHECK_INT(H_CALL("rest_request", A_STR("PURGE"), A_STR(url("/echo")), A_NONE, A_NONE,
			 A_VAR(&call.body)), 1);
	CHECK(part_is(0, "first_line", "PURGE /echo HTTP/1.1"));
	CHECK(part_has(1, "payload", "\"method\": \"PURGE\""));
}

static void test_credentials_are_masked(void)
{
	h_trace_message(1);
	h_trace_reset();
	/* The echo server sends every request header back in its body. */
	CHECK_INT(get("api://echo"), 1);
	CHECK_INT(h_trace_count(), 2);
	CHECK(part_has(0, "headers", "Authorization: Bearer ***\r\n"));
	CHECK(part_has(0, "headers", "X-Auth-Token: ***\r\n"));
	CHECK(part_has(0, "headers", "X-Team: 7\r\n"));
	CHECK(part_has(1, "payload", "\"Bearer ***\""));
	CHECK(nowhere("sekret-token") && nowhere("tok123"));

	h_trace_reset();
	CHECK_INT(get("basic://echo"), 1);
	CHECK(part_has(0, "headers", "Authorization: Basic ***\r\n"));
	CHECK(nowhere("p4ss") && nowhere("dXNlcjpwNHNz"));

	h_trace_reset();
	char u[256];
	snprintf(u, sizeof u, "http://bob:hunter2@127.0.0.1:%d/echo", port);
	CHECK_INT(get(u), 1);
	CHECK(part_has(0, "headers", "Authorization: Basic ***\r\n"));
	CHECK(nowhere("hunter2") && nowhere("Ym9iOmh1bnRlcjI="));

	h_trace_reset();
	CHECK_INT(H_CALL("rest_append_hf", A_STR("Proxy-Authorization: Digest appended-secret")), 1);
	CHECK_INT(get(url("/echo")), 1);
	CHECK(part_has(0, "headers", "Proxy-Authorization: Digest ***\r\n"));
	CHECK(nowhere("appended-secret"));
}

static void test_failures_carry_a_reason(void)
{
	h_trace_message(1);
	h_trace_reset();
	int closed = h_closed_port();
	CHECK_INT(get(h_url("http", closed, "/x")), -1);
	CHECK_INT(h_trace_count(), 2);
	char line[128];
	snprintf(line, sizeof line, "GET http://127.0.0.1:%d/x", closed);
	CHECK(part_is(0, "first_line", line));
	CHECK(h_trace_part(trace(1), "first_line") == NULL);
	CHECK(part_has(1, "error", "connect refused"));
	/* No connection: the server's address from the URL, the unspecified one for ours. */
	snprintf(line, sizeof line, "127.0.0.1:%d", closed);
	CHECK(!strcmp(trace(0)->to, line) && !strcmp(trace(1)->from, line));
	CHECK(!strcmp(trace(0)->from, "0.0.0.0:0"));
	CHECK(!strcmp(trace(0)->sip_correlation, CALL_ID));

	h_trace_reset();
	CHECK_INT(H_CALL("rest_timeout", A_INT(300)), 1);
	CHECK_INT(get(url("/stall-headers")), -3);
	CHECK_INT(h_trace_count(), 2);
	check_pair(0, port);
	CHECK(part_is(0, "first_line", "GET /stall-headers HTTP/1.1"));
	CHECK(part_has(1, "error", "timed out"));

	h_trace_reset();
	CHECK_INT(H_CALL("rest_timeout", A_INT(300)), 1);
	CHECK_INT(get(h_url("http", h_full_backlog_port(), "/x")), -2);
	CHECK(part_has(1, "error", "connect timeout"));

	/* A server whose certificate no CA vouches for: the handshake fails. */
	h_trace_reset();
	CHECK_INT(get(h_url("https", tls_port, "/x")), -10);
	CHECK_INT(h_trace_count(), 2);
	CHECK(part_has(1, "error", "SSL"));
	CHECK(h_trace_part(trace(1), "first_line") == NULL);
}

/* Issue 19: a call that failed over shows each attempt, in order, under one SIP Call-ID. */
static int failover_refused_port;
static void test_failover_shows_each_attempt(void)
{
	h_trace_message(1);
	h_trace_reset();
	CHECK_INT(get("failover://echo"), 1);
	CHECK_INT(h_trace_count(), 4);
	char line[128];
	snprintf(line, sizeof line, "GET http://127.0.0.1:%d/echo", failover_refused_port);
	CHECK(part_is(0, "first_line", line));
	CHECK(part_has(1, "error", "connect refused"));
	CHECK(!strcmp(trace(0)->correlation, trace(1)->correlation));
	check_pair(2, port);
	CHECK(part_is(2, "first_line", "GET /echo HTTP/1.1"));
	CHECK(part_is(3, "first_line", "HTTP/1.1 200 OK"));
	CHECK(strcmp(trace(0)->correlation, trace(2)->correlation) != 0);
	CHECK(!strcmp(trace(0)->sip_correlation, CALL_ID));
}

static void test_async_traced_from_the_resume(void)
{
	h_trace_message(1);
	h_trace_reset();
	h_call_reset(&call);
	/* The server answers after a while: the transfer ends in a reactor round, and the
	 * module traces it from the resume, where tm restored the message's context. */
	int waits = H_ASYNC("rest_post", 0, h_record_route, &call, A_STR(url("/delay?ms=200")), A_STR("x=1"),
			    A_NONE, A_VAR(&call.body));
	CHECK_INT(waits, 0);
	h_trace_message(0); /* another, untraced message meanwhile */
	CHECK_INT(get(url("/echo")), 1);
	CHECK_INT(h_trace_count(), 0);
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(call.runs, 1);
	CHECK_INT(call.rc, 1);
	CHECK_INT(h_trace_count(), 2);
	check_pair(0, port);
	CHECK(part_is(0, "first_line", "POST /delay?ms=200 HTTP/1.1"));
	CHECK(part_is(0, "payload", "x=1"));
	CHECK(part_is(1, "payload", "delayed"));
	CHECK_INT(h_traces_outside_context(), 0);

	/* A failure of an async call. */
	h_trace_message(1);
	h_trace_reset();
	h_call_reset(&call);
	H_ASYNC("rest_get", 0, h_record_route, &call, A_STR(h_url("http", h_closed_port(), "/x")),
		A_VAR(&call.body));
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(call.rc, -1);
	CHECK_INT(h_trace_count(), 2);
	CHECK(part_has(1, "error", "connect refused"));
	CHECK(!strcmp(trace(1)->sip_correlation, CALL_ID));

	/* An untraced message's async call sends nothing. */
	h_trace_message(0);
	h_trace_reset();
	H_ASYNC("rest_get", 0, h_record_route, &call, A_STR(url("/delay?ms=50")), A_VAR(&call.body));
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(h_trace_count(), 0);

	/* tm's sync mode (a route where async is not allowed). */
	h_trace_message(1);
	h_trace_reset();
	CHECK_INT(h_async_call("rest_get", 0, 1, h_record_route, &call, 2,
			       (h_arg[]){ A_STR(url("/delay?ms=50")), A_VAR(&call.body) }), 1);
	CHECK_INT(h_trace_count(), 2);
	CHECK(part_is(1, "payload", "delayed"));
}

/* The core resumes a launch() job without the message's context: nothing is traced, and
 * nothing is attempted outside a context. */
static void test_launch_is_not_traced(void)
{
	h_trace_message(1);
	h_trace_reset();
	h_call_reset(&call);
	h_launch_call("rest_get", h_record_route, &call, 2,
		      (h_arg[]){ A_STR(url("/delay?ms=50")), A_VAR(&call.body) });
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(call.runs, 1);
	CHECK_INT(h_trace_count(), 0);
	CHECK_INT(h_traces_outside_context(), 0);
}

static void test_cache_hits_are_marked(void)
{
	h_trace_message(1);
	h_trace_reset();
	CHECK_INT(get("cached://body?size=5"), 1);
	CHECK_INT(h_trace_count(), 2);
	CHECK(h_trace_part(trace(1), "cache") == NULL);
	h_trace_reset();
	CHECK_INT(get("cached://body?size=5"), 1);
	CHECK_INT(h_trace_count(), 2);
	CHECK(part_is(0, "cache", "hit") && part_is(1, "cache", "hit"));
	char line[128];
	snprintf(line, sizeof line, "GET http://127.0.0.1:%d/body?size=5", port);
	CHECK(part_is(0, "first_line", line));
	CHECK(part_is(1, "first_line", "HTTP/1.1 200 OK"));
	CHECK(part_is(1, "payload", "01234"));
	CHECK(!strcmp(trace(0)->sip_correlation, CALL_ID));
	/* An async call answered from the cache. */
	h_trace_reset();
	H_ASYNC("rest_get", 0, h_record_route, &call, A_STR("cached://body?size=5"), A_VAR(&call.body));
	CHECK_INT(h_trace_count(), 2);
	CHECK(part_is(1, "cache", "hit"));
}

static void test_payload_is_capped(void)
{
	h_trace_message(1);
	h_trace_reset();
	CHECK_INT(get(url("/body?size=10000")), 1);
	CHECK_INT(call.body.len, 10000);
	const char *payload = h_trace_part(trace(1), "payload");
	CHECK(payload && strlen(payload) < 4096 + 64);
	CHECK(part_has(1, "payload", "[5904 more bytes not traced]"));
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s module.so cfg\n", argv[0]);
		return 2;
	}
	port = h_start_server(NULL);
	char dir[] = "/tmp/rest_tracing_XXXXXX", cmd[128], cert[128], key[128];
	snprintf(cmd, sizeof cmd, "sh c_tests/make_certs.sh %s", mkdtemp(dir));
	if (system(cmd) != 0)
		return 2;
	snprintf(cert, sizeof cert, "%s/rogue.pem", dir);
	snprintf(key, sizeof key, "%s/rogue.key", dir);
	tls_port = h_start_server((const char *const[]){ "--tls-cert", cert, "--tls-key", key, NULL });
	h_load(argv[1]);
	CHECK_INT(h_load_cfg(argv[2]), 0);
	CHECK_INT(h_service("name=api; url=http://127.0.0.1:%d/; header=X-Auth-Token: tok123; "
		 "header=X-Team: 7; auth=bearer:sekret-token", port), 0);
	CHECK_INT(h_service("name=basic; url=http://127.0.0.1:%d; auth=basic:user:p4ss", port), 0);
	CHECK_INT(h_service("name=cached; url=http://127.0.0.1:%d/; cache_ttl=30", port), 0);
	failover_refused_port = h_closed_port();
	CHECK_INT(h_service("name=failover; url=http://127.0.0.1:%d/; url=http://127.0.0.1:%d/",
			    failover_refused_port, port), 0);
	h_tracer_load(); /* tracer's mod_init runs first: rest_client depends on it */
	CHECK_INT(h_mod_init(), 0);
	CHECK_INT(h_child_init(1), 0);
	h_set_call_id(CALL_ID);

	test_startup_registers_the_rest_type();
	test_untraced_message_sends_nothing();
	test_blocking_get();
	test_every_method();
	test_credentials_are_masked();
	test_failures_carry_a_reason();
	test_failover_shows_each_attempt();
	test_async_traced_from_the_resume();
	test_launch_is_not_traced();
	test_cache_hits_are_marked();
	test_payload_is_capped();
	CHECK_INT(h_traces_outside_context(), 0);
	return h_finish();
}

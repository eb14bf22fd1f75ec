/*
 * Async rest_get / rest_post / rest_put through a tm-like reactor: result codes and outputs
 * like the blocking functions, timeouts that always fire, max_async_transfers with blocking
 * fallback (or -5 with no_async_fallback), keep-alive shared with blocking calls, a kept-alive
 * connection dropped by the server (OpenSIPS issue #3544), sync mode, one descriptor in the
 * reactor for all calls, a resume route starting a call, launch() jobs, ACKs, several
 * processes.
 * Every started call must resume exactly once.
 * usage: test_async module.so cfg fallback|failfast
 *   (cfg: async.cfg: curl_timeout 2, connection_timeout 1, max_async_transfers 10;
 *         async_failfast.cfg: the same with no_async_fallback 1)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define MAX_ASYNC 10

static int port;

static const char *url(const char *path)
{
	return h_url("http", port, path);
}

static int async_get(struct h_call *c, const char *u, int timeout_s)
{
	h_call_reset(c);
	return H_ASYNC("rest_get", timeout_s, h_record_route, c, A_STR(u), A_VAR(&c->body),
		       A_VAR(&c->ctype), A_VAR(&c->code));
}

static void test_outputs_like_blocking(void)
{
	struct h_call c = { 0 };
	async_get(&c, url("/body?size=10&pad=1&ctype=text/plain;%20x=1"), 0);
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(c.runs, 1);
	CHECK_INT(c.rc, 1);
	CHECK_INT(c.code.ri, 200);
	CHECK_STR(&c.body, "0123456789");
	CHECK_STR(&c.ctype, "text/plain; x=1");

	async_get(&c, url("/status/404"), 0);
	h_reactor_run(3000);
	CHECK_INT(c.rc, 1);
	CHECK_INT(c.code.ri, 404);

	/* POST and PUT send their bodies and types. */
	h_call_reset(&c);
	H_ASYNC("rest_post", 0, h_record_route, &c, A_STR(url("/echo")), A_STR("{\"k\":2}"),
		A_STR("application/json"), A_VAR(&c.body), A_NONE, A_VAR(&c.code));
	h_reactor_run(3000);
	CHECK_INT(c.rc, 1);
	CHECK(c.body.is_set && strstr(c.body.s, "\"method\": \"POST\"") &&
	      strstr(c.body.s, "[\"Content-Type\", \"application/json\"]") &&
	      strstr(c.body.s, "\"body\": \"{\\\"k\\\":2}\""));
	h_call_reset(&c);
	H_ASYNC("rest_put", 0, h_record_route, &c, A_STR(url("/echo")), A_STR("abc"), A_NONE, A_VAR(&c.body));
	h_reactor_run(3000);
	CHECK_INT(c.rc, 1);
	CHECK(c.body.is_set && strstr(c.body.s, "\"method\": \"PUT\"") && strstr(c.body.s, "\"body_len\": 3"));

	/* Appended headers go with the next transfer, async included. */
	CHECK_INT(H_CALL("rest_append_hf", A_STR("X-Async: yes")), 1);
	async_get(&c, url("/echo"), 0);
	h_reactor_run(3000);
	CHECK(c.body.is_set && strstr(c.body.s, "[\"X-Async\", \"yes\"]"));
}

static void test_failures(void)
{
	struct h_call c = { 0 };
	char u[128];

	/* Refused at once: the route runs right away, nothing waits in the reactor. */
	snprintf(u, sizeof u, "http://127.0.0.1:%d/", h_closed_port());
	int started = async_get(&c, u, 0);
	h_reactor_run(3000);
	CHECK_INT(c.runs, 1);
	CHECK_INT(c.rc, -1);
	CHECK(!c.body.is_set);
	(void)started;

	/* Bad arguments: the route runs at once with -10. */
	CHECK_INT(async_get(&c, "", 0), 1);
	CHECK_INT(c.rc, -10);

	/* Connect timeout (connection_timeout 1 s), without blocking the worker. */
	snprintf(u, sizeof u, "http://127.0.0.1:%d/", h_full_backlog_port());
	long long t0 = h_now_us();
	CHECK_INT(async_get(&c, u, 0), 0);
	CHECK(h_now_us() - t0 < 50000);
	h_reactor_run(4000);
	CHECK_INT(c.rc, -2);
	CHECK(h_call_ms(&c) >= 900 && h_call_ms(&c) < 2200);

	/* A silent server: -3 after curl_timeout (2 s); with async(..., 1) after about 1 s. */
	async_get(&c, url("/stall-headers"), 0);
	h_reactor_run(5000);
	CHECK_INT(c.runs, 1);
	CHECK_INT(c.rc, -3);
	CHECK(h_call_ms(&c) >= 1900 && h_call_ms(&c) < 3100);
	async_get(&c, url("/stall-headers"), 1);
	h_reactor_run(5000);
	CHECK_INT(c.rc, -3);
	CHECK(h_call_ms(&c) >= 700 && h_call_ms(&c) < 2100);

	/* Stalls mid-body: -3 with the code and the partial body. */
	async_get(&c, url("/stall-body?sent=100"), 0);
	h_reactor_run(5000);
	CHECK_INT(c.rc, -3);
	CHECK_INT(c.code.ri, 200);
	CHECK_INT(c.body.len, 100);

	/* Closes mid-body: -10, body not set. */
	async_get(&c, url("/close-mid-body?sent=100"), 0);
	h_reactor_run(5000);
	CHECK_INT(c.rc, -10);
	CHECK(!c.body.is_set);
}

static void test_many_in_flight(int failfast)
{
	enum { N = 2 * MAX_ASYNC };
	static struct h_call calls[N];
	int immediate = 0;
	long long t0 = h_now_us();
	for (int i = 0; i < N; i++)
		immediate += async_get(&calls[i], url("/delay?ms=20"), 0);
	long long start_ms = (h_now_us() - t0) / 1000;
	CHECK_INT(h_reactor_run(5000), 0);
	int ok = 0, refused = 0;
	for (int i = 0; i < N; i++) {
		CHECK_INT(calls[i].runs, 1);
		ok += calls[i].rc == 1;
		refused += calls[i].rc == -5;
	}
	/* MAX_ASYNC go async; the others run blocking (fallback) or fail with -5 (fail fast). */
	CHECK_INT(immediate, N - MAX_ASYNC);
	if (failfast) {
		CHECK_INT(ok, MAX_ASYNC);
		CHECK_INT(refused, N - MAX_ASYNC);
		CHECK(start_ms < 200);
	} else {
		CHECK_INT(ok, N);
		/* Each fallback blocks the worker for the whole transfer (20 ms at least). */
		CHECK(start_ms >= 20 * (N - MAX_ASYNC));
	}
	/* The slots are free again. */
	struct h_call c = { 0 };
	async_get(&c, url("/echo"), 0);
	h_reactor_run(3000);
	CHECK_INT(c.rc, 1);

	/* MAX_ASYNC concurrent transfers leave MAX_ASYNC kept-alive connections, and the next
	 * round reuses every one of them (libcurl's default cache keeps only 4). */
	free(h_http_get(port, "/stats/reset"));
	for (int i = 0; i < MAX_ASYNC; i++)
		async_get(&calls[i], url("/delay?ms=100"), 0);
	CHECK_INT(h_reactor_run(3000), 0);
	char *stats = h_http_get(port, "/stats");
	CHECK_INT(h_json_int(stats, "connections"), 1); /* only the /stats connection is new */
	free(stats);
}

static void test_keep_alive_and_mixing(void)
{
	/* Async and blocking calls of one process share kept-alive connections. */
	struct h_call c = { 0 };
	async_get(&c, url("/echo"), 0);
	h_reactor_run(3000);
	int conn = h_json_int(c.body.s, "connection_id");
	hvar body = { 0 };
	CHECK_INT(H_CALL("rest_get", A_STR(url("/echo")), A_VAR(&body)), 1);
	CHECK_INT(h_json_int(body.s, "connection_id"), conn);
	async_get(&c, url("/echo"), 0);
	h_reactor_run(3000);
	CHECK_INT(h_json_int(c.body.s, "connection_id"), conn);

	/* Blocking calls while async ones are in flight. */
	struct h_call slow[5];
	memset(slow, 0, sizeof slow);
	for (int i = 0; i < 5; i++)
		CHECK_INT(async_get(&slow[i], url("/delay?ms=400"), 0), 0); /* cannot end at start */
	hvar_reset(&body);
	CHECK_INT(H_CALL("rest_get", A_STR(url("/body?size=4")), A_VAR(&body)), 1);
	CHECK_STR(&body, "0123");
	CHECK_INT(h_reactor_run(3000), 0);
	for (int i = 0; i < 5; i++)
		CHECK_INT(slow[i].rc, 1);
	hvar_reset(&body);

	/* #3544: the server drops the kept-alive connection as the next request arrives. libcurl
	 * retries on a new connection (another socket); the call still ends in time. A server of
	 * its own, so that the dropped connection is the only one cached for it. */
	port = h_start_server(NULL);
	async_get(&c, url("/drop-next-request"), 0);
	h_reactor_run(3000);
	CHECK_INT(c.rc, 1);
	async_get(&c, url("/echo"), 0);
	h_reactor_run(3000);
	CHECK_INT(c.rc, 1);
	CHECK_INT(h_json_int(c.body.s, "request_on_connection"), 1);
	CHECK(h_call_ms(&c) < 1000);
	/* The same for a blocking call. */
	async_get(&c, url("/drop-next-request"), 0);
	h_reactor_run(3000);
	CHECK_INT(H_CALL("rest_get", A_STR(url("/echo")), A_VAR(&body)), 1);
	CHECK_INT(h_json_int(body.s, "request_on_connection"), 1);
	hvar_reset(&body);

	/* A server that closed every kept-alive connection (an nginx reload, a keep-alive timeout
	 * with TLS, whose close_notify makes a closed connection look alive to libcurl): libcurl
	 * 7.88 retries on the next cached connection, gives up after five retries with
	 * CURLE_SEND_ERROR (-10); the module then tries one new connection. */
	for (int blocking = 0; blocking <= 1; blocking++) {
		struct h_call dropping[6];
		memset(dropping, 0, sizeof dropping);
		port = h_start_server(NULL);
		for (int i = 0; i < 6; i++)
			async_get(&dropping[i], url("/drop-next-request?ms=200"), 0);
		CHECK_INT(h_reactor_run(3000), 0);
		for (int i = 0; i < 6; i++)
			CHECK_INT(dropping[i].rc, 1);
		if (blocking) {
			CHECK_INT(H_CALL("rest_get", A_STR(url("/echo")), A_VAR(&body)), 1);
			CHECK_INT(h_json_int(body.s, "request_on_connection"), 1);
			hvar_reset(&body);
		} else {
			async_get(&c, url("/echo"), 0);
			h_reactor_run(3000);
			CHECK_INT(c.rc, 1);
			CHECK_INT(h_json_int(c.body.s, "request_on_connection"), 1);
		}
	}
}

static void test_sync_mode(void)
{
	/* Where async is not allowed tm loops on the resume function: still correct. */
	struct h_call c = { 0 };
	h_call_reset(&c);
	CHECK_INT(h_async_call("rest_get", 0, 1, h_record_route, &c, 2,
			       (h_arg[]){ A_STR(url("/delay?ms=200")), A_VAR(&c.body) }), 1);
	CHECK_INT(c.runs, 1);
	CHECK_INT(c.rc, 1);
	CHECK_STR(&c.body, "delayed");
}

/* A resume route that starts the next async call, as a script may. */
static struct h_call chained;
static void chaining_route(int rc, void *arg)
{
	h_record_route(rc, arg);
	CHECK_INT(async_get(&chained, url("/delay?ms=50"), 0), 0);
}

static void test_one_descriptor(void)
{
	/* However many calls are in flight, the reactor watches one descriptor of the module. */
	enum { N = 8 };
	struct h_call calls[N];
	memset(calls, 0, sizeof calls);
	for (int i = 0; i < N; i++)
		CHECK_INT(async_get(&calls[i], url("/delay?ms=100"), 0), 0);
	CHECK_INT(h_reactor_watches(), 1);
	/* A call run synchronously (tm's sync mode) meanwhile ends alone; the others are
	 * resumed later by the reactor, each once. */
	struct h_call sync_call = { 0 };
	h_call_reset(&sync_call);
	struct timespec cpu0, cpu1;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu0);
	CHECK_INT(h_async_call("rest_get", 0, 1, h_record_route, &sync_call, 2,
			       (h_arg[]){ A_STR(url("/delay?ms=200")), A_VAR(&sync_call.body) }), 1);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu1);
	CHECK_INT(sync_call.rc, 1);
	/* It waited on the descriptor, not in a busy loop, though other calls ended meanwhile. */
	long cpu_ms = (cpu1.tv_sec - cpu0.tv_sec) * 1000 + (cpu1.tv_nsec - cpu0.tv_nsec) / 1000000;
	CHECK(h_call_ms(&sync_call) >= 150);
	CHECK(cpu_ms < 50);
	for (int i = 0; i < N; i++)
		CHECK_INT(calls[i].runs, 0); /* resumed by the reactor only */
	CHECK_INT(h_reactor_run(3000), 0);
	for (int i = 0; i < N; i++) {
		CHECK_INT(calls[i].runs, 1);
		CHECK_INT(calls[i].rc, 1);
		CHECK_STR(&calls[i].body, "delayed");
	}
	CHECK_INT(h_reactor_watches(), 1);

	/* A resume route that starts another async call. */
	struct h_call first = { 0 };
	h_call_reset(&first);
	h_call_reset(&chained);
	CHECK_INT(H_ASYNC("rest_get", 0, chaining_route, &first, A_STR(url("/delay?ms=50")),
			  A_VAR(&first.body)), 0);
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(first.rc, 1);
	CHECK_INT(chained.runs, 1);
	CHECK_INT(chained.rc, 1);
	CHECK_STR(&chained.body, "delayed");

	/* launch() jobs are resumed through the core, async() calls through tm, mixed. */
	struct h_call jobs[4], waits[4];
	memset(jobs, 0, sizeof jobs);
	memset(waits, 0, sizeof waits);
	for (int i = 0; i < 4; i++) {
		h_call_reset(&jobs[i]);
		CHECK_INT(h_launch_call("rest_get", h_record_route, &jobs[i], 2,
					(h_arg[]){ A_STR(url("/delay?ms=50")), A_VAR(&jobs[i].body) }),
			  0);
		CHECK_INT(async_get(&waits[i], url("/delay?ms=50"), 0), 0);
	}
	CHECK_INT(h_reactor_run(3000), 0);
	for (int i = 0; i < 4; i++) {
		CHECK_INT(jobs[i].runs, 1);
		CHECK_INT(jobs[i].rc, 1);
		CHECK_STR(&jobs[i].body, "delayed");
		CHECK_INT(waits[i].runs, 1);
		CHECK_INT(waits[i].rc, 1);
	}

	/* An ACK has no transaction to resume: the call runs blocking and its route at once. */
	h_set_message_method(4);
	struct h_call ack = { 0 };
	CHECK_INT(async_get(&ack, url("/delay?ms=50"), 0), 1);
	CHECK_INT(ack.rc, 1);
	CHECK_STR(&ack.body, "delayed");
	h_set_message_method(0);
}

static int worker(int rank, void *arg)
{
	enum { N = 8 };
	struct h_call calls[N];
	(void)arg;
	memset(calls, 0, sizeof calls);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++)
			async_get(&calls[i], url(i % 2 ? "/echo" : "/delay?ms=50"), 0);
		CHECK_INT(h_reactor_run(3000), 0);
		for (int i = 0; i < N; i++) {
			CHECK_INT(calls[i].runs, 1);
			CHECK_INT(calls[i].rc, 1);
		}
	}
	CHECK_INT(h_resumed_twice(), 0);
	(void)rank;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	int failfast = strcmp(argv[3], "failfast") == 0;
	h_load(argv[1]);
	CHECK_INT(h_load_cfg(argv[2]), 0);
	CHECK_INT(h_mod_init(), 0);
	port = h_start_server(NULL);

	if (!failfast) {
		for (int rank = 2; rank <= 4; rank++)
			h_fork_worker(rank, worker, NULL);
	}
	CHECK_INT(h_child_init(1), 0);
	test_many_in_flight(failfast);
	if (!failfast) {
		test_outputs_like_blocking();
		test_failures();
		test_keep_alive_and_mixing();
		test_sync_mode();
		test_one_descriptor();
		CHECK_INT(h_wait_workers(), 0);
	}
	CHECK_INT(h_resumed_twice(), 0);
	return h_finish();
}

/*
 * Several worker processes: each keeps its own kept-alive connection (the server counts
 * connections), and no_concurrent_connects / curl_conn_lifetime gate connects across them.
 * usage: test_processes module.so cfg reuse|gate|lifetime|async_gate
 *   reuse: any cfg; gate, async_gate: gate.cfg; lifetime: gate_lifetime.cfg
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define WORKERS 3
#define REQUESTS 5

static int port, with_lifetime, blackhole_port;

static int get(const char *path, hvar *body, hvar *code)
{
	hvar_reset(body);
	hvar_reset(code);
	return H_CALL("rest_get", A_STR(h_url("http", port, path)), A_VAR(body), A_NONE, A_VAR(code));
}

static int stats_field(const char *field)
{
	char *json = h_http_get(port, "/stats");
	int value = h_json_int(json, field);
	free(json);
	return value;
}

static int reuse_worker(int rank, void *arg)
{
	hvar body = { 0 }, code = { 0 };
	(void)arg;
	for (int i = 0; i < REQUESTS; i++) {
		CHECK_INT(get("/echo", &body, &code), 1);
		CHECK_INT(code.ri, 200);
	}
	(void)rank;
	return 0;
}

/* Holds the host for 1.5 s with a slow request. */
static int slow_worker(int rank, void *arg)
{
	hvar body = { 0 }, code = { 0 };
	(void)rank; (void)arg;
	usleep(300 * 1000);
	CHECK_INT(get("/delay?ms=1500", &body, &code), 1);
	return 0;
}

/* Connects first (recording a success), then tries again while slow_worker holds the host. */
static int blocked_worker(int rank, void *arg)
{
	hvar body = { 0 }, code = { 0 };
	(void)rank; (void)arg;
	CHECK_INT(get("/echo", &body, &code), 1);
	usleep(800 * 1000);
	int rc = get("/echo", &body, &code);
	if (with_lifetime) {
		/* A success within curl_conn_lifetime skips the gate. */
		CHECK_INT(rc, 1);
	} else {
		CHECK_INT(rc, -4);
		CHECK(!code.is_set && !body.is_set);
	}
	usleep(1500 * 1000);
	CHECK_INT(get("/echo", &body, &code), 1);
	return 0;
}

/* Issue 17 item 5: while an async call of this process connects to a server, a second one to
 * the same server gets -4 at once (as in the C module), and the first stays the holder. */
static int async_holder_worker(int rank, void *arg)
{
	struct h_call first = { 0 }, second = { 0 };
	const char *url = h_url("http", blackhole_port, "/");
	(void)rank; (void)arg;
	h_call_reset(&first);
	h_call_reset(&second);
	CHECK_INT(H_CALL("rest_timeout", A_INT(1500)), 1);
	CHECK_INT(H_ASYNC("rest_get", 0, h_record_route, &first, A_STR(url), A_VAR(&first.body),
			  A_NONE, A_VAR(&first.code)), 0);
	CHECK_INT(H_ASYNC("rest_get", 0, h_record_route, &second, A_STR(url),
			  A_VAR(&second.body), A_NONE, A_VAR(&second.code)), 1);
	CHECK_INT(second.rc, -4);
	CHECK_INT(h_reactor_run(5000), 0);
	CHECK_INT(first.rc, -2);
	CHECK_INT(first.runs, 1);
	return 0;
}

/* Another process, while the first one's connect still hangs: -4 as well. */
static int async_other_worker(int rank, void *arg)
{
	hvar body = { 0 }, code = { 0 };
	(void)rank; (void)arg;
	usleep(700 * 1000);
	CHECK_INT(H_CALL("rest_get", A_STR(h_url("http", blackhole_port, "/")), A_VAR(&body),
			 A_NONE, A_VAR(&code)), -4);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	int reuse = strcmp(argv[3], "reuse") == 0;
	with_lifetime = strcmp(argv[3], "lifetime") == 0;
	h_load(argv[1]);
	CHECK_INT(h_load_cfg(argv[2]), 0);
	CHECK_INT(h_mod_init(), 0);
	port = h_start_server(NULL);

	if (reuse) {
		free(h_http_get(port, "/stats/reset"));
		for (int rank = 1; rank <= WORKERS; rank++)
			h_fork_worker(rank, reuse_worker, NULL);
		CHECK_INT(h_wait_workers(), 0);
		/* One connection per worker process, plus the one asking for the stats. */
		CHECK_INT(stats_field("connections"), WORKERS + 1);
		CHECK_INT(stats_field("requests"), WORKERS * REQUESTS);
	} else if (strcmp(argv[3], "async_gate") == 0) {
		blackhole_port = h_full_backlog_port();
		h_fork_worker(1, async_holder_worker, NULL);
		h_fork_worker(2, async_other_worker, NULL);
		CHECK_INT(h_wait_workers(), 0);
	} else {
		h_fork_worker(1, blocked_worker, NULL);
		h_fork_worker(2, slow_worker, NULL);
		CHECK_INT(h_wait_workers(), 0);
	}
	return h_finish();
}

/*
 * Several worker processes: each keeps its own kept-alive connection (the server counts
 * connections), and no_concurrent_connects / curl_conn_lifetime gate connects across them.
 * usage: test_processes module.so cfg reuse|gate|lifetime
 *   reuse: any cfg; gate: gate.cfg; lifetime: gate_lifetime.cfg
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define WORKERS 3
#define REQUESTS 5

static int port, with_lifetime;

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
	} else {
		h_fork_worker(1, blocked_worker, NULL);
		h_fork_worker(2, slow_worker, NULL);
		CHECK_INT(h_wait_workers(), 0);
	}
	return h_finish();
}

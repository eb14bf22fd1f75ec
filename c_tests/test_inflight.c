/*
 * Issue 9 (13): max_inflight_body_bytes caps the response body bytes that a process's
 * unfinished transfers hold together, blocking and async alike; past it the transfer that
 * would exceed it fails with -10.
 *   explicit  (inflight.cfg): a cap of 100000 bytes.
 *   default   (inflight_default.cfg): issue 17, item 6: without the parameter, 64 MiB.
 * usage: test_inflight module.so cfg mode
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "harness.h"

static int port;
static hvar body;

static void record(int rc, void *arg)
{
	*(int *)arg = rc;
}

static int get(const char *path)
{
	hvar_reset(&body);
	return H_CALL("rest_get", A_STR(h_url("http", port, path)), A_VAR(&body));
}

#define DEFAULT_CAP (64 << 20)
#define HELD_BODIES 9
#define HELD_BYTES 7000000 /* each, under max_transfer_size (10 MB): 63 MB in all */

/* Nine async calls whose transfers stall holding 7 MB each: 63 MB of the 64 MiB. */
static void test_default_cap(void)
{
	int held_rc[HELD_BODIES], late_rc = 0;
	hvar held_body[HELD_BODIES], late_body = { 0 };
	char u[128];
	snprintf(u, sizeof u, "/stall-body?sent=%d", HELD_BYTES);
	for (int i = 0; i < HELD_BODIES; i++) {
		held_rc[i] = 0;
		memset(&held_body[i], 0, sizeof held_body[i]);
		CHECK_INT(H_ASYNC("rest_get", 0, record, &held_rc[i], A_STR(h_url("http", port, u)),
				  A_VAR(&held_body[i])), 0);
		CHECK_INT(h_reactor_run(150), i + 1);
	}
	/* 5 MB more would pass 64 MiB, blocking or async; 4 MB more fit. */
	CHECK_INT(get("/body?size=5000000"), -10);
	CHECK(!body.is_set);
	H_ASYNC("rest_get", 0, record, &late_rc, A_STR(h_url("http", port, "/body?size=5000000")),
		A_VAR(&late_body));
	CHECK_INT(h_reactor_run(500), HELD_BODIES);
	CHECK_INT(late_rc, -10);
	CHECK(!late_body.is_set);
	CHECK_INT(get("/body?size=4000000"), 1);
	CHECK_INT(body.len, 4000000);
	/* The stalled transfers end at curl_timeout_ms; then their bytes no longer count. */
	CHECK_INT(h_reactor_run(10000), 0);
	for (int i = 0; i < HELD_BODIES; i++) {
		CHECK_INT(held_rc[i], -3);
		hvar_reset(&held_body[i]);
	}
	CHECK_INT(get("/body?size=9000000"), 1);
	CHECK_INT(body.len, 9000000);
	hvar_reset(&late_body);
}

static void test_explicit_cap(void)
{
	/* An async call whose transfer stalls holding 60000 body bytes. */
	int held_rc = 0, second_rc = 0;
	hvar held_body = { 0 }, second_body = { 0 };
	H_ASYNC("rest_get", 0, record, &held_rc, A_STR(h_url("http", port, "/stall-body?sent=60000")),
		A_VAR(&held_body));
	CHECK_INT(h_reactor_run(300), 1);

	/* 60000 more would make 120000: refused, blocking or async; 30000 more fit. */
	CHECK_INT(get("/body?size=60000"), -10);
	CHECK(!body.is_set);
	CHECK_INT(get("/body?size=30000"), 1);
	CHECK_INT(body.len, 30000);
	H_ASYNC("rest_get", 0, record, &second_rc, A_STR(h_url("http", port, "/body?size=60000")),
		A_VAR(&second_body));
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(second_rc, -10);
	CHECK(!second_body.is_set);
	CHECK_INT(held_rc, -3); /* curl_timeout_ms */

	/* Once that transfer ended, its bytes no longer count. */
	CHECK_INT(get("/body?size=90000"), 1);
	CHECK_INT(body.len, 90000);
	hvar_reset(&held_body);
	hvar_reset(&second_body);
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	h_start_as_worker(argv[1], argv[2]);
	port = h_start_server(NULL);
	if (!strcmp(argv[3], "explicit"))
		test_explicit_cap();
	else if (!strcmp(argv[3], "default"))
		test_default_cap();
	else
		return 2;
	hvar_reset(&body);
	return h_finish();
}

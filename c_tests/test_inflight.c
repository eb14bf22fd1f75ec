/*
 * Issue 9 (13): max_inflight_body_bytes caps the response body bytes that a process's
 * unfinished transfers hold together, blocking and async alike; past it the transfer that
 * would exceed it fails with -10.
 * usage: test_inflight module.so inflight.cfg
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

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	h_start_as_worker(argv[1], argv[2]);
	port = h_start_server(NULL);

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
	return h_finish();
}

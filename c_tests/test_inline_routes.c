/*
 * Routes that run before the start of their call returns: tm's resume route of an async() call
 * that does not suspend (a cache hit answered with ASYNC_SYNC, tm failing before it runs the
 * function), and the calls those routes make. Each call is resumed by whoever started it, never
 * through the other's resume function (issue 17, item 1). The response head of a call that
 * ends as it starts goes to its own route only (item 8).
 * usage: test_inline_routes module.so async.cfg
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static int port;

static const char *url(const char *path)
{
	return h_url("http", port, path);
}

/* What a resume route that runs inline starts: a launch() job, then (optionally) an async()
 * call, each with its own record. */
struct inline_route {
	struct h_call own;   /* the route's own run */
	struct h_call job;   /* launch(rest_post(...)), answered after 50 ms: it suspends */
	struct h_call next;  /* async(rest_get(...)) */
	int start_async;
	int launched, started;
};

static void audit_route(int rc, void *arg)
{
	struct inline_route *r = arg;
	h_record_route(rc, &r->own);
	h_call_reset(&r->job);
	r->launched = h_launch_call("rest_post", h_record_route, &r->job, 4,
				    (h_arg[]){ A_STR(url("/delay?ms=50")), A_STR("audit"), A_NONE,
					       A_VAR(&r->job.body) });
	if (r->start_async) {
		h_call_reset(&r->next);
		r->started = H_ASYNC("rest_get", 0, h_record_route, &r->next,
				     A_STR(url("/delay?ms=50")), A_VAR(&r->next.body));
	}
}

/* The route's job and call ran once each, through their own resumers (a launch() job taken
 * for tm's would be resumed through async_script_resume_f: the harness fails the test). */
static void check_route(const struct inline_route *r, int own_rc)
{
	CHECK_INT(r->own.runs, 1);
	CHECK_INT(r->own.rc, own_rc);
	CHECK_INT(r->launched, 0);
	CHECK_INT(r->job.runs, 1);
	CHECK_INT(r->job.rc, 1);
	CHECK_STR(&r->job.body, "delayed");
	if (r->start_async) {
		CHECK_INT(r->started, 0);
		CHECK_INT(r->next.runs, 1);
		CHECK_INT(r->next.rc, 1);
		CHECK_STR(&r->next.body, "delayed");
	}
}

/* The script: async(rest_get("cached://...")) answered from the cache, whose resume
 * route (run by tm before it returns) launches rest_post. */
static void test_launch_in_the_route_of_a_cache_hit(void)
{
	hvar body = { 0 };
	CHECK_INT(H_CALL("rest_get", A_STR("cached://echo?x=1"), A_VAR(&body)), 1);
	for (int start_async = 0; start_async <= 1; start_async++) {
		struct inline_route r = { .start_async = start_async };
		h_call_reset(&r.own);
		CHECK_INT(H_ASYNC("rest_get", 0, audit_route, &r, A_STR("cached://echo?x=1"),
				  A_VAR(&r.own.body)), 1);
		CHECK_INT(h_reactor_run(3000), 0);
		check_route(&r, 1);
		CHECK(r.own.body.is_set && !strcmp(r.own.body.s, body.s));
		hvar_reset(&r.own.body);
	}
	hvar_reset(&body);
}

/* tm runs the resume route with -1 without calling the function (t_newtran failed): a
 * launch() of the same function in that route is still the core's. */
static void test_launch_in_the_route_of_a_start_tm_failed(void)
{
	struct inline_route r = { .start_async = 1 };
	h_call_reset(&r.own);
	h_fail_async_starts(1);
	CHECK_INT(H_ASYNC("rest_post", 0, audit_route, &r, A_STR(url("/echo")), A_STR("x"), A_NONE,
			  A_VAR(&r.own.body)), 1);
	CHECK_INT(h_reactor_run(3000), 0);
	check_route(&r, -1);
	CHECK(!r.own.body.is_set);
}

/* A route that reads the response head it was handed: rest_response_header("X-Id"). */
struct head_read {
	int runs, found;
	hvar x_id;
};

static int read_x_id(hvar *out)
{
	hvar_reset(out);
	return H_CALL("rest_response_header", A_STR("X-Id"), A_VAR(out));
}

static void read_head_route(int rc, void *arg)
{
	struct head_read *r = arg;
	(void)rc;
	r->runs++;
	r->found = read_x_id(&r->x_id);
}

/* Issue 17 item 8: a call that ends as it starts leaves its response head to its own route,
 * never to the next message. An ACK's async() runs blocking, and tm runs its resume route
 * now, for the ACK. */
static void test_an_ack_leaves_its_response_head_to_its_own_route(void)
{
	struct head_read route = { 0 };
	struct h_call quiet = { 0 };
	hvar x_id = { 0 };
	h_set_message_method(4); /* ACK */
	CHECK_INT(H_ASYNC("rest_get", 0, read_head_route, &route, A_STR(url("/headers?h=X-Id:ack")),
			  A_VAR(&quiet.body)), 1);
	CHECK_INT(route.runs, 1);
	CHECK_INT(route.found, 1);
	CHECK_STR(&route.x_id, "ack");
	/* A resume route that reads nothing: the next message finds no response either. */
	CHECK_INT(H_ASYNC("rest_get", 0, h_record_route, &quiet, A_STR(url("/headers?h=X-Id:ack")),
			  A_VAR(&quiet.body)), 1);
	CHECK_INT(quiet.runs, 1);
	h_set_message_method(0);
	h_new_message();
	CHECK_INT(read_x_id(&x_id), -1);
	CHECK(!x_id.is_set);
	h_call_reset(&quiet);
	hvar_reset(&route.x_id);
}

/* A launch() job answered from the cache: the core runs its report route now, for its dummy
 * message, which reads the job's response; the launching message does not, with or without
 * a report route, nor does the next message. */
static void test_a_launch_over_at_start_leaves_its_head_to_its_report_route(void)
{
	const char *cached = "cached://headers?h=X-Id:cached";
	struct head_read report = { 0 };
	hvar body = { 0 }, x_id = { 0 };
	CHECK_INT(H_CALL("rest_get", A_STR(cached), A_VAR(&body)), 1);
	CHECK_INT(h_launch_call("rest_get", read_head_route, &report, 2,
				(h_arg[]){ A_STR(cached), A_VAR(&body) }), 1);
	CHECK_INT(report.runs, 1);
	CHECK_INT(report.found, 1);
	CHECK_STR(&report.x_id, "cached");
	CHECK_INT(read_x_id(&x_id), -1);
	CHECK_INT(h_launch_call("rest_get", NULL, NULL, 2, (h_arg[]){ A_STR(cached), A_VAR(&body) }),
		  1);
	CHECK_INT(read_x_id(&x_id), -1);
	CHECK(!x_id.is_set);
	h_new_message();
	CHECK_INT(read_x_id(&x_id), -1);
	hvar_reset(&body);
	hvar_reset(&report.x_id);
}

/* A launch() job resumed from the reactor: its report route reads its response, for the
 * core's dummy message; a timer route after it, for the same dummy message, reads none. */
static void test_a_resumed_report_route_keeps_its_head_to_itself(void)
{
	struct head_read report = { 0 }, timer = { 0 };
	hvar body = { 0 };
	CHECK_INT(h_launch_call("rest_get", read_head_route, &report, 2,
				(h_arg[]){ A_STR(url("/headers?ms=50&h=X-Id:resumed")), A_VAR(&body) }),
		  0);
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(report.runs, 1);
	CHECK_INT(report.found, 1);
	CHECK_STR(&report.x_id, "resumed");
	h_timer_route(read_head_route, &timer);
	CHECK_INT(timer.runs, 1);
	CHECK_INT(timer.found, -1);
	hvar_reset(&body);
	hvar_reset(&report.x_id);
	hvar_reset(&timer.x_id);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	port = h_start_worker_with_server(argv[1], argv[2], (const char *const[]){
		"name=cached; url=http://127.0.0.1:%d/; cache_ttl=60", NULL });
	test_launch_in_the_route_of_a_cache_hit();
	test_launch_in_the_route_of_a_start_tm_failed();
	test_an_ack_leaves_its_response_head_to_its_own_route();
	test_a_launch_over_at_start_leaves_its_head_to_its_report_route();
	test_a_resumed_report_route_keeps_its_head_to_itself();
	CHECK_INT(h_resumed_twice(), 0);
	return h_finish();
}

/*
 * Issue 9, items 1-5: every async call ends on time and frees its slot, whatever the core or
 * the network does.
 *   dns       (LD_PRELOAD slow_dns, async_dns.cfg): a lookup that takes 5 s never holds the
 *             worker past the 300 ms limit, blocking or in the reactor callback.
 *   dnsthreads (LD_PRELOAD slow_dns, async_dns.cfg): issue 17 item 7, the lookup threads that
 *             calls leave behind during a brownout stay bounded.
 *   nolimit   (async_nolimit.cfg, curl_timeout 0): async(..., 1) still ends the call.
 *   panic     (async.cfg, REST_CLIENT_TEST_REACTOR_PANICS=1): a panic in the reactor callback
 *             keeps the process's descriptor watched; calls still resume.
 *   dropped   (async_failfast.cfg): resumes tm drops (fake_req failed) free their slots.
 *   launch    (async_failfast.cfg): launch() whose call cannot start runs its report route
 *             with the code.
 * usage: test_async_limits module.so cfg mode
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "harness.h"

static int port;

static int async_get(struct h_call *c, const char *u, int timeout_s)
{
	h_call_reset(c);
	return H_ASYNC("rest_get", timeout_s, h_record_route, c, A_STR(u), A_VAR(&c->body), A_NONE,
		       A_VAR(&c->code));
}

static int launch_get(struct h_call *c, const char *u)
{
	h_call_reset(c);
	return h_launch_call("rest_get", h_record_route, c, 2, (h_arg[]){ A_STR(u), A_VAR(&c->body) });
}

static long long cpu_us(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL + ru.ru_utime.tv_usec +
	       ru.ru_stime.tv_usec;
}

static void test_slow_dns(void)
{
	char u[128];
	snprintf(u, sizeof u, "http://slow-dns.test:%d/echo", port);

	/* Async: the start returns at once, the call ends at its limit, and the reactor callback
	 * that ends it does not wait for the lookup thread. */
	struct h_call c = { 0 };
	long long cpu0 = cpu_us();
	CHECK_INT(async_get(&c, u, 0), 0);
	CHECK(h_now_us() - c.started_us < 50000);
	CHECK_INT(h_reactor_run(3000), 0);
	long long cpu = cpu_us() - cpu0;
	CHECK_INT(c.runs, 1);
	CHECK_INT(c.rc, -2);
	CHECK(h_call_ms(&c) >= 250 && h_call_ms(&c) < 1500);
	long long longest = h_reactor_longest_callback_us();
	printf("async call during a 5 s lookup: ended after %d ms; worker CPU %lld us; longest "
	       "reactor callback %lld us\n", h_call_ms(&c), cpu, longest);
	CHECK(longest < 100000);
	CHECK(cpu < 100000);

	/* Blocking: returns at the limit, not when the lookup ends. */
	hvar body = { 0 };
	hvar_reset(&body);
	long long t0 = h_now_us();
	CHECK_INT(H_CALL("rest_get", A_STR(u), A_VAR(&body)), -2);
	long long blocking_ms = (h_now_us() - t0) / 1000;
	printf("blocking call during a 5 s lookup: returned after %lld ms\n", blocking_ms);
	CHECK(blocking_ms >= 250 && blocking_ms < 1500);

	/* Names that resolve at once still work. */
	CHECK_INT(H_CALL("rest_get", A_STR(h_url("http", port, "/echo")), A_VAR(&body)), 1);
}

/* The threads of this process. */
static int threads(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/task");
	for (struct dirent *e; d && (e = readdir(d));)
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

#define ROUND 100          /* max_async_transfers (default) */
#define MAX_SLOW_LOOKUPS 8 /* the module's, per host */

/* ROUND async calls to u, all run to their end with -2; returns how many ended within their
 * start (without a lookup of their own). */
static int slow_round(const char *u)
{
	static struct h_call calls[ROUND];
	int at_once = 0;
	for (int i = 0; i < ROUND; i++)
		at_once += async_get(&calls[i], u, 0);
	CHECK_INT(h_reactor_run(3000), 0);
	for (int i = 0; i < ROUND; i++) {
		CHECK_INT(calls[i].runs, 1);
		CHECK_INT(calls[i].rc, -2);
	}
	return at_once;
}

/* Issue 17, item 7: each call that ends at its 300 ms limit leaves its lookup's thread behind
 * (the lookups of "30.slow-dns.test" take 30 s). 1000 calls in rounds of ROUND leave the
 * threads of the first round only: once a lookup of the host outlived its call, calls past
 * MAX_SLOW_LOOKUPS lookups in flight fail at once with -2, until the lookups end. */
static void test_lookup_threads(void)
{
	enum { ROUNDS = 10 };
	char u[128];
	hvar body = { 0 };
	int base = threads();
	snprintf(u, sizeof u, "http://30.slow-dns.test:%d/echo", port);
	for (int round = 0; round < ROUNDS; round++) {
		int at_once = slow_round(u);
		printf("round %d: %d of %d calls failed at once; %d more threads\n", round + 1,
		       at_once, ROUND, threads() - base);
		CHECK_INT(at_once, round == 0 ? 0 : ROUND);
	}
	int left = threads() - base;
	printf("%d async calls during 30 s lookups: %d lookup threads left\n", ROUNDS * ROUND,
	       left);
	CHECK(left >= ROUND - MAX_SLOW_LOOKUPS && left <= ROUND + MAX_SLOW_LOOKUPS);

	/* A blocking call to the host fails at once too; other hosts are not concerned. */
	hvar_reset(&body);
	long long t0 = h_now_us();
	CHECK_INT(H_CALL("rest_get", A_STR(u), A_VAR(&body)), -2);
	CHECK(h_now_us() - t0 < 50000);
	CHECK_INT(H_CALL("rest_get", A_STR(h_url("http", port, "/echo")), A_VAR(&body)), 1);

	/* Lookups of 2 s: the host gets lookups again once they ended. */
	snprintf(u, sizeof u, "http://2.slow-dns.test:%d/echo", port);
	CHECK_INT(slow_round(u), 0);
	CHECK_INT(slow_round(u), ROUND);
	usleep(2500000);
	CHECK_INT(slow_round(u), 0);
	printf("a host whose lookups ended: lookups again; %d more threads\n", threads() - base);
}

static void test_async_limit_without_curl_timeout(void)
{
	struct h_call c = { 0 };
	CHECK_INT(async_get(&c, h_url("http", port, "/stall-headers"), 1), 0);
	CHECK_INT(h_reactor_run(4000), 0);
	CHECK_INT(c.runs, 1);
	CHECK_INT(c.rc, -3);
	CHECK(h_call_ms(&c) >= 700 && h_call_ms(&c) < 2500);
}

static void test_reactor_panic(void)
{
	/* The first reactor round panics (injected): the call still resumes in a later round. */
	for (int i = 0; i < 2; i++) {
		struct h_call c = { 0 };
		CHECK_INT(async_get(&c, h_url("http", port, "/delay?ms=50"), 0), 0);
		CHECK_INT(h_reactor_run(3000), 0);
		CHECK_INT(c.runs, 1);
		CHECK_INT(c.rc, 1);
		CHECK_STR(&c.body, "delayed");
		CHECK_INT(h_reactor_watches(), 1);
	}
}

#define MAX_ASYNC 10 /* async_failfast.cfg */

static void test_dropped_resumes(void)
{
	/* tm drops the resume of MAX_ASYNC calls: their routes never run... */
	struct h_call lost[MAX_ASYNC];
	memset(lost, 0, sizeof lost);
	h_drop_resumes(MAX_ASYNC);
	for (int i = 0; i < MAX_ASYNC; i++)
		CHECK_INT(async_get(&lost[i], h_url("http", port, "/delay?ms=50"), 0), 0);
	CHECK_INT(h_reactor_run(3000), 0);
	for (int i = 0; i < MAX_ASYNC; i++)
		CHECK_INT(lost[i].runs, 0);
	/* ...but their slots are free: the next calls start (not -5) and resume. */
	struct h_call next[MAX_ASYNC];
	memset(next, 0, sizeof next);
	for (int i = 0; i < MAX_ASYNC; i++)
		CHECK_INT(async_get(&next[i], h_url("http", port, "/delay?ms=50"), 0), 0);
	CHECK_INT(h_reactor_run(3000), 0);
	for (int i = 0; i < MAX_ASYNC; i++) {
		CHECK_INT(next[i].runs, 1);
		CHECK_INT(next[i].rc, 1);
	}
}

static void test_launch_that_cannot_start(void)
{
	/* Unknown service: the report route runs at once with -10. */
	struct h_call job = { 0 };
	CHECK_INT(launch_get(&job, "nosuch://x"), 1);
	CHECK_INT(job.runs, 1);
	CHECK_INT(job.rc, -10);

	/* Past max_async_transfers with no_async_fallback: the report route runs with -5. */
	struct h_call busy[MAX_ASYNC];
	memset(busy, 0, sizeof busy);
	for (int i = 0; i < MAX_ASYNC; i++)
		CHECK_INT(async_get(&busy[i], h_url("http", port, "/delay?ms=300"), 0), 0);
	CHECK_INT(launch_get(&job, h_url("http", port, "/echo")), 1);
	CHECK_INT(job.runs, 1);
	CHECK_INT(job.rc, -5);
	CHECK(!job.body.is_set);
	CHECK_INT(h_reactor_run(3000), 0);

	/* And a job that can start still resumes through the core. */
	CHECK_INT(launch_get(&job, h_url("http", port, "/delay?ms=50")), 0);
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(job.rc, 1);
	CHECK_STR(&job.body, "delayed");
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	const char *mode = argv[3];
	h_start_as_worker(argv[1], argv[2]);
	port = h_start_server(NULL);
	if (!strcmp(mode, "dns"))
		test_slow_dns();
	else if (!strcmp(mode, "dnsthreads"))
		test_lookup_threads();
	else if (!strcmp(mode, "nolimit"))
		test_async_limit_without_curl_timeout();
	else if (!strcmp(mode, "panic"))
		test_reactor_panic();
	else if (!strcmp(mode, "dropped"))
		test_dropped_resumes();
	else if (!strcmp(mode, "launch"))
		test_launch_that_cannot_start();
	else
		return 2;
	CHECK_INT(h_resumed_twice(), 0);
	return h_finish();
}

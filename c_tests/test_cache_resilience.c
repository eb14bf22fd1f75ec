/*
 * Issue 20: the response cache carries an outage. Stale if error (503, a timeout, a refused
 * connection; not after a write, not with must-revalidate, not past the window), stale while
 * revalidate (one background transfer, driven by the reactor or by the process's next calls),
 * coalesced misses (async and blocking calls of one process, processes of one instance,
 * instances sharing a store; a waiter goes on alone after cache_lock_ms), and a slow shared
 * level that is skipped for a while. The test
 * server counts requests to tell a hit from a miss; its /fail makes every request fail.
 * usage: test_cache_resilience module.so cache_resilience.cfg stale|revalidate|coalesce|instances|bound
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static int port;

static int served(void) { return h_server_stat(port, "requests"); }

static void backend_fails(const char *mode)
{
	char path[64];
	snprintf(path, sizeof path, "/fail?mode=%s", mode);
	free(h_http_get(port, path));
}

/* What a blocking GET gave: its code, status, body's item version and whether it was stale. */
struct got { int rc, status, version, stale; char body[64]; };

static struct got get(const char *url)
{
	hvar body = { 0 }, code = { 0 };
	struct got g = { 0 };
	g.rc = H_CALL("rest_get", A_STR(url), A_VAR(&body), A_NONE, A_VAR(&code));
	g.status = code.is_set ? code.ri : -1;
	g.version = body.is_set ? h_json_int(body.s, "version") : -1;
	snprintf(g.body, sizeof g.body, "%s", body.is_set ? body.s : "");
	g.stale = H_CALL("rest_response_stale");
	hvar_reset(&body);
	hvar_reset(&code);
	return g;
}

/* A blocking GET answered with the backend's failure (HTTP `status`), not a stale answer. */
static void check_not_stale(const char *url, int status)
{
	struct got g = get(url);
	CHECK_INT(g.status, status);
	CHECK_INT(g.stale, -1);
}

static int patch_status(const char *url)
{
	hvar body = { 0 }, code = { 0 };
	CHECK_INT(H_CALL("rest_patch", A_STR(url), A_STR("{}"), A_STR("application/json"),
			 A_VAR(&body), A_NONE, A_VAR(&code)), 1);
	hvar_reset(&body);
	return code.ri;
}

/* An async call's route: what it saw, and whether its answer was stale. */
struct seen { struct h_call call; int stale; };

static void record_with_staleness(int rc, void *arg)
{
	struct seen *s = arg;
	h_record_route(rc, &s->call);
	s->stale = H_CALL("rest_response_stale");
}

static int async_get(struct seen *s, const char *url)
{
	memset(s, 0, sizeof *s);
	h_call_reset(&s->call);
	return H_ASYNC("rest_get", 0, record_with_staleness, s, A_STR(url), A_VAR(&s->call.body));
}

/* ---- stale if error ---- */
static void test_stale_if_error(void)
{
	int gone_port = h_start_server(NULL);
	CHECK_INT(h_service("name=gone; url=http://127.0.0.1:%d/; cache_ttl=1; stale_if_error=30",
			    gone_port), 0);
	CHECK_INT(h_mod_init(), 0);
	CHECK_INT(h_child_init(1), 0);

	struct got g = get("sie://items/a");
	CHECK_INT(g.version, 0);
	CHECK_INT(g.stale, -1);
	CHECK_INT(get("sie://items/b").version, 0);
	CHECK_INT(get("sie_short://items/a").version, 0);
	CHECK_INT(get("sie://headers?h=Cache-Control:must-revalidate").status, 200);
	/* The answer's own stale-if-error shortens the service's 30 s to 1 s. */
	CHECK_INT(get("sie://headers?h=Cache-Control:stale-if-error=1").status, 200);
	CHECK_INT(get("gone://items/a").version, 0);
	/* A write still invalidates: b has no stale answer left. */
	CHECK_INT(patch_status("sie://items/b"), 200);
	usleep(1100 * 1000);

	backend_fails("503");
	int before = served();
	g = get("sie://items/a");
	CHECK_INT(g.rc, 1);
	CHECK_INT(g.status, 200);
	CHECK_INT(g.version, 0);
	CHECK_INT(g.stale, 1);
	CHECK_INT(served(), before + 1); /* the backend was asked */
	check_not_stale("sie://items/b", 503);
	check_not_stale("sie://headers?h=Cache-Control:must-revalidate", 503);
	CHECK_INT(get("sie_short://items/a").stale, 1);
	g = get("sie://headers?h=Cache-Control:stale-if-error=1");
	CHECK_INT(g.status, 200);
	CHECK_INT(g.stale, 1);
	CHECK_INT(h_stat("cache_stale_served"), 3);

	/* A timeout (-3), blocking and async. */
	backend_fails("stall");
	g = get("sie://items/a");
	CHECK_INT(g.rc, 1);
	CHECK_INT(g.version, 0);
	CHECK_INT(g.stale, 1);
	struct seen s;
	if (async_get(&s, "sie://items/a") == 0)
		CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(s.call.runs, 1);
	CHECK_INT(s.call.rc, 1);
	CHECK_INT(h_json_int(s.call.body.s, "version"), 0);
	CHECK_INT(s.stale, 1);
	hvar_reset(&s.call.body);

	/* Past its window: the failure itself. */
	backend_fails("503");
	usleep(1000 * 1000);
	check_not_stale("sie_short://items/a", 503);
	check_not_stale("sie://headers?h=Cache-Control:stale-if-error=1", 503);
	backend_fails("off");

	/* A refused connection (-1). */
	CHECK_INT(h_stop_server(gone_port), 0);
	g = get("gone://items/a");
	CHECK_INT(g.rc, 1);
	CHECK_INT(g.version, 0);
	CHECK_INT(g.stale, 1);
	CHECK_INT(h_stat("cache_stale_served"), 6);
	/* The next answer is fresh again. */
	g = get("sie://items/a");
	CHECK_INT(g.stale, -1);
	CHECK_INT(g.version, 0);
}

/* ---- stale while revalidate ---- */
static int refreshed_by_later_calls(int rank, void *arg)
{
	(void)rank; (void)arg;
	CHECK_INT(get("swr://items/c").version, 0);
	CHECK_INT(patch_status("writer://items/c"), 200); /* another service: swr keeps v0 */
	usleep(1100 * 1000);
	int before = served();
	struct got g = get("swr://items/c");
	CHECK_INT(g.version, 0);
	CHECK_INT(g.stale, 1);
	/* No reactor watches this process: its next calls drive the refresh, without waiting. */
	for (int i = 0; i < 100 && g.version == 0; i++) {
		usleep(20 * 1000);
		g = get("swr://items/c");
	}
	CHECK_INT(g.version, 1);
	CHECK_INT(g.stale, -1);
	CHECK_INT(served(), before + 1); /* one background transfer for every stale answer */
	return 0;
}

static void test_stale_while_revalidate(void)
{
	CHECK_INT(h_mod_init(), 0);
	CHECK_INT(h_child_init(1), 0);
	h_fork_worker(2, refreshed_by_later_calls, NULL);
	CHECK_INT(h_wait_workers(), 0);

	/* With a reactor: an async call registered the process's descriptor. The backend takes
	 * 200 ms, so that the refresh cannot end as it starts. */
	struct seen s;
	if (async_get(&s, "swr://items/d?ms=200") == 0)
		CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(h_json_int(s.call.body.s, "version"), 0);
	hvar_reset(&s.call.body);
	CHECK_INT(patch_status("writer://items/d"), 200);
	usleep(1100 * 1000);
	int before = served();
	struct got g = get("swr://items/d?ms=200");
	CHECK_INT(g.version, 0);
	CHECK_INT(g.stale, 1);
	/* Answered at once, async too, while the refresh runs. */
	CHECK_INT(async_get(&s, "swr://items/d?ms=200"), 1);
	CHECK_INT(s.stale, 1);
	CHECK_INT(h_json_int(s.call.body.s, "version"), 0);
	hvar_reset(&s.call.body);
	/* The reactor ends the refresh (a slow call keeps it running meanwhile). */
	CHECK_INT(async_get(&s, "writer://delay?ms=300"), 0);
	CHECK_INT(h_reactor_run(3000), 0);
	hvar_reset(&s.call.body);
	g = get("swr://items/d?ms=200");
	CHECK_INT(g.version, 1);
	CHECK_INT(g.stale, -1);
	CHECK_INT(served(), before + 2);
}

/* ---- coalesced misses ---- */
static int slow_blocking_reader(int rank, void *arg)
{
	(void)rank;
	struct got g = get(arg);
	CHECK(!strcmp(g.body, "headers"));
	return 0;
}

static int late_blocking_reader(int rank, void *arg)
{
	usleep(100 * 1000);
	return slow_blocking_reader(rank, arg);
}

static int late_async_reader(int rank, void *arg)
{
	(void)rank;
	usleep(100 * 1000);
	struct seen s;
	/* It waits for the other process without blocking this one. */
	CHECK_INT(async_get(&s, arg), 0);
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(s.call.runs, 1);
	CHECK_INT(s.call.rc, 1);
	CHECK_STR(&s.call.body, "headers");
	hvar_reset(&s.call.body);
	return 0;
}

static void test_coalescing(void)
{
	CHECK_INT(h_mod_init(), 0);
	CHECK_INT(h_child_init(1), 0);
	/* Two async calls of one process: one transfer, both resumed with its answer. */
	int before = served();
	struct seen a, b;
	CHECK_INT(async_get(&a, "slow://headers?h=X-K:1&ms=300"), 0);
	CHECK_INT(async_get(&b, "slow://headers?h=X-K:1&ms=300"), 0);
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(a.call.runs + b.call.runs, 2);
	CHECK_INT(a.call.rc + b.call.rc, 2);
	CHECK_STR(&a.call.body, "headers");
	CHECK_STR(&b.call.body, "headers");
	CHECK_INT(served(), before + 1);
	CHECK_INT(h_stat("cache_coalesced"), 1);
	hvar_reset(&a.call.body);
	hvar_reset(&b.call.body);

	/* A blocking call that misses while an async transfer of the key runs drives it. */
	CHECK_INT(async_get(&a, "slow://headers?h=X-K:2&ms=300"), 0);
	struct got g = get("slow://headers?h=X-K:2&ms=300");
	CHECK_INT(g.rc, 1);
	CHECK(!strcmp(g.body, "headers"));
	CHECK_INT(served(), before + 2);
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(a.call.runs, 1);
	CHECK_STR(&a.call.body, "headers");
	hvar_reset(&a.call.body);

	/* Processes of one instance: the second waits for the first's transfer. */
	const char *blocking = "shared://headers?h=X-K:3&ms=300";
	h_fork_worker(2, slow_blocking_reader, (void *)blocking);
	h_fork_worker(3, late_blocking_reader, (void *)blocking);
	CHECK_INT(h_wait_workers(), 0);
	CHECK_INT(served(), before + 3);
	const char *async = "shared://headers?h=X-K:4&ms=300";
	h_fork_worker(4, slow_blocking_reader, (void *)async);
	h_fork_worker(5, late_async_reader, (void *)async);
	CHECK_INT(h_wait_workers(), 0);
	CHECK_INT(served(), before + 4);
	CHECK_INT(h_stat("cache_coalesced"), 4);
	/* A request slower than cache_lock_ms (50 ms): the waiter goes on by itself. */
	const char *slow = "brief://headers?h=X-K:6&ms=400";
	h_fork_worker(6, slow_blocking_reader, (void *)slow);
	h_fork_worker(7, late_blocking_reader, (void *)slow);
	CHECK_INT(h_wait_workers(), 0);
	CHECK_INT(served(), before + 6);
}

/* Two instances (each its own mod_init: its own shared memory) share the store. */
static void test_instances(void)
{
	const char *url = "shared://headers?h=X-K:5&ms=300";
	h_cachedb_share();
	fflush(NULL);
	pid_t other = fork();
	if (other == 0) {
		CHECK_INT(h_mod_init(), 0);
		CHECK_INT(h_child_init(1), 0);
		usleep(100 * 1000);
		struct got g = get(url);
		CHECK(!strcmp(g.body, "headers"));
		CHECK_INT(h_stat("cache_coalesced"), 1);
		fflush(NULL);
		_exit(h_finish());
	}
	CHECK_INT(h_mod_init(), 0);
	CHECK_INT(h_child_init(1), 0);
	struct got g = get(url);
	CHECK(!strcmp(g.body, "headers"));
	int status = -1;
	CHECK_INT(waitpid(other, &status, 0), other);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK_INT(served(), 1);
}

/* ---- the shared level as an upstream ---- */
static void test_bound(void)
{
	CHECK_INT(h_mod_init(), 0);
	CHECK_INT(h_child_init(1), 0);
	CHECK_INT(get("bounded://items/g").version, 0);
	h_cachedb_delay(250);
	int gets = h_cachedb_stat("gets"), before = served();
	/* Over cache_timeout_ms after its first read: the lookup stops there (a miss, nothing
	 * stored in the store). */
	CHECK_INT(get("bounded://items/h").version, 0);
	CHECK_INT(h_cachedb_stat("gets"), gets + 1);
	CHECK_INT(served(), before + 1);
	/* One slow operation alone starts no skip: the next lookup reads the store. */
	h_cachedb_delay(0);
	CHECK_INT(get("bounded://items/g").version, 0);
	CHECK(h_cachedb_stat("gets") > gets + 1);
	CHECK_INT(served(), before + 1);
	/* Three in a row: skipped for cache_skip_ms, answers come from this process's level, the
	 * store untouched. */
	h_cachedb_delay(250);
	CHECK_INT(get("bounded://items/i").version, 0);
	CHECK_INT(get("bounded://items/j").version, 0);
	CHECK_INT(get("bounded://items/k").version, 0);
	CHECK_INT(served(), before + 4);
	gets = h_cachedb_stat("gets");
	for (int i = 0; i < 3; i++)
		CHECK_INT(get("bounded://items/g").version, 0);
	CHECK_INT(h_cachedb_stat("gets"), gets);
	CHECK_INT(served(), before + 4);
	CHECK_INT(h_stat("cache_shared_skips"), 3);
	/* Then one call probes it again. */
	h_cachedb_delay(0);
	usleep(1100 * 1000);
	CHECK_INT(get("bounded://items/g").version, 0);
	CHECK(h_cachedb_stat("gets") > gets);
	CHECK_INT(served(), before + 4);
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	h_load(argv[1]);
	CHECK_INT(h_load_cfg(argv[2]), 0);
	port = h_start_server(NULL);
	CHECK_INT(h_service("name=sie; url=http://127.0.0.1:%d/; cache_ttl=1; stale_if_error=30; "
			    "timeout_ms=500", port), 0);
	CHECK_INT(h_service("name=sie_short; url=http://127.0.0.1:%d/; cache_ttl=1; stale_if_error=1",
			    port), 0);
	CHECK_INT(h_service("name=swr; url=http://127.0.0.1:%d/; cache_ttl=1; "
			    "stale_while_revalidate=30", port), 0);
	CHECK_INT(h_service("name=writer; url=http://127.0.0.1:%d/", port), 0);
	CHECK_INT(h_service("name=slow; url=http://127.0.0.1:%d/; cache_ttl=30", port), 0);
	CHECK_INT(h_service("name=shared; url=http://127.0.0.1:%d/; cache_ttl=30; cache=local://; "
			    "cache_timeout_ms=1000; cache_lock_ms=2000", port), 0);
	CHECK_INT(h_service("name=brief; url=http://127.0.0.1:%d/; cache_ttl=30; cache=local://; "
			    "cache_timeout_ms=1000; cache_lock_ms=50", port), 0);
	CHECK_INT(h_service("name=bounded; url=http://127.0.0.1:%d/; cache_ttl=30; cache=local://; "
			    "cache_timeout_ms=100; cache_skip_ms=1000", port), 0);
	const char *mode = argv[3];
	if (!strcmp(mode, "stale"))
		test_stale_if_error();
	else if (!strcmp(mode, "revalidate"))
		test_stale_while_revalidate();
	else if (!strcmp(mode, "coalesce"))
		test_coalescing();
	else if (!strcmp(mode, "instances"))
		test_instances();
	else if (!strcmp(mode, "bound"))
		test_bound();
	else
		return 2;
	return h_finish();
}

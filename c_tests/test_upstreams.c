/*
 * Issue 19: a named service with several base URLs. Backends that refuse (a closed port),
 * blackhole (a listener whose accept queue is full), answer 503 with Retry-After, and recover:
 * failover within the call (any method before the request was sent, idempotent ones after),
 * never past the call's own limit; outlier ejection shared by every process, the probe that
 * restores a URL; fail-fast (-6) with every URL ejected or busy, and the panic mode; the
 * admission limit (-7) over the node; the retry budget; round robin; async calls; the
 * statistics, the MI listing and the E_REST_UPSTREAM event.
 * usage: test_upstreams module.so upstreams.cfg
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

/* good: always answers; spare: always answers (round robin); flaky: 503 with Retry-After,
 * then recovers; broken: always 503. */
static int good, spare, flaky, broken;
/* Closed ports (refused; one recovers) and a blackhole. */
static int refused[7], blackhole;
static hvar body, code;

static int get(const char *u)
{
	hvar_reset(&body);
	hvar_reset(&code);
	return H_CALL("rest_get", A_STR(u), A_VAR(&body), A_NONE, A_VAR(&code));
}

static int post(const char *u)
{
	hvar_reset(&body);
	hvar_reset(&code);
	return H_CALL("rest_post", A_STR(u), A_STR("{}"), A_STR("application/json"), A_VAR(&body),
		      A_NONE, A_VAR(&code));
}

static int served(int port) { return h_server_stat(port, "requests"); }

/* From now on `port`'s server answers every request with `status` (and a Retry-After if
 * given); 0: as usual again. */
static void server_fails(int port, int status, const char *retry_after)
{
	char path[128];
	snprintf(path, sizeof path, "/fail?mode=%d%s%s", status, retry_after ? "&retry_after=" : "",
		 retry_after ? retry_after : "");
	free(h_http_get(port, status ? path : "/fail?mode=off"));
}

/* A server starts on a port that refused connections until now. */
static void recover(int port)
{
	char text[16];
	snprintf(text, sizeof text, "%d", port);
	CHECK_INT(h_start_server((const char *const[]){ "--port", text, NULL }), port);
}

static int ms_since(long long start_us) { return (int)((h_now_us() - start_us) / 1000); }

/* The E_REST_UPSTREAM lines for `service`'s URL on `port` in state `state`. */
static int events_of(const char *service, int port, const char *state)
{
	char line[256];
	snprintf(line, sizeof line, "E_REST_UPSTREAM service=%s url=http://127.0.0.1:%d/ state=%s",
		 service, port, state);
	return h_event_count(line);
}

/* Whether rest_list_upstreams shows `port`'s URL of `service` in `state`. */
static int listed_as(const char *service, int port, const char *state)
{
	char *text = h_mi("rest_list_upstreams", NULL);
	char name[64], url[128];
	snprintf(name, sizeof name, "\"name\": \"%s\"", service);
	snprintf(url, sizeof url, "\"url\": \"http://127.0.0.1:%d/\", \"state\": \"%s\"", port, state);
	const char *at = text ? strstr(text, name) : NULL;
	const char *next = at ? strstr(at + 1, "\"name\": ") : NULL;
	const char *found = at ? strstr(at, url) : NULL;
	int ok = found && (!next || found < next);
	if (!ok)
		fprintf(stderr, "  %s %d not %s in %s\n", service, port, state, text ? text : "(none)");
	free(text);
	return ok;
}

static void define_services(void)
{
	CHECK_INT(h_service("name=fo; url=http://127.0.0.1:%d/; url=http://127.0.0.1:%d/; "
			    "eject_after=2; eject_ms=400", refused[0], good), 0);
	CHECK_INT(h_service("name=bh; url=http://127.0.0.1:%d/; url=http://127.0.0.1:%d; "
			    "connect_timeout_ms=200; eject_after=1; eject_ms=60000", blackhole, good), 0);
	CHECK_INT(h_service("name=tight; url=http://127.0.0.1:%d/; url=http://127.0.0.1:%d/; "
			    "connect_timeout_ms=2000; timeout_ms=300", blackhole, good), 0);
	CHECK_INT(h_service("name=busy; url=http://127.0.0.1:%d/; url=http://127.0.0.1:%d/; "
			    "eject_ms=500; eject_max_ms=700", flaky, good), 0);
	CHECK_INT(h_service("name=lonely; url=http://127.0.0.1:%d/", broken), 0);
	CHECK_INT(h_service("name=dead; url=http://127.0.0.1:%d/; url=http://127.0.0.1:%d/; "
			    "eject_after=1; eject_ms=60000", refused[1], refused[2]), 0);
	CHECK_INT(h_service("name=dead_panic; url=http://127.0.0.1:%d/; url=http://127.0.0.1:%d/; "
			    "eject_after=1; eject_ms=60000; panic=1", refused[3], refused[4]), 0);
	CHECK_INT(h_service("name=rr; url=http://127.0.0.1:%d/; url=http://127.0.0.1:%d/; "
			    "balance=round_robin", good, spare), 0);
	CHECK_INT(h_service("name=budget; url=http://127.0.0.1:%d/; url=http://127.0.0.1:%d/; "
			    "eject_after=0; retry_budget=0; retry_budget_min=2", broken, good), 0);
	CHECK_INT(h_service("name=limit; url=http://127.0.0.1:%d/; max_in_flight=1", good), 0);
	CHECK_INT(h_service("name=limit2; url=http://127.0.0.1:%d/; max_in_flight=2", good), 0);
	CHECK_INT(h_service("name=shared; url=http://127.0.0.1:%d/; url=http://127.0.0.1:%d/; "
			    "eject_after=2; eject_ms=60000", refused[5], good), 0);
	CHECK_INT(h_service("name=probe1; url=http://127.0.0.1:%d/; url=http://127.0.0.1:%d/; "
			    "eject_after=1; eject_ms=300", refused[6], good), 0);
	CHECK_INT(h_service("name=fo_async; url=http://127.0.0.1:%d/; url=http://127.0.0.1:%d/; "
			    "connect_timeout_ms=200; eject_after=0", blackhole, good), 0);
	/* Refused at startup, with the item named. */
	CHECK_INT(h_modparam("service", 1, "name=b1; url=http://h/; balance=random", 0), -1);
	CHECK_INT(h_modparam("service", 1, "name=b2; url=http://h/; url=ftp://h2/", 0), -1);
	CHECK_INT(h_modparam("service", 1, "name=b3; url=http://h/; eject_ms=1000; eject_max_ms=10", 0), -1);
	CHECK_INT(h_modparam("service", 1, "name=b4; url=http://h/; failover_statuses=503,x", 0), -1);
}

/* Refused, then recovered: any method fails over at once; the second consecutive failure
 * ejects the URL (event, statistic, MI); calls then go straight to the next one; after the
 * ejection time one call probes it and restores it. */
static void test_refused_then_recovered(void)
{
	long failovers = h_stat("failovers"), restorations = h_stat("restorations");
	int good_before = served(good);
	/* Nothing was sent to the refusing URL: a POST fails over too. */
	CHECK_INT(post("fo://echo"), 1);
	CHECK_INT(code.ri, 200);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"POST\""));
	CHECK_INT(get("fo://echo"), 1);
	CHECK_INT(served(good), good_before + 2);
	CHECK_INT(h_stat("failovers"), failovers + 2);
	CHECK_INT(events_of("fo", refused[0], "ejected"), 1);
	CHECK(strstr(h_events(), "reason=2 consecutive failures, the last: connect refused"));
	CHECK(listed_as("fo", refused[0], "ejected"));
	CHECK(listed_as("fo", good, "healthy"));
	/* Ejected: no more failovers. */
	CHECK_INT(get("fo://echo"), 1);
	CHECK_INT(h_stat("failovers"), failovers + 2);
	/* It recovers; after the ejection, one call probes it and restores it. */
	recover(refused[0]);
	usleep(450 * 1000);
	CHECK(listed_as("fo", refused[0], "probe_due"));
	CHECK_INT(get("fo://echo"), 1);
	CHECK_INT(served(refused[0]), 1);
	CHECK_INT(events_of("fo", refused[0], "restored"), 1);
	CHECK(strstr(h_events(), "reason=its probe succeeded"));
	CHECK(listed_as("fo", refused[0], "healthy"));
	CHECK_INT(get("fo://echo"), 1);
	CHECK_INT(served(refused[0]), 2);
	CHECK_INT(h_stat("restorations"), restorations + 1);
}

/* A blackholed URL costs its connect timeout once; ejected, it costs nothing. */
static void test_blackhole(void)
{
	long long start = h_now_us();
	CHECK_INT(get("bh://echo"), 1);
	int first = ms_since(start);
	CHECK(first >= 190 && first < 1500);
	CHECK_INT(code.ri, 200);
	CHECK_INT(events_of("bh", blackhole, "ejected"), 1);
	CHECK(strstr(h_events(), "the last: connect timeout"));
	start = h_now_us();
	CHECK_INT(get("bh://echo"), 1);
	CHECK(ms_since(start) < 150);
}

/* Failover never extends the call's limit: 300 ms on a blackhole leave nothing for the next
 * URL. */
static void test_failover_within_the_limit(void)
{
	int before = served(good);
	long long start = h_now_us();
	int rc = get("tight://echo");
	int took = ms_since(start);
	CHECK(rc == -2 || rc == -3);
	CHECK(took >= 290 && took < 1000);
	CHECK_INT(served(good), before);
}

/* 503 with Retry-After: an idempotent call fails over; a POST (sent) does not. The URL is
 * busy for the Retry-After (capped by eject_max_ms), then takes calls again. */
static void test_retry_after(void)
{
	server_fails(flaky, 503, "30");
	int good_before = served(good);
	CHECK_INT(post("busy://echo"), 1);
	CHECK_INT(code.ri, 503);
	CHECK_INT(served(good), good_before);
	CHECK(listed_as("busy", flaky, "busy"));
	/* Busy: calls go to the next URL without trying it. */
	CHECK_INT(get("busy://echo"), 1);
	CHECK_INT(code.ri, 200);
	CHECK_INT(served(flaky), 1);
	CHECK_INT(served(good), good_before + 1);
	server_fails(flaky, 0, NULL);
	usleep(800 * 1000);
	CHECK(listed_as("busy", flaky, "healthy"));
	CHECK_INT(get("busy://echo"), 1);
	CHECK_INT(served(flaky), 2);
	/* A busy first URL that fails over after the request was sent: idempotent GET. */
	server_fails(flaky, 503, "0");
	CHECK_INT(get("busy://echo"), 1);
	CHECK_INT(code.ri, 200);
	CHECK_INT(served(flaky), 3);
	server_fails(flaky, 0, NULL);
}

/* Every URL ejected or busy: -6 at once (nothing sent); with panic=1 the call tries anyway. */
static void test_fail_fast(void)
{
	long failed_fast = h_stat("failed_fast");
	server_fails(broken, 503, "60");
	CHECK_INT(get("lonely://echo"), 1);
	CHECK_INT(code.ri, 503);
	int sent = served(broken);
	long long start = h_now_us();
	CHECK_INT(get("lonely://echo"), -6);
	CHECK(!code.is_set && !body.is_set);
	CHECK(ms_since(start) < 50);
	CHECK_INT(served(broken), sent);

	CHECK_INT(get("dead://x"), -1);
	CHECK_INT(events_of("dead", refused[1], "ejected") + events_of("dead", refused[2], "ejected"), 2);
	start = h_now_us();
	CHECK_INT(get("dead://x"), -6);
	CHECK(ms_since(start) < 50);
	CHECK_INT(h_stat("failed_fast"), failed_fast + 2);

	CHECK_INT(get("dead_panic://x"), -1);
	CHECK_INT(get("dead_panic://x"), -1);
	CHECK_INT(h_stat("failed_fast"), failed_fast + 2);
}

/* Round robin: each URL in turn. */
static void test_round_robin(void)
{
	int a = served(good), b = served(spare);
	for (int i = 0; i < 4; i++)
		CHECK_INT(get("rr://echo"), 1);
	CHECK_INT(served(good), a + 2);
	CHECK_INT(served(spare), b + 2);
}

/* Failovers after a sent request take from the retry budget (here: its floor of 2). */
static void test_retry_budget(void)
{
	server_fails(broken, 503, NULL);
	long refused_before = h_stat("retries_refused");
	CHECK_INT(get("budget://echo"), 1);
	CHECK_INT(code.ri, 200);
	CHECK_INT(get("budget://echo"), 1);
	CHECK_INT(code.ri, 200);
	CHECK_INT(get("budget://echo"), 1);
	CHECK_INT(code.ri, 503);
	CHECK_INT(h_stat("retries_refused"), refused_before + 1);
}

/* What a forked worker does: after `wait_ms`, `times` calls of `url`, each returning
 * `want_rc` (within `max_ms` if not 0; without failing over if `no_failover`). */
struct worker_calls {
	int wait_ms;
	const char *url;
	int times, want_rc, max_ms, no_failover;
};

static int calling_worker(int rank, void *arg)
{
	const struct worker_calls *w = arg;
	(void)rank;
	usleep((useconds_t)w->wait_ms * 1000);
	for (int i = 0; i < w->times; i++) {
		long failovers = h_stat("failovers");
		long long start = h_now_us();
		CHECK_INT(get(w->url), w->want_rc);
		CHECK(!w->max_ms || ms_since(start) < w->max_ms);
		CHECK(!w->no_failover || h_stat("failovers") == failovers);
	}
	return 0;
}

static void test_across_processes(void)
{
	/* max_in_flight over the node: a call of another process holds the only slot. */
	long shed = h_stat("shed");
	struct worker_calls holder = { 0, "limit://delay?ms=900", 1, 1, 0, 0 },
			    shed_one = { 300, "limit://echo", 1, -7, 50, 0 };
	h_fork_worker(2, calling_worker, &holder);
	h_fork_worker(3, calling_worker, &shed_one);
	CHECK_INT(h_wait_workers(), 0);
	CHECK_INT(h_stat("shed"), shed + 1);

	/* Ejection seen by every process: a URL ejected by one worker is skipped by the next. */
	struct worker_calls ejecting = { 0, "shared://echo", 2, 1, 0, 0 },
			    later = { 0, "shared://echo", 1, 1, 0, 1 };
	h_fork_worker(2, calling_worker, &ejecting);
	CHECK_INT(h_wait_workers(), 0);
	CHECK_INT(events_of("shared", refused[5], "ejected"), 1);
	h_fork_worker(3, calling_worker, &later);
	CHECK_INT(h_wait_workers(), 0);
	CHECK(listed_as("shared", refused[5], "ejected"));

	/* One call of the node probes a URL whose ejection is over; the others go elsewhere. */
	struct worker_calls ejecting_probe1 = { 0, "probe1://echo", 1, 1, 0, 0 },
			    probing = { 0, "probe1://delay?ms=600", 1, 1, 0, 0 },
			    during_probe = { 200, "probe1://echo", 1, 1, 0, 0 };
	h_fork_worker(2, calling_worker, &ejecting_probe1);
	CHECK_INT(h_wait_workers(), 0);
	recover(refused[6]);
	usleep(350 * 1000);
	int good_before = served(good);
	h_fork_worker(2, calling_worker, &probing);
	h_fork_worker(3, calling_worker, &during_probe);
	usleep(300 * 1000);
	CHECK(listed_as("probe1", refused[6], "probing"));
	CHECK_INT(h_wait_workers(), 0);
	CHECK_INT(served(refused[6]), 1);
	CHECK_INT(served(good), good_before + 1);
	CHECK(listed_as("probe1", refused[6], "healthy"));
}

/* Async: the slots of max_in_flight, and a failover from a blackhole inside the reactor. */
static void test_async(void)
{
	static struct h_call held[2], shed, over;
	for (int i = 0; i < 2; i++) {
		h_call_reset(&held[i]);
		CHECK_INT(H_ASYNC("rest_get", 0, h_record_route, &held[i], A_STR("limit2://delay?ms=400"),
				  A_VAR(&held[i].body), A_NONE, A_VAR(&held[i].code)), 0);
	}
	h_call_reset(&shed);
	CHECK_INT(H_ASYNC("rest_get", 0, h_record_route, &shed, A_STR("limit2://echo"),
			  A_VAR(&shed.body), A_NONE, A_VAR(&shed.code)), 1);
	CHECK_INT(shed.rc, -7);
	CHECK(h_call_ms(&shed) < 50);
	CHECK(listed_as("limit2", good, "healthy"));
	char *text = h_mi("rest_list_upstreams", NULL);
	CHECK(text && strstr(text, "\"name\": \"limit2\", \"balance\": \"first\", \"in_flight\": 2"));
	free(text);
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(held[0].rc, 1);
	CHECK_INT(held[1].rc, 1);

	h_call_reset(&over);
	CHECK_INT(H_ASYNC("rest_get", 0, h_record_route, &over, A_STR("fo_async://echo"),
			  A_VAR(&over.body), A_NONE, A_VAR(&over.code)), 0);
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(over.rc, 1);
	CHECK_INT(over.code.ri, 200);
	CHECK(h_call_ms(&over) >= 190 && h_call_ms(&over) < 1500);
	CHECK_INT(over.runs, 1);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s module.so cfg\n", argv[0]);
		return 2;
	}
	int *servers[] = { &good, &spare, &flaky, &broken };
	for (size_t i = 0; i < sizeof servers / sizeof servers[0]; i++)
		*servers[i] = h_start_server(NULL);
	for (int i = 0; i < 7; i++)
		refused[i] = h_closed_port();
	blackhole = h_full_backlog_port();
	h_load(argv[1]);
	CHECK_INT(h_load_cfg(argv[2]), 0);
	define_services();
	CHECK_INT(h_mod_init(), 0);
	test_across_processes();
	CHECK_INT(h_child_init(1), 0);
	test_refused_then_recovered();
	test_blackhole();
	test_failover_within_the_limit();
	test_retry_after();
	test_fail_fast();
	test_round_robin();
	test_retry_budget();
	test_async();
	return h_finish();
}

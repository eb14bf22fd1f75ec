/*
 * Issue 11, statistics and MI: the counters the core reads with get_statistics rest_client:,
 * summed over every process (the values live in shared memory, as the core allocates them),
 * and the MI commands rest_list_services (no credential or header value in its answer) and
 * rest_cache_flush (asked in one process, acted on by every other at its next call).
 * usage: test_statistics module.so stats.cfg
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static int port;
static hvar body;

static int get(const char *u)
{
	hvar_reset(&body);
	return H_CALL("rest_get", A_STR(u), A_VAR(&body));
}

/* What each statistic was when the test began, to check differences. */
static const char *const names[] = {
	"requests", "replies_ok", "connect_refused", "connect_timeouts", "transfer_timeouts",
	"other_errors", "gate_blocked", "async_limit_reached", "async_in_flight", "async_fallbacks",
	"connections_opened", "connections_reused", "tls_handshakes", "cache_hits", "cache_misses",
	"cache_entries", "bytes_sent", "bytes_received",
};
#define N (sizeof names / sizeof *names)
static long before[N];

static void mark(void)
{
	for (size_t i = 0; i < N; i++)
		before[i] = h_stat(names[i]);
}

static long grown(const char *name)
{
	for (size_t i = 0; i < N; i++)
		if (!strcmp(names[i], name))
			return h_stat(name) - before[i];
	return -1;
}

static void test_outcomes_and_connections(void)
{
	for (size_t i = 0; i < N; i++)
		CHECK(h_stat(names[i]) >= 0);
	CHECK_INT(h_stat_flags("async_in_flight"), 1); /* a gauge: STAT_NO_RESET */
	CHECK_INT(h_stat_flags("requests"), 0);

	mark();
	CHECK_INT(get(h_url("http", port, "/echo")), 1);
	CHECK_INT(get(h_url("http", port, "/echo")), 1);
	CHECK_INT(grown("requests"), 2);
	CHECK_INT(grown("replies_ok"), 2);
	CHECK_INT(grown("connections_opened"), 1);
	CHECK_INT(grown("connections_reused"), 1);
	CHECK_INT(grown("tls_handshakes"), 0);
	CHECK(grown("bytes_sent") > 60);
	CHECK(grown("bytes_received") > 200);

	/* A request body counts once: libcurl counts one small enough to go out with the
	 * headers (under 64 KiB) in the request size and again in the upload size. */
	static char payload[100001];
	hvar code = { 0 };
	for (size_t size = 3000; size <= 100000; size += 97000) {
		memset(payload, 'p', size);
		payload[size] = 0;
		mark();
		CHECK_INT(H_CALL("rest_post", A_STR(h_url("http", port, "/status/204")), A_STR(payload),
				 A_STR("text/plain"), A_VAR(&body), A_NONE, A_VAR(&code)), 1);
		if (grown("bytes_sent") <= (long)size || grown("bytes_sent") >= (long)size + 400)
			fprintf(stderr, "  %zu-byte body: bytes_sent grew by %ld\n", size,
				grown("bytes_sent"));
		CHECK(grown("bytes_sent") > (long)size && grown("bytes_sent") < (long)size + 400);
	}

	char u[128];
	mark();
	snprintf(u, sizeof u, "http://127.0.0.1:%d/", h_closed_port());
	CHECK_INT(get(u), -1);
	snprintf(u, sizeof u, "http://127.0.0.1:%d/", h_full_backlog_port());
	CHECK_INT(get(u), -2);
	CHECK_INT(get(h_url("http", port, "/stall-headers")), -3);
	CHECK_INT(get(h_url("http", port, "/close-mid-body?sent=10")), -10);
	CHECK_INT(grown("requests"), 4);
	CHECK_INT(grown("replies_ok"), 0);
	CHECK_INT(grown("connect_refused"), 1);
	CHECK_INT(grown("connect_timeouts"), 1);
	CHECK_INT(grown("transfer_timeouts"), 1);
	CHECK_INT(grown("other_errors"), 1);
}

static void test_async(void)
{
	struct h_call calls[3];
	memset(calls, 0, sizeof calls);
	mark();
	for (int i = 0; i < 3; i++) {
		h_call_reset(&calls[i]);
		H_ASYNC("rest_get", 0, h_record_route, &calls[i], A_STR(h_url("http", port, "/delay?ms=200")),
			A_VAR(&calls[i].body));
	}
	/* Two in flight, the third (past max_async_transfers 2) ran blocking. */
	CHECK_INT(grown("async_in_flight"), 2);
	CHECK_INT(grown("async_fallbacks"), 1);
	CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(grown("async_in_flight"), 0);
	CHECK_INT(grown("requests"), 3);
	CHECK_INT(grown("replies_ok"), 3);
}

static void test_cache(void)
{
	mark();
	CHECK_INT(get("cached://echo?s=1"), 1);
	CHECK_INT(get("cached://echo?s=1"), 1);
	CHECK_INT(grown("cache_misses"), 1);
	CHECK_INT(grown("cache_hits"), 1);
	CHECK_INT(grown("requests"), 1);
	CHECK_INT(grown("cache_entries"), 1);
	CHECK_INT(get("cached://echo?s=2"), 1);
	CHECK_INT(grown("cache_entries"), 2);
	CHECK_INT(h_stat_flags("cache_entries"), 1); /* a gauge */
}

static int worker(int rank, void *arg)
{
	(void)rank;
	(void)arg;
	for (int i = 0; i < 3; i++)
		CHECK_INT(get(h_url("http", port, "/echo")), 1);
	return 0;
}

static void test_sum_over_processes(void)
{
	mark();
	h_fork_worker(2, worker, NULL);
	h_fork_worker(3, worker, NULL);
	CHECK_INT(h_wait_workers(), 0);
	CHECK_INT(grown("requests"), 6);
	CHECK_INT(grown("replies_ok"), 6);
	CHECK_INT(grown("connections_opened"), 2);
}

static void test_mi_list_services(void)
{
	CHECK_INT(H_CALL("rest_update_service", A_STR("secret"), A_STR("auth=basic:u:sekret-2")), 1);
	char *text = h_mi("rest_list_services", NULL);
	CHECK(text != NULL);
	if (!text)
		return;
	printf("rest_list_services: %s\n", text);
	CHECK(strstr(text, "\"name\": \"cached\"") != NULL);
	CHECK(strstr(text, "\"cache\": {\"ttl_s\": 60, \"max_entries\": 1000, \"max_bytes\": 1048576}"));
	/* cached://echo?s=1 twice: one call answered by the service, one from its cache. */
	CHECK(strstr(text, "\"calls\": 3, \"cache_hits\": 1") != NULL);
	CHECK(strstr(text, "\"name\": \"secret\", \"url\": \"http://***@127.0.0.1:") != NULL);
	CHECK(strstr(text, "\"auth\": \"basic\", \"header_names\": [\"X-Api-Key\"]") != NULL);
	CHECK(strstr(text, "\"timeout_ms\": 250") != NULL);
	CHECK(strstr(text, "\"credential_updates\": 1") != NULL);
	CHECK(!strstr(text, "sekret") && !strstr(text, "k3y-value") && !strstr(text, "pw0rd"));
	free(text);
}

/* MI rest_cache_flush: every process drops the service's cached answers at its next call. */
static int flush_over_mi(int rank, void *arg)
{
	(void)rank;
	(void)arg;
	char *text = h_mi("rest_cache_flush", "CACHED");
	CHECK(text && !strcmp(text, "\"OK\""));
	free(text);
	return 0;
}

static void test_mi_cache_flush(void)
{
	CHECK_INT(get("cached://echo?s=1"), 1);
	mark();
	CHECK_INT(get("cached://echo?s=1"), 1);
	CHECK_INT(grown("cache_hits"), 1);
	/* Asked in another process (the MI process): this one drops its copy. */
	h_fork_worker(4, flush_over_mi, NULL);
	CHECK_INT(h_wait_workers(), 0);
	mark();
	CHECK_INT(get("cached://echo?s=1"), 1);
	CHECK_INT(grown("cache_misses"), 1);
	/* Both entries (s=1, s=2) dropped, s=1 stored again. */
	CHECK_INT(grown("cache_entries"), -1);
	CHECK_INT(grown("requests"), 1);
	CHECK_INT(get("cached://echo?s=1"), 1);
	CHECK_INT(grown("cache_hits"), 1);

	char *text = h_mi("rest_cache_flush", "secret");
	CHECK(text && strstr(text, "\"message\": \"service secret has no cache\""));
	free(text);
	text = h_mi("rest_cache_flush", "nosuch");
	CHECK(text && strstr(text, "unknown service 'nosuch'"));
	free(text);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	h_load(argv[1]);
	CHECK_INT(h_load_cfg(argv[2]), 0);
	port = h_start_server(NULL);
	CHECK_INT(h_service("name=cached; url=http://127.0.0.1:%d/; cache_ttl=60", port), 0);
	CHECK_INT(h_service("name=secret; url=http://user:pw0rd@127.0.0.1:%d/; "
		 "auth=bearer:sekret-1; header=X-Api-Key: k3y-value; timeout_ms=250", port), 0);
	CHECK_INT(h_mod_init(), 0);
	CHECK_INT(h_child_init(1), 0);
	test_outcomes_and_connections();
	test_async();
	test_cache();
	test_sum_over_processes();
	test_mi_list_services();
	test_mi_cache_flush();
	return h_finish();
}

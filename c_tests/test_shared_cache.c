/*
 * Issue 12: a service's response cache shared through cachedb (the harness's "local" engine,
 * in shared memory) by forked worker processes; writes that invalidate (RFC 9111 §4.4) in
 * every process; Cache-Control no-store / private / max-age; a cachedb outage that fails no
 * call; rest_cache_flush. The test server counts requests to tell a hit from a miss.
 * usage: test_shared_cache module.so shared_cache.cfg
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static int port;

static int served(void) { return h_server_stat(port, "requests"); }

/* GET `url`; the item version of its answer (-1 if none). */
static int get_version(const char *url)
{
	hvar body = { 0 }, code = { 0 };
	int rc = H_CALL("rest_get", A_STR(url), A_VAR(&body), A_NONE, A_VAR(&code));
	CHECK_INT(rc, 1);
	int version = body.is_set ? h_json_int(body.s, "version") : -1;
	hvar_reset(&body);
	return version;
}

static int get_rc(const char *url)
{
	hvar body = { 0 };
	int rc = H_CALL("rest_get", A_STR(url), A_VAR(&body));
	hvar_reset(&body);
	return rc;
}

/* rest_request(method, url, body) and its HTTP status. */
static int write_status(const char *method, const char *url, const char *send)
{
	hvar body = { 0 }, code = { 0 };
	CHECK_INT(H_CALL("rest_request", A_STR(method), A_STR(url), A_STR(send), A_NONE,
			 A_VAR(&body), A_NONE, A_VAR(&code)), 1);
	hvar_reset(&body);
	return code.ri;
}

/* Runs `fn` in a new worker process and waits for it. */
static void in_worker(int rank, h_worker_fn fn)
{
	h_fork_worker(rank, fn, NULL);
	CHECK_INT(h_wait_workers(), 0);
}

static int first_reader(int rank, void *arg)
{
	(void)rank; (void)arg;
	CHECK_INT(get_version("shared://items/a"), 0);
	CHECK_INT(get_version("alone://items/a"), 0);
	CHECK_INT(h_pkg_unfreed(), 0);
	return 0;
}

/* Another process gets the whole answer from the shared store: body, Content-Type, status,
 * headers; a per-process cache asks again. */
static int second_reader(int rank, void *arg)
{
	hvar body = { 0 }, ctype = { 0 }, code = { 0 }, header = { 0 };
	(void)rank; (void)arg;
	int before = served();
	CHECK_INT(H_CALL("rest_get", A_STR("shared://items/a"), A_VAR(&body), A_VAR(&ctype),
			 A_VAR(&code)), 1);
	CHECK_INT(served(), before);
	CHECK_INT(h_json_int(body.s, "version"), 0);
	CHECK_STR(&ctype, "application/json");
	CHECK_INT(code.ri, 200);
	CHECK_INT(H_CALL("rest_response_header", A_STR("content-type"), A_VAR(&header)), 1);
	CHECK_STR(&header, "application/json");
	CHECK_INT(get_version("alone://items/a"), 0);
	CHECK_INT(served(), before + 1);
	CHECK_INT(h_pkg_unfreed(), 0);
	hvar_reset(&body); hvar_reset(&ctype); hvar_reset(&header);
	return 0;
}

static void test_sharing(void)
{
	CHECK_INT(served(), 0);
	in_worker(2, first_reader);
	CHECK_INT(served(), 2);
	in_worker(3, second_reader);
	CHECK_INT(served(), 3);
	CHECK_INT(h_cachedb_stat("answers"), 1);
}

static int patch_a(int rank, void *arg)
{
	(void)rank; (void)arg;
	CHECK_INT(write_status("PATCH", "shared://items/a", "{}"), 200);
	return 0;
}

static int create_b_and_touch_c(int rank, void *arg)
{
	(void)rank; (void)arg;
	CHECK_INT(write_status("POST", "shared://items", "b"), 201);       /* Location: /items/b */
	CHECK_INT(write_status("POST", "shared://items/c/touch", "x"), 200); /* Content-Location */
	return 0;
}

/* A write through any process drops every variant of its URL, and the URLs its Location and
 * Content-Location name, from this process's first level too; a failed write drops nothing. */
static void test_invalidation(void)
{
	CHECK_INT(get_version("shared://items/a"), 0); /* from the store, now in this process too */
	CHECK_INT(H_CALL("rest_append_hf", A_STR("X-Variant: 1")), 1);
	CHECK_INT(get_version("shared://items/a"), 0);
	CHECK_INT(get_version("shared://items/b"), 0);
	CHECK_INT(get_version("shared://items/c"), 0);
	int before = served();
	CHECK_INT(get_version("shared://items/a"), 0);
	CHECK_INT(served(), before);

	in_worker(4, patch_a);
	CHECK_INT(get_version("shared://items/a"), 1);
	CHECK_INT(H_CALL("rest_append_hf", A_STR("X-Variant: 1")), 1);
	CHECK_INT(get_version("shared://items/a"), 1);
	CHECK_INT(served(), before + 3);

	CHECK_INT(get_version("shared://items/b"), 0);
	CHECK_INT(get_version("shared://items/c"), 0);
	in_worker(5, create_b_and_touch_c);
	before = served();
	CHECK_INT(get_version("shared://items/b"), 1);
	CHECK_INT(get_version("shared://items/c"), 1);
	CHECK_INT(served(), before + 2);

	/* 409: nothing changed, nothing dropped. */
	CHECK_INT(H_CALL("rest_append_hf", A_STR("X-Fail: 1")), 1);
	CHECK_INT(write_status("PUT", "shared://items/a", "{}"), 409);
	before = served();
	CHECK_INT(get_version("shared://items/a"), 1);
	CHECK_INT(served(), before);

	/* Without a shared store, a write drops this process's answers. */
	CHECK_INT(get_version("alone://items/d"), 0);
	CHECK_INT(write_status("DELETE", "alone://items/d", ""), 204);
	CHECK_INT(get_version("alone://items/d"), 1);
	CHECK_INT(get_version("alone://items/d"), 1);
	CHECK_INT(served(), before + 3);
}

static int private_reader(int rank, void *arg)
{
	(void)rank; (void)arg;
	CHECK_INT(get_rc("shared://headers?h=Cache-Control:private"), 1);
	return 0;
}

/* no-store: kept nowhere; private: kept in the process only; max-age: shortens the TTL. */
static void test_cache_control(void)
{
	int before = served(), answers = h_cachedb_stat("answers");
	CHECK_INT(get_rc("shared://headers?h=Cache-Control:no-store"), 1);
	CHECK_INT(get_rc("shared://headers?h=Cache-Control:no-store"), 1);
	CHECK_INT(served(), before + 2);
	CHECK_INT(get_rc("shared://headers?h=Cache-Control:private"), 1);
	CHECK_INT(get_rc("shared://headers?h=Cache-Control:private"), 1);
	CHECK_INT(served(), before + 3);
	in_worker(6, private_reader);
	CHECK_INT(served(), before + 4);
	CHECK_INT(h_cachedb_stat("answers"), answers);

	CHECK_INT(get_rc("shared://headers?h=Cache-Control:max-age=1"), 1);
	CHECK_INT(get_rc("shared://headers?h=Cache-Control:max-age=1"), 1);
	CHECK_INT(served(), before + 5);
	usleep(1100 * 1000);
	CHECK_INT(get_rc("shared://headers?h=Cache-Control:max-age=1"), 1);
	CHECK_INT(served(), before + 6);
	/* s-maxage=5 is for the store; max-age=1 for this process, which then finds the
	 * answer in the store again. */
	CHECK_INT(get_rc("shared://headers?h=Cache-Control:max-age=1,s-maxage=5"), 1);
	CHECK_INT(h_cachedb_stat("answers"), answers + 1);
	usleep(1100 * 1000);
	CHECK_INT(get_rc("shared://headers?h=Cache-Control:max-age=1,s-maxage=5"), 1);
	CHECK_INT(served(), before + 7);
}

static int reader_during_outage(int rank, void *arg)
{
	(void)rank; (void)arg;
	CHECK_INT(get_version("shared://items/e"), 0);
	CHECK_INT(get_version("shared://items/e"), 0);
	CHECK_INT(write_status("PATCH", "shared://items/e", "{}"), 200);
	CHECK_INT(get_version("shared://items/e"), 1);
	return 0;
}

/* The store fails every get and set: no call fails; each process answers from its own level. */
static void test_outage(void)
{
	h_cachedb_outage(1);
	int before = served();
	CHECK_INT(get_version("shared://items/e"), 0);
	CHECK_INT(get_version("shared://items/e"), 0);
	CHECK_INT(served(), before + 1);
	in_worker(7, reader_during_outage);
	CHECK_INT(served(), before + 4);
	h_cachedb_outage(0);
	usleep(250 * 1000); /* past cache_skip_ms: the next call probes the store */
	/* Back: this process's copy, stored while the store was down, is not trusted. */
	CHECK_INT(get_version("shared://items/e"), 1);
	CHECK_INT(served(), before + 5);
}

static int f_reader(int rank, void *arg)
{
	(void)rank; (void)arg;
	int before = served();
	CHECK_INT(get_version("shared://items/f"), 0);
	CHECK_INT(served(), before);
	return 0;
}

/* An async call's answer is shared too; a flush reaches every process. */
static void test_async_and_flush(void)
{
	struct h_call c = { 0 };
	h_call_reset(&c);
	int before = served();
	/* Waits for the reactor, or ran at once (a transfer may end within its start call). */
	if (H_ASYNC("rest_get", 0, h_record_route, &c, A_STR("shared://items/f"), A_VAR(&c.body)) == 0)
		CHECK_INT(h_reactor_run(3000), 0);
	CHECK_INT(c.runs, 1);
	CHECK_INT(c.rc, 1);
	in_worker(8, f_reader);
	CHECK_INT(H_ASYNC("rest_get", 0, h_record_route, &c, A_STR("shared://items/f"), A_VAR(&c.body)), 1);
	CHECK_INT(served(), before + 1);

	CHECK_INT(H_CALL("rest_cache_flush", A_STR("SHARED")), 1);
	CHECK_INT(H_CALL("rest_cache_flush", A_STR("nosuch")), -1);
	CHECK_INT(get_version("shared://items/f"), 0);
	CHECK_INT(served(), before + 2);
	CHECK_INT(h_pkg_unfreed(), 0);
	hvar_reset(&c.body);
}

static int mongo_reader(int rank, void *arg)
{
	(void)rank; (void)arg;
	CHECK_INT(get_version("mongo://items/h"), 0);
	return 0;
}

static int couchbase_reader(int rank, void *arg)
{
	(void)rank;
	CHECK_INT(get_version("cb://items/g"), *(int *)arg);
	return 0;
}

static int couchbase_writer(int rank, void *arg)
{
	(void)rank; (void)arg;
	CHECK_INT(write_status("PATCH", "cb://items/g", "{}"), 200);
	return 0;
}

/* Issue 17, item 10: each engine's get codes. couchbase answers -1 for a missing key and -2
 * for an error: its misses share answers, and an error reading a write's marker is an outage,
 * never "no write" (which would serve the answer stored before the write). */
static void test_engine_codes(void)
{
	int version = 0, before = served();
	h_fork_worker(9, couchbase_reader, &version);
	CHECK_INT(h_wait_workers(), 0);
	h_fork_worker(10, couchbase_reader, &version);
	CHECK_INT(h_wait_workers(), 0);
	CHECK_INT(served(), before + 1);
	in_worker(11, couchbase_writer);
	h_cachedb_fail_gets(":url:");
	version = 1;
	h_fork_worker(12, couchbase_reader, &version);
	CHECK_INT(h_wait_workers(), 0);
	h_cachedb_fail_gets(NULL);
	CHECK_INT(served(), before + 3);

	/* mongodb answers -2 for a missing key and for a failed query alike: every such read is
	 * an outage, so nothing is shared through it (each process asks the backend). */
	int answers = h_cachedb_stat("answers");
	before = served();
	CHECK_INT(get_version("mongo://items/h"), 0);
	in_worker(13, mongo_reader);
	CHECK_INT(served(), before + 2);
	CHECK_INT(h_cachedb_stat("answers"), answers);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	h_load(argv[1]);
	CHECK_INT(h_load_cfg(argv[2]), 0);
	port = h_start_server(NULL);
	/* A generous time on the store (a loaded machine is no outage); a short skip after one. */
	CHECK_INT(h_service("name=shared; url=http://127.0.0.1:%d/; cache_ttl=30; cache=local://; "
			    "cache_timeout_ms=1000; cache_skip_ms=200", port), 0);
	CHECK_INT(h_service("name=alone; url=http://127.0.0.1:%d/; cache_ttl=30", port), 0);
	CHECK_INT(h_service("name=cb; url=http://127.0.0.1:%d/; cache_ttl=30; cache=couchbase://", port), 0);
	CHECK_INT(h_service("name=mongo; url=http://127.0.0.1:%d/; cache_ttl=30; cache=mongodb://", port), 0);
	CHECK_INT(h_mod_init(), 0);
	CHECK_INT(h_child_init(1), 0);
	test_sharing();
	test_invalidation();
	test_cache_control();
	test_outage();
	test_async_and_flush();
	test_engine_codes();
	return h_finish();
}

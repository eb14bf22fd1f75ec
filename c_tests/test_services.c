/*
 * Named services (name://path): base URL, default headers, bearer and basic credentials,
 * millisecond limits, default method, query parameters, bodies as received, names with '_'
 * in any case, unknown names; and a service's response cache (the server counts requests to
 * tell a hit from a miss), blocking and async; credentials renewed for every process
 * (rest_update_service).
 * usage: test_services module.so services.cfg
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static int port;
static hvar body, code;
static int async_rc, async_done;

static void resumed(int rc, void *arg)
{
	(void)arg;
	async_rc = rc;
	async_done++;
}

static int get(const char *u)
{
	hvar_reset(&body);
	hvar_reset(&code);
	return H_CALL("rest_get", A_STR(u), A_VAR(&body), A_NONE, A_VAR(&code));
}

static int served(void)
{
	return h_server_stat(port, "requests");
}

static int has_header(const char *name, const char *value)
{
	char needle[256];
	snprintf(needle, sizeof needle, "[\"%s\", \"%s\"]", name, value);
	return body.is_set && strstr(body.s, needle) != NULL;
}

static void define_services(void)
{
	CHECK_INT(h_service("name=api; url=http://127.0.0.1:%d/; header=X-Auth-Token: tok123; "
		 "header=X-Team: 7; auth=bearer:sekret-token; timeout_ms=500; method=PATCH", port), 0);
	CHECK_INT(h_service("name=basic; url=http://127.0.0.1:%d; auth=basic:user:p4ss", port), 0);
	CHECK_INT(h_service("name=Api_Github; url=http://127.0.0.1:%d/; method=get; "
		 "param=api_key=k 1&x; param=lang=de; param=per page=50", port), 0);
	CHECK_INT(h_service("name=raw_bin; url=http://127.0.0.1:%d; raw_body=1", port), 0);
	/* Names are case-insensitive: this one is taken. */
	CHECK_INT(h_service("name=API_GITHUB; url=http://127.0.0.1:%d/", port), -1);
	CHECK_INT(h_service("name=cached; url=http://127.0.0.1:%d/; cache_ttl=1; cache_entries=10", port), 0);
	CHECK_INT(h_service("name=small; url=http://127.0.0.1:%d/; cache_ttl=60; cache_bytes=4000", port), 0);
	/* Refused at startup: a duplicate name and a bad definition. */
	CHECK_INT(h_service("name=cached; url=http://127.0.0.1:%d/; cache_ttl=1; cache_entries=10", port), -1);
	CHECK_INT(h_modparam("service", 1, "name=bad; url=http://h/; auth=token:sekret-token", 0), -1);
	/* Issue 9, item 11: a CR or LF in a URL or a bearer token would add request lines. */
	CHECK_INT(h_modparam("service", 1, "name=crlf1; url=http://h/x\r\nX-Injected: 1", 0), -1);
	CHECK_INT(h_modparam("service", 1, "name=crlf2; url=http://h/; auth=bearer:t\r\nX-Injected: 1", 0), -1);
	/* Item 14: a ';' left unescaped in a password; the error quotes no part of it. */
	CHECK_INT(h_modparam("service", 1, "name=semi; url=http://h/; auth=basic:u:pa;sLEAKED", 0), -1);
}

static void test_services(void)
{
	CHECK_INT(get("api://echo?q=1"), 1);
	CHECK(body.is_set && strstr(body.s, "\"path\": \"/echo?q=1\""));
	CHECK(has_header("X-Auth-Token", "tok123") && has_header("X-Team", "7"));
	CHECK(has_header("Authorization", "Bearer sekret-token"));

	/* The script's header wins over the service's of the same name. */
	CHECK_INT(H_CALL("rest_append_hf", A_STR("x-auth-token: mine")), 1);
	CHECK_INT(get("api://echo"), 1);
	CHECK(has_header("x-auth-token", "mine") && !has_header("X-Auth-Token", "tok123"));
	CHECK(has_header("X-Team", "7"));

	/* rest_request without a method: the service's default method. */
	hvar_reset(&body);
	CHECK_INT(H_CALL("rest_request", A_STR(""), A_STR("api://echo"), A_STR("{}"), A_STR("application/json"),
			 A_VAR(&body)), 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"PATCH\""));

	CHECK_INT(get("basic://echo"), 1);
	CHECK(has_header("Authorization", "Basic dXNlcjpwNHNz"));

	CHECK_INT(get("nosuch://echo"), -10);
	CHECK(!body.is_set);
	/* Credentials stay out of the logs, even when the transfer fails. */
	CHECK_INT(get("other://x"), -1);
}

static int request(const char *method, const char *u, const char *data)
{
	hvar_reset(&body);
	return H_CALL("rest_request", A_STR(method), A_STR(u), data ? A_STR(data) : A_NONE, A_NONE, A_VAR(&body));
}

/* Issue 13: names with '_' in any case, a method written in lower case, query parameters,
 * POST-or-GET without a method, bodies as received. */
static void test_ergonomics(void)
{
	/* The service's method, upper-cased; its parameters, escaped, after the path's own. */
	CHECK_INT(request("", "api_github://echo?q=1", NULL), 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"GET\""));
	CHECK(body.is_set && strstr(body.s, "\"path\": \"/echo?q=1&api_key=k%201%26x&lang=de&per%20page=50\""));
	/* A parameter the URL has already wins; a per-call method is sent as written. */
	CHECK_INT(request("get", "API_GITHUB://echo?lang=en&per%20page=5", NULL), 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"get\""));
	CHECK(body.is_set && strstr(body.s, "\"path\": \"/echo?lang=en&per%20page=5&api_key=k%201%26x\""));

	/* No method and no service method: POST with a body, else GET. */
	CHECK_INT(request("", "raw_bin://echo", "{\"a\": 1}"), 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"POST\"") && strstr(body.s, "\"body_len\": 8"));
	CHECK_INT(request("", "raw_bin://echo", NULL), 1);
	CHECK(body.is_set && strstr(body.s, "\"method\": \"GET\""));

	/* raw_body=1: a binary body ending in whitespace bytes, as received (blocking and async);
	 * another service trims it, as the C module does. */
	static const char received[] = "\0\x01 \xfe\r\n\t\n";
	const int len = sizeof received - 1;
	CHECK_INT(get("raw_bin://bytes?hex=000120fe0d0a090a"), 1);
	CHECK(body.is_set && body.len == len && memcmp(body.s, received, (size_t)len) == 0);
	hvar_reset(&body);
	async_done = 0;
	H_ASYNC("rest_get", 0, resumed, NULL, A_STR("raw_bin://bytes?hex=000120fe0d0a090a"), A_VAR(&body));
	h_reactor_run(3000);
	CHECK_INT(async_done, 1);
	CHECK(body.is_set && body.len == len && memcmp(body.s, received, (size_t)len) == 0);
	CHECK_INT(get("api://bytes?hex=000120fe0d0a090a"), 1);
	CHECK(body.is_set && body.len == 4 && memcmp(body.s, received, 4) == 0);
}

static void test_limits_and_async(void)
{
	/* The service's limit (500 ms), then a per-call one (200 ms) that wins. */
	long long t0 = h_now_us();
	CHECK_INT(get("api://stall-headers"), -3);
	long long ms = (h_now_us() - t0) / 1000;
	CHECK(ms >= 450 && ms < 1000);
	CHECK_INT(H_CALL("rest_timeout", A_INT(200)), 1);
	t0 = h_now_us();
	CHECK_INT(get("api://stall-headers"), -3);
	ms = (h_now_us() - t0) / 1000;
	CHECK(ms >= 150 && ms < 450);

	/* Async through a service. */
	hvar_reset(&body);
	async_done = 0;
	H_ASYNC("rest_get", 0, resumed, NULL, A_STR("api://echo"), A_VAR(&body));
	h_reactor_run(3000);
	CHECK_INT(async_done, 1);
	CHECK_INT(async_rc, 1);
	CHECK(has_header("Authorization", "Bearer sekret-token"));

	/* Issue 9, item 10: the base path is a boundary, whatever the script's data holds. */
	const char *outside[] = { "api://../admin", "api://echo/../../x", "api://./echo", "api://%2e%2e/x",
				  "api://echo/%2E%2e%2fx", "api://.%2e/x", "api://a/..%5cx",
				  /* Issue 17, item 9: servlet path parameters, double encoding. */
				  "api://..;/admin", "api://echo/%252e%252E/x", "api://%2e%252e;x/admin" };
	int before = served();
	for (size_t i = 0; i < sizeof outside / sizeof *outside; i++) {
		CHECK_INT(get(outside[i]), -10);
		CHECK(!body.is_set);
	}
	CHECK_INT(served(), before);
	CHECK_INT(get("api://echo?next=../x"), 1);
	CHECK(body.is_set && strstr(body.s, "\"path\": \"/echo?next=../x\""));

}

static void test_cache(void)
{
	free(h_http_get(port, "/stats/reset"));
	CHECK_INT(get("cached://echo?x=1"), 1);
	char first[4096];
	snprintf(first, sizeof first, "%s", body.s);
	CHECK_INT(get("cached://echo?x=1"), 1);
	CHECK_INT(served(), 1);
	CHECK_STR(&body, first);
	CHECK_INT(code.ri, 200);
	/* The cached answer also fills the response headers. */
	hvar out = { 0 };
	CHECK_INT(H_CALL("rest_response_header", A_STR("content-type"), A_VAR(&out)), 1);
	CHECK_STR(&out, "application/json");
	hvar_reset(&out);

	/* Async: a hit runs the resume route at once, never waiting. */
	hvar_reset(&body);
	async_done = 0;
	CHECK_INT(H_ASYNC("rest_get", 0, resumed, NULL, A_STR("cached://echo?x=1"), A_VAR(&body)), 1);
	CHECK_INT(async_done, 1);
	CHECK_INT(async_rc, 1);
	CHECK_STR(&body, first);
	CHECK_INT(served(), 1);

	/* Other URL, other appended headers, non-2xx answers and other methods: not hits. */
	CHECK_INT(get("cached://echo?x=2"), 1);
	CHECK_INT(served(), 2);
	CHECK_INT(H_CALL("rest_append_hf", A_STR("X-Variant: b")), 1);
	CHECK_INT(get("cached://echo?x=1"), 1);
	CHECK_INT(served(), 3);
	CHECK_INT(get("cached://status/404"), 1);
	CHECK_INT(get("cached://status/404"), 1);
	CHECK_INT(served(), 5);
	hvar_reset(&body);
	CHECK_INT(H_CALL("rest_post", A_STR("cached://echo?x=1"), A_STR("a"), A_NONE, A_VAR(&body)), 1);
	CHECK_INT(served(), 6);
	/* An async miss is stored when it completes. */
	async_done = 0;
	H_ASYNC("rest_get", 0, resumed, NULL, A_STR("cached://echo?x=3"), A_VAR(&body));
	h_reactor_run(3000);
	CHECK_INT(get("cached://echo?x=3"), 1);
	CHECK_INT(served(), 7);

	/* Expired after cache_ttl (1 s). */
	usleep(1100 * 1000);
	CHECK_INT(get("cached://echo?x=1"), 1);
	CHECK_INT(served(), 8);

	/* A service without a cache always asks. */
	CHECK_INT(get("api://echo"), 1);
	CHECK_INT(get("api://echo"), 1);
	CHECK_INT(served(), 10);

	/* Issue 9 (7): an entry holds the whole answer: a call that asks for the Content-Type
	 * gets it from an entry stored by a call that did not. */
	hvar ctype = { 0 };
	CHECK_INT(get("cached://ctype?value=application/x-first"), 1);
	CHECK_INT(served(), 11);
	CHECK_INT(H_CALL("rest_get", A_STR("cached://ctype?value=application/x-first"), A_VAR(&body),
			 A_VAR(&ctype)), 1);
	CHECK_INT(served(), 11);
	CHECK_STR(&ctype, "application/x-first");
	hvar_reset(&ctype);

	/* Issue 9 (12): the response headers count against cache_bytes (4000): two answers with
	 * 2.5 KB of headers each do not fit together, the older one goes. */
	CHECK_INT(get("small://headers?pad=2500&n=1"), 1);
	CHECK_INT(get("small://headers?pad=2500&n=1"), 1);
	CHECK_INT(served(), 12);
	CHECK_INT(get("small://headers?pad=2500&n=2"), 1);
	CHECK_INT(get("small://headers?pad=2500&n=1"), 1);
	CHECK_INT(served(), 14);
}

/* Issue 12, part 3: rest_update_service renews a service's credentials for every process. */
static int renew_in_another_process(int rank, void *arg)
{
	(void)rank;
	(void)arg;
	CHECK_INT(H_CALL("rest_update_service", A_STR("API"),
			 A_STR("auth=bearer:fresh-sekret-token; header=X-Team: 9")), 1);
	return 0;
}

static void test_renewed_credentials(void)
{
	/* Refused, without a change: unknown service, items other than auth and header, a CR/LF,
	 * a bad auth (the value is never logged). */
	CHECK_INT(H_CALL("rest_update_service", A_STR("nosuch"), A_STR("auth=bearer:x")), -1);
	CHECK_INT(H_CALL("rest_update_service", A_STR("api"), A_STR("url=http://127.0.0.1:1/")), -1);
	CHECK_INT(H_CALL("rest_update_service", A_STR("api"), A_STR("header=X-A: 1\r\nX-B: sekret")), -1);
	CHECK_INT(H_CALL("rest_update_service", A_STR("api"), A_STR("auth=token:sekret")), -1);
	CHECK_INT(get("api://echo"), 1);
	CHECK(has_header("Authorization", "Bearer sekret-token"));

	/* Another worker renews them: this process's next call carries the new ones. */
	h_fork_worker(2, renew_in_another_process, NULL);
	CHECK_INT(h_wait_workers(), 0);
	CHECK_INT(get("api://echo"), 1);
	CHECK(has_header("Authorization", "Bearer fresh-sekret-token"));
	CHECK(!has_header("Authorization", "Bearer sekret-token"));
	CHECK(has_header("X-Team", "9"));
	CHECK(!has_header("X-Team", "7"));
	CHECK(has_header("X-Auth-Token", "tok123"));

	/* A per-call Authorization header replaces the service's credentials. */
	CHECK_INT(H_CALL("rest_append_hf", A_STR("Authorization: Bearer per-call")), 1);
	CHECK_INT(get("api://echo"), 1);
	CHECK(has_header("Authorization", "Bearer per-call"));
	CHECK(!has_header("Authorization", "Bearer fresh-sekret-token"));

	/* An empty update gives the definition back. */
	CHECK_INT(H_CALL("rest_update_service", A_STR("api"), A_STR("")), 1);
	CHECK_INT(get("api://echo"), 1);
	CHECK(has_header("Authorization", "Bearer sekret-token"));
	CHECK(has_header("X-Team", "7"));
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	h_load(argv[1]);
	CHECK_INT(h_load_cfg(argv[2]), 0);
	port = h_start_server(NULL);
	define_services();
	CHECK_INT(h_mod_init(), 0);
	CHECK_INT(h_child_init(1), 0);
	test_services();
	test_ergonomics();
	test_limits_and_async();
	test_cache();
	test_renewed_credentials();
	CHECK_INT(h_resumed_twice(), 0);
	return h_finish();
}

/*
 * Issue 17 ("Hostile servers") and 22: against every kind of broken or hostile answer the
 * test server has (resets, stalls, slowloris, huge status lines and headers, endless chunks,
 * interim-response storms, a redirect loop, TLS bytes on plain HTTP, plain HTTP where TLS is
 * expected, ...), blocking and async calls each end within curl_timeout + 1 s with an error
 * code (never a success for a malformed answer), the worker keeps answering, and repeated
 * rounds keep its memory flat (resident size after round 2 and after the last round).
 * usage: test_hostile module.so forged.cfg   (curl_timeout 1)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define LIMIT_MS 2000 /* curl_timeout + 1 s */
#define ASYNC_ROUNDS 10
#define RSS_GROWTH_KB (8 * 1024)

/* A hostile answer: the scheme the call uses, the path, and whether it is a well-formed answer
 * after all (the redirect loop: 302 returned as is, never followed). */
struct kind {
	const char *scheme;
	const char *path;
	int well_formed;
};

static const struct kind kinds[] = {
	{ "http", "/slow-headers", 0 },
	{ "http", "/slow-body", 0 },
	{ "http", "/stall-headers", 0 },
	{ "http", "/stall-mid-headers", 0 },
	{ "http", "/stall-body", 0 },
	{ "http", "/close-mid-body", 0 },
	{ "http", "/garbage", 0 },
	{ "http", "/huge-status", 0 },
	{ "http", "/many-headers", 0 },
	{ "http", "/headers?pad=1000000", 0 },
	{ "http", "/endless-chunks", 0 },
	{ "http", "/interim-storm", 0 },
	{ "http", "/tls-bytes", 0 },
	{ "http", "/reset?after=request", 0 },
	{ "http", "/reset?after=headers", 0 },
	{ "http", "/reset?after=body", 0 },
	{ "http", "/framing?cl=12&cl=10", 0 },
	{ "http", "/framing?te=chunked&cl=12", 0 },
	{ "https", "/echo", 0 }, /* a TLS handshake with a plain HTTP server */
	{ "http", "/redirect-loop", 1 },
};
#define KINDS ((int)(sizeof kinds / sizeof kinds[0]))

static int port;

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

/* How a call to `k` ended: within the limit, and with an error unless the answer is a
 * well-formed one. */
static void check_ending(const struct kind *k, const char *mode, int rc, int ms, int status)
{
	int ok = ms <= LIMIT_MS && (k->well_formed ? rc == 1 && status == 302 : rc < 0);
	if (!ok)
		fprintf(stderr, "  %s %s %s: rc %d (status %d) after %d ms\n", mode, k->scheme, k->path,
			rc, status, ms);
	h_check(ok, __FILE__, __LINE__, k->path);
}

/* The worker still answers. */
static void check_alive(void)
{
	hvar body = { 0 };
	hvar_reset(&body);
	CHECK_INT(H_CALL("rest_get", A_STR(h_url("http", port, "/echo")), A_VAR(&body)), 1);
}

static void blocking_round(int print)
{
	for (int i = 0; i < KINDS; i++) {
		hvar body = { 0 }, code = { 0 };
		hvar_reset(&body);
		hvar_reset(&code);
		long long t0 = h_now_us();
		int rc = H_CALL("rest_get", A_STR(h_url(kinds[i].scheme, port, kinds[i].path)),
				A_VAR(&body), A_NONE, A_VAR(&code));
		int ms = (int)((h_now_us() - t0) / 1000);
		if (print)
			printf("blocking %-5s %-26s rc %3d after %4d ms\n", kinds[i].scheme, kinds[i].path,
			       rc, ms);
		check_ending(&kinds[i], "blocking", rc, ms, code.is_int ? code.ri : 0);
	}
	check_alive();
}

static void async_round(int print)
{
	struct h_call calls[KINDS];
	memset(calls, 0, sizeof calls);
	for (int i = 0; i < KINDS; i++) {
		h_call_reset(&calls[i]);
		H_ASYNC("rest_get", 0, h_record_route, &calls[i],
			A_STR(h_url(kinds[i].scheme, port, kinds[i].path)), A_VAR(&calls[i].body),
			A_NONE, A_VAR(&calls[i].code));
	}
	CHECK_INT(h_reactor_run(LIMIT_MS + 1000), 0);
	for (int i = 0; i < KINDS; i++) {
		const struct h_call *c = &calls[i];
		CHECK_INT(c->runs, 1);
		if (print)
			printf("async    %-5s %-26s rc %3d after %4d ms\n", kinds[i].scheme, kinds[i].path,
			       c->rc, h_call_ms(c));
		check_ending(&kinds[i], "async", c->rc, h_call_ms(c), c->code.is_int ? c->code.ri : 0);
	}
	check_alive();
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	h_start_as_worker(argv[1], argv[2]);
	port = h_start_server(NULL);

	blocking_round(1);
	blocking_round(0);
	long after_round_2 = 0;
	for (int round = 1; round <= ASYNC_ROUNDS; round++) {
		async_round(round == 1);
		if (round == 2)
			after_round_2 = rss_kb();
	}
	long after_last = rss_kb();
	printf("resident size after async round 2: %ld kB, after round %d: %ld kB\n", after_round_2,
	       ASYNC_ROUNDS, after_last);
	CHECK(after_round_2 > 0 && after_last - after_round_2 < RSS_GROWTH_KB);
	CHECK_INT(h_resumed_twice(), 0);
	return h_finish();
}

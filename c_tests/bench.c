/*
 * The benchmark behind `cargo run --release --example bench`: the module loaded by the host
 * harness as OpenSIPS loads it, each measure printed beside a baseline measured in the same
 * run with raw libcurl, against nginx (started and stopped here) on 127.0.0.1 and, for slow
 * answers, the scripted test server. One process = one OpenSIPS worker.
 *
 * usage: bench module.so bench.cfg nginx_dir (made by make_certs.sh: nginx's certificate, and
 *        the test CA in nginx_dir/capath for ssl_capath)
 * environment: BENCH_REQUESTS (requests per throughput measure, default 20000),
 *              BENCH_LONG_RUN (requests of the memory run, default 1000000; 0 skips it).
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static int requests = 20000;

/* ---- nginx ---- */

static pid_t nginx_pid;
static int nginx_keepalive, nginx_close, nginx_tls, nginx_tls_full;

static void start_nginx(const char *dir)
{
	char conf[4096], path[600];
	nginx_keepalive = h_closed_port();
	nginx_close = h_closed_port();
	nginx_tls = h_closed_port();
	nginx_tls_full = h_closed_port();
	snprintf(conf, sizeof conf,
		 "worker_processes 1;\nworker_rlimit_nofile 20000;\ndaemon off;\npid %s/nginx.pid;\nerror_log %s/error.log;\n"
		 "events { worker_connections 8192; }\n"
		 "http {\n access_log off;\n keepalive_requests 100000000;\n"
		 " client_body_temp_path %s; proxy_temp_path %s; fastcgi_temp_path %s;\n"
		 " uwsgi_temp_path %s; scgi_temp_path %s;\n"
		 " server { listen 127.0.0.1:%d backlog=4096; location / { return 200 \"hello from nginx\\n\"; } }\n"
		 " server { listen 127.0.0.1:%d backlog=4096; keepalive_timeout 0;"
		 " location / { return 200 \"hello from nginx\\n\"; } }\n"
		 " server { listen 127.0.0.1:%d ssl backlog=4096; keepalive_timeout 0;"
		 " ssl_certificate %s/server.pem; ssl_certificate_key %s/server.key;"
		 " location / { return 200 \"hello from nginx\\n\"; } }\n"
		 " server { listen 127.0.0.1:%d ssl backlog=4096; keepalive_timeout 0;"
		 " ssl_session_tickets off; ssl_session_cache off;"
		 " ssl_certificate %s/server.pem; ssl_certificate_key %s/server.key;"
		 " location / { return 200 \"hello from nginx\\n\"; } }\n}\n",
		 dir, dir, dir, dir, dir, dir, dir, nginx_keepalive, nginx_close, nginx_tls, dir, dir,
		 nginx_tls_full, dir, dir);
	snprintf(path, sizeof path, "%s/nginx.conf", dir);
	FILE *f = fopen(path, "w");
	fputs(conf, f);
	fclose(f);
	fflush(NULL);
	nginx_pid = fork();
	if (nginx_pid == 0) {
		execlp("nginx", "nginx", "-p", dir, "-c", path, "-e", "stderr", (char *)NULL);
		_exit(127);
	}
	/* Wait until it answers. */
	for (int i = 0; i < 100; i++) {
		char *body = h_http_get(nginx_keepalive, "/");
		int up = strstr(body, "hello") != NULL;
		free(body);
		if (up)
			return;
		usleep(50 * 1000);
	}
	fprintf(stderr, "nginx did not start (see %s/error.log)\n", dir);
	exit(3);
}

static void stop_nginx(void)
{
	if (nginx_pid > 0) {
		kill(nginx_pid, SIGTERM);
		waitpid(nginx_pid, NULL, 0);
	}
}

/* ---- helpers ---- */

static double seconds_since(long long t0_us) { return (double)(h_now_us() - t0_us) / 1e6; }

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return (x > y) - (x < y);
}

static long long percentile(long long *v, int n, double p)
{
	qsort(v, (size_t)n, sizeof *v, cmp_ll);
	int i = (int)(p * (n - 1));
	return n ? v[i] : 0;
}

static long rss_kb(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f && fscanf(f, "%ld %ld", &pages, &resident) != 2)
		resident = 0;
	if (f)
		fclose(f);
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static size_t discard(char *data, size_t size, size_t n, void *acc)
{
	(void)data;
	*(size_t *)acc += size * n;
	return size * n;
}

/* ---- 1. blocking GET ---- */

static double module_blocking(const char *url, int n)
{
	hvar body = { 0 };
	long long t0 = h_now_us();
	for (int i = 0; i < n; i++)
		if (H_CALL("rest_get", A_STR(url), A_VAR(&body)) != 1) {
			fprintf(stderr, "blocking request failed\n");
			exit(4);
		}
	hvar_reset(&body);
	return n / seconds_since(t0);
}

static double raw_blocking(const char *url, int n)
{
	CURL *easy = curl_easy_init();
	size_t received = 0;
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &received);
	long long t0 = h_now_us();
	for (int i = 0; i < n; i++)
		curl_easy_perform(easy);
	double rate = n / seconds_since(t0);
	curl_easy_cleanup(easy);
	return rate;
}

/* ---- 2, 4. async GET with K in flight ---- */

struct pump {
	const char *url;
	int started, done, failed, total;
	long long *latency_us;
	long long *start_us; /* per slot */
};

struct slot {
	struct pump *pump;
	hvar body;
	long long t0;
};

static void pump_one(struct slot *s);

static void pumped(int rc, void *arg)
{
	struct slot *s = arg;
	struct pump *p = s->pump;
	p->latency_us[p->done++] = h_now_us() - s->t0;
	p->failed += rc != 1;
	if (p->started < p->total)
		pump_one(s);
}

static void pump_one(struct slot *s)
{
	s->pump->started++;
	s->t0 = h_now_us();
	hvar_reset(&s->body);
	H_ASYNC("rest_get", 0, pumped, s, A_STR(s->pump->url), A_VAR(&s->body));
}

/* Runs `total` async GETs with `inflight` in flight; returns req/s, fills p50/p99 (us). */
static double module_async(const char *url, int inflight, int total, long long *p50, long long *p99)
{
	struct pump p = { url, 0, 0, 0, total, calloc((size_t)total, sizeof(long long)), NULL };
	struct slot *slots = calloc((size_t)inflight, sizeof *slots);
	long long t0 = h_now_us();
	for (int i = 0; i < inflight && p.started < total; i++) {
		slots[i].pump = &p;
		pump_one(&slots[i]);
	}
	while (p.done < total && h_reactor_run(1000) > 0)
		;
	double rate = p.done / seconds_since(t0);
	if (p.failed || p.done < total)
		fprintf(stderr, "  (module: %d of %d failed or unfinished)\n", p.failed + total - p.done, total);
	*p50 = percentile(p.latency_us, p.done, 0.50);
	*p99 = percentile(p.latency_us, p.done, 0.99);
	for (int i = 0; i < inflight; i++)
		hvar_reset(&slots[i].body);
	free(slots);
	free(p.latency_us);
	return rate;
}

static double raw_async(const char *url, int inflight, int total, long long *p50, long long *p99)
{
	CURLM *multi = curl_multi_init();
	CURL **easy = calloc((size_t)inflight, sizeof *easy);
	long long *t0s = calloc((size_t)inflight, sizeof *t0s);
	long long *latency = calloc((size_t)total, sizeof *latency);
	size_t received = 0;
	int started = 0, done = 0;
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)inflight);
	long long t0 = h_now_us();
	for (int i = 0; i < inflight && started < total; i++, started++) {
		easy[i] = curl_easy_init();
		curl_easy_setopt(easy[i], CURLOPT_URL, url);
		curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, &received);
		curl_easy_setopt(easy[i], CURLOPT_PRIVATE, (void *)(long)i);
		t0s[i] = h_now_us();
		curl_multi_add_handle(multi, easy[i]);
	}
	while (done < total) {
		int running;
		curl_multi_perform(multi, &running);
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			long i;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&i);
			latency[done++] = h_now_us() - t0s[i];
			curl_multi_remove_handle(multi, m->easy_handle);
			if (started < total) {
				started++;
				t0s[i] = h_now_us();
				curl_multi_add_handle(multi, m->easy_handle);
			}
		}
		if (done < total)
			curl_multi_poll(multi, NULL, 0, 1000, NULL);
	}
	double rate = done / seconds_since(t0);
	*p50 = percentile(latency, done, 0.50);
	*p99 = percentile(latency, done, 0.99);
	for (int i = 0; i < inflight; i++)
		if (easy[i])
			curl_easy_cleanup(easy[i]);
	curl_multi_cleanup(multi);
	free(easy);
	free(t0s);
	free(latency);
	return rate;
}

static void compare_async(const char *label, const char *url, int inflight, int total)
{
	long long m50, m99, r50, r99;
	double module = module_async(url, inflight, total, &m50, &m99);
	double raw = raw_async(url, inflight, total, &r50, &r99);
	printf("%-26s %5d  module %8.0f req/s  p50 %6lld us  p99 %7lld us | raw multi %8.0f req/s  p50 %6lld us  p99 %7lld us | ratio %.2f\n",
	       label, inflight, module, m50, m99, raw, r50, r99, module / raw);
}

/* ---- 3. worker blocking time of an async start on a new connection ---- */

static void ignore(int rc, void *arg) { (void)rc; (void)arg; }

static void start_cost(const char *label, const char *url, int n)
{
	long long *start = calloc((size_t)n, sizeof *start), *connect = calloc((size_t)n, sizeof *connect);
	hvar body = { 0 };
	for (int i = 0; i < n; i++) {
		long long t0 = h_now_us();
		H_ASYNC("rest_get", 0, ignore, NULL, A_STR(url), A_VAR(&body));
		start[i] = h_now_us() - t0;
		h_reactor_run(3000);
	}
	/* Baseline: how long the connect phase (TCP, and TLS) itself takes, which a module that
	 * waits for it inside the worker (the C module does) blocks at least. */
	CURL *easy = curl_easy_init();
	size_t received = 0;
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &received);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
	for (int i = 0; i < n; i++) {
		curl_off_t tcp = 0, tls = 0;
		curl_easy_perform(easy);
		curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &tcp);
		curl_easy_getinfo(easy, CURLINFO_APPCONNECT_TIME_T, &tls);
		connect[i] = tls > tcp ? tls : tcp;
	}
	curl_easy_cleanup(easy);
	hvar_reset(&body);
	long long s50 = percentile(start, n, 0.5), s99 = percentile(start, n, 0.99);
	long long c50 = percentile(connect, n, 0.5), c99 = percentile(connect, n, 0.99);
	printf("%-26s module start call p50 %5lld us  p99 %5lld us | connect phase p50 %5lld us  p99 %5lld us (+ up to connect_poll_interval per poll in the C module)\n",
	       label, s50, s99, c50, c99);
	free(start);
	free(connect);
}

/* ---- 4. worker CPU per new, verified HTTPS connection ---- */

static double cpu_us(void)
{
	struct rusage r;
	getrusage(RUSAGE_SELF, &r);
	return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

static int new_https_failed;

static void count_failure(int rc, void *arg)
{
	(void)arg;
	new_https_failed += rc != 1;
}

/* CPU time of this process (the worker) per call, each call on a new connection. */
static double module_new_https(const char *url, int n, int async)
{
	hvar body = { 0 };
	new_https_failed = 0;
	double t0 = cpu_us();
	for (int i = 0; i < n; i++) {
		if (async) {
			H_ASYNC("rest_get", 0, count_failure, NULL, A_STR(url), A_VAR(&body));
			h_reactor_run(3000);
		} else {
			count_failure(H_CALL("rest_get", A_STR(url), A_VAR(&body)), NULL);
		}
	}
	double per_call = (cpu_us() - t0) / n;
	hvar_reset(&body);
	if (new_https_failed)
		fprintf(stderr, "  (module: %d of %d HTTPS calls failed)\n", new_https_failed, n);
	return per_call;
}

/* The same with a raw easy handle and libcurl's own CA handling (its default CA bundle and
 * `capath` for each new connection): what the module cost before issue 10. */
static double raw_new_https(const char *url, const char *capath, int n)
{
	CURL *easy = curl_easy_init();
	size_t received = 0;
	int failed = 0;
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &received);
	curl_easy_setopt(easy, CURLOPT_CAPATH, capath);
	double t0 = cpu_us();
	for (int i = 0; i < n; i++)
		failed += curl_easy_perform(easy) != CURLE_OK;
	double per_call = (cpu_us() - t0) / n;
	curl_easy_cleanup(easy);
	if (failed)
		fprintf(stderr, "  (raw: %d of %d HTTPS calls failed)\n", failed, n);
	return per_call;
}

static void new_https_cost(const char *label, const char *url, const char *capath, int n)
{
	module_new_https(url, 1, 0); /* the process's trust store is built at its first use */
	double blocking = module_new_https(url, n, 0), async = module_new_https(url, n, 1);
	double raw = raw_new_https(url, capath, n);
	printf("%-26s module blocking %6.0f us  async %6.0f us CPU/call | raw easy, libcurl's CA loading %6.0f us CPU/call\n",
	       label, blocking, async, raw);
}

/* ---- 5. memory ---- */

static void memory(const char *slow_url, const char *fast_url, int long_run)
{
	enum { INFLIGHT = 1000 };
	static struct call { hvar body; } calls[INFLIGHT];
	long before = rss_kb();
	for (int i = 0; i < INFLIGHT; i++)
		H_ASYNC("rest_get", 0, ignore, NULL, A_STR(slow_url), A_VAR(&calls[i].body));
	long during = rss_kb();
	h_reactor_run(10000);
	for (int i = 0; i < INFLIGHT; i++)
		hvar_reset(&calls[i].body);
	printf("%-26s %ld KB before, %ld KB with %d in flight: %.1f KB per in-flight transfer\n",
	       "memory per transfer", before, during, INFLIGHT, (double)(during - before) / INFLIGHT);
	if (long_run <= 0)
		return;
	/* Ten rounds of the same size (so the bench's own buffers are the same each time). */
	long long p50, p99;
	long rss[10];
	for (int round = 0; round < 10; round++) {
		module_async(fast_url, 100, long_run / 10, &p50, &p99);
		rss[round] = rss_kb();
	}
	printf("%-26s %ld KB after %d requests, %ld KB after %d, %ld KB after %d: growth over the last half %ld KB\n",
	       "memory over a long run", rss[0], long_run / 10, rss[4], long_run / 2, rss[9], long_run,
	       rss[9] - rss[4]);
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (getenv("BENCH_REQUESTS"))
		requests = atoi(getenv("BENCH_REQUESTS"));
	int long_run = getenv("BENCH_LONG_RUN") ? atoi(getenv("BENCH_LONG_RUN")) : 1000000;
	curl_global_init(CURL_GLOBAL_ALL);
	h_set_log_level(-1);
	/* nginx's certificate is verified: the system CA bundle, and the test CA in ssl_capath. */
	char capath[600];
	snprintf(capath, sizeof capath, "%s/capath", argv[3]);
	h_load(argv[1]);
	CHECK_INT(h_load_cfg(argv[2]), 0);
	CHECK_INT(h_modparam("ssl_capath", 1, capath, 0), 0);
	CHECK_INT(h_mod_init(), 0);
	CHECK_INT(h_child_init(1), 0);
	start_nginx(argv[3]);
	int slow = h_start_server(NULL);

	const char *fast = h_url("http", nginx_keepalive, "/");
	printf("rest_client benchmark: one worker process, loopback, nginx %d, %d requests per measure\n\n",
	       nginx_keepalive, requests);

	/* Warm-up, then the module and raw libcurl alternately, best of 3. */
	module_blocking(fast, requests / 10);
	raw_blocking(fast, requests / 10);
	double module = 0, raw = 0;
	for (int i = 0; i < 3; i++) {
		double m = module_blocking(fast, requests), r = raw_blocking(fast, requests);
		module = m > module ? m : module;
		raw = r > raw ? r : raw;
	}
	printf("%-26s        module %8.0f req/s | raw easy loop %8.0f req/s | ratio %.2f\n\n",
	       "blocking GET, keep-alive", module, raw, module / raw);

	int inflight[] = { 1, 10, 100, 1000 };
	for (int i = 0; i < 4; i++)
		compare_async("async GET, in flight", fast, inflight[i], requests);
	printf("\n");

	start_cost("async start, new HTTP", h_url("http", nginx_close, "/"), 300);
	start_cost("async start, new HTTPS", h_url("https", nginx_tls, "/"), 300);
	printf("\n");

	new_https_cost("new HTTPS, resumed", h_url("https", nginx_tls, "/"), capath, 200);
	new_https_cost("new HTTPS, full handshake", h_url("https", nginx_tls_full, "/"), capath, 200);
	printf("%-26s (CPU of the worker process per call, each on a new verified connection)\n\n", "");

	compare_async("async GET, 50 ms backend", h_url("http", slow, "/delay?ms=50"), 200, 4000);
	printf("%-26s (the most 200 in flight can do at 50 ms each: 4000 req/s)\n\n", "");

	memory(h_url("http", slow, "/delay?ms=1000"), fast, long_run);
	stop_nginx();
	return 0;
}

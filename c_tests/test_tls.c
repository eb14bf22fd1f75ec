/*
 * HTTPS: server verification with a test CA given only through ssl_capath (never the machine's
 * CA store), each verification failure with its result code, ssl_verifyhost = 0 and
 * ssl_verifypeer = 0, client certificates from tls_mgm domains (file paths, or PEM text as
 * database domains hold it) through rest_init_client_tls, used by the next transfer only, TLS
 * sessions resumed on new connections (never across client identities), and a CA removed from
 * or added to ssl_capath taking effect at the next new connection (issue 10: the CAs and
 * client certificates are parsed once per process, not once per connection), and async calls
 * to an HTTP/2 server (nginx) multiplexed on one connection.
 * usage: test_tls module.so cfg verify|nohostcheck|noverify
 *        (cfg: tls.cfg / tls_nohostcheck.cfg / tls_noverify.cfg)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static char dir[] = "/tmp/rest_client_tls_XXXXXX";
static hvar body, code;

static char *path(const char *file)
{
	static char buf[8][512];
	static int next;
	char *p = buf[next++ % 8];
	snprintf(p, sizeof buf[0], "%s/%s", dir, file);
	return p;
}

static char *slurp(const char *file)
{
	FILE *f = fopen(file, "r");
	static char buf[2][8192];
	static int next;
	char *b = buf[next++ % 2];
	size_t n = f ? fread(b, 1, sizeof buf[0] - 1, f) : 0;
	b[n] = 0;
	if (f)
		fclose(f);
	return b;
}

/* An HTTPS test server presenting make_certs.sh's certificate `name`, with extra options. */
static int tls_server(const char *name, const char *opt1, const char *opt2, const char *opt3)
{
	char cert[512], key[512];
	snprintf(cert, sizeof cert, "%s/%s.pem", dir, name);
	snprintf(key, sizeof key, "%s/%s.key", dir, name);
	const char *args[] = { "--tls-cert", cert, "--tls-key", key, opt1, opt2, opt3, NULL };
	return h_start_server(args);
}

static int get_url(const char *url)
{
	hvar_reset(&body);
	hvar_reset(&code);
	return H_CALL("rest_get", A_STR(url), A_VAR(&body), A_NONE, A_VAR(&code));
}

static int get(int port, const char *p)
{
	return get_url(h_url("https", port, p));
}

static int body_has(const char *text) { return body.is_set && strstr(body.s, text) != NULL; }

static int async_rc;

static void async_done(int rc, void *arg)
{
	(void)arg;
	async_rc = rc;
}

static void shell(const char *fmt, const char *arg)
{
	char cmd[1200];
	snprintf(cmd, sizeof cmd, fmt, arg, arg);
	CHECK_INT(system(cmd), 0);
}

/* The sockets this process holds open. */
static int open_sockets(void)
{
	int n = 0;
	for (int fd = 0; fd < 4096; fd++) {
		char link[64], target[64];
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		ssize_t len = readlink(link, target, sizeof target - 1);
		n += len > 7 && !strncmp(target, "socket:", 7);
	}
	return n;
}

#define IDENTITIES 40 /* more than the module keeps (16) */

/* A blocking call with each client identity from `first` on, in turn. */
static void use_identities(int mtls, int first)
{
	for (int i = first; i < IDENTITIES; i++) {
		char name[32];
		snprintf(name, sizeof name, "client-db-%d", i);
		CHECK_INT(H_CALL("rest_init_client_tls", A_STR(name)), 1);
		CHECK_INT(get(mtls, "/echo"), 1);
		CHECK(body_has("\"client_cert_subject\": \"client-one\""));
	}
}

/* Issue 17, item 12: each client identity has its own connection cache, and the process keeps
 * a bounded number of them: the connections of the identities used least recently are closed,
 * an identity evicted while its transfer runs keeps its cache until that transfer ends, and
 * every identity still works (an evicted one gets a new cache). */
static void many_identities(int mtls)
{
	int before = open_sockets();
	use_identities(mtls, 0);
	int kept = open_sockets();
	printf("%d client identities used: %d more sockets open\n", IDENTITIES, kept - before);
	CHECK(kept > before && kept - before <= 16);

	/* The first identity, evicted meanwhile, again: its async call waits for the reactor
	 * while the others evict it once more. */
	CHECK_INT(H_CALL("rest_init_client_tls", A_STR("client-db-0")), 1);
	struct h_call evicted = { 0 };
	h_call_reset(&evicted);
	H_ASYNC("rest_get", 0, h_record_route, &evicted, A_STR(h_url("https", mtls, "/echo")),
		A_VAR(&evicted.body));
	use_identities(mtls, 1);
	CHECK_INT(h_reactor_run(5000), 0);
	CHECK_INT(evicted.rc, 1);
	CHECK(evicted.body.is_set && strstr(evicted.body.s, "\"client_cert_subject\": \"client-one\""));
	int after = open_sockets();
	printf("%d more, an async call among them: %d sockets open (were %d)\n", IDENTITIES, after,
	       kept);
	CHECK(after <= kept);
}

/* mtls: a server that requires a client certificate, also service "mtls" with a cache. */
static void verify(int mtls)
{
	int plain = tls_server("server", NULL, NULL, NULL);
	int rogue = tls_server("rogue", NULL, NULL, NULL);
	int optional = tls_server("server", "--client-ca", path("ca.pem"), "--client-cert-optional");
	int wronghost = tls_server("wronghost", NULL, NULL, NULL);
	int expired = tls_server("expired", NULL, NULL, NULL);

	/* The server's certificate verifies against ssl_capath; ours comes from tls_mgm. */
	CHECK_INT(H_CALL("rest_init_client_tls", A_STR("client")), 1);
	CHECK_INT(h_tls_released(), 1);
	CHECK_INT(get(mtls, "/echo"), 1);
	CHECK(body_has("\"client_cert_subject\": \"client-one\""));

	/* The certificate was for that transfer only: the server now refuses us (-10), on a new
	 * connection and without resuming the session made with the certificate. */
	CHECK_INT(get(mtls, "/echo"), -10);

	/* A database domain carries PEM text instead of file names. */
	CHECK_INT(H_CALL("rest_init_client_tls", A_STR("client-db")), 1);
	CHECK_INT(get(mtls, "/echo"), 1);
	CHECK(body_has("\"client_cert_subject\": \"client-one\""));

	/* A domain whose key is not the certificate's: the handshake is not even tried. */
	CHECK_INT(H_CALL("rest_init_client_tls", A_STR("mismatched")), 1);
	CHECK_INT(get(plain, "/echo"), -10);

	CHECK_INT(H_CALL("rest_init_client_tls", A_STR("no-such-domain")), -1);
	CHECK_INT(H_CALL("rest_init_client_tls", A_STR("")), -1);

	/* Async HTTPS: handshake and client certificate through the reactor. */
	hvar_reset(&body);
	CHECK_INT(H_CALL("rest_init_client_tls", A_STR("client")), 1);
	H_ASYNC("rest_get", 0, async_done, NULL, A_STR(h_url("https", mtls, "/echo")), A_VAR(&body));
	CHECK_INT(h_reactor_run(5000), 0);
	CHECK_INT(async_rc, 1);
	CHECK(body_has("\"client_cert_subject\": \"client-one\""));

	/* Issue 9 (7): a cached answer is for the client it was given to: without the
	 * certificate the request is made again, and refused. */
	CHECK_INT(H_CALL("rest_init_client_tls", A_STR("client")), 1);
	CHECK_INT(get_url("mtls://echo"), 1);
	CHECK(body_has("\"client_cert_subject\": \"client-one\""));
	CHECK_INT(get_url("mtls://echo"), -10);
	CHECK(!body.is_set);

	/* A new connection resumes the TLS session of the previous one (the server closes the
	 * first after /close), with a client certificate and without. */
	CHECK_INT(H_CALL("rest_init_client_tls", A_STR("client")), 1);
	CHECK_INT(get(mtls, "/close"), 1);
	CHECK_INT(H_CALL("rest_init_client_tls", A_STR("client")), 1);
	CHECK_INT(get(mtls, "/echo"), 1);
	CHECK(body_has("\"request_on_connection\": 1") && body_has("\"tls_session_reused\": true"));
	CHECK(body_has("\"client_cert_subject\": \"client-one\""));
	CHECK_INT(get(plain, "/echo"), 1);
	CHECK(body_has("\"tls_session_reused\": false"));
	CHECK_INT(get(plain, "/close"), 1);
	CHECK_INT(get(plain, "/echo"), 1);
	CHECK(body_has("\"request_on_connection\": 1") && body_has("\"tls_session_reused\": true"));

	/* A server that takes a client certificate but does not require one: a request without
	 * one never rides on the connection or the TLS session made with one. */
	CHECK_INT(H_CALL("rest_init_client_tls", A_STR("client")), 1);
	CHECK_INT(get(optional, "/echo"), 1);
	CHECK(body_has("\"client_cert_subject\": \"client-one\""));
	CHECK_INT(get(optional, "/echo"), 1);
	CHECK(body_has("\"client_cert_subject\": null") && body_has("\"tls_session_reused\": false"));
	CHECK(body_has("\"connection_id\": 2"));

	/* Verification failures, all -10 with nothing written: no CA vouches for the
	 * certificate, it names another host, it has expired. */
	CHECK_INT(get(rogue, "/echo"), -10);
	CHECK(!body.is_set);
	CHECK_INT(get(wronghost, "/echo"), -10);
	CHECK(!body.is_set);
	CHECK_INT(get(expired, "/echo"), -10);
	CHECK(!body.is_set);

	/* The CA leaves ssl_capath: the next new connection (to a server without a session to
	 * resume) no longer trusts it; it comes back: trusted again. */
	int fresh = tls_server("server", NULL, NULL, NULL);
	shell("rm %s/capath/*", dir);
	CHECK_INT(get(fresh, "/echo"), -10);
	shell("cp %s/ca.pem %s/capath/", dir);
	shell("openssl rehash %s/capath", dir);
	CHECK_INT(get(fresh, "/echo"), 1);
}

/* nginx offering HTTP/2 on a free loopback port, from this test's directory; answers each
 * request with its protocol and its connection's serial number. Stopped by stop_nginx(). */
static int start_nginx(void)
{
	int port = h_closed_port();
	FILE *conf = fopen(path("nginx.conf"), "w");
	CHECK(conf != NULL);
	if (!conf)
		return port;
	fprintf(conf,
		"worker_processes 1;\npid %s/nginx.pid;\nerror_log %s/nginx.log;\n"
		"events { worker_connections 256; }\n"
		"http {\n  access_log off;\n  client_body_temp_path %s; proxy_temp_path %s;\n"
		"  fastcgi_temp_path %s; uwsgi_temp_path %s; scgi_temp_path %s;\n"
		"  server { listen 127.0.0.1:%d ssl http2;\n"
		"    ssl_certificate %s/server.pem; ssl_certificate_key %s/server.key;\n"
		"    location / { return 200 \"$server_protocol $connection\"; } }\n}\n",
		dir, dir, dir, dir, dir, dir, dir, port, dir, dir);
	fclose(conf);
	shell("nginx -e %s/nginx.log -p %s -c nginx.conf", dir);
	return port;
}

static void stop_nginx(void)
{
	shell("nginx -e %s/nginx.log -p %s -c nginx.conf -s stop", dir);
}

static void http2_multiplexing(void)
{
	enum { N = 20 };
	int port = start_nginx();
	const char *u = h_url("https", port, "/");
	/* The first call opens the connection (HTTP/2 through ALPN). */
	struct h_call first = { 0 };
	h_call_reset(&first);
	H_ASYNC("rest_get", 0, h_record_route, &first, A_STR(u), A_VAR(&first.body));
	CHECK_INT(h_reactor_run(5000), 0);
	CHECK_INT(first.rc, 1);
	CHECK(first.body.is_set && strncmp(first.body.s, "HTTP/2.0 ", 9) == 0);
	/* N calls in flight at once all ride on it, as streams of the one connection. */
	static struct h_call calls[N];
	for (int i = 0; i < N; i++) {
		/* A call may end within its start: libcurl reads the connection's other streams. */
		h_call_reset(&calls[i]);
		H_ASYNC("rest_get", 0, h_record_route, &calls[i], A_STR(u), A_VAR(&calls[i].body));
	}
	CHECK_INT(h_reactor_run(5000), 0);
	for (int i = 0; i < N; i++) {
		CHECK_INT(calls[i].runs, 1);
		CHECK_INT(calls[i].rc, 1);
		CHECK_STR(&calls[i].body, first.body.s);
	}
	/* A blocking call shares the process's connections too. */
	CHECK_INT(get_url(u), 1);
	CHECK_STR(&body, first.body.s);
	stop_nginx();
}

int main(int argc, char **argv)
{
	if (argc < 4 || !mkdtemp(dir))
		return 2;
	const char *mode = argv[3];
	shell("sh c_tests/make_certs.sh %s", dir);
	h_load(argv[1]);
	CHECK_INT(h_load_cfg(argv[2]), 0);
	CHECK_INT(h_modparam("ssl_capath", 1, path("capath"), 0), 0);
	h_tls_add_client_domain("client", path("client.pem"), path("client.key"));
	h_tls_add_client_domain("client-db", slurp(path("client.pem")), slurp(path("client.key")));
	h_tls_add_client_domain("mismatched", path("client.pem"), path("server.key"));
	/* As many database domains of the same certificate, each another PEM text (a renewed
	 * domain, or one per tls_reload): another client identity each. */
	for (int i = 0; i < IDENTITIES; i++) {
		char name[32], cert[8192];
		snprintf(name, sizeof name, "client-db-%d", i);
		snprintf(cert, sizeof cert, "%s# identity %d\n", slurp(path("client.pem")), i);
		h_tls_add_client_domain(name, cert, slurp(path("client.key")));
	}
	int mtls = tls_server("server", "--client-ca", path("ca.pem"), NULL);
	char service[128];
	snprintf(service, sizeof service, "name=mtls; url=https://127.0.0.1:%d/; cache_ttl=60", mtls);
	CHECK_INT(h_modparam("service", 1, service, 0), 0);
	CHECK_INT(h_mod_init(), 0);
	CHECK_INT(h_child_init(1), 0);

	if (strcmp(mode, "verify") == 0) {
		verify(mtls);
		many_identities(mtls);
		http2_multiplexing();
	} else if (strcmp(mode, "nohostcheck") == 0) {
		/* ssl_verifyhost = 0: any host name, but still a trusted and valid certificate. */
		CHECK_INT(get(tls_server("wronghost", NULL, NULL, NULL), "/echo"), 1);
		CHECK_INT(get(tls_server("rogue", NULL, NULL, NULL), "/echo"), -10);
		CHECK_INT(get(tls_server("expired", NULL, NULL, NULL), "/echo"), -10);
	} else {
		/* ssl_verifypeer = 0 and ssl_verifyhost = 0: any certificate. */
		CHECK_INT(get(tls_server("rogue", NULL, NULL, NULL), "/echo"), 1);
		CHECK_INT(code.ri, 200);
		CHECK_INT(get(tls_server("expired", NULL, NULL, NULL), "/echo"), 1);
	}
	shell("rm -rf %s", dir);
	return h_finish();
}

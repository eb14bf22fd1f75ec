/*
 * HTTPS: CA verification through ssl_capath, ssl_verifypeer/ssl_verifyhost = 0, and client
 * certificates from tls_mgm domains (file paths, or PEM text as database domains hold it)
 * through rest_init_client_tls, used by the next transfer only.
 * usage: test_tls module.so cfg verify|noverify   (cfg: tls.cfg / tls_noverify.cfg)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int async_rc;

static void async_done(int rc, void *arg)
{
	(void)arg;
	async_rc = rc;
}

int main(int argc, char **argv)
{
	if (argc < 4 || !mkdtemp(dir))
		return 2;
	int verify = strcmp(argv[3], "verify") == 0;
	char cmd[600];
	snprintf(cmd, sizeof cmd, "sh c_tests/make_certs.sh %s", dir);
	if (system(cmd) != 0) {
		fprintf(stderr, "make_certs.sh failed\n");
		return 2;
	}
	h_load(argv[1]);
	CHECK_INT(h_load_cfg(argv[2]), 0);
	CHECK_INT(h_modparam("ssl_capath", 1, path("capath"), 0), 0);
	h_tls_add_client_domain("client", path("client.pem"), path("client.key"));
	h_tls_add_client_domain("client-db", slurp(path("client.pem")), slurp(path("client.key")));
	const char *mtls_args[] = { "--tls-cert", path("server.pem"), "--tls-key", path("server.key"),
				    "--client-ca", path("ca.pem"), NULL };
	const char *rogue_args[] = { "--tls-cert", path("rogue.pem"), "--tls-key", path("rogue.key"), NULL };
	int mtls = h_start_server(mtls_args);
	int rogue = h_start_server(rogue_args);
	char service[128];
	snprintf(service, sizeof service, "name=mtls; url=https://127.0.0.1:%d/; cache_ttl=60", mtls);
	CHECK_INT(h_modparam("service", 1, service, 0), 0);
	CHECK_INT(h_mod_init(), 0);
	CHECK_INT(h_child_init(1), 0);

	if (verify) {
		/* The server's certificate verifies against ssl_capath; ours comes from tls_mgm. */
		CHECK_INT(H_CALL("rest_init_client_tls", A_STR("client")), 1);
		CHECK_INT(h_tls_released(), 1);
		CHECK_INT(get(mtls, "/echo"), 1);
		CHECK(body.is_set && strstr(body.s, "\"client_cert_subject\": \"client-one\""));

		/* The certificate was for that transfer only: the server now refuses us. */
		CHECK_INT(get(mtls, "/echo"), -10);

		/* A database domain carries PEM text instead of file names. */
		CHECK_INT(H_CALL("rest_init_client_tls", A_STR("client-db")), 1);
		CHECK_INT(get(mtls, "/echo"), 1);
		CHECK(body.is_set && strstr(body.s, "\"client_cert_subject\": \"client-one\""));

		CHECK_INT(H_CALL("rest_init_client_tls", A_STR("no-such-domain")), -1);
		CHECK_INT(H_CALL("rest_init_client_tls", A_STR("")), -1);

		/* Async HTTPS: handshake and client certificate through the reactor. */
		hvar_reset(&body);
		CHECK_INT(H_CALL("rest_init_client_tls", A_STR("client")), 1);
		H_ASYNC("rest_get", 0, async_done, NULL, A_STR(h_url("https", mtls, "/echo")), A_VAR(&body));
		CHECK_INT(h_reactor_run(5000), 0);
		CHECK_INT(async_rc, 1);
		CHECK(body.is_set && strstr(body.s, "\"client_cert_subject\": \"client-one\""));

		/* Issue 9 (7): a cached answer is for the client it was given to: without the
		 * certificate the request is made again, and refused. */
		CHECK_INT(H_CALL("rest_init_client_tls", A_STR("client")), 1);
		CHECK_INT(get_url("mtls://echo"), 1);
		CHECK(body.is_set && strstr(body.s, "\"client_cert_subject\": \"client-one\""));
		CHECK_INT(get_url("mtls://echo"), -10);
		CHECK(!body.is_set);

		/* A certificate no CA in ssl_capath vouches for. */
		CHECK_INT(get(rogue, "/echo"), -10);
		CHECK(!body.is_set);
	} else {
		/* ssl_verifypeer = 0 and ssl_verifyhost = 0. */
		CHECK_INT(get(rogue, "/echo"), 1);
		CHECK_INT(code.ri, 200);
	}
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	CHECK_INT(system(cmd), 0);
	return h_finish();
}

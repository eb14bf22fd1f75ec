/*
 * The demo behind `cargo run --example demo`: loads the module like OpenSIPS, applies
 * modules/demo.cfg's modparam lines, starts the scripted test server on loopback and calls
 * each script function, printing what a script would see.
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"

static hvar body = { .name = "$var(body)" }, ctype = { .name = "$var(ct)" }, code = { .name = "$var(code)" };

static const char *show(const hvar *v)
{
	static char buf[4][200];
	static int next;
	char *b = buf[next++ % 4];
	if (!v->is_set)
		return "<unset>";
	if (v->is_int)
		snprintf(b, sizeof buf[0], "%d", v->ri);
	else
		snprintf(b, sizeof buf[0], "\"%.150s%s\"", v->s, v->len > 150 ? "..." : "");
	return b;
}

static void report(const char *call, int rc)
{
	printf("%-58s $rc=%-3d code=%s ctype=%s\n    body=%s\n", call, rc, show(&code), show(&ctype), show(&body));
	hvar_reset(&body);
	hvar_reset(&ctype);
	hvar_reset(&code);
}

static const char *at(int port, const char *path)
{
	return h_url("http", port, path);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	h_load(argv[1]);
	if (h_load_cfg(argv[2]) || h_mod_init() || h_child_init(1))
		return 1;
	int port = h_start_server(NULL);
	printf("module %s loaded, test server on 127.0.0.1:%d\n\n", argv[1], port);

	report("rest_get(\"/ctype?value=application/json\")",
	       H_CALL("rest_get", A_STR(at(port, "/ctype?value=application/json")), A_VAR(&body), A_VAR(&ctype), A_VAR(&code)));
	H_CALL("rest_append_hf", A_STR("X-Auth-Token: demo"));
	report("rest_append_hf(\"X-Auth-Token: demo\"); rest_post(\"/echo\")",
	       H_CALL("rest_post", A_STR(at(port, "/echo")), A_STR("{\"id\": 7}"), A_STR("application/json"),
		      A_VAR(&body), A_VAR(&ctype), A_VAR(&code)));
	report("rest_put(\"/status/404\")",
	       H_CALL("rest_put", A_STR(at(port, "/status/404")), A_STR("x"), A_NONE, A_VAR(&body), A_NONE, A_VAR(&code)));
	report("rest_get(\"/stall-headers\")  (curl_timeout 2 s)",
	       H_CALL("rest_get", A_STR(at(port, "/stall-headers")), A_VAR(&body), A_NONE, A_VAR(&code)));
	report("rest_get(closed port)",
	       H_CALL("rest_get", A_STR(at(h_closed_port(), "/")), A_VAR(&body), A_NONE, A_VAR(&code)));
	char *out;
	h_transform("rest", "escape", "a b/&=\xc3\xbc", &out);
	printf("$(var(s){rest.escape}) with s = \"a b/&=\xc3\xbc\" -> \"%s\"\n", out);
	return 0;
}

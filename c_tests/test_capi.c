/*
 * The host-neutral C API of include/rest_client.h, used by a host that dlopens the module:
 * requests, responses, ownership, NULL/invalid arguments, and what a request may not do.
 * usage: test_capi module.so
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "rest_client.h"

#define BIND(handle, fn) __typeof__(&fn) p_##fn = (__typeof__(&fn))dlsym(handle, #fn)

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	void *so = dlopen(argv[1], RTLD_NOW);
	if (!so) {
		fprintf(stderr, "%s\n", dlerror());
		return 2;
	}
	BIND(so, rcl_client_new);
	BIND(so, rcl_client_free);
	BIND(so, rcl_request);
	BIND(so, rcl_response_free);
	CHECK(p_rcl_client_new && p_rcl_client_free && p_rcl_request && p_rcl_response_free);

	int port = h_start_server(NULL);
	char url[128];
	int len = snprintf(url, sizeof url, "http://127.0.0.1:%d/echo?x=1", port);
	RclClient *client = p_rcl_client_new(1000, 2000);
	CHECK(client != NULL);

	RclResponse r;
	memset(&r, 0, sizeof r);
	/* The URL is passed with its length: the '?x=1' tail is cut off here. */
	CHECK_INT(p_rcl_request(client, "POST", (const uint8_t *)url, (size_t)len - 4,
				(const uint8_t *)"hello", 5, "text/plain", &r), 1);
	CHECK_INT(r.status, 200);
	CHECK(r.body && memmem(r.body, r.body_len, "\"path\": \"/echo\"", 15));
	CHECK(r.body && memmem(r.body, r.body_len, "\"body\": \"hello\"", 15));
	CHECK(r.content_type && r.content_type_len == 16 && !memcmp(r.content_type, "application/json", 16));
	p_rcl_response_free(&r);
	CHECK(r.body == NULL && r.content_type == NULL);
	p_rcl_response_free(&r); /* freeing twice is harmless once cleared */
	p_rcl_response_free(NULL);

	len = snprintf(url, sizeof url, "http://127.0.0.1:%d/", h_closed_port());
	CHECK_INT(p_rcl_request(client, "GET", (const uint8_t *)url, (size_t)len, NULL, 0, NULL, &r), -1);
	CHECK_INT(r.status, 0);
	p_rcl_response_free(&r);

	/* Bad arguments: -10, nothing filled, no crash. */
	memset(&r, 0, sizeof r);
	CHECK_INT(p_rcl_request(NULL, "GET", (const uint8_t *)url, (size_t)len, NULL, 0, NULL, &r), -10);
	CHECK_INT(p_rcl_request(client, "BREW", (const uint8_t *)url, (size_t)len, NULL, 0, NULL, &r), -10);
	CHECK_INT(p_rcl_request(client, "GET", NULL, 5, NULL, 0, NULL, &r), -10);
	CHECK_INT(p_rcl_request(client, "POST", (const uint8_t *)url, (size_t)len, NULL, 3, NULL, &r), -10);
	CHECK_INT(p_rcl_request(client, "GET", (const uint8_t *)url, (size_t)len, NULL, 0, NULL, NULL), -10);
	CHECK(r.body == NULL);

	/* Issue 9, items 9 and 11: only http and https; no CR or LF in the content type. */
	len = snprintf(url, sizeof url, "gopher://127.0.0.1:%d/x", port);
	CHECK_INT(p_rcl_request(client, "GET", (const uint8_t *)url, (size_t)len, NULL, 0, NULL, &r), -10);
	p_rcl_response_free(&r);
	CHECK_INT(p_rcl_request(client, "GET", (const uint8_t *)"file:/etc/hostname", 18, NULL, 0, NULL, &r), -10);
	CHECK_INT(r.body_len, 0);
	p_rcl_response_free(&r);
	len = snprintf(url, sizeof url, "http://127.0.0.1:%d/echo", port);
	CHECK_INT(p_rcl_request(client, "POST", (const uint8_t *)url, (size_t)len, (const uint8_t *)"a", 1,
				"text/plain\r\nX-Injected: 1", &r), -10);
	CHECK(r.body == NULL);

	p_rcl_client_free(client);
	p_rcl_client_free(NULL);
	return h_finish();
}

/*
 * LD_PRELOAD library for the DNS tests: getaddrinfo() for the name "slow-dns.test" sleeps
 * 5 s (a DNS brownout), for "N.slow-dns.test" N seconds, then answers 127.0.0.1; every other
 * name goes to the C library. libcurl's threaded resolver calls it from its lookup thread.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
			      struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	getaddrinfo_fn real = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
	static const char suffix[] = "slow-dns.test";
	size_t len = node ? strlen(node) : 0, suffix_len = sizeof suffix - 1;
	if (len >= suffix_len && strcmp(node + len - suffix_len, suffix) == 0) {
		sleep(len == suffix_len ? 5 : (unsigned)atoi(node));
		node = "127.0.0.1";
	}
	return real(node, service, hints, res);
}

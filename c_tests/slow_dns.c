/*
 * LD_PRELOAD library for the DNS tests: getaddrinfo() for the name "slow-dns.test" sleeps
 * 5 s (a DNS brownout), then answers 127.0.0.1; every other name goes to the C library.
 * libcurl's threaded resolver calls it from its lookup thread.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
			      struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	getaddrinfo_fn real = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
	if (node && strcmp(node, "slow-dns.test") == 0) {
		sleep(5);
		node = "127.0.0.1";
	}
	return real(node, service, hints, res);
}

/*
 * Loading and starting the module: version check, modparam types, parameter validation in
 * mod_init, tls_mgm binding. Prints what happened for tests/c_harness.rs to check.
 * usage: test_startup module.so cfg
 */
#include <stdio.h>

#include "harness.h"

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	h_load(argv[1]);
	printf("loaded\n");
	int cfg = h_load_cfg(argv[2]);
	printf("cfg=%d\n", cfg);
	if (cfg == 0)
		printf("mod_init=%d\n", h_mod_init());
	return 0;
}

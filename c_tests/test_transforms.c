/* {rest.escape}, {rest.unescape}, {rest.escape_path} and {rest.escape_xml}: parsing and
 * evaluation as the core drives them, and how long their outputs stay readable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static void check_eval(const char *spec, const char *input, int want_rc, const char *want)
{
	char *out = NULL;
	int rc = h_transform("rest", spec, input, &out);
	CHECK_INT(rc, want_rc);
	if (want) {
		if (!out || strcmp(out, want))
			fprintf(stderr, "  {rest.%s}('%s') = '%s', want '%s'\n", spec, input, out ? out : "(null)", want);
		CHECK(out && strcmp(out, want) == 0);
	} else {
		CHECK(out == NULL);
	}
	free(out);
}

/* Issue 17 item 2: the core keeps the value of each argument while it evaluates the next ones
 * (up to 8 before a function runs, 2 in an `if`), and a chain hands one output to the next
 * transformation: 8 arguments of two chained {rest.*} each (16 evaluations) are all still
 * readable when the function runs (built with AddressSanitizer: a freed one fails the run). */
static void test_outputs_outlive_later_evaluations(void)
{
	enum { ARGS = 8 };
	char inputs[ARGS][16], want[ARGS][32];
	pv_value_t args[ARGS];
	for (int i = 0; i < ARGS; i++) {
		/* Not NUL-terminated, as the core's values. */
		int len = snprintf(inputs[i], sizeof inputs[i], "a b/%d}", i) - 1;
		snprintf(want[i], sizeof want[i], "a%%2520b%%252F%d", i);
		args[i] = (pv_value_t){ .rs = { inputs[i], len }, .flags = PV_VAL_STR };
		CHECK_INT(h_transform_value("rest", "escape", &args[i]), 0);
		CHECK_INT(h_transform_value("rest", "escape", &args[i]), 0);
	}
	for (int i = 0; i < ARGS; i++) {
		int ok = args[i].rs.len == (int)strlen(want[i]) &&
			 memcmp(args[i].rs.s, want[i], strlen(want[i])) == 0;
		if (!ok)
			fprintf(stderr, "  argument %d = '%.*s', want '%s'\n", i, args[i].rs.len,
				args[i].rs.s, want[i]);
		CHECK(ok);
	}
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	h_start_as_worker(argv[1], argv[2]);

	check_eval("escape", "a b/&=\xc3\xbc~._-", 0, "a%20b%2F%26%3D%C3%BC~._-");
	check_eval("unescape", "a%20b%2F%26%3D%C3%BC~._-", 0, "a b/&=\xc3\xbc~._-");
	check_eval("unescape", "a+b%zz%4", 0, "a+b%zz%4");
	check_eval("escape", "plain", 0, "plain");
	/* escape_path keeps '/' (issue 13), and encodes everything else escape does. */
	check_eval("escape_path", "/users/a b/\xc3\xbc?x=1#f%/", 0, "/users/a%20b/%C3%BC%3Fx%3D1%23f%25/");
	check_eval("escape_path", "a/b", 0, "a/b");
	check_eval("escape", "a/b", 0, "a%2Fb");
	check_eval("escape_path", NULL, 0, NULL);
	check_eval("escape_path", "", -1, NULL);
	/* escape_xml: entities for & < > " ', no control bytes XML cannot carry (issue 13). */
	check_eval("escape_xml", "<b>Tom & \"Jerry's\"</b>\t\x1b\xc3\xbc", 0,
		   "&lt;b&gt;Tom &amp; &quot;Jerry&apos;s&quot;&lt;/b&gt;\t\xc3\xbc");
	check_eval("escape_xml", NULL, 0, NULL);
	check_eval("escape_xml", "", -1, NULL);
	/* NULL passes through; an empty string becomes NULL with an error. */
	check_eval("escape", NULL, 0, NULL);
	check_eval("escape", "", -1, NULL);
	check_eval("unescape", "", -1, NULL);

	/* Parse errors stop the script from loading. */
	char *out;
	CHECK_INT(h_transform("rest", "escape,x", "a", &out), H_PARSE_ERROR);
	CHECK_INT(h_transform("rest", "Escape", "a", &out), H_PARSE_ERROR);
	CHECK_INT(h_transform("rest", "quote", "a", &out), H_PARSE_ERROR);
	CHECK_INT(h_transform("rest", "escape_path,x", "a", &out), H_PARSE_ERROR);
	CHECK_INT(h_transform("REST", "escape", "a b", &out), 0);
	CHECK(out && strcmp(out, "a%20b") == 0);
	free(out);

	test_outputs_outlive_later_evaluations();
	return h_finish();
}

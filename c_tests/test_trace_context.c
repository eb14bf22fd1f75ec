/*
 * W3C trace context (trace_context): the scripted server's /echo shows the request headers.
 *   on  (trace_context.cfg): every request carries a valid traceparent and the configured
 *       tracestate; one SIP message's calls (blocking, async, another worker process) share a
 *       trace id, each with a span of its own, another message gets another; the message's own
 *       valid traceparent is continued (with its tracestate), an invalid one ignored; one the
 *       script appended wins; a timer route's calls belong to no call; OpenSIPS 4.0's
 *       opentelemetry span is sent as it is; a cached service's answer is still cached.
 *   off (blocking.cfg): no trace context, even for a message that has one.
 * usage: test_trace_context module.so cfg on|off
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define CALL_ID "a84b4c76e66710@pc33.example.com"
#define INCOMING "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static int port;
static struct h_call call;

/* A traceparent as the server saw it: the whole value and its two ids. */
struct seen {
	char value[64], trace_id[33], span_id[17];
	int flags;
};

/* The value of the header `name` in /echo's JSON `body` (NULL when absent); how many such
 * headers there are in *count. */
static const char *echoed(const char *body, const char *name, int *count, char *value, size_t size)
{
	char needle[64];
	snprintf(needle, sizeof needle, "[\"%s\", \"", name);
	const char *found = NULL;
	*count = 0;
	for (const char *at = body; (at = strstr(at, needle)); at += strlen(needle)) {
		if (!found)
			found = at + strlen(needle);
		(*count)++;
	}
	if (!found)
		return NULL;
	size_t n = strcspn(found, "\"");
	snprintf(value, size, "%.*s", (int)(n < size ? n : size - 1), found);
	return value;
}

static int is_lower_hex(const char *s, size_t n)
{
	int nonzero = 0;
	for (size_t i = 0; i < n; i++) {
		if (!strchr("0123456789abcdef", s[i]) || !s[i])
			return 0;
		nonzero |= s[i] != '0';
	}
	return nonzero;
}

/* The one traceparent of an /echo answer, checked: version 00, 32 and 16 lowercase hex
 * digits not all zero, 2 hex flag digits. */
static struct seen parse_seen(const char *body)
{
	struct seen seen = { .flags = -1 };
	int count;
	if (!body || !echoed(body, "traceparent", &count, seen.value, sizeof seen.value)) {
		CHECK(!"the request had a traceparent");
		return seen;
	}
	CHECK_INT(count, 1);
	const char *v = seen.value;
	int valid = strlen(v) == 55 && !strncmp(v, "00-", 3) && is_lower_hex(v + 3, 32) &&
		    v[35] == '-' && is_lower_hex(v + 36, 16) && v[52] == '-' &&
		    strchr("0123456789abcdef", v[53]) && strchr("0123456789abcdef", v[54]);
	if (!valid)
		fprintf(stderr, "  traceparent '%s' is not a valid version 00 one\n", v);
	CHECK(valid);
	snprintf(seen.trace_id, sizeof seen.trace_id, "%.32s", v + 3);
	snprintf(seen.span_id, sizeof seen.span_id, "%.16s", v + 36);
	seen.flags = (int)strtol(v + 53, NULL, 16);
	return seen;
}

static const char *get_echo(void)
{
	h_call_reset(&call);
	CHECK_INT(H_CALL("rest_get", A_STR(h_url("http", port, "/echo")), A_VAR(&call.body), A_NONE,
			 A_VAR(&call.code)), 1);
	return call.body.is_set ? call.body.s : NULL;
}

static struct seen traced_get(void) { return parse_seen(get_echo()); }

/* The tracestate the server saw (NULL when none). */
static const char *seen_state(char *value, size_t size)
{
	int count;
	const char *state = echoed(call.body.s, "tracestate", &count, value, size);
	CHECK(count <= 1);
	return state;
}

static void new_message(const char *call_id)
{
	h_new_message();
	h_set_call_id(call_id);
}

static void test_one_message_one_trace(void)
{
	new_message(CALL_ID);
	struct seen first = traced_get(), second = traced_get();
	CHECK(!strcmp(first.trace_id, second.trace_id));
	CHECK(strcmp(first.span_id, second.span_id));
	CHECK_INT(first.flags, 1);
	char state[128];
	CHECK(seen_state(state, sizeof state) && !strcmp(state, "opensips=rest"));

	new_message("another-call@pc33.example.com");
	struct seen other = traced_get();
	CHECK(strcmp(other.trace_id, first.trace_id));

	/* The same Call-ID gives the same trace again (it is derived, not remembered). */
	new_message(CALL_ID);
	CHECK(!strcmp(traced_get().trace_id, first.trace_id));
}

static void test_async_call(void)
{
	new_message(CALL_ID);
	struct seen blocking = traced_get();
	h_call_reset(&call);
	H_ASYNC("rest_get", 0, h_record_route, &call, A_STR(h_url("http", port, "/echo")),
		A_VAR(&call.body), A_NONE, A_VAR(&call.code));
	h_reactor_run(3000);
	CHECK_INT(call.runs, 1);
	struct seen async = parse_seen(call.body.is_set ? call.body.s : NULL);
	CHECK(!strcmp(async.trace_id, blocking.trace_id));
	CHECK(strcmp(async.span_id, blocking.span_id));
}

/* A SIP worker forked from this process: the same Call-ID gives the same trace id. */
static int other_process(int rank, void *expected_trace_id)
{
	(void)rank;
	new_message(CALL_ID);
	CHECK(!strcmp(traced_get().trace_id, expected_trace_id));
	return 0;
}

static void test_every_process_derives_the_same_trace(void)
{
	new_message(CALL_ID);
	static struct seen here;
	here = traced_get();
	h_fork_worker(2, other_process, here.trace_id);
	CHECK_INT(h_wait_workers(), 0);
}

static void test_the_messages_traceparent_is_continued(void)
{
	new_message(CALL_ID);
	struct seen derived = traced_get();
	new_message(CALL_ID);
	h_add_header("TraceParent", INCOMING);
	h_add_header("tracestate", "opensips=old,vendor=a");
	struct seen continued = traced_get();
	CHECK(!strcmp(continued.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736"));
	CHECK(strcmp(continued.span_id, "00f067aa0ba902b7"));
	char state[128];
	CHECK(seen_state(state, sizeof state) && !strcmp(state, "opensips=rest,vendor=a"));

	/* Invalid ones are ignored: the trace comes from the Call-ID. */
	const char *invalid[] = {
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
	};
	for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
		new_message(CALL_ID);
		h_add_header("traceparent", invalid[i]);
		h_add_header("tracestate", "vendor=a");
		CHECK(!strcmp(traced_get().trace_id, derived.trace_id));
		CHECK(seen_state(state, sizeof state) && !strcmp(state, "opensips=rest"));
	}
}

static void test_the_scripts_own_traceparent_wins(void)
{
	new_message(CALL_ID);
	const char *own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
	char line[128];
	snprintf(line, sizeof line, "traceparent: %s", own);
	CHECK_INT(H_CALL("rest_append_hf", A_STR(line)), 1);
	struct seen seen = traced_get();
	CHECK(!strcmp(seen.value, own));
	char state[128];
	CHECK(seen_state(state, sizeof state) == NULL);
	/* Only for the call it was appended for. */
	CHECK(strcmp(traced_get().value, own));
}

static void timer_route_get(int rc, void *arg)
{
	(void)rc;
	struct seen *seen = arg;
	*seen = traced_get();
}

static void test_a_timer_route_belongs_to_no_call(void)
{
	new_message(CALL_ID);
	struct seen of_call = traced_get();
	struct seen first, second;
	h_timer_route(timer_route_get, &first);
	h_timer_route(timer_route_get, &second);
	CHECK(strcmp(first.trace_id, second.trace_id));
	CHECK(strcmp(first.trace_id, of_call.trace_id));
}

static void test_the_opentelemetry_span_is_sent_as_it_is(void)
{
	new_message(CALL_ID);
	h_add_header("traceparent", INCOMING);
	h_profiling_span("5bd66ef5095369c7b0d1f8f4bd33716a", "c32d953d73ad2251", 0);
	struct seen seen = traced_get();
	h_profiling_span(NULL, NULL, 0);
	CHECK(!strcmp(seen.value, "00-5bd66ef5095369c7b0d1f8f4bd33716a-c32d953d73ad2251-00"));
	char state[128];
	CHECK(seen_state(state, sizeof state) && !strcmp(state, "opensips=rest"));
}

static void test_a_cached_answer_stays_cached(void)
{
	new_message(CALL_ID);
	int before = h_server_stat(port, "requests");
	for (int i = 0; i < 2; i++) {
		h_call_reset(&call);
		CHECK_INT(H_CALL("rest_get", A_STR("cached://echo"), A_VAR(&call.body), A_NONE,
				 A_VAR(&call.code)), 1);
		parse_seen(call.body.is_set ? call.body.s : NULL);
	}
	CHECK_INT(h_server_stat(port, "requests") - before, 1);
}

static void test_off_by_default(void)
{
	new_message(CALL_ID);
	h_add_header("traceparent", INCOMING);
	const char *body = get_echo();
	CHECK(body && !strcasestr(body, "traceparent") && !strcasestr(body, "tracestate"));
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s module.so cfg on|off\n", argv[0]);
		return 2;
	}
	port = h_start_server(NULL);
	h_load(argv[1]);
	CHECK_INT(h_load_cfg(argv[2]), 0);
	int on = !strcmp(argv[3], "on");
	if (on)
		CHECK_INT(h_service("name=cached; url=http://127.0.0.1:%d/; cache_ttl=60", port), 0);
	CHECK_INT(h_mod_init(), 0);
	CHECK_INT(h_child_init(1), 0);
	if (on) {
		test_one_message_one_trace();
		test_async_call();
		test_every_process_derives_the_same_trace();
		test_the_messages_traceparent_is_continued();
		test_the_scripts_own_traceparent_wins();
		test_a_timer_route_belongs_to_no_call();
		test_the_opentelemetry_span_is_sent_as_it_is();
		test_a_cached_answer_stays_cached();
	} else {
		test_off_by_default();
	}
	return h_finish();
}

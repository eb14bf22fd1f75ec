/*
 * A small OpenSIPS host for tests: it loads the module the way the OpenSIPS core does
 * (dlopen RTLD_NOW, dlsym "exports", version check, modparam lines from a cfg file, mod_init,
 * forked workers with child_init), exports the core symbols the module looks up, and calls
 * script functions and transformations with the core's argument conventions.
 *
 * Every string argument is handed over as a `str` whose bytes are NOT NUL-terminated, and the
 * undeclared parameter slots hold a poison pointer, so a module that relies on either fails.
 */
#ifndef REST_HARNESS_H
#define REST_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

/* ---- core types (x86_64 layouts) ---- */
typedef struct { char *s; int len; } str;
typedef struct { str rs; int ri; int flags; } pv_value_t;

#define PV_VAL_NULL 1
#define PV_VAL_STR 4
#define PV_VAL_INT 8
#define PV_TYPE_INT 16

/* A script variable: what the module receives as `pv_spec_t *` (opaque to it). */
typedef struct hvar {
	const char *name;
	int is_set;      /* 0: never written */
	int is_int;
	int ri;
	char *s;         /* NUL-terminated copy of the string value */
	int len;
	int writes;      /* how many times the module wrote it */
} hvar;

/* ---- arguments of a script function call ---- */
enum h_arg_kind { H_NONE, H_STR, H_VAR, H_INT };
typedef struct { enum h_arg_kind kind; const char *s; int len; hvar *var; } h_arg;
#define A_STR(x) ((h_arg){H_STR, (x), -1, NULL})
#define A_STRN(x, n) ((h_arg){H_STR, (x), (n), NULL})
#define A_VAR(v) ((h_arg){H_VAR, NULL, 0, (v)})
#define A_INT(i) ((h_arg){H_INT, NULL, (i), NULL})
#define A_NONE ((h_arg){H_NONE, NULL, 0, NULL})

/* Returned by h_call when the core would have refused the call at parse time. */
#define H_PARSE_ERROR (-1000)

/* ---- host life cycle ---- */
/* dlopen + exports + version check (mismatch: message and exit(1), like the core). */
void h_load(const char *so_path);
/* Applies every `modparam("rest_client", "name", value)` line of a cfg file, and notes
 * which functions the cfg calls (for is_script_func_used) and whether it loads tls_mgm. */
int h_load_cfg(const char *cfg_path);
/* One modparam: `is_str` selects STR_PARAM (value) or INT_PARAM (ivalue). */
int h_modparam(const char *name, int is_str, const char *value, int ivalue);
/* A `service` modparam whose definition is printf-formatted (e.g. with the server's port). */
int h_service(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* mod_init, then (when it succeeded) the registration of the module's statistics. */
int h_mod_init(void);
/* A module statistic's value (the sum over every process), or -1 if there is none. */
long h_stat(const char *name);
/* Its stat_export_t flags (STAT_NO_RESET = 1), or -1. */
int h_stat_flags(const char *name);
/* Runs the module's MI command (its first recipe; param_value is the value of its one
 * parameter, if it has one) as the core's MI layer would; returns its response as JSON text
 * (malloc'd), or NULL for no such command or no response. */
char *h_mi(const char *command, const char *param_value);
int h_child_init(int rank);
/* The usual start of a test: load, cfg, mod_init and child_init(1) in this process (a failed
 * step is a failed check). */
void h_start_as_worker(const char *so_path, const char *cfg_path);
/* The same with the test server (h_start_server(NULL)) started first and, before mod_init, a
 * `service` for each definition of the NULL-terminated list (h_service formats, given the
 * server's port); returns that port. */
int h_start_worker_with_server(const char *so_path, const char *cfg_path,
			       const char *const *services);

/* Calls a script function by name with the core's conventions. */
int h_call(const char *name, int argc, const h_arg *args);
#define H_CALL(name, ...) \
	h_call(name, (int)(sizeof((h_arg[]){__VA_ARGS__}) / sizeof(h_arg)), (h_arg[]){__VA_ARGS__})

/* ---- async: tm's t_handle_async / t_resume_async (docs §5.3-5.4) ---- */
/* The resume route: runs with $rc = rc once the call is over. */
typedef void (*h_resume_route)(int rc, void *arg);
/* An async call as a test sees it: its output variables and what its route saw. */
struct h_call {
	hvar body, ctype, code;
	int rc;                        /* $rc of the route's last run */
	int runs;                      /* how often the route ran */
	long long started_us, done_us; /* h_call_reset, the route's last run */
};
/* A resume (or report) route that records its run in the h_call its argument points to. */
void h_record_route(int rc, void *arg);
/* Clears the call's variables and record, and notes its start time. */
void h_call_reset(struct h_call *c);
/* Milliseconds from the call's h_call_reset to its route's last run. */
int h_call_ms(const struct h_call *c);
/* Calls an acmd like `async(name(...), route[, timeout_s])` (timeout_s 0 = none): the core's
 * struct action with the acmd and the evaluated arguments go to async_script_start_f, whose
 * tm runs the route inline when the call does not suspend. With sync_mode (a route type where
 * async is not allowed) tm's resume loop runs at once. Returns 1 when the route already ran,
 * 0 when the call waits for the module to resume it. */
int h_async_call(const char *name, int timeout_s, int sync_mode, h_resume_route route, void *arg,
		 int argc, const h_arg *args);
#define H_ASYNC(name, timeout_s, route, arg, ...) \
	h_async_call(name, timeout_s, 0, route, arg, \
		     (int)(sizeof((h_arg[]){__VA_ARGS__}) / sizeof(h_arg)), (h_arg[]){__VA_ARGS__})
/* Calls an acmd like `launch(name(...), report_route)`, through the core (not tm); a NULL
 * report_route is `launch(name(...))`. Returns 1 when the report route already ran
 * (ASYNC_SYNC) or none will (ASYNC_NO_IO), 0 when the job waits for the module to resume it,
 * -1 when the core saw an error status (no report route, as the core does). */
int h_launch_call(const char *name, h_resume_route report_route, void *arg, int argc,
		  const h_arg *args);
/* Runs the reactor (epoll, read readiness, level triggered) over the descriptors registered
 * with register_async_fd until no call waits or max_ms passed; returns how many still wait. */
int h_reactor_run(int max_ms);
/* Descriptors this process's reactor watches for modules (register_async_fd). */
int h_reactor_watches(void);
/* The longest a reactor callback of a module ran, in microseconds. */
long long h_reactor_longest_callback_us(void);
/* The next n resumes asked of tm fail as tm's do when fake_req fails: the call is never
 * resumed and its route never runs. */
void h_drop_resumes(int n);
/* The next n async() starts fail in tm before the function runs, as when tm cannot create the
 * transaction: the resume route runs at once with -1. */
void h_fail_async_starts(int n);
/* Makes the message the functions get a request with this method value (4 = ACK; 0 = not a
 * request, the default). */
void h_set_message_method(int method_value);
/* A new SIP message arrives: the functions called from now on (outside resume routes) get a
 * message with another id. Resume routes run for tm's faked request, launch() report routes
 * for the core's dummy message. */
void h_new_message(void);
/* Runs `route` (with rc 0) as the core runs a timer route: for its dummy message. */
void h_timer_route(h_resume_route route, void *arg);
/* Calls whose resume route ran more than once (must stay 0). */
int h_resumed_twice(void);

/* Runs `{class.spec}` on `input` (NULL = a NULL value); returns the eval result, the output
 * (NUL-terminated copy, or NULL for a NULL value) in *out. Parse failure: H_PARSE_ERROR. */
int h_transform(const char *cls, const char *spec, const char *input, char **out);
/* Runs `{class.spec}` on *val in place, as the core does for each transformation of a chain:
 * the value then points wherever the module left its output, uncopied (the core reads it after
 * further evaluations). Returns the eval result; parse failure: H_PARSE_ERROR. */
int h_transform_value(const char *cls, const char *spec, pv_value_t *val);

/* ---- tracer module and proto_hep (trace_api.h) ---- */
/* One message the tracer would send (what sip_context_trace got, and the parts added). */
#define H_MAX_TRACES 64
#define H_MAX_PARTS 8
struct h_trace {
	int id;
	int net_proto;
	char from[64], to[64];       /* "ip:port" */
	char correlation[64];        /* the correlation id (generate_guid) */
	char sip_correlation[128];   /* the extra "sip" correlation: the Call-ID */
	int part_count;
	char keys[H_MAX_PARTS][32];
	char *values[H_MAX_PARTS];   /* payload parts (add_payload_part) */
};
/* Sets the tracer's globals as its mod_init does with proto_hep loaded (call before
 * h_mod_init). */
void h_tracer_load(void);
/* Whether the SIP messages handled from now on are traced with the "rest" type (the script
 * called trace()); the state travels with their async calls, as in tm's context. */
void h_trace_message(int on);
/* How many times the module registered the "rest" trace type. */
int h_rest_type_registered(void);
int h_trace_count(void);
const struct h_trace *h_trace_get(int i);
/* A payload part by key, NULL when absent. */
const char *h_trace_part(const struct h_trace *t, const char *key);
/* Traces attempted outside a SIP message's context (the tracer drops them). */
int h_traces_outside_context(void);
void h_trace_reset(void);
/* The Call-ID of the message (parsed on demand through parse_headers_aux). */
void h_set_call_id(const char *call_id);
int h_call_id_parses(void);
/* Adds a header to the message (parsed on demand with the Call-ID: parse_headers_aux with
 * HDR_EOH_F lists them all); h_new_message drops them. */
void h_add_header(const char *name, const char *value);

/* ---- OpenSIPS 4.0's profiling handlers (profiling.h) ---- */
/* Plays the opentelemetry module with this span active (hex ids, trace flags) behind a
 * handler that has none; NULL: no handler. */
void h_profiling_span(const char *trace_id, const char *span_id, int flags);

/* ---- the core's event interface: events the module raised, in every process ---- */
/* Whether an event has subscribers (evi_probe_event; on by default). */
void h_events_subscribed(int on);
/* Every event raised so far, one line each: "NAME name=value name=value ...". */
const char *h_events(void);
/* How many times `text` occurs in those lines. */
int h_event_count(const char *text);
void h_events_reset(void);

/* ---- fake tls_mgm ---- */
void h_tls_add_client_domain(const char *name, const char *cert, const char *pkey);
int h_tls_released(void);

/* ---- fake cachedb engines "local", "couchbase" and "mongodb" (cachedb_bind_mod), each get
 * with its module's return codes: one store in shared memory that every worker forked after
 * mod_init sees; a connection used in another process than the one that opened it fails the
 * test ---- */
/* While down, every get, set and add fails (as with an unreachable redis). */
void h_cachedb_outage(int down);
/* Every get, set and add takes `ms` milliseconds more (as a slow or stopped redis). */
void h_cachedb_delay(int ms);
/* Maps the store now: called before forking processes that each run mod_init (instances of
 * their own), they share it as instances share a redis. */
void h_cachedb_share(void);
/* Gets of the keys that contain `key_part` fail (as with one unreachable node of a cluster);
 * NULL: none. */
void h_cachedb_fail_gets(const char *key_part);
/* "gets", "sets", "adds" (successful ones) or "answers" (live keys holding ":answer:"). */
int h_cachedb_stat(const char *what);
/* Whether any key or value in the store (live or expired, not yet reused) contains `text`. */
int h_cachedb_holds(const char *text);
/* Package-memory blocks the core handed to the module (cachedb values) not yet freed, in this
 * process. */
int h_pkg_unfreed(void);

/* ---- workers ---- */
typedef int (*h_worker_fn)(int rank, void *arg);
/* Forks a worker: child_init(rank), then fn; the child exits 0 if fn returned 0 and every
 * CHECK in it passed. */
pid_t h_fork_worker(int rank, h_worker_fn fn, void *arg);
/* Waits for every forked worker; returns how many failed. */
int h_wait_workers(void);

/* ---- test servers ---- */
/* Starts c_tests/http_test_server.py with extra arguments (NULL-terminated list), returns
 * its port. It stops when the harness exits. */
int h_start_server(const char *const *extra_args);
/* Kills the test server listening on `port` (started by this process): connections to it are
 * refused from now on. */
int h_stop_server(int port);
/* A loopback listener whose accept queue is full: connecting to it hangs. */
int h_full_backlog_port(void);
/* A loopback port with nothing listening. */
int h_closed_port(void);
/* "scheme://127.0.0.1:port/path", in one of 16 rotating buffers. */
const char *h_url(const char *scheme, int port, const char *path);
/* An integer field of the test server's JSON answers (/echo, /stats), or -1. */
int h_json_int(const char *json, const char *field);
/* Performs a GET with the harness's own plain socket code, returns the body (malloc'd). */
char *h_http_get(int port, const char *path);
/* A counter of the test server's /stats ("requests", not counting /stats requests;
 * "connections", counting the one this call opens). */
int h_server_stat(int port, const char *field);

/* ---- checks ---- */
void h_set_log_level(int level);
void h_check(int ok, const char *file, int line, const char *what);
#define CHECK(cond) h_check(!!(cond), __FILE__, __LINE__, #cond)
#define CHECK_INT(got, want) do { long long g_ = (got), w_ = (want); \
	if (g_ != w_) fprintf(stderr, "  %s = %lld, want %lld\n", #got, g_, w_); \
	h_check(g_ == w_, __FILE__, __LINE__, #got " == " #want); } while (0)
#define CHECK_STR(var, want) do { const char *w_ = (want); \
	int ok_ = (var)->is_set && !(var)->is_int && strcmp((var)->s, w_) == 0; \
	if (!ok_) fprintf(stderr, "  %s = '%s' (set=%d), want '%s'\n", #var, \
		(var)->is_set ? (var)->s : "", (var)->is_set, w_); \
	h_check(ok_, __FILE__, __LINE__, #var " == " #want); } while (0)
/* Prints "N passed, N failed" and returns the process exit status. */
int h_finish(void);

void hvar_reset(hvar *v);
/* Microseconds on a monotonic clock. */
long long h_now_us(void);

#endif

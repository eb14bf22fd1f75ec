/*
 * The test host: see harness.h. Link with -rdynamic so the module's dlsym(RTLD_DEFAULT)
 * finds the core symbols defined here.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sched.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------
 * Export structures (docs/opensips-module-abi.md §2), with the sizes pinned. */

typedef int (*cmd_function)(void *, void *, void *, void *, void *, void *, void *, void *,
			    void *);
struct cmd_param { int flags; void *fixup; void *free_fixup; };
typedef struct { const char *name; cmd_function function; struct cmd_param params[9]; int flags; }
	cmd_export_t;
typedef struct { const char *name; unsigned int type; void *param_pointer; } param_export_t;
typedef struct { const char *s; int len; } str_const;
typedef struct trans {
	str name; int subtype; void *trf; void *params; struct trans *next;
} trans_t;
typedef struct {
	str_const name;
	int (*parse_func)(str *, trans_t *);
	int (*eval_func)(void *, void *, int, pv_value_t *);
} trans_export_t;
typedef int (*acmd_function)(void *, void *, void *, void *, void *, void *, void *, void *,
			     void *, void *);
typedef struct { const char *name; acmd_function function; struct cmd_param params[9]; } acmd_export_t;
/* async_ctx of the 3.6 layout (the core this harness plays). */
typedef int (*resume_function)(int fd, void *msg, void *param);
typedef struct {
	resume_function resume_f;
	void *resume_param;
	resume_function timeout_f;
	unsigned int timeout_s;
} async_ctx;
_Static_assert(sizeof(acmd_export_t) == 232, "acmd_export_t");
_Static_assert(sizeof(async_ctx) == 32, "async_ctx");
/* route_struct.h (identical in 3.4, 3.6 and 4.0): the inner action of an async() statement
 * that the core hands to tm, an AMODULE_T whose first element (ACMD_ST) is the acmd. */
#define AMODULE_T 8
#define ACMD_ST 10
typedef struct {
	int type;
	union { long number; char *string; void *data; const void *data_const; str s; } u;
} action_elem_t;
struct action {
	int type;
	action_elem_t elem[9];
	int line;
	char *file;
	struct action *next;
};
_Static_assert(sizeof(action_elem_t) == 24 && offsetof(action_elem_t, u) == 8, "action_elem_t");
_Static_assert(sizeof(struct action) == 248 && offsetof(struct action, elem) == 8 &&
	       offsetof(struct action, line) == 224, "struct action");

struct module_exports {
	const char *name; int type;
	const char *version, *compile_flags, *scm_type, *scm_rev;
	unsigned int dlflags;
	int (*load_f)(void);
	const void *deps;
	const cmd_export_t *cmds;
	const acmd_export_t *acmds;
	const param_export_t *params;
	const void *stats, *mi_cmds, *items; /* stat_export_t *, mi_export_t * */
	const trans_export_t *trans;
	const void *procs;
	int (*preinit_f)(void);
	int (*init_f)(void);
	int (*response_f)(void *);
	void (*destroy_f)(void);
	int (*init_child_f)(int);
	int (*reload_ack_f)(void);
};
_Static_assert(sizeof(struct module_exports) == 184, "module_exports");
_Static_assert(sizeof(cmd_export_t) == 240, "cmd_export_t");
_Static_assert(sizeof(param_export_t) == 24, "param_export_t");
_Static_assert(sizeof(trans_export_t) == 32, "trans_export_t");
_Static_assert(sizeof(trans_t) == 48, "trans_t");
_Static_assert(sizeof(pv_value_t) == 24, "pv_value_t");

#define CMD_PARAM_INT 1
#define CMD_PARAM_STR 2
#define CMD_PARAM_VAR 4
#define CMD_PARAM_OPT 16
#define STR_PARAM 1
#define INT_PARAM 2
#define USE_FUNC_PARAM 0x80000000u

/* ------------------------------------------------------------------------------------------
 * Core symbols the module looks up. */

static int default_log_level = 3; /* L_INFO */
int *log_level = &default_log_level;
int log_facility = 0;
char *log_prefix = "";
char ctime_buf[256];
int async_status = -8; /* ASYNC_NO_IO */
struct { const char *type, *rev; } core_scm_ver = { "git", "f9f85260e5" };

int dp_my_pid(void) { return (int)getpid(); }

void dprint(int level, int facility, const char *module, const char *func, char *stderr_fmt,
	    char *syslog_fmt, char *format, ...)
{
	va_list ap;
	(void)level; (void)facility; (void)module; (void)func; (void)syslog_fmt; (void)format;
	va_start(ap, format);
	vfprintf(stderr, stderr_fmt, ap);
	va_end(ap);
	fflush(stderr);
}

int pv_set_value(void *msg, void *spec, int op, pv_value_t *val)
{
	hvar *v = spec;
	if (!msg || !v || op != 0)
		return -1;
	free(v->s);
	v->s = NULL;
	v->writes++;
	if (!val) {
		v->is_set = 0;
		return 0;
	}
	v->is_set = 1;
	v->is_int = (val->flags & PV_TYPE_INT) != 0;
	v->ri = val->ri;
	v->len = v->is_int ? 0 : val->rs.len;
	v->s = malloc((size_t)v->len + 1);
	if (v->len)
		memcpy(v->s, val->rs.s, (size_t)v->len);
	v->s[v->len] = 0;
	return 0;
}

static char *cfg_text;   /* the cfg file, for is_script_func_used */
static int tls_mgm_loaded;

int is_script_func_used(const char *name, int param_no)
{
	const char *p = cfg_text;
	size_t n = strlen(name);
	(void)param_no;
	while (p && (p = strcasestr(p, name))) {
		const char *after = p + n;
		if (*after == '(' && (p == cfg_text || !(isalnum((unsigned char)p[-1]) || p[-1] == '_')))
			return 1;
		p = after;
	}
	return 0;
}

/* Fake tls_mgm: client domains by name, counted releases. */
struct tls_domain { str name; int flags; char pad[44]; str cert; str pkey; char rest[112]; };
_Static_assert(sizeof(struct tls_domain) == 208, "tls_domain");
#define MAX_DOMAINS 48
static struct tls_domain domains[MAX_DOMAINS];
static int domain_count, domains_released;

static str dup_str(const char *s)
{
	str r = { strdup(s), (int)strlen(s) };
	return r;
}

void h_tls_add_client_domain(const char *name, const char *cert, const char *pkey)
{
	struct tls_domain *d = &domains[domain_count++];
	d->name = dup_str(name);
	d->cert = dup_str(cert);
	d->pkey = dup_str(pkey);
}

int h_tls_released(void) { return domains_released; }

static struct tls_domain *find_client_domain_name(str *name)
{
	for (int i = 0; i < domain_count; i++)
		if (domains[i].name.len == name->len && !memcmp(domains[i].name.s, name->s, (size_t)name->len))
			return &domains[i];
	return NULL;
}

static void release_domain(struct tls_domain *d) { (void)d; domains_released++; }

/* Fake cachedb engines "local", "couchbase" and "mongodb": one store in shared memory (mapped
 * in mod_init, before the workers fork), a spin lock, expiry in milliseconds of the monotonic
 * clock; each engine's get answers with its module's codes. Values handed to the module are
 * "package memory": malloc'd, counted, and freed through gen_pkg_free. */
typedef struct { str url; void *data; } cachedb_con;
typedef struct {
	cachedb_con *(*init)(str *url);
	void (*destroy)(cachedb_con *con);
	int (*get)(cachedb_con *con, str *attr, str *val);
	int (*get_counter)(cachedb_con *con, str *attr, int *val);
	int (*set)(cachedb_con *con, str *attr, str *val, int expires);
	void *remove, *_remove;
	int (*add)(cachedb_con *con, str *attr, int val, int expires, int *new_val);
	void *sub, *iter_keys, *raw_query, *truncate, *db_query_trans,
		*db_free_trans, *db_insert_trans, *db_delete_trans, *db_update_trans, *query,
		*update, *map_get, *map_set, *map_remove, *is_replicated;
	int capability;
} cachedb_funcs;
_Static_assert(sizeof(cachedb_funcs) == 192, "cachedb_funcs (3.6 / 4.0)");

#define CDB_SLOTS 128
#define CDB_KEY_MAX 128
#define CDB_VALUE_MAX 8192
struct cdb_slot {
	int used, key_len, value_len;
	long long expires_ms; /* 0: never */
	char key[CDB_KEY_MAX];
	char value[CDB_VALUE_MAX];
};
static struct cdb_store {
	int lock, down, gets, sets, adds, delay_ms;
	char failing_keys[64]; /* gets of keys containing it fail (when not empty) */
	struct cdb_slot slots[CDB_SLOTS];
} *cdb;

/* What an engine's get returns (OpenSIPS 3.6 modules/cachedb_*): found, no such key, error. */
struct cdb_codes {
	const char *scheme;
	int found, missing, failed;
};
static const struct cdb_codes cdb_engines[] = {
	{ "local:", 1, -2, -1 },
	{ "couchbase:", 1, -1, -2 },
	/* mongo_con_get: -2 also for a query that failed (the cursor's error is not read) */
	{ "mongodb:", 0, -2, -2 },
};

static const struct cdb_codes *cdb_engine(const str *url)
{
	for (size_t i = 0; i < sizeof cdb_engines / sizeof *cdb_engines; i++) {
		size_t n = strlen(cdb_engines[i].scheme);
		if ((size_t)url->len >= n && !strncmp(url->s, cdb_engines[i].scheme, n))
			return &cdb_engines[i];
	}
	return NULL;
}

static long long now_ms(void) { return h_now_us() / 1000; }
static void cdb_lock(void) { while (__atomic_exchange_n(&cdb->lock, 1, __ATOMIC_ACQUIRE)) sched_yield(); }
static void cdb_unlock(void) { __atomic_store_n(&cdb->lock, 0, __ATOMIC_RELEASE); }

/* The live slot of a key, or NULL; an expired one is freed. */
static struct cdb_slot *cdb_find(const str *key)
{
	for (int i = 0; i < CDB_SLOTS; i++) {
		struct cdb_slot *e = &cdb->slots[i];
		if (!e->used || e->key_len != key->len || memcmp(e->key, key->s, (size_t)key->len))
			continue;
		if (e->expires_ms && e->expires_ms <= now_ms()) {
			e->used = 0;
			return NULL;
		}
		return e;
	}
	return NULL;
}

static int pkg_block_marker, pkg_unfreed;
void *mem_block = &pkg_block_marker;
static void harness_pkg_free(void *blk, void *p, const char *file, const char *func, unsigned int line)
{
	(void)file; (void)func; (void)line;
	CHECK(blk == &pkg_block_marker);
	pkg_unfreed--;
	free(p);
}
void (*gen_pkg_free)(void *, void *, const char *, const char *, unsigned int) = harness_pkg_free;
int h_pkg_unfreed(void) { return pkg_unfreed; }

/* A connection remembers the process that opened it: cachedb connections are never shared
 * across fork. */
static cachedb_con *cdb_init(str *url)
{
	cachedb_con *con = calloc(1, sizeof *con);
	con->url.s = strndup(url->s, (size_t)url->len);
	con->url.len = url->len;
	con->data = (void *)(intptr_t)getpid();
	return con;
}

static void cdb_destroy(cachedb_con *con) { free(con->url.s); free(con); }

static int cdb_usable(cachedb_con *con)
{
	CHECK((pid_t)(intptr_t)con->data == getpid());
	if (cdb->delay_ms)
		usleep((useconds_t)cdb->delay_ms * 1000);
	return !cdb->down;
}

/* With the codes of the connection's engine: found (value in package memory), not found,
 * error. */
static int cdb_get(cachedb_con *con, str *attr, str *val)
{
	const struct cdb_codes *codes = cdb_engine(&con->url);
	if (!cdb_usable(con))
		return codes->failed;
	cdb_lock();
	if (cdb->failing_keys[0] &&
	    memmem(attr->s, (size_t)attr->len, cdb->failing_keys, strlen(cdb->failing_keys))) {
		cdb_unlock();
		return codes->failed;
	}
	struct cdb_slot *e = cdb_find(attr);
	int rc = codes->missing;
	if (e) {
		val->s = malloc((size_t)e->value_len + 1);
		memcpy(val->s, e->value, (size_t)e->value_len);
		val->len = e->value_len;
		pkg_unfreed++;
		rc = codes->found;
	}
	cdb->gets++;
	cdb_unlock();
	return rc;
}

static int cdb_set(cachedb_con *con, str *attr, str *val, int expires)
{
	if (!cdb_usable(con) || attr->len > CDB_KEY_MAX || val->len > CDB_VALUE_MAX)
		return -1;
	cdb_lock();
	struct cdb_slot *e = cdb_find(attr);
	for (int i = 0; !e && i < CDB_SLOTS; i++)
		if (!cdb->slots[i].used || (cdb->slots[i].expires_ms && cdb->slots[i].expires_ms <= now_ms()))
			e = &cdb->slots[i];
	if (e) {
		e->used = 1;
		e->key_len = attr->len;
		memcpy(e->key, attr->s, (size_t)attr->len);
		e->value_len = val->len;
		memcpy(e->value, val->s, (size_t)val->len);
		e->expires_ms = expires ? now_ms() + expires * 1000LL : 0;
		cdb->sets++;
	}
	cdb_unlock();
	return e ? 0 : -1;
}

/* As cachedb_local's counters: the value in decimal; a new key gets `val` and `expires`, an
 * existing one keeps its expiry. Atomic (under the store's lock). */
static int cdb_add(cachedb_con *con, str *attr, int val, int expires, int *new_val)
{
	if (!cdb_usable(con) || attr->len > CDB_KEY_MAX)
		return -1;
	cdb_lock();
	struct cdb_slot *e = cdb_find(attr);
	long long value = val;
	if (e) {
		char text[32] = { 0 };
		memcpy(text, e->value, (size_t)(e->value_len < 31 ? e->value_len : 31));
		value += atoll(text);
	}
	for (int i = 0; !e && i < CDB_SLOTS; i++)
		if (!cdb->slots[i].used || (cdb->slots[i].expires_ms && cdb->slots[i].expires_ms <= now_ms())) {
			e = &cdb->slots[i];
			e->used = 1;
			e->key_len = attr->len;
			memcpy(e->key, attr->s, (size_t)attr->len);
			e->expires_ms = expires ? now_ms() + expires * 1000LL : 0;
		}
	if (e) {
		e->value_len = snprintf(e->value, CDB_VALUE_MAX, "%lld", value);
		cdb->adds++;
		if (new_val)
			*new_val = (int)value;
	}
	cdb_unlock();
	return e ? 0 : -1;
}

static void cdb_map(void)
{
	if (!cdb) {
		cdb = mmap(NULL, sizeof *cdb, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (cdb == MAP_FAILED)
			abort();
	}
}

int cachedb_bind_mod(str *url, cachedb_funcs *funcs)
{
	memset(funcs, 0, sizeof *funcs);
	if (!cdb_engine(url)) {
		fprintf(stderr, "harness: failed to bind to [%.*s] module. Is it loaded ?\n", url->len, url->s);
		return -1;
	}
	cdb_map();
	funcs->init = cdb_init;
	funcs->destroy = cdb_destroy;
	funcs->get = cdb_get;
	funcs->set = cdb_set;
	funcs->add = cdb_add;
	return 0;
}

void h_cachedb_share(void) { cdb_map(); }
void h_cachedb_outage(int down) { cdb->down = down; }
void h_cachedb_delay(int ms) { cdb->delay_ms = ms; }

void h_cachedb_fail_gets(const char *key_part)
{
	cdb_lock();
	snprintf(cdb->failing_keys, sizeof cdb->failing_keys, "%s", key_part ? key_part : "");
	cdb_unlock();
}

int h_cachedb_stat(const char *what)
{
	if (!strcmp(what, "gets"))
		return cdb->gets;
	if (!strcmp(what, "sets"))
		return cdb->sets;
	if (!strcmp(what, "adds"))
		return cdb->adds;
	int answers = 0;
	cdb_lock();
	for (int i = 0; i < CDB_SLOTS; i++) {
		str key = { cdb->slots[i].key, cdb->slots[i].key_len };
		if (cdb->slots[i].used && cdb_find(&key) && memmem(key.s, (size_t)key.len, ":answer:", 8))
			answers++;
	}
	cdb_unlock();
	return answers;
}

int h_cachedb_holds(const char *text)
{
	int found = 0;
	size_t len = strlen(text);
	cdb_lock();
	for (int i = 0; i < CDB_SLOTS && !found; i++) {
		struct cdb_slot *e = &cdb->slots[i];
		found = e->used && (memmem(e->key, (size_t)e->key_len, text, len) ||
				    memmem(e->value, (size_t)e->value_len, text, len));
	}
	cdb_unlock();
	return found;
}

struct tls_mgm_binds { void *fn[14]; };
_Static_assert(sizeof(struct tls_mgm_binds) == 112, "tls_mgm_binds");

static int load_tls_mgm(struct tls_mgm_binds *b)
{
	memset(b, 0, sizeof *b);
	b->fn[0] = (void *)find_client_domain_name; /* find_server_domain: only tested non-NULL */
	b->fn[2] = (void *)find_client_domain_name;
	b->fn[3] = (void *)release_domain;
	return 1;
}

void *find_export(const char *name, int flags)
{
	(void)flags;
	if (tls_mgm_loaded && strcmp(name, "load_tls_mgm") == 0)
		return (void *)load_tls_mgm;
	return NULL;
}

/* ------------------------------------------------------------------------------------------
 * The tracer module and proto_hep (trace_api.h): function-pointer globals the tracer sets in
 * its mod_init, and the trace protocol's functions; what would be sent is recorded. */

/* Stand for struct sip_msg (the module reads the id at offset 0, the first line and the
 * Call-ID header): the message being processed, tm's faked request of a resume, the core's
 * dummy message. */
static _Alignas(16) char fake_msg[1024], fake_resume_msg[1024], fake_dummy_msg[1024];

union sockaddr_union { struct sockaddr s; struct sockaddr_in sin; struct sockaddr_in6 sin6; };
struct modify_trace { void (*mod_f)(void *message, void *param); void *param; };
typedef struct {
	void *create_trace_message, *add_chunk;
	int (*add_extra_correlation)(void *message, str *key, str *value);
	int (*add_payload_part)(void *message, char *key, str *value);
	void *send_message, *get_trace_dest_by_name, *new_trace_dest, *release_trace_dest,
		*free_message, *get_message_id, *get_data_id;
	unsigned char *(*generate_guid)(char *cookie);
} trace_proto_t;
_Static_assert(sizeof(trace_proto_t) == 96, "trace_proto_t");
_Static_assert(sizeof(union sockaddr_union) == 28, "sockaddr_union");

#define REST_TRACE_ID 0x58 /* proto_hep's id of "rest" */
int (*register_trace_type)(char *name);
int (*check_is_traced)(int id);
int (*sip_context_trace)(int id, union sockaddr_union *from, union sockaddr_union *to,
			 str *payload, int net_proto, str *correlation, struct modify_trace *mod);
trace_proto_t *global_trace_api;

/* The processing context of the SIP message being handled (the tracer keeps its state in
 * it): set around script calls and tm's resumes. */
static int context_active, context_traced, message_traced;
static struct h_trace traces[H_MAX_TRACES];
static int trace_count, traces_outside_context, rest_type_registered;

/* Enters a message's context; returns the one to restore when leaving it (a route may run
 * functions inside a resume). */
static int enter_message_context(int traced)
{
	int outer = context_active | context_traced << 1;
	context_active = 1;
	context_traced = traced;
	return outer;
}

static void leave_message_context(int outer)
{
	context_active = outer & 1;
	context_traced = outer >> 1;
}

static int tracer_register_type(char *name)
{
	if (strcmp(name, "rest"))
		return -1;
	rest_type_registered++;
	return REST_TRACE_ID;
}

static int tracer_is_traced(int id) { return context_active && context_traced && id == REST_TRACE_ID; }

static void copy_str(char *dst, size_t size, const str *s)
{
	snprintf(dst, size, "%.*s", s ? s->len : 0, s && s->s ? s->s : "");
}

static void address_text(char *dst, size_t size, const union sockaddr_union *su)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	int v6 = su->s.sa_family == AF_INET6;
	inet_ntop(su->s.sa_family, v6 ? (const void *)&su->sin6.sin6_addr : (const void *)&su->sin.sin_addr,
		  ip, sizeof ip);
	snprintf(dst, size, v6 ? "[%s]:%d" : "%s:%d", ip,
		 ntohs(v6 ? su->sin6.sin6_port : su->sin.sin_port));
}

/* The tracer's sip_context_trace: nothing leaves without the message's context (the tracer
 * finds its destinations there). */
static int tracer_sip_context_trace(int id, union sockaddr_union *from, union sockaddr_union *to,
				    str *payload, int net_proto, str *correlation,
				    struct modify_trace *mod)
{
	(void)payload;
	if (!context_active || !context_traced) {
		traces_outside_context++;
		return 0;
	}
	if (trace_count == H_MAX_TRACES)
		return -1;
	struct h_trace *t = &traces[trace_count++];
	memset(t, 0, sizeof *t);
	t->id = id;
	t->net_proto = net_proto;
	address_text(t->from, sizeof t->from, from);
	address_text(t->to, sizeof t->to, to);
	copy_str(t->correlation, sizeof t->correlation, correlation);
	if (mod && mod->mod_f)
		mod->mod_f(t, mod->param);
	return 0;
}

static int hep_add_payload_part(void *message, char *key, str *value)
{
	struct h_trace *t = message;
	if (!value || !value->s || !value->len || t->part_count == H_MAX_PARTS)
		return -1;
	snprintf(t->keys[t->part_count], sizeof t->keys[0], "%s", key);
	t->values[t->part_count] = strndup(value->s, (size_t)value->len);
	t->part_count++;
	return 0;
}

static int hep_add_extra_correlation(void *message, str *key, str *value)
{
	struct h_trace *t = message;
	char name[16];
	copy_str(name, sizeof name, key);
	if (strcmp(name, "sip") || !value || !value->len)
		return -1;
	copy_str(t->sip_correlation, sizeof t->sip_correlation, value);
	return 0;
}

/* Like proto_hep's: the cookie and a unique suffix, in a static buffer overwritten by the
 * next call. */
static unsigned char *hep_generate_guid(char *cookie)
{
	static unsigned char buf[64];
	static unsigned next;
	snprintf((char *)buf, sizeof buf, "%s%08u", cookie ? cookie : "", ++next);
	return buf;
}

static trace_proto_t hep_api = {
	.add_extra_correlation = hep_add_extra_correlation,
	.add_payload_part = hep_add_payload_part,
	.generate_guid = hep_generate_guid,
};

int trace_prot_bind(char *module_name, trace_proto_t *prot)
{
	(void)module_name;
	(void)prot;
	return -1; /* the tracer already published the protocol in global_trace_api */
}

void h_tracer_load(void)
{
	register_trace_type = tracer_register_type;
	check_is_traced = tracer_is_traced;
	sip_context_trace = tracer_sip_context_trace;
	global_trace_api = &hep_api;
}

void h_trace_message(int on) { message_traced = on; }
int h_rest_type_registered(void) { return rest_type_registered; }
int h_trace_count(void) { return trace_count; }
const struct h_trace *h_trace_get(int i) { return i >= 0 && i < trace_count ? &traces[i] : NULL; }
int h_traces_outside_context(void) { return traces_outside_context; }

const char *h_trace_part(const struct h_trace *t, const char *key)
{
	for (int i = 0; t && i < t->part_count; i++)
		if (!strcmp(t->keys[i], key))
			return t->values[i];
	return NULL;
}

void h_trace_reset(void)
{
	for (int i = 0; i < trace_count; i++)
		for (int j = 0; j < traces[i].part_count; j++)
			free(traces[i].values[j]);
	trace_count = traces_outside_context = 0;
}

/* struct hdr_field and sip_msg's `headers` (every parsed header) and `callid` pointers (3.6
 * layout). */
struct hdr_field { int type; str name; str body; int len; void *parsed; struct hdr_field *next, *sibling; };
_Static_assert(sizeof(struct hdr_field) == 72, "hdr_field");
#define SIP_MSG_HEADERS_OFFSET 88
#define SIP_MSG_CALLID_OFFSET 120
#define HDR_CALLID_F (1ULL << 6)
#define HDR_EOH_F (~0ULL)
#define H_MAX_HEADERS 8
static struct hdr_field call_id_header = { .type = 6, .name = { "Call-ID", 7 } };
/* The message's other headers (h_add_header), after its Call-ID in the list. */
static struct hdr_field other_headers[H_MAX_HEADERS];
static int other_header_count;
static int call_id_parses;

void h_set_call_id(const char *call_id)
{
	free(call_id_header.body.s);
	call_id_header.body.s = strdup(call_id);
	call_id_header.body.len = (int)strlen(call_id);
	/* tm's faked request is a copy of the transaction's, parsed. */
	struct hdr_field *h = &call_id_header;
	memcpy(fake_resume_msg + SIP_MSG_CALLID_OFFSET, &h, sizeof h);
}

int h_call_id_parses(void) { return call_id_parses; }

void h_add_header(const char *name, const char *value)
{
	if (other_header_count == H_MAX_HEADERS) {
		CHECK(!"more than H_MAX_HEADERS headers");
		return;
	}
	other_headers[other_header_count++] =
		(struct hdr_field){ .name = dup_str(name), .body = dup_str(value) };
}

static void drop_other_headers(void)
{
	for (int i = 0; i < other_header_count; i++) {
		free(other_headers[i].name.s);
		free(other_headers[i].body.s);
	}
	other_header_count = 0;
}

/* The core's parse_headers (3.6+): the request's headers are parsed on demand; HDR_EOH_F
 * parses them all into the `headers` list. */
int parse_headers_aux(void *msg, unsigned long long flags, int next, int well_known)
{
	(void)next;
	(void)well_known;
	/* The core's dummy message is parsed from its own buffer (action.c), Call-ID dummy-1. */
	static struct hdr_field dummy_call_id = { .type = 6, .name = { "Call-ID", 7 },
		.body = { "dummy-1", 7 } };
	if (msg == fake_dummy_msg) {
		struct hdr_field *d = &dummy_call_id;
		memcpy((char *)msg + SIP_MSG_CALLID_OFFSET, &d, sizeof d);
		memcpy((char *)msg + SIP_MSG_HEADERS_OFFSET, &d, sizeof d);
		return 0;
	}
	if ((msg != fake_msg && msg != fake_resume_msg) || !call_id_header.body.s)
		return 0;
	struct hdr_field *h = &call_id_header;
	if (flags & HDR_CALLID_F) {
		memcpy((char *)msg + SIP_MSG_CALLID_OFFSET, &h, sizeof h);
		call_id_parses++;
	}
	if (flags == HDR_EOH_F) {
		h->next = other_header_count ? &other_headers[0] : NULL;
		for (int i = 0; i < other_header_count; i++)
			other_headers[i].next = i + 1 < other_header_count ? &other_headers[i + 1] : NULL;
		memcpy((char *)msg + SIP_MSG_HEADERS_OFFSET, &h, sizeof h);
	}
	return 0;
}

/* 0 for the core's dummy message (timer routes, launch() report routes), -1 for another. */
int is_dummy_sip_msg(void *msg) { return msg == fake_dummy_msg ? 0 : -1; }

/* ------------------------------------------------------------------------------------------
 * OpenSIPS 4.0's profiling handlers (profiling.h), which its opentelemetry module registers. */

typedef struct profiling_ctx {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t trace_flags;
	uint64_t start_system_ns;
	uint64_t start_steady_ns;
	uint8_t has_start_time;
} profiling_ctx_t;
_Static_assert(sizeof(profiling_ctx_t) == 56, "profiling_ctx_t");
#define PROFILING_DATA_TYPE_SCRIPT (1u << 0)
typedef struct profiling_handlers {
	const char *name;
	uint32_t accepted_data_types;
	struct profiling_handlers *next;
	void *on_start, *on_end, *on_enter, *on_exit;
	int (*get_ctx)(profiling_ctx_t *ctx);
	int (*set_ctx)(const profiling_ctx_t *ctx);
} profiling_handlers_t;
_Static_assert(sizeof(profiling_handlers_t) == 72, "profiling_handlers_t");

profiling_handlers_t *profiling_handlers;
static profiling_ctx_t active_span;

/* The opentelemetry module's get_ctx: its innermost active span. */
static int otel_get_ctx(profiling_ctx_t *ctx)
{
	*ctx = active_span;
	return 1;
}

static void hex_bytes(const char *hex, uint8_t *out, int n)
{
	for (int i = 0; i < n; i++)
		sscanf(hex + 2 * i, "%2hhx", &out[i]);
}

void h_profiling_span(const char *trace_id, const char *span_id, int flags)
{
	/* A handler of process profiling only comes first: it has no span to give. */
	static profiling_handlers_t otel = { .name = "opentelemetry",
		.accepted_data_types = PROFILING_DATA_TYPE_SCRIPT, .get_ctx = otel_get_ctx };
	static profiling_handlers_t proc = { .name = "proc", .accepted_data_types = 1u << 1,
		.next = &otel, .get_ctx = otel_get_ctx };
	if (!trace_id) {
		profiling_handlers = NULL;
		return;
	}
	hex_bytes(trace_id, active_span.trace_id, 16);
	hex_bytes(span_id, active_span.span_id, 8);
	active_span.trace_flags = (uint8_t)flags;
	profiling_handlers = &proc;
}

/* ------------------------------------------------------------------------------------------
 * Loading. */

static struct module_exports *mod;

static const char *env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);
	return v && *v ? v : fallback;
}

void h_load(const char *so_path)
{
	void *handle = dlopen(so_path, RTLD_NOW);
	if (!handle) {
		fprintf(stderr, "CRITICAL: could not open module <%s>: %s\n", so_path, dlerror());
		exit(1);
	}
	dlerror();
	mod = dlsym(handle, "exports");
	const char *err = dlerror();
	if (err || !mod) {
		fprintf(stderr, "CRITICAL: load_module: %s\n", err ? err : "no exports");
		exit(1);
	}
	const char *version = env_or("HARNESS_CORE_VERSION", "opensips 3.6.8 (x86_64/linux)");
	const char *flags = env_or("HARNESS_CORE_FLAGS",
		"STATS: On, DISABLE_NAGLE, USE_MCAST, SHM_MMAP, PKG_MALLOC, Q_MALLOC, F_MALLOC, "
		"HP_MALLOC, F_PARALLEL_MALLOC, DBG_MALLOC, FAST_LOCK-ADAPTIVE_WAIT");
	if (!mod->version || strcmp(mod->version, version)) {
		fprintf(stderr, "CRITICAL: module version mismatch for %s; core: %s; module: %s\n",
			mod->name, version, mod->version ? mod->version : "(null)");
		exit(1);
	}
	if (!mod->compile_flags || strcmp(mod->compile_flags, flags)) {
		fprintf(stderr, "CRITICAL: module compile flags mismatch for %s\n", mod->name);
		exit(1);
	}
	if (!mod->scm_type || strcmp(mod->scm_type, core_scm_ver.type) || !mod->scm_rev ||
	    strncmp(mod->scm_rev, core_scm_ver.rev, strlen(mod->scm_rev))) {
		fprintf(stderr, "CRITICAL: module revision mismatch for %s\n", mod->name);
		exit(1);
	}
	if (mod->dlflags != 0 || mod->type != 1 || strcmp(mod->name, "rest_client")) {
		fprintf(stderr, "CRITICAL: unexpected module header\n");
		exit(1);
	}
}

int h_modparam(const char *name, int is_str, const char *value, int ivalue)
{
	for (const param_export_t *p = mod->params; p->name; p++) {
		if (strcmp(p->name, name))
			continue;
		unsigned int given = is_str ? STR_PARAM : INT_PARAM;
		if (!(p->type & given)) {
			fprintf(stderr, "ERROR: parameter <%s> type mismatch\n", name);
			return -1;
		}
		if (p->type & USE_FUNC_PARAM) {
			int (*f)(unsigned int, void *) = (int (*)(unsigned int, void *))p->param_pointer;
			return f(given, is_str ? (void *)strdup(value) : (void *)(long)ivalue) < 0 ? -1 : 0;
		}
		if (is_str)
			*(char **)p->param_pointer = strdup(value);
		else
			*(int *)p->param_pointer = ivalue;
		return 0;
	}
	fprintf(stderr, "ERROR: parameter <%s> not found in module\n", name);
	return -1;
}

int h_service(const char *fmt, ...)
{
	char spec[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(spec, sizeof spec, fmt, ap);
	va_end(ap);
	return h_modparam("service", 1, spec, 0);
}

int h_load_cfg(const char *cfg_path)
{
	FILE *f = fopen(cfg_path, "r");
	if (!f) {
		perror(cfg_path);
		return -1;
	}
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	rewind(f);
	cfg_text = calloc(1, (size_t)size + 1);
	if (fread(cfg_text, 1, (size_t)size, f) != (size_t)size) {
		fclose(f);
		return -1;
	}
	fclose(f);
	tls_mgm_loaded = strstr(cfg_text, "tls_mgm.so\"") != NULL;

	regex_t re;
	regcomp(&re, "^[ \t]*modparam\\(\"([^\"]*)\",[ \t]*\"([^\"]*)\",[ \t]*(\"([^\"]*)\"|(-?[0-9]+))\\)",
		REG_EXTENDED | REG_NEWLINE);
	regmatch_t m[6];
	int rc = 0;
	for (const char *p = cfg_text; rc == 0 && regexec(&re, p, 6, m, 0) == 0; p += m[0].rm_eo) {
		char module[64], name[64], value[1024];
		snprintf(module, sizeof module, "^(%.*s)$", (int)(m[1].rm_eo - m[1].rm_so), p + m[1].rm_so);
		snprintf(name, sizeof name, "%.*s", (int)(m[2].rm_eo - m[2].rm_so), p + m[2].rm_so);
		int is_str = m[4].rm_so >= 0;
		int v = is_str ? 4 : 5;
		snprintf(value, sizeof value, "%.*s", (int)(m[v].rm_eo - m[v].rm_so), p + m[v].rm_so);
		regex_t mod_re;
		if (regcomp(&mod_re, module, REG_EXTENDED | REG_ICASE | REG_NOSUB) == 0) {
			if (regexec(&mod_re, "rest_client", 0, NULL, 0) == 0)
				rc = h_modparam(name, is_str, value, atoi(value));
			regfree(&mod_re);
		}
	}
	regfree(&re);
	return rc;
}

/* ---- statistics: the core's register_module_stats, after mod_init ---- */
typedef struct { char *s; int len; } h_str;
typedef struct stat_var {
	unsigned int mod_idx;
	h_str name;
	unsigned short flags;
	void *context;
	unsigned long *val;
	struct stat_var *hnext, *lnext;
} stat_var;
typedef struct { const char *name; unsigned short flags; stat_var **stat_pointer; } stat_export_t;
_Static_assert(sizeof(stat_var) == 64, "stat_var");
_Static_assert(sizeof(stat_export_t) == 24, "stat_export_t");

#define MAX_STATS 64
static stat_var *stats[MAX_STATS];
static int stats_count;

/* Like the core: each statistic a stat_var whose value sits in shared memory (mapped before
 * the workers fork, so that every process adds to the same counters). */
static void register_module_stats(void)
{
	const stat_export_t *e = mod->stats;
	unsigned long *values = mmap(NULL, MAX_STATS * sizeof *values, PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	for (; e && e->name && stats_count < MAX_STATS; e++, stats_count++) {
		stat_var *v = calloc(1, sizeof *v);
		v->name.s = (char *)e->name;
		v->name.len = (int)strlen(e->name);
		v->flags = e->flags;
		v->val = &values[stats_count];
		*e->stat_pointer = v;
		stats[stats_count] = v;
	}
}

long h_stat(const char *name)
{
	for (int i = 0; i < stats_count; i++)
		if (!strcmp(stats[i]->name.s, name))
			return (long)__atomic_load_n(stats[i]->val, __ATOMIC_RELAXED);
	fprintf(stderr, "harness: no statistic %s\n", name);
	return -1;
}

int h_stat_flags(const char *name)
{
	for (int i = 0; i < stats_count; i++)
		if (!strcmp(stats[i]->name.s, name))
			return stats[i]->flags;
	return -1;
}

/* ---- the core's event interface (evi/evi_modules.h, evi/evi_params.h): published events
 * and their parameters as the core keeps them; a raised event is appended, as one line
 * "NAME name=value ...", to a log in shared memory that every process writes ---- */
#define EVI_INT_VAL 0x01
#define EVI_STR_VAL 0x02
#define EVI_FREE_LIST (1u << 31)
#define MAX_EVENTS 8
#define EVENT_LOG_BYTES 65536
typedef struct evi_param { int flags; union { int n; str s; } val; str name; struct evi_param *next; } evi_param_t;
typedef struct { int flags; evi_param_t *first, *last; } evi_params_t;
static str events[MAX_EVENTS];
static int events_no, events_subscribed = 1;
static struct event_log { int lock, used; char text[EVENT_LOG_BYTES]; } *event_log;

int evi_publish_event(str name)
{
	if (events_no == MAX_EVENTS)
		return -1;
	if (!event_log)
		event_log = mmap(NULL, sizeof *event_log, PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	events[events_no] = name;
	return events_no++;
}

int evi_probe_event(int id) { return id >= 0 && id < events_no && events_subscribed; }

void *evi_get_params(void)
{
	evi_params_t *list = calloc(1, sizeof *list);
	list->flags = EVI_FREE_LIST;
	return list;
}

int evi_param_add(evi_params_t *list, const str *name, const void *value, int flags)
{
	if (!(flags & (EVI_INT_VAL | EVI_STR_VAL)))
		return -1;
	evi_param_t *p = calloc(1, sizeof *p);
	p->flags = flags;
	p->name = *name;
	if (flags & EVI_INT_VAL)
		p->val.n = *(const int *)value;
	else
		p->val.s = *(const str *)value;
	if (list->last)
		list->last->next = p;
	else
		list->first = p;
	list->last = p;
	return 0;
}

void evi_free_params(evi_params_t *list)
{
	for (evi_param_t *p = list ? list->first : NULL, *next; p; p = next) {
		next = p->next;
		free(p);
	}
	free(list);
}

int evi_raise_event(int id, evi_params_t *list)
{
	if (id < 0 || id >= events_no)
		return -1;
	char line[1024];
	int n = snprintf(line, sizeof line, "%.*s", events[id].len, events[id].s);
	for (evi_param_t *p = list ? list->first : NULL; p && n < (int)sizeof line; p = p->next) {
		if (p->flags & EVI_INT_VAL)
			n += snprintf(line + n, sizeof line - n, " %.*s=%d", p->name.len, p->name.s, p->val.n);
		else
			n += snprintf(line + n, sizeof line - n, " %.*s=%.*s", p->name.len, p->name.s,
				      p->val.s.len, p->val.s.s);
	}
	if (list && list->flags & EVI_FREE_LIST)
		evi_free_params(list);
	if (n >= (int)sizeof line)
		n = (int)sizeof line - 1;
	while (__atomic_exchange_n(&event_log->lock, 1, __ATOMIC_ACQUIRE))
		sched_yield();
	if (event_log->used + n + 2 < EVENT_LOG_BYTES) {
		memcpy(event_log->text + event_log->used, line, (size_t)n);
		event_log->used += n;
		event_log->text[event_log->used++] = '\n';
		event_log->text[event_log->used] = 0;
	}
	__atomic_store_n(&event_log->lock, 0, __ATOMIC_RELEASE);
	return 0;
}

void h_events_subscribed(int on) { events_subscribed = on; }
const char *h_events(void) { return event_log ? event_log->text : ""; }

int h_event_count(const char *text)
{
	int count = 0;
	for (const char *at = h_events(); (at = strstr(at, text)); at++)
		count++;
	return count;
}

void h_events_reset(void)
{
	if (event_log) {
		event_log->used = 0;
		event_log->text[0] = 0;
	}
}

/* ---- MI: the core's mi_export_t and response builders (mi/mi.h, mi/item.h) ---- */
typedef void *(*mi_cmd_f)(const void *params, void *async_hdl);
typedef struct { mi_cmd_f cmd; char *params[10]; } mi_recipe_t;
typedef struct {
	char *name, *help;
	unsigned int flags;
	int (*init_f)(void);
	mi_recipe_t recipes[48];
} mi_export_t;
_Static_assert(sizeof(mi_export_t) == 4256, "mi_export_t");

/* A response item: an object, an array, a string or a number. */
struct mi_item {
	enum { MI_OBJECT, MI_ARRAY, MI_STRING, MI_NUMBER } kind;
	char *name, *text;
	double number;
	struct mi_item *first, *last, *next;
};

static struct mi_item *mi_add(void *to, int kind, const char *name, int name_len)
{
	struct mi_item *parent = to, *item = calloc(1, sizeof *item);
	item->kind = kind;
	if (name && name_len > 0)
		item->name = strndup(name, (size_t)name_len);
	if (parent->last)
		parent->last->next = item;
	else
		parent->first = item;
	parent->last = item;
	return item;
}

void *init_mi_result_array(void **arr_out)
{
	struct mi_item *root = calloc(1, sizeof *root);
	root->kind = MI_ARRAY;
	*arr_out = root;
	return root;
}
void *add_mi_object(void *to, char *name, int len) { return mi_add(to, MI_OBJECT, name, len); }
void *add_mi_array(void *to, char *name, int len) { return mi_add(to, MI_ARRAY, name, len); }
int add_mi_string(void *to, char *name, int len, const char *value, int value_len)
{
	mi_add(to, MI_STRING, name, len)->text = strndup(value, (size_t)value_len);
	return 0;
}
int add_mi_number(void *to, char *name, int len, double value)
{
	mi_add(to, MI_NUMBER, name, len)->number = value;
	return 0;
}

static void mi_print(const struct mi_item *item, FILE *out)
{
	if (item->name)
		fprintf(out, "\"%s\": ", item->name);
	switch (item->kind) {
	case MI_STRING: fprintf(out, "\"%s\"", item->text); break;
	case MI_NUMBER: fprintf(out, "%.15g", item->number); break;
	default:
		fputc(item->kind == MI_OBJECT ? '{' : '[', out);
		for (const struct mi_item *c = item->first; c; c = c->next)
			mi_print(c, out), fputs(c->next ? ", " : "", out);
		fputc(item->kind == MI_OBJECT ? '}' : ']', out);
	}
}

void *init_mi_result_string(const char *value, int len)
{
	struct mi_item *item = calloc(1, sizeof *item);
	item->kind = MI_STRING;
	item->text = strndup(value, (size_t)len);
	return item;
}

void *init_mi_error_extra(int code, const char *msg, int msg_len, const char *details,
			  int details_len)
{
	(void)details;
	(void)details_len;
	struct mi_item *root = calloc(1, sizeof *root), *error;
	root->kind = MI_OBJECT;
	error = mi_add(root, MI_OBJECT, "error", 5);
	mi_add(error, MI_NUMBER, "code", 4)->number = code;
	mi_add(error, MI_STRING, "message", 7)->text = strndup(msg, (size_t)msg_len);
	return root;
}

/* The parameters of an MI call: one name and its string value (the harness's mi_params_t). */
struct mi_params { const char *name, *value; };

int get_mi_string_param(const void *params, char *name, char **value, int *value_len)
{
	const struct mi_params *p = params;
	if (!p || !p->value || strcmp(p->name, name))
		return -1;
	*value = (char *)p->value;
	*value_len = (int)strlen(p->value);
	return 0;
}

char *h_mi(const char *command, const char *param_value)
{
	const mi_export_t *e = mod->mi_cmds;
	while (e && e->name && strcmp(e->name, command))
		e++;
	if (!e || !e->name || !e->recipes[0].cmd)
		return NULL;
	struct mi_params params = { e->recipes[0].params[0], param_value };
	struct mi_item *response = e->recipes[0].cmd(e->recipes[0].params[0] ? &params : NULL, NULL);
	if (!response)
		return NULL;
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	mi_print(response, out);
	fclose(out);
	return text;
}

int h_mod_init(void)
{
	int rc = mod->init_f ? mod->init_f() : 0;
	if (rc == 0)
		register_module_stats();
	return rc;
}

int h_child_init(int rank) { return mod->init_child_f ? mod->init_child_f(rank) : 0; }

void h_start_as_worker(const char *so_path, const char *cfg_path)
{
	h_start_worker_with_server(so_path, cfg_path, NULL);
}

int h_start_worker_with_server(const char *so_path, const char *cfg_path,
			       const char *const *services)
{
	int port = 0;
	h_load(so_path);
	CHECK_INT(h_load_cfg(cfg_path), 0);
	if (services) {
		port = h_start_server(NULL);
		for (const char *const *s = services; *s; s++)
			CHECK_INT(h_service(*s, port), 0);
	}
	CHECK_INT(h_mod_init(), 0);
	CHECK_INT(h_child_init(1), 0);
	return port;
}

/* ------------------------------------------------------------------------------------------
 * Calls. */

/* The message the route that runs now processes: the functions get it. */
static char *current_msg = fake_msg;
static int passed, failed;
#define POISON ((void *)0x5a5a5a5a5a5a5a5aULL)

/* The arguments of one call, converted as the core does before calling a function. */
struct call_args {
	void *p[8];
	str strs[8];
	int ints[8];
	char *copies[8];
};

static void free_args(struct call_args *a)
{
	for (int i = 0; i < 8; i++)
		free(a->copies[i]);
}

/* Checks the argument count and kinds against the declared parameters and fills `out`;
 * H_PARSE_ERROR where the core would refuse the script. */
static int build_args(const char *name, const struct cmd_param *params, int argc, const h_arg *args,
		      struct call_args *out)
{
	int declared = 0, mandatory = 0;
	memset(out, 0, sizeof *out);
	while (declared < 8 && params[declared].flags) {
		if (!(params[declared].flags & CMD_PARAM_OPT))
			mandatory = declared + 1;
		declared++;
	}
	if (argc < mandatory || argc > declared) {
		fprintf(stderr, "ERROR: too %s parameters for %s\n", argc < mandatory ? "few" : "many", name);
		return H_PARSE_ERROR;
	}
	for (int i = 0; i < 8; i++) {
		out->p[i] = POISON;
		if (i >= declared)
			continue;
		int flags = params[i].flags;
		h_arg a = i < argc ? args[i] : A_NONE;
		if (a.kind == H_NONE) {
			if (!(flags & CMD_PARAM_OPT)) {
				fprintf(stderr, "ERROR: mandatory parameter %d of %s is empty\n", i + 1, name);
				free_args(out);
				return H_PARSE_ERROR;
			}
			out->p[i] = NULL;
		} else if (a.kind == H_STR && (flags & CMD_PARAM_STR)) {
			/* Exactly len bytes, followed by a non-NUL byte: never NUL-terminated. */
			int len = a.len >= 0 ? a.len : (int)strlen(a.s);
			out->copies[i] = malloc((size_t)len + 1);
			memcpy(out->copies[i], a.s, (size_t)len);
			out->copies[i][len] = '}';
			out->strs[i].s = out->copies[i];
			out->strs[i].len = len;
			out->p[i] = &out->strs[i];
		} else if (a.kind == H_VAR && (flags & CMD_PARAM_VAR)) {
			out->p[i] = a.var;
		} else if (a.kind == H_INT && (flags & CMD_PARAM_INT)) {
			out->ints[i] = a.len;
			out->p[i] = &out->ints[i];
		} else {
			fprintf(stderr, "ERROR: parameter %d of %s has the wrong type\n", i + 1, name);
			free_args(out);
			return H_PARSE_ERROR;
		}
	}
	return 0;
}

int h_call(const char *name, int argc, const h_arg *args)
{
	const cmd_export_t *cmd = mod->cmds;
	while (cmd->name && strcmp(cmd->name, name))
		cmd++;
	if (!cmd->name) {
		fprintf(stderr, "ERROR: unknown function %s\n", name);
		return H_PARSE_ERROR;
	}
	struct call_args a;
	if (build_args(name, cmd->params, argc, args, &a))
		return H_PARSE_ERROR;
	int outer_context = enter_message_context(message_traced);
	int rc = cmd->function(current_msg, a.p[0], a.p[1], a.p[2], a.p[3], a.p[4], a.p[5], a.p[6], a.p[7]);
	leave_message_context(outer_context);
	free_args(&a);
	return rc;
}

/* ------------------------------------------------------------------------------------------
 * Async calls and the reactor. */

#define ASYNC_NO_IO (-8)
#define ASYNC_SYNC (-7)
#define ASYNC_NO_FD (-6)
#define ASYNC_CONTINUE (-5)
#define ASYNC_DONE_NO_IO (-2)
#define ASYNC_DONE (-1)
#define ASYNC_FD_NONE (-1)

/* A call launched with ASYNC_NO_FD: the module resumes it through async_script_resume_f
 * (async(), tm) or async_launch_resume (launch(), the core). */
struct pending_call {
	async_ctx ctx;
	int is_launch;
	int traced;      /* the SIP message's tracing context, which tm keeps with the call */
	h_resume_route route;
	void *arg;
	int resumed;
};

/* A descriptor registered with register_async_fd: f(fd, param) on each read readiness. */
struct fd_watch {
	int fd;
	int (*f)(int fd, void *param);
	void *param;
};

#define MAX_PENDING 4096
#define MAX_WATCHES 16
static struct pending_call *pending[MAX_PENDING];
static struct fd_watch watches[MAX_WATCHES];
static int pending_count, watch_count, resumed_twice, resumes_to_drop, starts_to_fail;
static int reactor_fd = -1;
static long long longest_callback_us;
static pid_t reactor_pid;

int h_resumed_twice(void) { return resumed_twice; }
int h_reactor_watches(void) { return watch_count; }
long long h_reactor_longest_callback_us(void) { return longest_callback_us; }
void h_drop_resumes(int n) { resumes_to_drop = n; }
void h_fail_async_starts(int n) { starts_to_fail = n; }

/* Each process has its own reactor (OpenSIPS builds it after forking the worker). */
static int reactor(void)
{
	if (reactor_fd < 0 || reactor_pid != getpid()) {
		reactor_fd = epoll_create1(EPOLL_CLOEXEC);
		reactor_pid = getpid();
		watch_count = 0;
		pending_count = 0;
	}
	return reactor_fd;
}

/* Runs a route for message `msg`. */
static void run_route_for(char *msg, h_resume_route route, int rc, void *arg)
{
	if (!route)
		return;
	char *outer = current_msg;
	current_msg = msg;
	route(rc, arg);
	current_msg = outer;
}

void h_timer_route(h_resume_route route, void *arg) { run_route_for(fake_dummy_msg, route, 0, arg); }

static void run_route(struct pending_call *c, int rc, char *msg)
{
	if (c->resumed++)
		resumed_twice++;
	run_route_for(msg, c->route, rc, c->arg);
}

static void forget(struct pending_call *c)
{
	for (int i = 0; i < pending_count; i++)
		if (pending[i] == c) {
			pending[i] = pending[--pending_count];
			break;
		}
	free(c);
}

int register_async_fd(int fd, int (*f)(int, void *), void *param)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
	if (watch_count == MAX_WATCHES || epoll_ctl(reactor(), EPOLL_CTL_ADD, fd, &ev))
		return -1;
	watches[watch_count++] = (struct fd_watch){ fd, f, param };
	return 0;
}

/* Resumes a call launched with ASYNC_NO_FD, as tm's t_resume_async (is_launch 0) or the
 * core's async_launch_resume (is_launch 1) do: the resume function, then the route unless it
 * reports ASYNC_CONTINUE. A launch job that ends with anything but ASYNC_DONE_NO_IO makes the
 * core remove the (absent) descriptor from its reactor. */
static int resume_pending(int fd, void *ctx, int is_launch, const char *resumer)
{
	struct pending_call *c = NULL;
	for (int i = 0; i < pending_count && !c; i++)
		if (&pending[i]->ctx == ctx)
			c = pending[i];
	if (!c || c->is_launch != is_launch) {
		if (c)
			fprintf(stderr, "FAIL harness: %s resumed through %s\n",
				is_launch ? "an async() call" : "a launch() job", resumer);
		else
			fprintf(stderr, "FAIL harness: %s: context %p is not pending\n", resumer, ctx);
		failed++;
		return -1;
	}
	/* tm resumes with a request faked from the transaction, the core with its dummy one. */
	char *msg = is_launch ? fake_dummy_msg : fake_resume_msg;
	async_status = ASYNC_DONE;
	/* tm restores the message's context for the resume; the core's launch() resume runs
	 * with none. */
	int outer_context = enter_message_context(c->traced);
	if (is_launch)
		leave_message_context(0);
	int rc = c->ctx.resume_f(fd, msg, c->ctx.resume_param);
	leave_message_context(outer_context);
	if (async_status == ASYNC_CONTINUE)
		return 0;
	if (is_launch && async_status != ASYNC_DONE_NO_IO && fd < 0) {
		fprintf(stderr, "FAIL harness: launch job ended with status %d and no fd\n",
			async_status);
		failed++;
	}
	run_route(c, rc, msg);
	forget(c);
	return 0;
}

static int resume_without_fd(int fd, void *param, int was_timeout)
{
	(void)was_timeout;
	if (resumes_to_drop > 0) {
		/* tm's t_resume_async when fake_req fails: an error, and the call is never resumed
		 * (its transaction is lost to the module). */
		resumes_to_drop--;
		for (int i = 0; i < pending_count; i++)
			if (&pending[i]->ctx == param) {
				fprintf(stderr, "harness: fake_req failed\n");
				forget(pending[i]);
				return 0;
			}
	}
	return resume_pending(fd, param, 0, "async_script_resume_f");
}
int (*async_script_resume_f)(int fd, void *param, int was_timeout) = resume_without_fd;

int async_launch_resume(int fd, void *param)
{
	return resume_pending(fd, param, 1, "async_launch_resume");
}

/* The resume route of an async() statement (what tm gets as its struct script_route_ref *),
 * and whether its route type makes tm run the call synchronously. */
struct resume_route_ref {
	h_resume_route route;
	void *arg;
	int sync_mode;
};

static struct pending_call *new_pending(h_resume_route route, void *arg, int is_launch)
{
	struct pending_call *c = calloc(1, sizeof *c);
	c->route = route;
	c->arg = arg;
	c->is_launch = is_launch;
	return c;
}

static void add_pending(struct pending_call *c, const char *name)
{
	if (!c->ctx.resume_f) {
		fprintf(stderr, "FAIL harness: %s launched without a resume function\n", name);
		failed++;
	}
	if (pending_count == MAX_PENDING) {
		fprintf(stderr, "harness: too many pending calls\n");
		exit(3);
	}
	pending[pending_count++] = c;
}

static int start_status_is_fd(const char *name)
{
	if (async_status < 0)
		return 0;
	fprintf(stderr, "FAIL harness: %s launched with fd %d, not ASYNC_NO_FD\n", name,
		async_status);
	failed++;
	return 1;
}

/* tm's t_handle_async (the module may wrap this pointer, as the core's global): the action
 * is the statement's inner one (AMODULE_T, the acmd in elem[0]), and params the arguments
 * the core evaluated, which tm passes on to the acmd. */
static int tm_handle_async(void *msg, void *action, void *resume_route, unsigned timeout,
			   void **params)
{
	const struct action *a = action;
	const struct resume_route_ref *r = resume_route;
	if (a->type != AMODULE_T || a->elem[0].type != ACMD_ST || !a->elem[0].u.data) {
		fprintf(stderr, "FAIL harness: invalid action for async I/O\n");
		failed++;
		return -1;
	}
	if (starts_to_fail > 0) {
		/* tm's failure: path (t_newtran failed): the resume route runs with -1, the acmd
		 * never does. */
		starts_to_fail--;
		r->route(-1, r->arg);
		return 1;
	}
	const acmd_export_t *acmd = a->elem[0].u.data_const;
	struct pending_call *c = new_pending(r->route, r->arg, 0);
	c->ctx.timeout_s = timeout;
	c->traced = message_traced;
	async_status = ASYNC_NO_IO;
	int rc = acmd->function(msg, &c->ctx, params[0], params[1], params[2], params[3], params[4],
				params[5], params[6], params[7]);
	if (async_status != ASYNC_NO_FD) {
		/* NO_IO, SYNC or an error: the context is freed and the resume route runs now
		 * (before tm returns) with the function's code. */
		if (async_status != ASYNC_NO_IO && async_status != ASYNC_SYNC)
			fprintf(stderr, "harness: async start returned status %d\n", async_status);
		start_status_is_fd(acmd->name);
		free(c);
		r->route(rc, r->arg);
		return 1;
	}
	add_pending(c, acmd->name);
	if (r->sync_mode) {
		/* tm's sync mode: the resume function in a loop with no polling in between. */
		do {
			async_status = ASYNC_DONE;
			rc = c->ctx.resume_f(ASYNC_FD_NONE, msg, c->ctx.resume_param);
		} while (async_status == ASYNC_CONTINUE);
		run_route(c, rc, msg);
		forget(c);
		return 1;
	}
	return 0;
}
int (*async_script_start_f)(void *msg, void *action, void *resume_route, unsigned timeout,
			    void **params) = tm_handle_async;

static const acmd_export_t *find_acmd(const char *name)
{
	const acmd_export_t *acmd = mod->acmds;
	while (acmd && acmd->name && strcmp(acmd->name, name))
		acmd++;
	if (!acmd || !acmd->name) {
		fprintf(stderr, "ERROR: unknown async function %s\n", name);
		return NULL;
	}
	return acmd;
}

int h_async_call(const char *name, int timeout_s, int sync_mode, h_resume_route route, void *arg,
		 int argc, const h_arg *args)
{
	const acmd_export_t *acmd = find_acmd(name);
	struct call_args a;
	if (!acmd || build_args(name, acmd->params, argc, args, &a))
		return H_PARSE_ERROR;
	/* The core's ASYNC_T: tm gets the inner action, the resume route and the arguments. */
	struct action inner;
	memset(&inner, 0, sizeof inner);
	inner.type = AMODULE_T;
	inner.elem[0].type = ACMD_ST;
	inner.elem[0].u.data_const = acmd;
	struct resume_route_ref r = { route, arg, sync_mode };
	reactor();
	int outer_context = enter_message_context(message_traced);
	int rc = async_script_start_f(current_msg, &inner, &r, (unsigned)timeout_s, a.p);
	leave_message_context(outer_context);
	free_args(&a);
	return rc;
}

int h_launch_call(const char *name, h_resume_route report_route, void *arg, int argc,
		  const h_arg *args)
{
	const acmd_export_t *acmd = find_acmd(name);
	struct call_args a;
	if (!acmd || build_args(name, acmd->params, argc, args, &a))
		return H_PARSE_ERROR;
	reactor();
	struct pending_call *c = new_pending(report_route, arg, 1);
	async_status = ASYNC_NO_IO;
	int outer_context = enter_message_context(message_traced);
	int rc = acmd->function(current_msg, &c->ctx, a.p[0], a.p[1], a.p[2], a.p[3], a.p[4], a.p[5],
				a.p[6], a.p[7]);
	leave_message_context(outer_context);
	free_args(&a);
	if (async_status == ASYNC_NO_FD) {
		add_pending(c, name);
		return 0;
	}
	/* The core's async_script_launch: SYNC runs the report route now (with the function's
	 * code, for its dummy message), NO_IO runs nothing and goes on with the script, any other
	 * status is an error (-1) that runs nothing either. */
	start_status_is_fd(name);
	int status = async_status;
	if (status == ASYNC_SYNC)
		run_route_for(fake_dummy_msg, report_route, rc, arg);
	free(c);
	return status == ASYNC_SYNC || status == ASYNC_NO_IO ? 1 : -1;
}

int h_reactor_run(int max_ms)
{
	long long end = h_now_us() + (long long)max_ms * 1000;
	while (pending_count > 0 && h_now_us() < end) {
		struct epoll_event events[MAX_WATCHES];
		int left_ms = (int)((end - h_now_us()) / 1000);
		int n = epoll_wait(reactor(), events, MAX_WATCHES, left_ms < 1000 ? left_ms : 1000);
		for (int i = 0; i < n; i++)
			for (int j = 0; j < watch_count; j++) {
				struct fd_watch *w = &watches[j];
				if (w->fd != events[i].data.fd)
					continue;
				/* tm's async_fd_resume: anything but ASYNC_CONTINUE unregisters it. */
				async_status = ASYNC_DONE;
				long long t0 = h_now_us();
				w->f(w->fd, w->param);
				if (h_now_us() - t0 > longest_callback_us)
					longest_callback_us = h_now_us() - t0;
				if (async_status != ASYNC_CONTINUE) {
					epoll_ctl(reactor_fd, EPOLL_CTL_DEL, w->fd, NULL);
					watches[j] = watches[--watch_count];
				}
				break;
			}
	}
	return pending_count;
}

void h_set_message_method(int method_value)
{
	/* struct sip_msg: id, then first_line { type, len, method, uri, version, method_value } */
	int request = method_value ? 1 : 0;
	memcpy(fake_msg + 8, &request, sizeof request);
	memcpy(fake_msg + 64, &method_value, sizeof method_value);
}

void h_new_message(void)
{
	drop_other_headers();
	/* Another message, maybe at the address of the previous one: the core numbers them. */
	unsigned int id;
	memcpy(&id, fake_msg, sizeof id);
	id++;
	memcpy(fake_msg, &id, sizeof id);
}

int h_transform_value(const char *cls, const char *spec, pv_value_t *val)
{
	const trans_export_t *t = mod->trans;
	while (t->name.s && strcasecmp(t->name.s, cls))
		t++;
	if (!t->name.s)
		return H_PARSE_ERROR;
	/* The core hands parse the text up to the closing '}', which is the next byte. */
	size_t n = strlen(spec);
	char *text = malloc(n + 1);
	memcpy(text, spec, n);
	text[n] = '}';
	str in = { text, (int)n };
	trans_t tr;
	memset(&tr, 0, sizeof tr);
	int rc = t->parse_func(&in, &tr);
	free(text);
	if (rc != 0)
		return H_PARSE_ERROR;
	return t->eval_func(fake_msg, NULL, tr.subtype, val);
}

int h_transform(const char *cls, const char *spec, const char *input, char **out)
{
	pv_value_t val;
	memset(&val, 0, sizeof val);
	char *copy = NULL;
	if (input) {
		size_t len = strlen(input);
		copy = malloc(len + 1);
		memcpy(copy, input, len);
		copy[len] = '}';
		val.rs.s = copy;
		val.rs.len = (int)len;
		val.flags = PV_VAL_STR;
	} else {
		val.flags = PV_VAL_NULL;
	}
	int rc = h_transform_value(cls, spec, &val);
	*out = NULL;
	if (rc != H_PARSE_ERROR && (val.flags & PV_VAL_STR)) {
		*out = malloc((size_t)val.rs.len + 1);
		memcpy(*out, val.rs.s, (size_t)val.rs.len);
		(*out)[val.rs.len] = 0;
	}
	free(copy);
	return rc;
}

/* ------------------------------------------------------------------------------------------
 * Workers and checks. */

void h_check(int ok, const char *file, int line, const char *what)
{
	if (ok) {
		passed++;
	} else {
		failed++;
		fprintf(stderr, "FAIL [%d] %s:%d: %s\n", (int)getpid(), file, line, what);
	}
}

int h_finish(void)
{
	printf("%d passed, %d failed\n", passed, failed);
	fflush(stdout);
	return failed ? 1 : 0;
}

void h_set_log_level(int level) { default_log_level = level; }

void hvar_reset(hvar *v)
{
	free(v->s);
	memset(v, 0, sizeof *v);
}

long long h_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

#define MAX_WORKERS 64
static pid_t workers[MAX_WORKERS];
static int worker_count;

pid_t h_fork_worker(int rank, h_worker_fn fn, void *arg)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		if (h_child_init(rank) < 0) {
			fprintf(stderr, "child_init(%d) failed\n", rank);
			_exit(2);
		}
		int rc = fn(rank, arg);
		fflush(NULL);
		_exit(rc == 0 && failed == 0 ? 0 : 1);
	}
	if (pid > 0 && worker_count < MAX_WORKERS)
		workers[worker_count++] = pid;
	return pid;
}

int h_wait_workers(void)
{
	int bad = 0;
	for (int i = 0; i < worker_count; i++) {
		int status;
		if (waitpid(workers[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
			fprintf(stderr, "worker %d failed (status %d)\n", (int)workers[i], status);
			bad++;
		}
	}
	worker_count = 0;
	return bad;
}

/* ------------------------------------------------------------------------------------------
 * Test servers. */

/* The test servers started by this process, to stop one. */
#define MAX_SERVERS 8
static struct { int port; pid_t pid; } servers[MAX_SERVERS];
static int server_count;

int h_stop_server(int port)
{
	for (int i = 0; i < server_count; i++)
		if (servers[i].port == port && servers[i].pid > 0) {
			kill(servers[i].pid, SIGKILL);
			waitpid(servers[i].pid, NULL, 0);
			servers[i].pid = 0;
			return 0;
		}
	return -1;
}

int h_start_server(const char *const *extra_args)
{
	int to_child[2], from_child[2];
	if (pipe(to_child) || pipe(from_child))
		return -1;
	const char *script = env_or("HTTP_TEST_SERVER", "c_tests/http_test_server.py");
	const char *argv[32] = { "python3", script, "--port", "0" };
	int argc = 4;
	for (int i = 0; extra_args && extra_args[i] && argc < 31; i++)
		argv[argc++] = extra_args[i];
	argv[argc] = NULL;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(to_child[0], 0);
		dup2(from_child[1], 1);
		close(to_child[1]);
		close(from_child[0]);
		execvp("python3", (char *const *)argv);
		_exit(127);
	}
	close(to_child[0]);
	close(from_child[1]);
	/* to_child[1] stays open (not inherited by exec'd children: CLOEXEC) until we exit:
	 * the server exits when its stdin reaches EOF. */
	fcntl(to_child[1], F_SETFD, FD_CLOEXEC);
	char line[64] = { 0 };
	size_t got = 0;
	while (got < sizeof line - 1) {
		ssize_t r = read(from_child[0], line + got, 1);
		if (r <= 0 || line[got] == '\n')
			break;
		got++;
	}
	close(from_child[0]);
	int port = 0;
	if (sscanf(line, "PORT %d", &port) != 1) {
		fprintf(stderr, "test server did not start: '%s'\n", line);
		exit(3);
	}
	if (server_count < MAX_SERVERS) {
		servers[server_count].port = port;
		servers[server_count++].pid = pid;
	}
	return port;
}

static int listen_loopback(int backlog, struct sockaddr_in *addr)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	socklen_t len = sizeof *addr;
	memset(addr, 0, sizeof *addr);
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)addr, sizeof *addr) || listen(fd, backlog) ||
	    getsockname(fd, (struct sockaddr *)addr, &len)) {
		perror("listen_loopback");
		exit(3);
	}
	return fd;
}

int h_full_backlog_port(void)
{
	struct sockaddr_in addr;
	listen_loopback(0, &addr); /* never accepted, kept open until exit */
	/* Fill the accept queue until a connect stays pending: then SYNs are being dropped. */
	for (int i = 0; i < 16; i++) {
		int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (connect(c, (struct sockaddr *)&addr, sizeof addr) == 0)
			continue;
		struct pollfd pfd = { c, POLLOUT, 0 };
		if (errno == EINPROGRESS && poll(&pfd, 1, 200) == 0)
			return ntohs(addr.sin_port);
	}
	fprintf(stderr, "could not fill the accept queue\n");
	exit(3);
}

int h_closed_port(void)
{
	struct sockaddr_in addr;
	int fd = listen_loopback(1, &addr);
	close(fd);
	return ntohs(addr.sin_port);
}

const char *h_url(const char *scheme, int port, const char *path)
{
	static char buf[16][512];
	static int next;
	char *u = buf[next++ % 16];
	snprintf(u, sizeof buf[0], "%s://127.0.0.1:%d%s", scheme, port, path);
	return u;
}

int h_json_int(const char *json, const char *field)
{
	char needle[64];
	snprintf(needle, sizeof needle, "\"%s\": ", field);
	const char *p = json ? strstr(json, needle) : NULL;
	return p ? atoi(p + strlen(needle)) : -1;
}

int h_server_stat(int port, const char *field)
{
	char *json = h_http_get(port, "/stats");
	int n = h_json_int(json, field);
	free(json);
	return n;
}

void h_record_route(int rc, void *arg)
{
	struct h_call *c = arg;
	c->rc = rc;
	c->runs++;
	c->done_us = h_now_us();
}

void h_call_reset(struct h_call *c)
{
	hvar_reset(&c->body);
	hvar_reset(&c->ctype);
	hvar_reset(&c->code);
	c->rc = 0;
	c->runs = 0;
	c->started_us = h_now_us();
}

int h_call_ms(const struct h_call *c)
{
	return (int)((c->done_us - c->started_us) / 1000);
}

char *h_http_get(int port, const char *path)
{
	struct sockaddr_in addr;
	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_port = htons((unsigned short)port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr)) {
		close(fd);
		return strdup("");
	}
	char req[512];
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
	if (write(fd, req, (size_t)n) != n) {
		close(fd);
		return strdup("");
	}
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	ssize_t r;
	while ((r = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)r;
		if (len + 1 == cap)
			buf = realloc(buf, cap *= 2);
	}
	close(fd);
	buf[len] = 0;
	char *body = strstr(buf, "\r\n\r\n");
	char *result = strdup(body ? body + 4 : "");
	free(buf);
	return result;
}

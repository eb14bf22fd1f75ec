//! The `exports` symbol the core looks up, its tables, the parameter storage, and the
//! `extern "C"` entry points. Each entry point converts its raw arguments (the only unsafe part,
//! relying on the calling conventions of docs §3) and runs the safe body under a panic guard.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use log::error;
use parking_lot::Mutex;

use super::abi::*;
use super::async_script::{self, AsyncHost, AsyncStart};
use super::call_args::{CallArgs, MethodArg, Outputs};
use super::module::{self, ModuleParams};
use super::script::{self, Transform};
use super::worker;
use super::{events, log_bridge, mi, stats, target, tracing};
use crate::engine::{Method, ResultCode};

/// Runs `body`, turning a panic into a log line and `on_panic`: no unwind reaches the core.
fn guarded(what: &str, on_panic: c_int, body: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        error!("internal error (panic) in {what}");
        on_panic
    })
}

const INTERNAL_ERROR: c_int = ResultCode::InternalError as c_int;

// ---------------------------------------------------------------------------------------------
// Module parameters: storage written by the core's modparam (4-byte ints, strdup'ed strings).

static CONNECTION_TIMEOUT: ParamCell<c_int> = ParamCell::new(20);
static CONNECT_POLL_INTERVAL: ParamCell<c_int> = ParamCell::new(20);
static MAX_ASYNC_TRANSFERS: ParamCell<c_int> = ParamCell::new(100);
static MAX_TRANSFER_SIZE: ParamCell<c_int> = ParamCell::new(10240);
static CURL_TIMEOUT: ParamCell<c_int> = ParamCell::new(20);
static SSL_CAPATH: ParamCell<*mut c_char> = ParamCell::new(std::ptr::null_mut());
static SSL_VERIFYPEER: ParamCell<c_int> = ParamCell::new(1);
static SSL_VERIFYHOST: ParamCell<c_int> = ParamCell::new(1);
static CURL_HTTP_VERSION: ParamCell<c_int> = ParamCell::new(0);
static ENABLE_EXPECT_100: ParamCell<c_int> = ParamCell::new(0);
static NO_CONCURRENT_CONNECTS: ParamCell<c_int> = ParamCell::new(0);
static CURL_CONN_LIFETIME: ParamCell<c_int> = ParamCell::new(0);
static NO_ASYNC_FALLBACK: ParamCell<c_int> = ParamCell::new(0);
static CURL_TIMEOUT_MS: ParamCell<c_int> = ParamCell::new(0);
static CONNECTION_TIMEOUT_MS: ParamCell<c_int> = ParamCell::new(0);
static MAX_INFLIGHT_BODY_BYTES: ParamCell<c_int> =
    ParamCell::new(module::DEFAULT_MAX_INFLIGHT_BODY_BYTES_PARAM);
static TRACE_CONTEXT: ParamCell<c_int> = ParamCell::new(0);
static TRACE_SAMPLED: ParamCell<c_int> = ParamCell::new(1);
static TRACE_STATE: ParamCell<*mut c_char> = ParamCell::new(std::ptr::null_mut());

fn read_params() -> ModuleParams {
    ModuleParams {
        connection_timeout: CONNECTION_TIMEOUT.get(),
        connect_poll_interval: CONNECT_POLL_INTERVAL.get(),
        max_async_transfers: MAX_ASYNC_TRANSFERS.get(),
        max_transfer_size: MAX_TRANSFER_SIZE.get(),
        curl_timeout: CURL_TIMEOUT.get(),
        ssl_capath: SSL_CAPATH.text(),
        ssl_verifypeer: SSL_VERIFYPEER.get(),
        ssl_verifyhost: SSL_VERIFYHOST.get(),
        curl_http_version: CURL_HTTP_VERSION.get(),
        enable_expect_100: ENABLE_EXPECT_100.get(),
        no_concurrent_connects: NO_CONCURRENT_CONNECTS.get(),
        curl_conn_lifetime: CURL_CONN_LIFETIME.get(),
        no_async_fallback: NO_ASYNC_FALLBACK.get(),
        curl_timeout_ms: CURL_TIMEOUT_MS.get(),
        connection_timeout_ms: CONNECTION_TIMEOUT_MS.get(),
        max_inflight_body_bytes: MAX_INFLIGHT_BODY_BYTES.get(),
        trace_context: TRACE_CONTEXT.get(),
        trace_sampled: TRACE_SAMPLED.get(),
        trace_state: TRACE_STATE.text(),
    }
}

/// The `service` parameter: one named service per modparam line.
///
/// SAFETY: called by the core's modparam with the script value's type and, for a string, a
/// NUL-terminated text it never frees (§1.4).
unsafe extern "C" fn set_service(value_type: c_uint, value: *mut c_void) -> c_int {
    guarded("modparam service", -1, || {
        if value_type != STR_PARAM || value.is_null() {
            error!("modparam service: expects a string");
            return -1;
        }
        // SAFETY: see above.
        let text = unsafe { std::ffi::CStr::from_ptr(value.cast()) }.to_string_lossy();
        match module::add_service(&text) {
            Ok(()) => 0,
            Err(e) => {
                error!("modparam service: {e}");
                -1
            }
        }
    })
}

const fn param(name: &'static std::ffi::CStr, param_type: u32, cell: *mut c_void) -> ParamExport {
    ParamExport {
        name: name.as_ptr(),
        param_type,
        param_pointer: cell,
    }
}

static PARAMS: StaticTable<[ParamExport; 21]> = StaticTable([
    param(
        c"connection_timeout",
        INT_PARAM,
        CONNECTION_TIMEOUT.as_param_pointer(),
    ),
    param(
        c"connect_poll_interval",
        INT_PARAM,
        CONNECT_POLL_INTERVAL.as_param_pointer(),
    ),
    param(
        c"max_async_transfers",
        INT_PARAM,
        MAX_ASYNC_TRANSFERS.as_param_pointer(),
    ),
    param(
        c"max_transfer_size",
        INT_PARAM,
        MAX_TRANSFER_SIZE.as_param_pointer(),
    ),
    param(c"curl_timeout", INT_PARAM, CURL_TIMEOUT.as_param_pointer()),
    param(c"ssl_capath", STR_PARAM, SSL_CAPATH.as_param_pointer()),
    param(
        c"ssl_verifypeer",
        INT_PARAM,
        SSL_VERIFYPEER.as_param_pointer(),
    ),
    param(
        c"ssl_verifyhost",
        INT_PARAM,
        SSL_VERIFYHOST.as_param_pointer(),
    ),
    param(
        c"curl_http_version",
        INT_PARAM,
        CURL_HTTP_VERSION.as_param_pointer(),
    ),
    param(
        c"enable_expect_100",
        INT_PARAM,
        ENABLE_EXPECT_100.as_param_pointer(),
    ),
    param(
        c"no_concurrent_connects",
        INT_PARAM,
        NO_CONCURRENT_CONNECTS.as_param_pointer(),
    ),
    param(
        c"curl_conn_lifetime",
        INT_PARAM,
        CURL_CONN_LIFETIME.as_param_pointer(),
    ),
    param(
        c"no_async_fallback",
        INT_PARAM,
        NO_ASYNC_FALLBACK.as_param_pointer(),
    ),
    param(
        c"service",
        STR_PARAM | USE_FUNC_PARAM,
        set_service as *mut c_void,
    ),
    param(
        c"curl_timeout_ms",
        INT_PARAM,
        CURL_TIMEOUT_MS.as_param_pointer(),
    ),
    param(
        c"connection_timeout_ms",
        INT_PARAM,
        CONNECTION_TIMEOUT_MS.as_param_pointer(),
    ),
    param(
        c"max_inflight_body_bytes",
        INT_PARAM,
        MAX_INFLIGHT_BODY_BYTES.as_param_pointer(),
    ),
    param(
        c"trace_context",
        INT_PARAM,
        TRACE_CONTEXT.as_param_pointer(),
    ),
    param(
        c"trace_sampled",
        INT_PARAM,
        TRACE_SAMPLED.as_param_pointer(),
    ),
    param(c"trace_state", STR_PARAM, TRACE_STATE.as_param_pointer()),
    ParamExport {
        name: std::ptr::null(),
        param_type: 0,
        param_pointer: std::ptr::null_mut(),
    },
]);

// ---------------------------------------------------------------------------------------------
// Script functions.

/// Defines a cmd entry point `int f(struct sip_msg *msg, void *p1, ..., void *p8)` whose body
/// sees the message as `$msg` and the eight parameter slots as `$p`, under the panic guard.
///
/// SAFETY (of every entry defined this way): the core calls it with the sip_msg and, for each
/// declared parameter, a `str *` (STR), a `pv_spec_t *` (VAR) or NULL (an omitted optional
/// one), valid for the duration of the call (§3). Undeclared slots hold garbage: bodies only
/// read the slots their function declares.
macro_rules! cmd_entry {
    ($name:ident, $what:literal, $on_panic:expr, |$msg:ident, $p:ident| $body:expr) => {
        entry_point!($name, $what, $on_panic, [], |$msg, $p| $body);
    };
}

/// As `cmd_entry`, for an acmd `int f(struct sip_msg *, async_ctx *ctx, void *p1, ..., p8)`
/// that starts an async transfer of the given shape (`start_async_call`); `ctx` is live for the
/// call.
macro_rules! acmd_entry {
    ($name:ident, $what:literal, $shape:expr) => {
        entry_point!($name, $what, INTERNAL_ERROR, [ctx: *mut AsyncCtx], |msg, p| {
            start_async_call($name, $shape, msg, ctx, p)
        });
    };
}

/// The signature both kinds share: the message, the extra leading parameters, eight slots.
macro_rules! entry_point {
    (
        $name:ident, $what:literal, $on_panic:expr, [$($extra:ident: $extra_ty:ty),*],
        |$msg:ident, $p:ident| $body:expr
    ) => {
        unsafe extern "C" fn $name(
            $msg: *mut c_void,
            $($extra: $extra_ty,)*
            p1: *mut c_void,
            p2: *mut c_void,
            p3: *mut c_void,
            p4: *mut c_void,
            p5: *mut c_void,
            p6: *mut c_void,
            p7: *mut c_void,
            p8: *mut c_void,
        ) -> c_int {
            let $p = [p1, p2, p3, p4, p5, p6, p7, p8];
            guarded($what, $on_panic, || $body)
        }
    };
}

/// The output variables of a transfer function's VAR parameters.
fn outputs(msg: *mut c_void, body: *mut c_void, ctype: *mut c_void, code: *mut c_void) -> Outputs {
    Outputs {
        body: ScriptVar::from_arg(msg, body),
        content_type: ScriptVar::from_arg(msg, ctype),
        code: ScriptVar::from_arg(msg, code),
        body_as_received: false,
    }
}

/// The parameter layout of a transfer function.
#[derive(Clone, Copy)]
enum Shape {
    /// `rest_get(url, $body, [$ctype], [$code])`.
    Get,
    /// `rest_post/put/patch/delete(url, body, [ctype], $body, [$ctype], [$code])`.
    Send(Method),
    /// `rest_request(method, url, [body], [ctype], $body, [$ctype], [$code])`.
    Request,
}

/// Reads the slots of a transfer function of the given shape.
///
/// SAFETY: `p` are the slots of a call of a function with that shape (see `cmd_entry`).
unsafe fn call_args<'a>(shape: Shape, msg: *mut c_void, p: [*mut c_void; 8]) -> CallArgs<'a> {
    // SAFETY: the STR slots of the declared parameters, per the contract.
    unsafe {
        match shape {
            Shape::Get => CallArgs {
                msg,
                message: MessageId::of(msg),
                method: MethodArg::Fixed(Method::Get),
                url: str_arg(p[0]),
                body: None,
                content_type: None,
                outputs: outputs(msg, p[1], p[2], p[3]),
            },
            Shape::Send(method) => CallArgs {
                msg,
                message: MessageId::of(msg),
                method: MethodArg::Fixed(method),
                url: str_arg(p[0]),
                body: str_arg(p[1]),
                content_type: str_arg(p[2]),
                outputs: outputs(msg, p[3], p[4], p[5]),
            },
            Shape::Request => CallArgs {
                msg,
                message: MessageId::of(msg),
                method: MethodArg::Named(str_arg(p[0])),
                url: str_arg(p[1]),
                body: str_arg(p[2]),
                content_type: str_arg(p[3]),
                outputs: outputs(msg, p[4], p[5], p[6]),
            },
        }
    }
}

fn blocking(shape: Shape, msg: *mut c_void, p: [*mut c_void; 8]) -> c_int {
    // SAFETY: called from the entries below with their slots (see `cmd_entry`).
    script::blocking_transfer(unsafe { call_args(shape, msg, p) })
}

const POST: Shape = Shape::Send(Method::Post);
const PUT: Shape = Shape::Send(Method::Put);
const PATCH: Shape = Shape::Send(Method::Patch);
const DELETE: Shape = Shape::Send(Method::Delete);

cmd_entry!(w_rest_get, "rest_get", INTERNAL_ERROR, |m, p| blocking(
    Shape::Get,
    m,
    p
));
cmd_entry!(w_rest_post, "rest_post", INTERNAL_ERROR, |m, p| blocking(
    POST, m, p
));
cmd_entry!(w_rest_put, "rest_put", INTERNAL_ERROR, |m, p| blocking(
    PUT, m, p
));
cmd_entry!(w_rest_patch, "rest_patch", INTERNAL_ERROR, |m, p| blocking(
    PATCH, m, p
));
cmd_entry!(w_rest_delete, "rest_delete", INTERNAL_ERROR, |m, p| {
    blocking(DELETE, m, p)
});
cmd_entry!(w_rest_request, "rest_request", INTERNAL_ERROR, |m, p| {
    blocking(Shape::Request, m, p)
});
// SAFETY: one declared STR parameter (see `cmd_entry`).
cmd_entry!(w_rest_append_hf, "rest_append_hf", -1, |msg, p| {
    script::append_header(MessageId::of(msg), unsafe { str_arg(p[0]) })
});
// SAFETY: one declared STR parameter (see `cmd_entry`).
cmd_entry!(
    w_rest_init_client_tls,
    "rest_init_client_tls",
    -1,
    |msg, p| { script::init_client_tls(MessageId::of(msg), unsafe { str_arg(p[0]) }) }
);

// SAFETY: two declared STR parameters (see `cmd_entry`).
cmd_entry!(
    w_rest_update_service,
    "rest_update_service",
    -1,
    |_msg, p| unsafe { script::update_service(str_arg(p[0]), str_arg(p[1])) }
);

// SAFETY: one declared INT parameter and an optional one (see `cmd_entry`).
cmd_entry!(w_rest_timeout, "rest_timeout", -1, |msg, p| unsafe {
    script::set_timeouts(MessageId::of(msg), int_arg(p[0]), int_arg(p[1]))
});
// SAFETY: one declared STR parameter (see `cmd_entry`).
cmd_entry!(w_rest_cache_flush, "rest_cache_flush", -1, |_msg, p| {
    script::flush_cache(unsafe { str_arg(p[0]) })
});
cmd_entry!(w_rest_raw_body, "rest_raw_body", -1, |msg, _p| {
    script::keep_raw_body(MessageId::of(msg))
});
cmd_entry!(
    w_rest_response_stale,
    "rest_response_stale",
    -1,
    |msg, _p| { script::response_stale(MessageId::of(msg)) }
);
// SAFETY: a STR and a VAR parameter (see `cmd_entry`).
cmd_entry!(
    w_rest_response_header,
    "rest_response_header",
    -1,
    |m, p| {
        script::response_header(
            MessageId::of(m),
            unsafe { str_arg(p[0]) },
            ScriptVar::from_arg(m, p[1]),
        )
    }
);
cmd_entry!(
    w_rest_response_reason,
    "rest_response_reason",
    -1,
    |m, p| { script::response_reason(MessageId::of(m), ScriptVar::from_arg(m, p[0])) }
);

const INT: CmdParam = CmdParam::new(CMD_PARAM_INT);
const INT_OPT: CmdParam = CmdParam::new(CMD_PARAM_INT | CMD_PARAM_OPT);
const STR: CmdParam = CmdParam::new(CMD_PARAM_STR);
const STR_OPT: CmdParam = CmdParam::new(CMD_PARAM_STR | CMD_PARAM_OPT);
const VAR: CmdParam = CmdParam::new(CMD_PARAM_VAR);
const VAR_OPT: CmdParam = CmdParam::new(CMD_PARAM_VAR | CMD_PARAM_OPT);
const END: CmdParam = CmdParam::END;

/// Parameter lists shared by the blocking functions and their async twins.
const GET_PARAMS: [CmdParam; 9] = [STR, VAR, VAR_OPT, VAR_OPT, END, END, END, END, END];
const SEND_PARAMS: [CmdParam; 9] = [STR, STR, STR_OPT, VAR, VAR_OPT, VAR_OPT, END, END, END];
const DELETE_PARAMS: [CmdParam; 9] = [STR, STR_OPT, STR_OPT, VAR, VAR_OPT, VAR_OPT, END, END, END];
const REQUEST_PARAMS: [CmdParam; 9] = [STR, STR, STR_OPT, STR_OPT, VAR, VAR_OPT, VAR_OPT, END, END];
const ONE_STR: [CmdParam; 9] = [STR, END, END, END, END, END, END, END, END];
const TWO_STR: [CmdParam; 9] = [STR, STR, END, END, END, END, END, END, END];
const ONE_VAR: [CmdParam; 9] = [VAR, END, END, END, END, END, END, END, END];
const STR_VAR: [CmdParam; 9] = [STR, VAR, END, END, END, END, END, END, END];
const INT_INT_OPT: [CmdParam; 9] = [INT, INT_OPT, END, END, END, END, END, END, END];
const NO_PARAMS: [CmdParam; 9] = [END; 9];

const fn cmd(name: &'static std::ffi::CStr, f: CmdFunction, params: [CmdParam; 9]) -> CmdExport {
    CmdExport {
        name: name.as_ptr(),
        function: Some(f),
        params,
        flags: ALL_ROUTES,
    }
}

/// Counts the items of a macro repetition.
macro_rules! count {
    () => { 0 };
    ($head:tt $($tail:tt)*) => { 1 + count!($($tail)*) };
}

/// The `cmds` and `acmds` tables from one list: the transfer functions are exported blocking
/// and async with the same parameters, the others blocking only.
macro_rules! function_tables {
    (
        transfers: [$(($name:literal, $cmd:ident, $acmd:ident, $params:ident)),* $(,)?],
        others: [$(($other:literal, $other_cmd:ident, $other_params:ident)),* $(,)?] $(,)?
    ) => {
        static CMDS: StaticTable<[CmdExport; count!($($name)* $($other)*) + 1]> = StaticTable([
            $(cmd($name, $cmd, $params),)*
            $(cmd($other, $other_cmd, $other_params),)*
            CmdExport { name: std::ptr::null(), function: None, params: [END; 9], flags: 0 },
        ]);
        static ACMDS: StaticTable<[AcmdExport; count!($($name)*) + 1]> = StaticTable([
            $(acmd($name, $acmd, $params),)*
            AcmdExport { name: std::ptr::null(), function: None, params: [END; 9] },
        ]);
    };
}

function_tables! {
    transfers: [
        (c"rest_get", w_rest_get, a_rest_get, GET_PARAMS),
        (c"rest_post", w_rest_post, a_rest_post, SEND_PARAMS),
        (c"rest_put", w_rest_put, a_rest_put, SEND_PARAMS),
        (c"rest_patch", w_rest_patch, a_rest_patch, SEND_PARAMS),
        (c"rest_delete", w_rest_delete, a_rest_delete, DELETE_PARAMS),
        (c"rest_request", w_rest_request, a_rest_request, REQUEST_PARAMS),
    ],
    others: [
        (c"rest_append_hf", w_rest_append_hf, ONE_STR),
        (c"rest_init_client_tls", w_rest_init_client_tls, ONE_STR),
        (c"rest_timeout", w_rest_timeout, INT_INT_OPT),
        (c"rest_update_service", w_rest_update_service, TWO_STR),
        (c"rest_raw_body", w_rest_raw_body, NO_PARAMS),
        (c"rest_cache_flush", w_rest_cache_flush, ONE_STR),
        (c"rest_response_header", w_rest_response_header, STR_VAR),
        (c"rest_response_reason", w_rest_response_reason, ONE_VAR),
        (c"rest_response_stale", w_rest_response_stale, NO_PARAMS),
    ],
}

// ---------------------------------------------------------------------------------------------
// Async script functions: `async(rest_get(...), resume_route[, seconds])` and `launch(...)`.

/// Starts an async call of acmd `entry` and reports it to the core through `async_status`
/// (docs §5.3): a running call is launched with ASYNC_NO_FD, and the module asks the core to
/// resume it when its transfer ends (the reactor watches one descriptor for all of the
/// process's transfers, see `transfers_ready`).
fn start_async_call(
    entry: AcmdFunction,
    shape: Shape,
    msg: *mut c_void,
    ctx: *mut AsyncCtx,
    p: [*mut c_void; 8],
) -> c_int {
    let Some(ctx) = AsyncCtxRef::new(ctx) else {
        error!("async transfer without an async context");
        return INTERNAL_ERROR;
    };
    // SAFETY: called from the entries below with their slots (see `acmd_entry`).
    let args = unsafe { call_args(shape, msg, p) };
    let host = AsyncHost {
        ctx,
        caller: async_caller(entry, p[0]),
        is_ack: is_ack(msg),
        register: |fd| register_reactor_fd(fd, transfers_ready),
        resume: resume_async_call,
    };
    match async_script::start_async(args, host) {
        // tm runs the resume route and the core (launch) the report route now, with the code.
        AsyncStart::Over(code) => {
            set_async_status(ASYNC_SYNC);
            code
        }
        AsyncStart::Running => {
            set_async_status(ASYNC_NO_FD);
            1
        }
    }
}

/// The reactor saw the process's transfer descriptor readable: drives the transfers, asks the
/// core to resume the calls whose transfer ended, and keeps the descriptor watched.
///
/// SAFETY: called by the core's reactor (registered by `register_reactor_fd`).
unsafe extern "C" fn transfers_ready(_fd: c_int, _param: *mut c_void) -> c_int {
    let rc = guarded("async transfers", 0, || {
        for call in async_script::progress_async() {
            call.ctx.resume(call.caller);
            async_script::after_resume(call.token);
        }
        0
    });
    // After the resumes (each one reset async_status for its own resume function), and after
    // a panic too: anything but ASYNC_CONTINUE makes the core drop the descriptor, and with it
    // every later async call of the process.
    set_async_status(ASYNC_CONTINUE);
    rc
}

/// The core resumes a call (after the module asked, or in a loop when tm runs it
/// synchronously); `param` is the call's token.
///
/// SAFETY: called by the core with the parameter registered by `AsyncCtxRef::set_resume`.
unsafe extern "C" fn resume_async_call(_fd: c_int, msg: *mut c_void, param: *mut c_void) -> c_int {
    guarded(
        "async resume",
        INTERNAL_ERROR,
        || match async_script::resume_async(param as usize, msg) {
            None => {
                set_async_status(ASYNC_CONTINUE);
                1
            }
            Some(code) => {
                // No descriptor of the call's own for the core to stop watching.
                set_async_status(ASYNC_DONE_NO_IO);
                code
            }
        },
    )
}

acmd_entry!(a_rest_get, "async rest_get", Shape::Get);
acmd_entry!(a_rest_post, "async rest_post", POST);
acmd_entry!(a_rest_put, "async rest_put", PUT);
acmd_entry!(a_rest_patch, "async rest_patch", PATCH);
acmd_entry!(a_rest_delete, "async rest_delete", DELETE);
acmd_entry!(a_rest_request, "async rest_request", Shape::Request);

const fn acmd(name: &'static std::ffi::CStr, f: AcmdFunction, params: [CmdParam; 9]) -> AcmdExport {
    AcmdExport {
        name: name.as_ptr(),
        function: Some(f),
        params,
    }
}

// ---------------------------------------------------------------------------------------------
// Transformations {rest.escape} / {rest.unescape} / {rest.escape_path} / {rest.escape_xml}.

/// SAFETY: the core passes the text after `rest.` (not NUL-terminated) and the trans_t to fill.
unsafe extern "C" fn tr_rest_parse(input: *mut Str, t: *mut TransT) -> c_int {
    guarded("rest transformation parser", -1, || {
        // SAFETY: see above.
        let Some(text) = (unsafe { str_arg(input.cast()) }) else {
            return -1;
        };
        // SAFETY: `t` is NULL or the core's trans_t being parsed.
        let Some(t) = (unsafe { t.as_mut() }) else {
            return -1;
        };
        if text.contains(&b',') {
            error!(
                "rest transformations support a single parameter only: {}",
                String::from_utf8_lossy(text)
            );
            return -1;
        }
        match Transform::parse(text) {
            Some(transform) => {
                t.subtype = transform as c_int;
                0
            }
            None => {
                error!(
                    "unknown rest transformation: {}",
                    String::from_utf8_lossy(text)
                );
                -1
            }
        }
    })
}

/// How many outputs of `{rest.*}` stay readable in a process. The core gives a module's
/// transformation no buffer, and reads its output after further evaluations: it evaluates the
/// (up to 8) arguments of a function before calling it, each maybe a `$(var(x){rest.*})`, and
/// keeps both sides of an `if` comparison; a chain (`{rest.escape}{rest.unescape}`) evaluates
/// once per transformation, each reading the previous output. The core's own transformations
/// write into `__tr_buffers[MAX_ACTION_ELEMS - 1][TR_CHAIN_BUFS]`, 8 sets of 2 buffers
/// (transformations.c:62-73 and 179 in 3.6.8 and 4.0.1, 58-69 and 175 in 3.4.18), one set per
/// chain: a result outlives the next 7 chains. Here: 8 arguments of 2 chained evaluations each.
const KEPT_TRANSFORM_OUTPUTS: usize = 16;

/// The last `KEPT_TRANSFORM_OUTPUTS` outputs of this process's evaluations, each overwritten
/// (and freed) `KEPT_TRANSFORM_OUTPUTS` evaluations after it was made.
struct TransformOutputs {
    outputs: [Vec<u8>; KEPT_TRANSFORM_OUTPUTS],
    next: usize,
}

impl TransformOutputs {
    /// Keeps `output` in place of the oldest one; its bytes stay where the returned pointer
    /// says until then.
    fn keep(&mut self, output: Vec<u8>) -> *mut c_char {
        let slot = &mut self.outputs[self.next];
        *slot = output;
        self.next = (self.next + 1) % KEPT_TRANSFORM_OUTPUTS;
        slot.as_mut_ptr().cast()
    }
}

static TRANSFORM_OUTPUTS: Mutex<TransformOutputs> = Mutex::new(TransformOutputs {
    outputs: [const { Vec::new() }; KEPT_TRANSFORM_OUTPUTS],
    next: 0,
});

/// SAFETY: `val` is NULL or the core's value being transformed, in and out.
unsafe extern "C" fn tr_rest_eval(
    _msg: *mut c_void,
    _params: *mut c_void,
    subtype: c_int,
    val: *mut PvValue,
) -> c_int {
    guarded("rest transformation", -1, || {
        // SAFETY: see above.
        let Some(val) = (unsafe { val.as_mut() }) else {
            return -1;
        };
        if val.flags & PV_VAL_NULL != 0 {
            return 0;
        }
        let Some(transform) = Transform::from_subtype(subtype) else {
            return -1;
        };
        // SAFETY: a string value's `rs` holds `len` readable bytes.
        let input = if val.flags & PV_VAL_STR != 0 {
            unsafe { str_arg((&raw mut val.rs).cast()) }
        } else {
            None
        };
        let Some(input) = input.filter(|i| !i.is_empty()) else {
            val.flags = PV_VAL_NULL;
            return -1;
        };
        let output = transform.apply(input);
        let Ok(len) = c_int::try_from(output.len()) else {
            return -1;
        };
        val.rs = Str {
            s: TRANSFORM_OUTPUTS.lock().keep(output),
            len,
        };
        val.flags = PV_VAL_STR;
        0
    })
}

static TRANS: StaticTable<[TransExport; 2]> = StaticTable([
    TransExport {
        name: StrConst {
            s: c"rest".as_ptr(),
            len: 4,
        },
        parse_func: Some(tr_rest_parse),
        eval_func: Some(tr_rest_eval),
    },
    TransExport {
        name: StrConst {
            s: std::ptr::null(),
            len: 0,
        },
        parse_func: None,
        eval_func: None,
    },
]);

// ---------------------------------------------------------------------------------------------
// Module life cycle.

unsafe extern "C" fn mod_init() -> c_int {
    guarded("mod_init", -1, || {
        log_bridge::install();
        let tls = if script_uses_function(c"rest_init_client_tls") {
            match TlsMgm::bind() {
                Some(tls) => Some(tls),
                None => {
                    error!(
                        "rest_init_client_tls is used, but the tls_mgm API cannot be \
                            loaded: load the tls_mgm module before rest_client"
                    );
                    return -1;
                }
            }
        } else {
            None
        };
        tracing::init();
        events::init();
        match module::init(&read_params(), tls) {
            Ok(()) => 0,
            Err(e) => {
                error!("{e}");
                -1
            }
        }
    })
}

unsafe extern "C" fn child_init(_rank: c_int) -> c_int {
    guarded("child_init", -1, || {
        wrap_async_start();
        match worker::with_worker(|_| ()) {
            Ok(()) => 0,
            Err(e) => {
                error!("cannot create this process's HTTP client: {e}");
                -1
            }
        }
    })
}

/// Accepts a reloaded script unless it newly needs tls_mgm that was never bound.
unsafe extern "C" fn reload_ack() -> c_int {
    guarded("reload_ack", 0, || {
        let bound = module::config().is_some_and(|c| c.tls.is_some());
        c_int::from(bound || !script_uses_function(c"rest_init_client_tls"))
    })
}

// ---------------------------------------------------------------------------------------------
// MI commands.

/// Answers an MI command without parameters, `name`, with the response `build` makes.
fn mi_listing(name: &str, build: fn() -> Option<MiResponse>) -> *mut c_void {
    match catch_unwind(build) {
        Ok(Some(response)) => response.into_raw(),
        Ok(None) => {
            error!("{name}: cannot build the MI response");
            std::ptr::null_mut()
        }
        Err(_) => {
            error!("internal error (panic) in {name}");
            std::ptr::null_mut()
        }
    }
}

/// MI `rest_list_services` (no parameters), in the MI process.
///
/// SAFETY: called by the core's MI layer with its (unused) parameters.
unsafe extern "C" fn mi_list_services(_params: *const c_void, _async: *mut c_void) -> *mut c_void {
    mi_listing("rest_list_services", mi::list_services)
}

/// MI `rest_list_upstreams` (no parameters), in the MI process.
///
/// SAFETY: called by the core's MI layer with its (unused) parameters.
unsafe extern "C" fn mi_list_upstreams(_params: *const c_void, _async: *mut c_void) -> *mut c_void {
    mi_listing("rest_list_upstreams", mi::list_upstreams)
}

/// MI `rest_cache_flush service=NAME`, in the MI process.
///
/// SAFETY: called by the core's MI layer with the command's parameters.
unsafe extern "C" fn mi_cache_flush(params: *const c_void, _async: *mut c_void) -> *mut c_void {
    let response = catch_unwind(|| {
        // SAFETY: `params` is the core's, alive during this call.
        let asked = match unsafe { mi_string_param(params, c"service") } {
            Some(name) => script::ask_cache_flush(&name),
            None => Err("a service parameter is needed".to_string()),
        };
        match asked {
            Ok(()) => MiResponse::text("OK"),
            Err(e) => {
                error!("rest_cache_flush: {e}");
                MiResponse::error(400, &e)
            }
        }
    });
    match response {
        Ok(Some(response)) => response.into_raw(),
        Ok(None) => std::ptr::null_mut(),
        Err(_) => {
            error!("internal error (panic) in rest_cache_flush");
            std::ptr::null_mut()
        }
    }
}

/// The MI commands: `rest_list_services`, `rest_list_upstreams` and `rest_cache_flush`; in
/// OpenSIPS 4.0 `rest_client:list_services`, `rest_client:list_upstreams` and
/// `rest_client:cache_flush`, with the 3.x names as aliases.
static MI_CMDS: StaticTable<[MiExport; 4]> = StaticTable([
    MiExport::without_params(
        c"rest_list_services",
        c"Lists the named services: base URL, limits, cache settings and counters",
        mi_list_services,
    )
    .named_in_4_0(c"list_services"),
    MiExport::without_params(
        c"rest_list_upstreams",
        c"Lists each named service's base URLs with their state and counters",
        mi_list_upstreams,
    )
    .named_in_4_0(c"list_upstreams"),
    MiExport::with_param(
        c"rest_cache_flush",
        c"Drops a service's cached answers in every process (and its shared store)",
        c"service",
        mi_cache_flush,
    )
    .named_in_4_0(c"cache_flush"),
    MiExport::END,
]);

/// Soft dependency on the tracer module (DEP_SILENT), as the C module declares it.
static DEPS: StaticTable<DepExport> = StaticTable(DepExport {
    md: {
        let mut md = [ModuleDependency::END; 10];
        md[0] = ModuleDependency {
            mod_type: MOD_TYPE_DEFAULT,
            mod_name: c"tracer".as_ptr(),
            dep_type: DEP_SILENT,
        };
        md
    },
    mpd: [ModparamDependency {
        script_param: std::ptr::null(),
        get_deps_f: None,
    }],
});

/// The symbol the core resolves with `dlsym(handle, "exports")`. Mutable only so that the
/// load-time constructor below can adopt the core's source-control stamp.
#[unsafe(no_mangle)]
pub static mut exports: ModuleExports = ModuleExports {
    name: c"rest_client".as_ptr(),
    module_type: MOD_TYPE_DEFAULT,
    version: target::VERSION.as_ptr(),
    compile_flags: target::COMPILE_FLAGS.as_ptr(),
    scm_type: target::SCM_TYPE.as_ptr(),
    scm_rev: target::SCM_REV.as_ptr(),
    dlflags: 0,
    load_f: None,
    deps: &DEPS.0,
    cmds: CMDS.0.as_ptr(),
    acmds: ACMDS.0.as_ptr(),
    params: PARAMS.0.as_ptr(),
    stats: stats::STATS.0.as_ptr(),
    mi_cmds: MI_CMDS.0.as_ptr(),
    items: std::ptr::null(),
    trans: TRANS.0.as_ptr(),
    procs: std::ptr::null(),
    preinit_f: None,
    init_f: Some(mod_init),
    response_f: None,
    destroy_f: None,
    init_child_f: Some(child_init),
    reload_ack_f: Some(reload_ack),
};

/// Runs when the core `dlopen`s the module, before it reads `exports`: installs the log bridge
/// and copies the core's `core_scm_ver` into `exports`, so the source-control check (exact in
/// some releases) always passes; the version and compile flags stay as built.
extern "C" fn on_load() {
    // A panic here cannot be reported to anyone: swallow it, the core's checks still run.
    let _ = catch_unwind(|| {
        log_bridge::install();
        if let Some((scm_type, rev)) = core_scm_version() {
            // SAFETY: single-threaded dlopen, before the core reads `exports`; the strings are
            // the core's static data.
            unsafe {
                exports.scm_type = scm_type;
                exports.scm_rev = rev;
            }
        }
    });
}

#[used]
#[unsafe(link_section = ".init_array")]
static ON_LOAD: extern "C" fn() = on_load;

//! Mirrors of the OpenSIPS structures exchanged with the core (x86_64 layouts of
//! docs `opensips-module-abi.md`, pinned by the compile-time assertions at the end), and the
//! core symbols the module uses.
//!
//! Core symbols are resolved at run time with `dlsym(RTLD_DEFAULT)` rather than imported at
//! link time: the `.so` then has no undefined OpenSIPS symbol (it loads into every supported
//! core), and the Rust tests link without a core. Everything that dereferences a core pointer
//! lives here, behind small safe wrappers.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::ptr::NonNull;
use std::sync::OnceLock;

/// `str`: a byte string that is not NUL-terminated in general.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Str {
    pub s: *mut c_char,
    pub len: c_int,
}

/// `str_const`.
#[repr(C)]
pub struct StrConst {
    pub s: *const c_char,
    pub len: c_int,
}

/// `pv_value_t`.
#[repr(C)]
pub struct PvValue {
    pub rs: Str,
    pub ri: c_int,
    pub flags: c_int,
}

pub const PV_VAL_NULL: c_int = 1;
pub const PV_VAL_STR: c_int = 4;
pub const PV_VAL_INT: c_int = 8;
pub const PV_TYPE_INT: c_int = 16;

pub type FixupFn = unsafe extern "C" fn(*mut *mut c_void) -> c_int;

/// `struct cmd_param`.
#[repr(C)]
pub struct CmdParam {
    pub flags: c_int,
    pub fixup: Option<FixupFn>,
    pub free_fixup: Option<FixupFn>,
}

pub const CMD_PARAM_INT: c_int = 1;
pub const CMD_PARAM_STR: c_int = 2;
pub const CMD_PARAM_VAR: c_int = 4;
pub const CMD_PARAM_OPT: c_int = 16;
pub const ALL_ROUTES: c_int = 511;

impl CmdParam {
    pub const fn new(flags: c_int) -> Self {
        Self {
            flags,
            fixup: None,
            free_fixup: None,
        }
    }
    pub const END: Self = Self::new(0);
}

/// `cmd_function`: `int f(struct sip_msg *, void *p1, ..., void *p8)`.
pub type CmdFunction = unsafe extern "C" fn(
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
) -> c_int;

/// `cmd_export_t`.
#[repr(C)]
pub struct CmdExport {
    pub name: *const c_char,
    pub function: Option<CmdFunction>,
    pub params: [CmdParam; 9],
    pub flags: c_int,
}

/// `acmd_function`: `int f(struct sip_msg *, async_ctx *, void *p1, ..., void *p8)`.
pub type AcmdFunction = unsafe extern "C" fn(
    *mut c_void,
    *mut AsyncCtx,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
    *mut c_void,
) -> c_int;

/// `acmd_export_t`.
#[repr(C)]
pub struct AcmdExport {
    pub name: *const c_char,
    pub function: Option<AcmdFunction>,
    pub params: [CmdParam; 9],
}

/// Resume and timeout functions: `int f(int fd, struct sip_msg *msg, void *param)`.
pub type ResumeFn = unsafe extern "C" fn(c_int, *mut c_void, *mut c_void) -> c_int;

/// `async_ctx`, in the layout of the OpenSIPS release chosen at build time (docs §5.1).
#[repr(C)]
pub struct AsyncCtx {
    pub resume_f: Option<ResumeFn>,
    /// 4.0 only: the resume function's name, copied unconditionally by tm (never NULL).
    #[cfg(async_ctx = "v4_0")]
    pub resume_f_name: *const c_char,
    pub resume_param: *mut c_void,
    pub timeout_f: Option<ResumeFn>,
    /// 3.4.3+: in, the script's async() timeout (0 = none); out, the module's own limit.
    #[cfg(not(async_ctx = "v3_4_0"))]
    pub timeout_s: c_uint,
}

/// `enum async_ret_code` values the module sets in `async_status`.
pub const ASYNC_SYNC: c_int = -7;
pub const ASYNC_NO_FD: c_int = -6;
pub const ASYNC_CONTINUE: c_int = -5;
pub const ASYNC_DONE_NO_IO: c_int = -2;

/// `ASYNC_FD_NONE`: the fd argument of a resume without a descriptor.
const ASYNC_FD_NONE: c_int = -1;

/// Functions `register_async_fd` calls on read readiness: `int f(int fd, void *param)`.
pub type FdResumeFn = unsafe extern "C" fn(c_int, *mut c_void) -> c_int;
type RegisterAsyncFdFn = unsafe extern "C" fn(c_int, FdResumeFn, *mut c_void) -> c_int;
/// `async_script_resume_function`: `int f(int fd, void *ctx, int was_timeout)`.
type ScriptResumeFn = unsafe extern "C" fn(c_int, *mut c_void, c_int) -> c_int;
/// `async_script_start_function` (3.4, 3.6, 4.0): `int f(struct sip_msg *, struct action *,
/// struct script_route_ref *resume_route, unsigned int timeout, void **params)`.
type ScriptStartFn =
    unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_void, c_uint, *mut *mut c_void) -> c_int;

/// Who called an acmd, so who resumes a call launched with ASYNC_NO_FD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsyncCaller {
    /// `async()`: tm's start function; tm resumes the call (`async_script_resume_f`).
    Tm,
    /// `launch()`: the core's; the core resumes the job (`async_launch_resume`).
    Launch,
    /// Not known (tm's start function could not be wrapped): no ASYNC_NO_FD.
    Unknown,
}

/// tm's start function, as found in `async_script_start_f` before `wrap_async_start`.
static TM_ASYNC_START: OnceLock<ScriptStartFn> = OnceLock::new();

/// `action_elem_t` (`route_struct.h`, identical in 3.4, 3.6 and 4.0): a type and a 16-byte
/// union, whose pointer member is the only one read.
#[repr(C)]
struct ActionElem {
    kind: c_int,
    data: *const c_void,
    _str_len: c_int,
}

/// The head of `struct action`: its type and first element (nine follow in all).
#[repr(C)]
struct ActionHead {
    kind: c_int,
    first: ActionElem,
}

/// `AMODULE_T`: an acmd call, whose first element (`ACMD_ST`) is its `acmd_export_t`.
const AMODULE_T: c_int = 8;
const ACMD_ST: c_int = 10;

/// The acmd call tm is about to make: the function of the action it was given, and the first
/// argument it passes on (the address of the statement's own evaluated argument, in the core's
/// frame of that statement: a `launch()` or `async()` in a route that tm runs before it returns
/// has another, even for the same function).
#[derive(Clone, Copy, PartialEq, Eq)]
struct TmCall {
    function: usize,
    first_arg: usize,
}

thread_local! {
    /// The call tm's start function is about to make, until that acmd claims it
    /// (`async_caller`) or tm returns.
    static TM_CALL: std::cell::Cell<Option<TmCall>> = const { std::cell::Cell::new(None) };
}

/// The acmd call that tm makes for `action` with `args`, when `action` is one.
///
/// SAFETY: `action` is NULL or the core's `struct action` of an `async()` statement, `args` NULL
/// or its eight evaluated arguments, both alive for the duration of tm's start function.
unsafe fn tm_call(action: *const c_void, args: *const *mut c_void) -> Option<TmCall> {
    // SAFETY: see above; only the head of the action and the first argument are read.
    let (action, first_arg) = unsafe { (action.cast::<ActionHead>().as_ref()?, *args.as_ref()?) };
    if action.kind != AMODULE_T || action.first.kind != ACMD_ST {
        return None;
    }
    // SAFETY: an ACMD_ST element points to the core's (or a module's) `acmd_export_t`.
    let acmd = unsafe { action.first.data.cast::<AcmdExport>().as_ref()? };
    Some(TmCall {
        function: acmd.function? as usize,
        first_arg: first_arg as usize,
    })
}

/// Stands in for tm's start function in `async_script_start_f`: notes which acmd call tm makes
/// for this `async()` statement, for that call only to claim.
///
/// SAFETY: installed only by `wrap_async_start` after `TM_ASYNC_START` was set; the core calls
/// it with tm's arguments, passed on unchanged.
unsafe extern "C" fn tm_async_start(
    msg: *mut c_void,
    action: *mut c_void,
    resume_route: *mut c_void,
    timeout: c_uint,
    params: *mut *mut c_void,
) -> c_int {
    let Some(start) = TM_ASYNC_START.get() else {
        return -1;
    };
    // SAFETY: the core's arguments for tm (see above).
    TM_CALL.set(unsafe { tm_call(action, params) });
    // SAFETY: tm's own function with the arguments the core gave us.
    let rc = unsafe { start(msg, action, resume_route, timeout, params) };
    TM_CALL.set(None);
    rc
}

/// Puts a wrapper around tm's start function in the core's `async_script_start_f` (in this
/// process), so that an acmd can tell `async()` (tm resumes it) from `launch()` (the core
/// does): the core gives no other way, and resuming one through the other's function would
/// crash. Called in child_init, after every module's mod_init registered its handlers.
pub fn wrap_async_start() {
    let cell = core().async_script_start_f;
    if cell.is_null() {
        return;
    }
    // SAFETY: `async_script_start_f` is the core's function-pointer global, read and written
    // only by this process's script thread; tm set it in its mod_init.
    unsafe {
        if let Some(current) = *cell
            && current as *const () != tm_async_start as *const ()
            && *TM_ASYNC_START.get_or_init(|| current) as *const () == current as *const ()
        {
            *cell = Some(tm_async_start);
        }
    }
}

/// Who is calling the acmd `entry` with first argument `first_arg`: tm when it is the call tm's
/// start function is making (claimed here, once: calls in a route that tm runs before it
/// returns are not tm's), the core (`launch()`) otherwise.
pub fn async_caller(entry: AcmdFunction, first_arg: *mut c_void) -> AsyncCaller {
    if TM_ASYNC_START.get().is_none() {
        return AsyncCaller::Unknown;
    }
    let this = TmCall {
        function: entry as usize,
        first_arg: first_arg as usize,
    };
    if TM_CALL.get() == Some(this) {
        TM_CALL.set(None);
        AsyncCaller::Tm
    } else {
        AsyncCaller::Launch
    }
}

/// The async context of a running acmd call.
pub struct AsyncCtxRef(NonNull<AsyncCtx>);

impl AsyncCtxRef {
    pub fn new(ctx: *mut AsyncCtx) -> Option<Self> {
        NonNull::new(ctx).map(Self)
    }

    /// The script's `async(..., seconds)` limit, 0 when none (or not known to this release).
    pub fn script_timeout(&self) -> u32 {
        #[cfg(not(async_ctx = "v3_4_0"))]
        // SAFETY: the core passes a live async_ctx for the duration of the acmd call.
        return unsafe { self.0.as_ref().timeout_s };
        #[cfg(async_ctx = "v3_4_0")]
        0
    }

    /// Registers the resume function and its parameter (a token, never dereferenced) for a
    /// call launched with ASYNC_NO_FD: no timeout function, the module enforces the limit.
    pub fn set_resume(&mut self, resume: ResumeFn, token: usize) {
        // SAFETY: as in `script_timeout`; the core reads these fields when it resumes.
        let ctx = unsafe { self.0.as_mut() };
        ctx.resume_f = Some(resume);
        #[cfg(async_ctx = "v4_0")]
        {
            ctx.resume_f_name = c"rest_client async resume".as_ptr();
        }
        ctx.resume_param = token as *mut c_void;
        ctx.timeout_f = None;
    }

    /// Asks whoever launched the call with ASYNC_NO_FD to resume it: tm (its resume function
    /// runs, then the resume route) or the core (for `launch()`: the resume function, then the
    /// report route). Consumes the context: they free it.
    pub fn resume(self, caller: AsyncCaller) {
        let ctx = self.0.as_ptr().cast::<c_void>();
        let core = core();
        // SAFETY: `async_script_resume_f` is the core's function-pointer global (set by tm) and
        // `async_launch_resume` a core function; both keep a context launched with ASYNC_NO_FD
        // alive until it is resumed, once, here, by the one that launched it (`caller`).
        unsafe {
            match caller {
                AsyncCaller::Tm => match core.async_script_resume_f.as_ref().and_then(|f| *f) {
                    Some(f) => {
                        f(ASYNC_FD_NONE, ctx, 0);
                    }
                    None => log::error!("cannot resume an async call: no async_script_resume_f"),
                },
                AsyncCaller::Launch => match core.async_launch_resume {
                    Some(f) => {
                        f(ASYNC_FD_NONE, ctx);
                    }
                    None => log::error!("cannot resume a launch job: no async_launch_resume"),
                },
                AsyncCaller::Unknown => log::error!("cannot resume a call of unknown origin"),
            }
        }
    }
}

/// Puts `fd` into the core's reactor for the life of the process: `on_readable(fd, NULL)` runs
/// on each read readiness, and keeps the fd watched by setting ASYNC_CONTINUE.
pub fn register_reactor_fd(fd: c_int, on_readable: FdResumeFn) -> bool {
    match core().register_async_fd {
        // SAFETY: documented prototype; the core copies what it needs.
        Some(register) => unsafe { register(fd, on_readable, std::ptr::null_mut()) == 0 },
        None => false,
    }
}

/// The head of `struct sip_msg` (identical in 3.4, 3.6 and 4.0): the id, then the first line.
#[repr(C)]
struct SipMsgHead {
    id: c_uint,
    first_line: MsgStart,
}

/// `struct msg_start`, request variant of its union.
#[repr(C)]
struct MsgStart {
    kind: c_int,
    _len: c_int,
    _method: Str,
    _uri: Str,
    _version: Str,
    method_value: c_int,
}

const SIP_REQUEST: c_int = 1;
const METHOD_ACK: c_int = 4;

/// Whether `msg` is an ACK request.
pub fn is_ack(msg: *mut c_void) -> bool {
    // SAFETY: the core passes a live, parsed `struct sip_msg` to a script function; only its
    // first line (parsed on receipt) is read.
    unsafe { msg.cast::<SipMsgHead>().as_ref() }.is_some_and(|m| {
        m.first_line.kind == SIP_REQUEST && m.first_line.method_value == METHOD_ACK
    })
}

/// Which SIP message a script function runs for: the message's address and its id (the core
/// numbers the messages a process receives). A message freed and another allocated at the same
/// address have different ids; the dummy message of timer, event and `launch()` report routes
/// is one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageId {
    address: usize,
    id: c_uint,
    /// The core's dummy message, which belongs to no SIP call.
    dummy: bool,
}

impl MessageId {
    pub fn of(msg: *mut c_void) -> Self {
        // SAFETY: the core passes NULL or a live `struct sip_msg`, whose id it sets on creation.
        let id = unsafe { msg.cast::<SipMsgHead>().as_ref() }.map_or(0, |m| m.id);
        Self {
            address: msg as usize,
            id,
            dummy: is_dummy_message(msg),
        }
    }

    /// Whether this is the core's dummy message (timer and startup routes, `launch()` report
    /// routes).
    pub fn is_dummy(&self) -> bool {
        self.dummy
    }

    #[cfg(test)]
    pub fn for_test(address: usize, id: c_uint, dummy: bool) -> Self {
        Self { address, id, dummy }
    }
}

/// Whether `msg` is the core's dummy message, which belongs to no SIP call (timer and
/// startup routes, launch() report routes).
pub fn is_dummy_message(msg: *mut c_void) -> bool {
    let Some(is_dummy) = core().is_dummy_sip_msg else {
        return false;
    };
    // SAFETY: the core's function, which compares the message's buffer with its dummy one.
    !msg.is_null() && unsafe { is_dummy(msg) } == 0
}

/// Sets the core's `async_status` (how an acmd or resume call ended, or the fd to watch).
pub fn set_async_status(status: c_int) {
    let cell = core().async_status;
    if !cell.is_null() {
        // SAFETY: `async_status` is the core's int global, written only by this thread.
        unsafe { *cell = status };
    }
}

/// `param_export_t`.
#[repr(C)]
pub struct ParamExport {
    pub name: *const c_char,
    pub param_type: c_uint,
    pub param_pointer: *mut c_void,
}

pub const STR_PARAM: c_uint = 1;
pub const INT_PARAM: c_uint = 2;
pub const USE_FUNC_PARAM: c_uint = 0x8000_0000;

/// `module_dependency_t`.
#[repr(C)]
pub struct ModuleDependency {
    pub mod_type: c_int,
    pub mod_name: *const c_char,
    pub dep_type: c_uint,
}

impl ModuleDependency {
    /// The list terminator (`mod_type` 0).
    pub const END: Self = Self {
        mod_type: 0,
        mod_name: std::ptr::null(),
        dep_type: 0,
    };
}

/// `modparam_dependency_t`.
#[repr(C)]
pub struct ModparamDependency {
    pub script_param: *const c_char,
    pub get_deps_f: Option<unsafe extern "C" fn(*const ParamExport) -> *mut ModuleDependency>,
}

/// `dep_export_t` with a one-entry (terminator only) `mpd` list.
#[repr(C)]
pub struct DepExport {
    pub md: [ModuleDependency; 10],
    pub mpd: [ModparamDependency; 1],
}

pub const MOD_TYPE_DEFAULT: c_int = 1;
pub const DEP_SILENT: c_uint = 1;

/// `trans_t` (only `subtype` is used by the module).
#[repr(C)]
pub struct TransT {
    pub name: Str,
    pub subtype: c_int,
    pub trf: *mut c_void,
    pub params: *mut c_void,
    pub next: *mut c_void,
}

pub type TransParseFn = unsafe extern "C" fn(*mut Str, *mut TransT) -> c_int;
pub type TransEvalFn = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int, *mut PvValue) -> c_int;

/// `trans_export_t`.
#[repr(C)]
pub struct TransExport {
    pub name: StrConst,
    pub parse_func: Option<TransParseFn>,
    pub eval_func: Option<TransEvalFn>,
}

/// `struct module_exports`.
#[repr(C)]
pub struct ModuleExports {
    pub name: *const c_char,
    pub module_type: c_int,
    pub version: *const c_char,
    pub compile_flags: *const c_char,
    pub scm_type: *const c_char,
    pub scm_rev: *const c_char,
    pub dlflags: c_uint,
    pub load_f: Option<unsafe extern "C" fn() -> c_int>,
    pub deps: *const DepExport,
    pub cmds: *const CmdExport,
    pub acmds: *const AcmdExport,
    pub params: *const ParamExport,
    pub stats: *const StatExport,
    pub mi_cmds: *const MiExport,
    pub items: *const c_void,
    pub trans: *const TransExport,
    pub procs: *const c_void,
    pub preinit_f: Option<unsafe extern "C" fn() -> c_int>,
    pub init_f: Option<unsafe extern "C" fn() -> c_int>,
    pub response_f: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    pub destroy_f: Option<unsafe extern "C" fn()>,
    pub init_child_f: Option<unsafe extern "C" fn(c_int) -> c_int>,
    pub reload_ack_f: Option<unsafe extern "C" fn() -> c_int>,
}

/// Makes a static table of raw pointers shareable. Sound because the tables are immutable
/// data the core only reads.
#[repr(transparent)]
pub struct StaticTable<T>(pub T);
// SAFETY: see above: never written after initialisation.
unsafe impl<T> Sync for StaticTable<T> {}

/// Storage of an INT/STR module parameter, written by the core's `modparam` during
/// configuration parsing (main process, before `mod_init`) and only read afterwards.
#[repr(transparent)]
pub struct ParamCell<T>(std::cell::UnsafeCell<T>);
// SAFETY: the only writer is the core, in the single-threaded main process before any reader.
unsafe impl<T> Sync for ParamCell<T> {}

impl<T: Copy> ParamCell<T> {
    pub const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }
    /// The address handed to the core as `param_pointer`.
    pub const fn as_param_pointer(&self) -> *mut c_void {
        self.0.get().cast()
    }
    pub fn get(&self) -> T {
        // SAFETY: see the Sync impl: no write happens concurrently with reads.
        unsafe { *self.0.get() }
    }
}

impl ParamCell<*mut c_char> {
    /// A STR parameter's value (`strdup`ed by the core, never freed), if set.
    pub fn text(&self) -> Option<String> {
        let ptr = self.get();
        // SAFETY: NULL or a NUL-terminated string the core allocated and never frees.
        (!ptr.is_null()).then(|| {
            unsafe { CStr::from_ptr(ptr) }
                .to_string_lossy()
                .into_owned()
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Core symbols.

type DprintFn = unsafe extern "C" fn(
    c_int,
    c_int,
    *const c_char,
    *const c_char,
    *const c_char,
    *const c_char,
    *const c_char,
    ...
);
type PvSetValueFn = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int, *mut PvValue) -> c_int;
type FindExportFn = unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void;
type IsScriptFuncUsedFn = unsafe extern "C" fn(*const c_char, c_int) -> c_int;
/// `is_dummy_sip_msg`: 0 for the core's dummy message (timer and startup routes, launch()
/// report routes), -1 for another.
type IsDummySipMsgFn = unsafe extern "C" fn(*mut c_void) -> c_int;

/// Addresses of the core's functions and globals, looked up once per process image.
struct Core {
    dprint: Option<DprintFn>,
    dp_my_pid: Option<unsafe extern "C" fn() -> c_int>,
    log_level: *const *const c_int,
    log_prefix: *const *const c_char,
    log_facility: *const c_int,
    async_status: *mut c_int,
    async_script_resume_f: *const Option<ScriptResumeFn>,
    async_script_start_f: *mut Option<ScriptStartFn>,
    async_launch_resume: Option<FdResumeFn>,
    register_async_fd: Option<RegisterAsyncFdFn>,
    pv_set_value: Option<PvSetValueFn>,
    find_export: Option<FindExportFn>,
    is_script_func_used: Option<IsScriptFuncUsedFn>,
    is_dummy_sip_msg: Option<IsDummySipMsgFn>,
}

// SAFETY: the addresses are of the core's functions and globals, fixed for the life of the
// process; the globals are read through them, and `async_script_start_f` written once per
// process by its script thread (`wrap_async_start`).
unsafe impl Sync for Core {}
unsafe impl Send for Core {}

pub(super) fn lookup(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no other precondition.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

/// Reinterprets a symbol address as a function pointer of type `F` (NULL → None).
///
/// SAFETY: the caller names a symbol whose C prototype is `F` (docs §6, §4.4, §7).
pub(super) unsafe fn lookup_fn<F: Copy>(name: &CStr) -> Option<F> {
    let addr = lookup(name);
    // SAFETY: F is a function pointer type of the same size as a data pointer (x86_64 SysV).
    (!addr.is_null()).then(|| unsafe { std::mem::transmute_copy::<*mut c_void, F>(&addr) })
}

fn core() -> &'static Core {
    static CORE: OnceLock<Core> = OnceLock::new();
    CORE.get_or_init(|| {
        // SAFETY: each type below is the documented prototype of the named core symbol.
        unsafe {
            Core {
                dprint: lookup_fn(c"dprint"),
                dp_my_pid: lookup_fn(c"dp_my_pid"),
                log_level: lookup(c"log_level").cast(),
                log_prefix: lookup(c"log_prefix").cast(),
                log_facility: lookup(c"log_facility").cast(),
                async_status: lookup(c"async_status").cast(),
                async_script_resume_f: lookup(c"async_script_resume_f").cast(),
                async_script_start_f: lookup(c"async_script_start_f").cast(),
                async_launch_resume: lookup_fn(c"async_launch_resume"),
                register_async_fd: lookup_fn(c"register_async_fd"),
                pv_set_value: lookup_fn(c"pv_set_value"),
                find_export: lookup_fn(c"find_export"),
                is_script_func_used: lookup_fn(c"is_script_func_used"),
                is_dummy_sip_msg: lookup_fn(c"is_dummy_sip_msg"),
            }
        }
    })
}

/// The core's current log level (`*log_level`), or `None` without a core.
pub fn core_log_level() -> Option<c_int> {
    let cell = core().log_level;
    // SAFETY: `log_level` is the core's `int *` global; it is re-pointed during startup, so
    // both the global and its target are read at each call.
    unsafe {
        if cell.is_null() || (*cell).is_null() {
            return None;
        }
        Some(**cell)
    }
}

/// Sends one log line through the core's `dprint`. Returns false without a core, or when
/// `message` holds a NUL byte (the log bridge escapes those).
/// The caller has checked the level against [`core_log_level`].
pub fn core_log(level: c_int, label: &str, func: &CStr, message: &str) -> bool {
    let c = core();
    let (Some(dprint), Some(my_pid)) = (c.dprint, c.dp_my_pid) else {
        return false;
    };
    let Ok(text) = CString::new(format!("{message}\n")) else {
        return false;
    };
    let (Ok(stderr_fmt), Ok(syslog_fmt)) = (
        CString::new(format!("%s [%d] %s{label}:rest_client:%s: %s")),
        CString::new(format!("%s{label}:rest_client:%s: %s")),
    ) else {
        return false;
    };
    let time = local_time_text();
    // SAFETY: dprint's variadic part is (char *time, int pid, char *prefix, char *func, msg)
    // because module and func are both non-NULL (§6); every string is NUL-terminated and
    // lives across the call; user text only travels as an argument, never as a format.
    unsafe {
        let prefix = if c.log_prefix.is_null() {
            std::ptr::null()
        } else {
            *c.log_prefix
        };
        let prefix = if prefix.is_null() {
            c"".as_ptr()
        } else {
            prefix
        };
        let facility = if c.log_facility.is_null() {
            0
        } else {
            *c.log_facility
        };
        dprint(
            level,
            facility,
            c"rest_client".as_ptr(),
            func.as_ptr(),
            stderr_fmt.as_ptr(),
            syslog_fmt.as_ptr(),
            c"%s".as_ptr(),
            time.as_ptr(),
            my_pid(),
            prefix,
            func.as_ptr(),
            text.as_ptr(),
        );
    }
    true
}

/// `Nov 22 23:03:28`, as the core prints it.
fn local_time_text() -> CString {
    let mut buf = [0u8; 32];
    // SAFETY: localtime_r and strftime write into locals of the given sizes.
    let len = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%b %e %H:%M:%S".as_ptr(),
            &tm,
        )
    };
    CString::new(&buf[..len]).unwrap_or_default()
}

/// A script variable (`pv_spec_t *`) the core passed for this call, with its message.
pub struct ScriptVar {
    msg: *mut c_void,
    spec: NonNull<c_void>,
}

impl ScriptVar {
    /// Wraps a VAR argument; `None` for an omitted optional one.
    pub fn from_arg(msg: *mut c_void, spec: *mut c_void) -> Option<Self> {
        NonNull::new(spec).map(|spec| Self { msg, spec })
    }

    /// Points the variable at another message (an async resume runs with its own).
    pub fn set_msg(&mut self, msg: *mut c_void) {
        self.msg = msg;
    }

    fn set(&self, mut value: PvValue) -> bool {
        let Some(pv_set_value) = core().pv_set_value else {
            return false;
        };
        // SAFETY: msg and spec are the ones the core passed to the running function; the core
        // copies the value before returning (§4.4), so `value` may point at our buffers.
        unsafe { pv_set_value(self.msg, self.spec.as_ptr(), 0, &mut value) == 0 }
    }

    pub fn set_str(&self, text: &[u8]) -> bool {
        let Ok(len) = c_int::try_from(text.len()) else {
            return false;
        };
        let rs = Str {
            s: text.as_ptr().cast_mut().cast(),
            len,
        };
        self.set(PvValue {
            rs,
            ri: 0,
            flags: PV_VAL_STR,
        })
    }

    pub fn set_int(&self, value: c_int) -> bool {
        let rs = Str {
            s: std::ptr::null_mut(),
            len: 0,
        };
        self.set(PvValue {
            rs,
            ri: value,
            flags: PV_VAL_INT | PV_TYPE_INT,
        })
    }
}

/// The bytes of a STR argument (`str *`), or `None` when it is NULL or malformed.
///
/// SAFETY: `arg` is NULL or the `str *` the core passed for the running call.
pub unsafe fn str_arg<'a>(arg: *mut c_void) -> Option<&'a [u8]> {
    let s = NonNull::new(arg.cast::<Str>())?;
    // SAFETY: per the contract, `s` points at a live `str` whose `s` holds `len` bytes.
    unsafe {
        let s = s.as_ref();
        match (s.s.is_null(), usize::try_from(s.len)) {
            (_, Ok(0)) => Some(&[]),
            (false, Ok(len)) => Some(std::slice::from_raw_parts(s.s.cast::<u8>(), len)),
            _ => None,
        }
    }
}

/// The value of an INT argument (`int *`), or `None` when it is NULL (an omitted optional one).
///
/// SAFETY: `arg` is NULL or the `int *` the core passed for the running call.
pub unsafe fn int_arg(arg: *mut c_void) -> Option<c_int> {
    // SAFETY: per the contract.
    unsafe { arg.cast::<c_int>().as_ref() }.copied()
}

/// `is_script_func_used(name, -1)`: does any route call `name` (non-async)?
pub fn script_uses_function(name: &CStr) -> bool {
    // SAFETY: documented prototype; `name` is NUL-terminated.
    core()
        .is_script_func_used
        .is_some_and(|f| unsafe { f(name.as_ptr(), -1) } == 1)
}

// ---------------------------------------------------------------------------------------------
// tls_mgm (§7).

/// `struct tls_mgm_binds`: 14 function pointers, of which three are used.
#[repr(C)]
struct TlsMgmBinds {
    find_server_domain: *mut c_void,
    find_client_domain: *mut c_void,
    find_client_domain_name: Option<unsafe extern "C" fn(*mut Str) -> *mut c_void>,
    release_domain: Option<unsafe extern "C" fn(*mut c_void)>,
    unused: [*mut c_void; 10],
}

/// Offsets of `cert` and `pkey` (`str`) in `struct tls_domain`, same in 3.4 – 4.0.
const TLS_DOMAIN_CERT_OFFSET: usize = 64;
const TLS_DOMAIN_PKEY_OFFSET: usize = 80;

/// The bound tls_mgm API.
#[derive(Clone, Copy)]
pub struct TlsMgm {
    find_client_domain_name: unsafe extern "C" fn(*mut Str) -> *mut c_void,
    release_domain: unsafe extern "C" fn(*mut c_void),
}

impl TlsMgm {
    /// `find_export("load_tls_mgm")` and the load call; `None` if tls_mgm is not loaded.
    pub fn bind() -> Option<Self> {
        let find_export = core().find_export?;
        // SAFETY: documented prototype; the name is NUL-terminated.
        let load = unsafe { find_export(c"load_tls_mgm".as_ptr(), 0) };
        if load.is_null() {
            return None;
        }
        // SAFETY: `load_tls_mgm` is `int (*)(struct tls_mgm_binds *)` (§7).
        let load: unsafe extern "C" fn(*mut TlsMgmBinds) -> c_int =
            unsafe { std::mem::transmute::<*mut c_void, _>(load) };
        let mut binds = TlsMgmBinds {
            find_server_domain: std::ptr::null_mut(),
            find_client_domain: std::ptr::null_mut(),
            find_client_domain_name: None,
            release_domain: None,
            unused: [std::ptr::null_mut(); 10],
        };
        // SAFETY: `binds` is a writable tls_mgm_binds of the documented size (112 bytes).
        if unsafe { load(&mut binds) } < 0 {
            return None;
        }
        Some(Self {
            find_client_domain_name: binds.find_client_domain_name?,
            release_domain: binds.release_domain?,
        })
    }

    /// The certificate and key texts of the client domain `name` (paths, or PEM content for
    /// database-provisioned domains); `None` if there is no such domain.
    pub fn client_domain_cert(&self, name: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut name_str = Str {
            s: name.as_ptr().cast_mut().cast(),
            len: c_int::try_from(name.len()).ok()?,
        };
        // SAFETY: tls_mgm reads `len` bytes of the name and returns a referenced domain or NULL.
        let domain = unsafe { (self.find_client_domain_name)(&mut name_str) };
        if domain.is_null() {
            return None;
        }
        // SAFETY: `domain` is a live tls_domain until release_domain; cert and pkey are `str`
        // at fixed offsets (§7); their bytes are copied before the release.
        unsafe {
            let field = |offset: usize| {
                let s = &*domain.cast::<u8>().add(offset).cast::<Str>();
                match usize::try_from(s.len) {
                    Ok(len) if !s.s.is_null() => {
                        std::slice::from_raw_parts(s.s.cast::<u8>(), len).to_vec()
                    }
                    _ => Vec::new(),
                }
            };
            let pair = (field(TLS_DOMAIN_CERT_OFFSET), field(TLS_DOMAIN_PKEY_OFFSET));
            (self.release_domain)(domain);
            Some(pair)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Layout pins (docs §2, §4, §7).

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<Str>() == 16);
    assert!(size_of::<PvValue>() == 24 && offset_of!(PvValue, flags) == 20);
    assert!(size_of::<CmdParam>() == 24);
    assert!(size_of::<CmdExport>() == 240 && offset_of!(CmdExport, flags) == 232);
    assert!(size_of::<AcmdExport>() == 232);
    assert!(offset_of!(SipMsgHead, first_line) == 8 && offset_of!(MsgStart, method_value) == 56);
    assert!(size_of::<ActionElem>() == 24 && offset_of!(ActionElem, data) == 8);
    assert!(offset_of!(ActionHead, first) == 8);
    #[cfg(async_ctx = "v3_4_0")]
    assert!(size_of::<AsyncCtx>() == 24);
    #[cfg(async_ctx = "v3_4_3")]
    assert!(size_of::<AsyncCtx>() == 32 && offset_of!(AsyncCtx, timeout_s) == 24);
    #[cfg(async_ctx = "v4_0")]
    assert!(size_of::<AsyncCtx>() == 40 && offset_of!(AsyncCtx, timeout_s) == 32);
    assert!(size_of::<ParamExport>() == 24 && offset_of!(ParamExport, param_pointer) == 16);
    assert!(size_of::<ModuleDependency>() == 24);
    assert!(size_of::<ModparamDependency>() == 16);
    assert!(size_of::<DepExport>() == 256 && offset_of!(DepExport, mpd) == 240);
    assert!(size_of::<TransT>() == 48 && offset_of!(TransT, subtype) == 16);
    assert!(size_of::<TransExport>() == 32 && offset_of!(TransExport, eval_func) == 24);
    assert!(size_of::<TlsMgmBinds>() == 112);
    assert!(size_of::<ModuleExports>() == 184);
    assert!(offset_of!(ModuleExports, version) == 16);
    assert!(offset_of!(ModuleExports, dlflags) == 48);
    assert!(offset_of!(ModuleExports, deps) == 64);
    assert!(offset_of!(ModuleExports, cmds) == 72);
    assert!(offset_of!(ModuleExports, acmds) == 80);
    assert!(offset_of!(ModuleExports, params) == 88);
    assert!(offset_of!(ModuleExports, trans) == 120);
    assert!(offset_of!(ModuleExports, preinit_f) == 136);
    assert!(offset_of!(ModuleExports, init_f) == 144);
    assert!(offset_of!(ModuleExports, destroy_f) == 160);
    assert!(offset_of!(ModuleExports, init_child_f) == 168);
    assert!(offset_of!(ModuleExports, reload_ack_f) == 176);
};

/// The core's `core_scm_ver` (`{type, rev}`), when the core publishes it.
pub fn core_scm_version() -> Option<(*const c_char, *const c_char)> {
    let addr = lookup(c"core_scm_ver").cast::<[*const c_char; 2]>();
    // SAFETY: `core_scm_ver` is a `{const char *type, *rev}` pair of static strings (§1.2).
    let [scm_type, rev] = unsafe { addr.as_ref() }.copied()?;
    (!scm_type.is_null() && !rev.is_null()).then_some((scm_type, rev))
}

// ---------------------------------------------------------------------------------------------
// Statistics: `stat_export_t` and `stat_var` (statistics.h, identical in 3.4, 3.6 and 4.0).

/// `STAT_NO_RESET`: a gauge that `reset_statistics` leaves alone.
pub const STAT_NO_RESET: u16 = 1;

/// `stat_var`: allocated by the core in shared memory when it registers the module's
/// statistics (after mod_init); `value` points to an `atomic_t` (an unsigned long on x86_64,
/// updated with atomic adds by every process).
#[repr(C)]
pub struct StatVar {
    _mod_idx: c_uint,
    _name: Str,
    flags: u16,
    _context: *mut c_void,
    value: *mut c_void,
    _hnext: *mut c_void,
    _lnext: *mut c_void,
}

/// `stat_export_t`: a name, flags, and where the core stores the `stat_var` it allocates.
#[repr(C)]
pub struct StatExport {
    pub name: *const c_char,
    pub flags: u16,
    pub stat_pointer: *const StatCell,
}

/// The module's slot for one `stat_var *`, written by the core once, before the workers fork.
#[repr(transparent)]
pub struct StatCell(std::cell::UnsafeCell<*mut StatVar>);

// SAFETY: the core writes the cell once in the main process before any fork or other thread;
// afterwards it is only read.
unsafe impl Sync for StatCell {}

impl StatCell {
    pub const fn new() -> Self {
        Self(std::cell::UnsafeCell::new(std::ptr::null_mut()))
    }

    /// Adds `delta` (two's complement for a decrement) to the statistic, if the core registered
    /// it (a core built without STATISTICS does not).
    pub fn add(&self, delta: i64) {
        // SAFETY: see the Sync impl: the pointer is written once, before this can run.
        let var = unsafe { *self.0.get() };
        // SAFETY: a non-NULL pointer is a `stat_var` in shared memory that the core keeps for
        // the life of the process.
        let Some(var) = (unsafe { var.as_ref() }) else {
            return;
        };
        const STAT_IS_FUNC: u16 = 1 << 3;
        if var.flags & STAT_IS_FUNC != 0 || var.value.is_null() {
            return;
        }
        // SAFETY: `value` points to the core's 8-byte aligned `atomic_t` (unsigned long), in
        // shared memory, only ever accessed atomically.
        let value = unsafe { &*(var.value as *const std::sync::atomic::AtomicU64) };
        value.fetch_add(delta as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

const _: () = {
    assert!(std::mem::size_of::<StatVar>() == 64);
    assert!(std::mem::offset_of!(StatVar, flags) == 24);
    assert!(std::mem::offset_of!(StatVar, value) == 40);
    assert!(std::mem::size_of::<StatExport>() == 24);
    assert!(std::mem::offset_of!(StatExport, stat_pointer) == 16);
};

// ---------------------------------------------------------------------------------------------
// MI: `mi_export_t` (mi/mi.h) and the response builders of mi/item.h.

#[cfg(mi_export = "v3")]
const MAX_MI_PARAMS: usize = 10;
#[cfg(mi_export = "v4")]
const MAX_MI_PARAMS: usize = 20;
const MAX_MI_RECIPES: usize = 48;

/// `mi_cmd_f`: `mi_response_t *f(const mi_params_t *params, struct mi_handler *async_hdl)`.
pub type MiCmdFn = unsafe extern "C" fn(*const c_void, *mut c_void) -> *mut c_void;

/// `mi_recipe_t`: a handler and the names of its parameters (NULL-terminated).
#[repr(C)]
pub struct MiRecipe {
    pub cmd: Option<MiCmdFn>,
    pub params: [*const c_char; MAX_MI_PARAMS],
}

/// `mi_export_t`; a table of them ends with an all-zero entry.
#[repr(C)]
pub struct MiExport {
    pub name: *const c_char,
    pub help: *const c_char,
    pub flags: c_uint,
    pub init_f: Option<unsafe extern "C" fn() -> c_int>,
    pub recipes: [MiRecipe; MAX_MI_RECIPES],
    #[cfg(mi_export = "v4")]
    pub aliases: [*const c_char; 4],
}

impl MiExport {
    /// A command without parameters, answered by `cmd`.
    pub const fn without_params(name: &'static CStr, help: &'static CStr, cmd: MiCmdFn) -> Self {
        let mut export = Self::END;
        export.name = name.as_ptr();
        export.help = help.as_ptr();
        export.recipes[0].cmd = Some(cmd);
        export
    }

    /// A command with one string parameter named `param`, answered by `cmd`.
    pub const fn with_param(
        name: &'static CStr,
        help: &'static CStr,
        param: &'static CStr,
        cmd: MiCmdFn,
    ) -> Self {
        let mut export = Self::without_params(name, help, cmd);
        export.recipes[0].params[0] = param.as_ptr();
        export
    }

    /// OpenSIPS 4.0 names a module's MI commands `<module>:<name>` (and refuses a `:` in
    /// `name`): there this command is named `local` and keeps its 3.x name as an alias, so
    /// `rest_client:<local>` and the 3.x name both reach it; 3.x keeps the 3.x name.
    pub const fn named_in_4_0(self, local: &'static CStr) -> Self {
        #[cfg(mi_export = "v4")]
        {
            let mut export = self;
            export.aliases[0] = export.name;
            export.name = local.as_ptr();
            export
        }
        #[cfg(mi_export = "v3")]
        {
            let _ = local;
            self
        }
    }

    pub const END: Self = Self {
        name: std::ptr::null(),
        help: std::ptr::null(),
        flags: 0,
        init_f: None,
        recipes: [const {
            MiRecipe {
                cmd: None,
                params: [std::ptr::null(); MAX_MI_PARAMS],
            }
        }; MAX_MI_RECIPES],
        #[cfg(mi_export = "v4")]
        aliases: [std::ptr::null(); 4],
    };
}

#[cfg(mi_export = "v3")]
const _: () = assert!(std::mem::size_of::<MiExport>() == 4256);
#[cfg(mi_export = "v4")]
const _: () = assert!(std::mem::size_of::<MiExport>() == 8128);

type MiInitArrayFn = unsafe extern "C" fn(*mut *mut c_void) -> *mut c_void;
type MiAddContainerFn = unsafe extern "C" fn(*mut c_void, *const c_char, c_int) -> *mut c_void;
type MiAddStringFn =
    unsafe extern "C" fn(*mut c_void, *const c_char, c_int, *const c_char, c_int) -> c_int;
type MiAddNumberFn = unsafe extern "C" fn(*mut c_void, *const c_char, c_int, f64) -> c_int;
type MiInitStringFn = unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void;
type MiInitErrorFn =
    unsafe extern "C" fn(c_int, *const c_char, c_int, *const c_char, c_int) -> *mut c_void;
type MiGetStringParamFn =
    unsafe extern "C" fn(*const c_void, *const c_char, *mut *mut c_char, *mut c_int) -> c_int;

/// The core's MI response builders (resolved once; absent in a core without MI).
struct MiBuilders {
    init_result_array: MiInitArrayFn,
    add_object: MiAddContainerFn,
    add_array: MiAddContainerFn,
    add_string: MiAddStringFn,
    add_number: MiAddNumberFn,
    init_result_string: MiInitStringFn,
    init_error: MiInitErrorFn,
    get_string_param: MiGetStringParamFn,
}

fn mi_builders() -> Option<&'static MiBuilders> {
    static BUILDERS: OnceLock<Option<MiBuilders>> = OnceLock::new();
    BUILDERS
        .get_or_init(|| {
            // SAFETY: each type is the prototype of the named function in mi/item.h.
            unsafe {
                Some(MiBuilders {
                    init_result_array: lookup_fn(c"init_mi_result_array")?,
                    add_object: lookup_fn(c"add_mi_object")?,
                    add_array: lookup_fn(c"add_mi_array")?,
                    add_string: lookup_fn(c"add_mi_string")?,
                    add_number: lookup_fn(c"add_mi_number")?,
                    init_result_string: lookup_fn(c"init_mi_result_string")?,
                    init_error: lookup_fn(c"init_mi_error_extra")?,
                    get_string_param: lookup_fn(c"get_mi_string_param")?,
                })
            }
        })
        .as_ref()
}

/// An MI response being built: handed to the core by [`MiItem::respond`].
pub struct MiResponse(NonNull<c_void>);

impl MiResponse {
    /// A successful response holding an array, and that array.
    pub fn array() -> Option<(Self, MiItem)> {
        let builders = mi_builders()?;
        let mut array = std::ptr::null_mut();
        // SAFETY: documented prototype; the core allocates both and fills `array`.
        let response = unsafe { (builders.init_result_array)(&mut array) };
        Some((Self(NonNull::new(response)?), MiItem(NonNull::new(array)?)))
    }

    /// A successful response holding the text `value`.
    pub fn text(value: &str) -> Option<Self> {
        let builders = mi_builders()?;
        // SAFETY: documented prototype; the core copies the text.
        let response =
            unsafe { (builders.init_result_string)(value.as_ptr().cast(), value.len() as c_int) };
        NonNull::new(response).map(Self)
    }

    /// An error response: a JSON-RPC error `code` with `message`.
    pub fn error(code: c_int, message: &str) -> Option<Self> {
        let builders = mi_builders()?;
        // SAFETY: documented prototype; the core copies the message; no details.
        let response = unsafe {
            (builders.init_error)(
                code,
                message.as_ptr().cast(),
                message.len() as c_int,
                std::ptr::null(),
                0,
            )
        };
        NonNull::new(response).map(Self)
    }

    /// The pointer the command returns to the core, which frees it.
    pub fn into_raw(self) -> *mut c_void {
        self.0.as_ptr()
    }
}

/// An array or object of an MI response (owned by the response).
#[derive(Clone, Copy)]
pub struct MiItem(NonNull<c_void>);

impl MiItem {
    fn container(self, add: MiAddContainerFn, name: &str) -> Option<MiItem> {
        // SAFETY: `self` is an item of a live response; the core copies the name.
        let item = unsafe { add(self.0.as_ptr(), name.as_ptr().cast(), name.len() as c_int) };
        NonNull::new(item).map(MiItem)
    }

    /// A new object inside this item (`name` "" inside an array).
    pub fn object(self, name: &str) -> Option<MiItem> {
        self.container(mi_builders()?.add_object, name)
    }

    /// A new array inside this item.
    pub fn array(self, name: &str) -> Option<MiItem> {
        self.container(mi_builders()?.add_array, name)
    }

    pub fn string(self, name: &str, value: &str) -> bool {
        mi_builders().is_some_and(|b| {
            // SAFETY: `self` is an item of a live response; the core copies name and value.
            unsafe {
                (b.add_string)(
                    self.0.as_ptr(),
                    name.as_ptr().cast(),
                    name.len() as c_int,
                    value.as_ptr().cast(),
                    value.len() as c_int,
                ) == 0
            }
        })
    }

    pub fn number(self, name: &str, value: f64) -> bool {
        mi_builders().is_some_and(|b| {
            // SAFETY: as `string`.
            unsafe {
                (b.add_number)(
                    self.0.as_ptr(),
                    name.as_ptr().cast(),
                    name.len() as c_int,
                    value,
                ) == 0
            }
        })
    }
}

/// The string parameter `name` of an MI command's `params` (None if absent or not a string).
///
/// SAFETY: `params` is the `mi_params_t *` the core passed to the command, alive during it.
pub unsafe fn mi_string_param(params: *const c_void, name: &CStr) -> Option<String> {
    let builders = mi_builders()?;
    let (mut value, mut len): (*mut c_char, c_int) = (std::ptr::null_mut(), 0);
    // SAFETY: documented prototype; the core points `value` into the request it owns.
    let rc = unsafe { (builders.get_string_param)(params, name.as_ptr(), &mut value, &mut len) };
    if rc < 0 || value.is_null() {
        return None;
    }
    // SAFETY: the core returned `len` readable bytes at `value`.
    let bytes =
        unsafe { std::slice::from_raw_parts(value as *const u8, usize::try_from(len).ok()?) };
    Some(String::from_utf8_lossy(bytes).into_owned())
}

// ---------------------------------------------------------------------------------------------
// Event interface (evi/evi_modules.h, evi/evi_params.h; the same in 3.4, 3.6 and 4.0).

/// `EVI_INT_VAL` / `EVI_STR_VAL`: the kind of an event parameter's value.
const EVI_INT_VAL: c_int = 0x01;
const EVI_STR_VAL: c_int = 0x02;

type EviPublishFn = unsafe extern "C" fn(Str) -> c_int;
type EviProbeFn = unsafe extern "C" fn(c_int) -> c_int;
type EviGetParamsFn = unsafe extern "C" fn() -> *mut c_void;
type EviParamAddFn = unsafe extern "C" fn(*mut c_void, *const Str, *const c_void, c_int) -> c_int;
type EviRaiseFn = unsafe extern "C" fn(c_int, *mut c_void) -> c_int;
type EviFreeParamsFn = unsafe extern "C" fn(*mut c_void);

/// The core's event functions (resolved once).
struct EviApi {
    publish: EviPublishFn,
    probe: EviProbeFn,
    get_params: EviGetParamsFn,
    param_add: EviParamAddFn,
    raise: EviRaiseFn,
    free_params: EviFreeParamsFn,
}

fn evi_api() -> Option<&'static EviApi> {
    static API: OnceLock<Option<EviApi>> = OnceLock::new();
    API.get_or_init(|| {
        // SAFETY: each type is the prototype of the named function in evi/evi_modules.h and
        // evi/evi_params.h (`event_id_t` is an int).
        unsafe {
            Some(EviApi {
                publish: lookup_fn(c"evi_publish_event")?,
                probe: lookup_fn(c"evi_probe_event")?,
                get_params: lookup_fn(c"evi_get_params")?,
                param_add: lookup_fn(c"evi_param_add")?,
                raise: lookup_fn(c"evi_raise_event")?,
                free_params: lookup_fn(c"evi_free_params")?,
            })
        }
    })
    .as_ref()
}

/// A parameter value of an event.
pub enum EventValue<'a> {
    Text(&'a str),
    Int(c_int),
}

/// An event the module published (`evi_publish_event`, in mod_init).
pub struct Event {
    id: c_int,
}

impl Event {
    /// Publishes the event `name` (the core keeps the pointer: a static name); `None` when the
    /// core has no event interface or refuses it.
    pub fn publish(name: &'static CStr) -> Option<Self> {
        let api = evi_api()?;
        let bytes = name.to_bytes();
        let name = Str {
            s: bytes.as_ptr().cast_mut().cast(),
            len: bytes.len() as c_int,
        };
        // SAFETY: documented prototype; `name` points to static bytes the core keeps.
        let id = unsafe { (api.publish)(name) };
        (id >= 0).then_some(Self { id })
    }

    /// Raises the event with `params` (names static, values copied or sent by the core before
    /// it returns), if anything is subscribed to it; false when it could not be raised.
    pub fn raise(&self, params: &[(&'static str, EventValue)]) -> bool {
        let Some(api) = evi_api() else {
            return false;
        };
        // SAFETY: documented prototypes. The list comes from `evi_get_params` and is freed by
        // `evi_raise_event` (its EVI_FREE_LIST flag) or here when a parameter fails; the names
        // and values point to memory that outlives both calls.
        unsafe {
            if (api.probe)(self.id) <= 0 {
                return true;
            }
            let list = (api.get_params)();
            if list.is_null() {
                return false;
            }
            for (name, value) in params {
                let name = Str {
                    s: name.as_ptr().cast_mut().cast(),
                    len: name.len() as c_int,
                };
                let added = match value {
                    EventValue::Text(text) => {
                        let text = Str {
                            s: text.as_ptr().cast_mut().cast(),
                            len: text.len() as c_int,
                        };
                        (api.param_add)(list, &name, (&raw const text).cast(), EVI_STR_VAL)
                    }
                    EventValue::Int(n) => {
                        (api.param_add)(list, &name, (n as *const c_int).cast(), EVI_INT_VAL)
                    }
                };
                if added != 0 {
                    (api.free_params)(list);
                    return false;
                }
            }
            (api.raise)(self.id, list) >= 0
        }
    }
}

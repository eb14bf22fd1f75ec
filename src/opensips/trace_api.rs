//! The core's tracing API (`trace_api.h`, the same in 3.4, 3.6 and 4.0 but for `const`
//! qualifiers): the function-pointer globals the tracer module sets in its mod_init, the trace
//! protocol's functions (proto_hep's, through `global_trace_api` or `trace_prot_bind`); the
//! Call-ID and other headers of a SIP message; and the span OpenSIPS 4.0's profiling handlers
//! (its opentelemetry module) have active. Everything that dereferences these pointers lives
//! here.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_uchar, c_void};
use std::net::SocketAddr;
use std::sync::OnceLock;

use crate::engine::TraceParent;

use super::abi::{Str, lookup, lookup_fn, str_arg};

/// `trace_message`: proto_hep's message being built, opaque.
type TraceMessage = *mut c_void;
type AddExtraCorrelationFn = unsafe extern "C" fn(TraceMessage, *mut Str, *mut Str) -> c_int;
type AddPayloadPartFn = unsafe extern "C" fn(TraceMessage, *mut c_char, *mut Str) -> c_int;
type GenerateGuidFn = unsafe extern "C" fn(*mut c_char) -> *mut c_uchar;

/// `trace_proto_t`: twelve function pointers, of which three are used.
#[repr(C)]
struct TraceProto {
    create_trace_message: *const c_void,
    add_chunk: *const c_void,
    add_extra_correlation: Option<AddExtraCorrelationFn>,
    add_payload_part: Option<AddPayloadPartFn>,
    unused: [*const c_void; 7],
    generate_guid: Option<GenerateGuidFn>,
}

/// `struct modify_trace`.
#[repr(C)]
struct ModifyTrace {
    mod_f: Option<unsafe extern "C" fn(TraceMessage, *mut c_void)>,
    param: *mut c_void,
}

/// `union sockaddr_union`.
#[repr(C)]
union SockaddrUnion {
    sin: libc::sockaddr_in,
    sin6: libc::sockaddr_in6,
}

type RegisterTraceTypeFn = unsafe extern "C" fn(*mut c_char) -> c_int;
type CheckIsTracedFn = unsafe extern "C" fn(c_int) -> c_int;
/// `sip_context_trace_f`: `(id, from, to, payload, net_proto, correlation_id, mod_p)`.
type SipContextTraceFn = unsafe extern "C" fn(
    c_int,
    *mut SockaddrUnion,
    *mut SockaddrUnion,
    *mut Str,
    c_int,
    *mut Str,
    *mut ModifyTrace,
) -> c_int;
type TraceProtBindFn = unsafe extern "C" fn(*mut c_char, *mut TraceProto) -> c_int;

/// The tracer's functions and the trace protocol's, bound in mod_init.
pub struct TraceApi {
    rest_id: c_int,
    check_is_traced: CheckIsTracedFn,
    sip_context_trace: SipContextTraceFn,
    add_extra_correlation: AddExtraCorrelationFn,
    add_payload_part: AddPayloadPartFn,
    generate_guid: GenerateGuidFn,
}

/// Reads one of the core's function-pointer globals.
///
/// SAFETY: `name` is a global of type `Option<F>` (a C function pointer, NULL = None).
unsafe fn read_global<F: Copy>(name: &CStr) -> Option<F> {
    let cell = lookup(name).cast::<Option<F>>();
    // SAFETY: per the contract; the tracer writes these in mod_init, before ours runs.
    unsafe { cell.as_ref().and_then(|f| *f) }
}

impl TraceApi {
    /// Registers the `rest` trace type with the tracer and binds the trace protocol, as the C
    /// module does; `None` when the tracer (with a trace protocol) is not loaded. Runs in
    /// mod_init: the tracer's mod_init ran before (the module depends on it).
    pub fn bind() -> Option<Self> {
        // SAFETY: the names are the trace_api.h globals of these types.
        let (register, check_is_traced, sip_context_trace) = unsafe {
            (
                read_global::<RegisterTraceTypeFn>(c"register_trace_type")?,
                read_global::<CheckIsTracedFn>(c"check_is_traced")?,
                read_global::<SipContextTraceFn>(c"sip_context_trace")?,
            )
        };
        // SAFETY: the tracer's register_traced_type reads the name and keeps the pointer,
        // so it gets a static string.
        let rest_id = unsafe { register(c"rest".as_ptr().cast_mut()) };
        if rest_id < 0 {
            return None;
        }
        let global = lookup(c"global_trace_api").cast::<*const TraceProto>();
        // SAFETY: `global_trace_api` is a `trace_proto_t *` global; when set, it points at the
        // tracer's copy of the protocol's functions, copied here as the C module does.
        let proto = unsafe {
            match global.as_ref().and_then(|p| p.as_ref()) {
                Some(proto) => std::ptr::read(proto),
                None => {
                    let mut proto = std::mem::zeroed::<TraceProto>();
                    let bind = lookup_fn::<TraceProtBindFn>(c"trace_prot_bind")?;
                    if bind(c"proto_hep".as_ptr().cast_mut(), &mut proto) != 0 {
                        return None;
                    }
                    proto
                }
            }
        };
        Some(Self {
            rest_id,
            check_is_traced,
            sip_context_trace,
            add_extra_correlation: proto.add_extra_correlation?,
            add_payload_part: proto.add_payload_part?,
            generate_guid: proto.generate_guid?,
        })
    }

    /// Whether the SIP message being processed now traces `rest` (its context, as the tracer
    /// stored it when the script called `trace()`).
    pub fn is_traced(&self) -> bool {
        // SAFETY: the tracer's function, with the id it gave.
        unsafe { (self.check_is_traced)(self.rest_id) != 0 }
    }

    /// A new correlation id (`RESTCORR` and a unique suffix), as the C module makes them.
    pub fn new_correlation(&self) -> Vec<u8> {
        // SAFETY: returns a NUL-terminated static buffer (or NULL), copied at once.
        unsafe {
            let id = (self.generate_guid)(c"RESTCORR".as_ptr().cast_mut());
            if id.is_null() {
                return Vec::new();
            }
            CStr::from_ptr(id.cast()).to_bytes().to_vec()
        }
    }

    /// Sends one traced message (`from` → `to`, over TCP) with these payload parts (empty
    /// ones left out) through the tracer, to every destination tracing the current SIP
    /// message, correlated by `correlation` and by the SIP Call-ID.
    pub fn send(
        &self,
        from: SocketAddr,
        to: SocketAddr,
        correlation: &[u8],
        call_id: Option<&[u8]>,
        parts: &[(&CStr, &[u8])],
    ) -> bool {
        let mut filler = PartsFiller {
            api: self,
            call_id,
            parts,
        };
        let mut modify = ModifyTrace {
            mod_f: Some(fill_parts),
            param: (&raw mut filler).cast(),
        };
        let (mut from, mut to) = (sockaddr(from), sockaddr(to));
        let mut correlation = str_of(correlation);
        // SAFETY: the tracer's function; every pointer is to a local that outlives the call,
        // and the tracer calls `fill_parts` with `modify.param` only during it. A NULL
        // payload is what the C module passes (the parts replace it).
        let rc = unsafe {
            (self.sip_context_trace)(
                self.rest_id,
                &mut from,
                &mut to,
                std::ptr::null_mut(),
                libc::IPPROTO_TCP,
                &mut correlation,
                &mut modify,
            )
        };
        rc >= 0
    }
}

/// What `fill_parts` adds to each message the tracer builds.
struct PartsFiller<'a> {
    api: &'a TraceApi,
    call_id: Option<&'a [u8]>,
    parts: &'a [(&'a CStr, &'a [u8])],
}

/// `mod_f`: adds the payload parts and the `sip` correlation (the Call-ID).
///
/// SAFETY: called by the tracer during `TraceApi::send`, with that call's `PartsFiller`.
unsafe extern "C" fn fill_parts(message: TraceMessage, param: *mut c_void) {
    // SAFETY: see above.
    let Some(filler) = (unsafe { param.cast::<PartsFiller>().as_ref() }) else {
        return;
    };
    let added = std::panic::catch_unwind(|| {
        for (key, value) in filler.parts.iter().filter(|(_, v)| !v.is_empty()) {
            let mut value = str_of(value);
            // SAFETY: proto_hep copies the key and the value's bytes into its JSON payload.
            unsafe { (filler.api.add_payload_part)(message, key.as_ptr().cast_mut(), &mut value) };
        }
        if let Some(call_id) = filler.call_id.filter(|c| !c.is_empty()) {
            let (mut key, mut value) = (str_of(b"sip"), str_of(call_id));
            // SAFETY: as above, both are copied.
            unsafe { (filler.api.add_extra_correlation)(message, &mut key, &mut value) };
        }
    });
    if added.is_err() {
        log::error!("internal error (panic) while filling a trace message");
    }
}

/// A `str` over bytes the callee only reads.
fn str_of(bytes: &[u8]) -> Str {
    Str {
        s: bytes.as_ptr().cast_mut().cast(),
        len: c_int::try_from(bytes.len()).unwrap_or(0),
    }
}

fn sockaddr(addr: SocketAddr) -> SockaddrUnion {
    match addr {
        SocketAddr::V4(v4) => SockaddrUnion {
            sin: libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            },
        },
        SocketAddr::V6(v6) => SockaddrUnion {
            sin6: libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            },
        },
    }
}

/// `HDR_CALLID_F`: the parse_headers flag of the Call-ID header.
const HDR_CALLID_F: u64 = 1 << 6;
/// `HDR_EOH_F`: parse every header.
const HDR_EOH_F: u64 = u64::MAX;
type ParseHeadersAuxFn = unsafe extern "C" fn(*mut c_void, u64, c_int, c_int) -> c_int;
type ParseHeadersFn = unsafe extern "C" fn(*mut c_void, u64, c_int) -> c_int;

/// Offset of `struct sip_msg`'s `headers` (`struct hdr_field *`, the list of every parsed
/// header): after the id, the first line, via1 and via2; the same in 3.4, 3.6 and 4.0.
const SIP_MSG_HEADERS_OFFSET: usize = 88;
/// Offset of `struct sip_msg`'s `callid` (`struct hdr_field *`): after the headers,
/// last_header, parsed_flag, h_via1 (and 3.4's h_via2).
#[cfg(sip_msg = "v3_4")]
const SIP_MSG_CALLID_OFFSET: usize = 128;
#[cfg(sip_msg = "v3_6")]
const SIP_MSG_CALLID_OFFSET: usize = 120;

/// `struct hdr_field`.
#[repr(C)]
struct HdrField {
    _kind: c_int,
    name: Str,
    body: Str,
    _len: c_int,
    _parsed: *mut c_void,
    next: *const HdrField,
    _sibling: *const HdrField,
}

/// OpenSIPS 4.0's `profiling_ctx_t`: the span a profiling handler has active.
#[repr(C)]
struct ProfilingCtx {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    trace_flags: u8,
    _start_system_ns: u64,
    _start_steady_ns: u64,
    _has_start_time: u8,
}

/// `PROFILING_DATA_TYPE_SCRIPT`: a handler that follows the script's routes.
const PROFILING_DATA_TYPE_SCRIPT: u32 = 1;

/// OpenSIPS 4.0's `profiling_handlers_t` (the opentelemetry module registers one).
#[repr(C)]
struct ProfilingHandlers {
    _name: *const c_char,
    accepted_data_types: u32,
    next: *const ProfilingHandlers,
    _on_start_end_enter_exit: [*const c_void; 4],
    get_ctx: Option<unsafe extern "C" fn(*mut ProfilingCtx) -> c_int>,
    _set_ctx: *const c_void,
}

/// The core's message functions and its list of profiling handlers, looked up once.
struct MessageApi {
    parse_headers_aux: Option<ParseHeadersAuxFn>,
    parse_headers: Option<ParseHeadersFn>,
    /// `profiling_handlers` (4.0; NULL before).
    profiling_handlers: *const *const ProfilingHandlers,
}

// SAFETY: addresses of the core's functions and of one global, fixed for the life of the
// process; the global is read by the script thread only.
unsafe impl Sync for MessageApi {}
unsafe impl Send for MessageApi {}

fn message_api() -> &'static MessageApi {
    static API: OnceLock<MessageApi> = OnceLock::new();
    API.get_or_init(|| {
        // SAFETY: the core's prototypes: 3.6 and 4.0 export `parse_headers_aux`, 3.4
        // `parse_headers`; `profiling_handlers` is a `profiling_handlers_t *` global of 4.0.
        unsafe {
            MessageApi {
                parse_headers_aux: lookup_fn(c"parse_headers_aux"),
                parse_headers: lookup_fn(c"parse_headers"),
                profiling_handlers: lookup(c"profiling_handlers")
                    .cast::<*const ProfilingHandlers>(),
            }
        }
    })
}

/// Parses the headers of `flags` of SIP message `msg` (if not yet); whether that succeeded.
fn parse_headers(msg: *mut c_void, flags: u64) -> bool {
    if msg.is_null() {
        return false;
    }
    let api = message_api();
    // SAFETY: the core's parser with its prototype, on the live message of the running call.
    let parsed = unsafe {
        match (api.parse_headers_aux, api.parse_headers) {
            (Some(parse), _) => parse(msg, flags, 0, 1),
            (None, Some(parse)) => parse(msg, flags, 0),
            (None, None) => return false,
        }
    };
    parsed >= 0
}

/// The bytes of a header's `str` field, copied.
fn copied(field: &Str) -> Vec<u8> {
    // SAFETY: a field of a parsed header of the live message, which holds `len` bytes.
    unsafe { str_arg((field as *const Str).cast_mut().cast()) }
        .unwrap_or_default()
        .to_vec()
}

/// The Call-ID of a SIP message (parsed if it was not yet), as the C module correlates.
pub fn call_id(msg: *mut c_void) -> Option<Vec<u8>> {
    if !parse_headers(msg, HDR_CALLID_F) {
        return None;
    }
    // SAFETY: `callid` sits at this offset in the release built for (3.4.18, 3.6.8 and 4.0.1
    // checked); it is NULL or a parsed header.
    let header = unsafe {
        *msg.cast::<u8>()
            .add(SIP_MSG_CALLID_OFFSET)
            .cast::<*const HdrField>()
    };
    // SAFETY: as above.
    unsafe { header.as_ref() }.map(|header| copied(&header.body))
}

/// The bodies of the headers named `name` (any case) of SIP message `msg`, in order (every
/// header is parsed, if it was not yet); none when the message does not parse.
pub fn header_values(msg: *mut c_void, name: &str) -> Vec<Vec<u8>> {
    let mut values = Vec::new();
    if !parse_headers(msg, HDR_EOH_F) {
        return values;
    }
    // SAFETY: `headers` sits at this offset in every supported release; it heads the list of
    // the message's parsed headers, linked by `next` and ended by NULL.
    let mut header = unsafe {
        *msg.cast::<u8>()
            .add(SIP_MSG_HEADERS_OFFSET)
            .cast::<*const HdrField>()
    };
    // SAFETY: as above; each one lives as long as the message.
    while let Some(field) = unsafe { header.as_ref() } {
        if copied(&field.name).eq_ignore_ascii_case(name.as_bytes()) {
            values.push(copied(&field.body));
        }
        header = field.next;
    }
    values
}

/// The span a profiling handler of the script (OpenSIPS 4.0's opentelemetry module) has
/// active now, as the core's `profiling_get_ctx` finds it: the first handler that has one.
pub fn active_span() -> Option<TraceParent> {
    let list = message_api().profiling_handlers;
    // SAFETY: NULL before 4.0; else the core's global, NULL or the head of the registered
    // handlers (registered in mod_init, never freed), linked by `next`.
    let mut handlers = unsafe { list.as_ref() }.copied()?;
    // SAFETY: as above.
    while let Some(handler) = unsafe { handlers.as_ref() } {
        if handler.accepted_data_types & PROFILING_DATA_TYPE_SCRIPT != 0
            && let Some(get_ctx) = handler.get_ctx
        {
            // SAFETY: an all-zero `profiling_ctx_t` is valid; the handler fills it.
            let mut ctx = unsafe { std::mem::zeroed::<ProfilingCtx>() };
            // SAFETY: the handler's function with a context it may write.
            let active = unsafe { get_ctx(&mut ctx) } != 0;
            if active && ctx.trace_id != [0; 16] && ctx.span_id != [0; 8] {
                return Some(TraceParent {
                    trace_id: ctx.trace_id,
                    parent_id: ctx.span_id,
                    flags: ctx.trace_flags,
                });
            }
        }
        handlers = handler.next;
    }
    None
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<TraceProto>() == 96 && offset_of!(TraceProto, generate_guid) == 88);
    assert!(offset_of!(TraceProto, add_payload_part) == 24);
    assert!(size_of::<ModifyTrace>() == 16);
    assert!(size_of::<SockaddrUnion>() == 28);
    assert!(size_of::<HdrField>() == 72 && offset_of!(HdrField, body) == 24);
    assert!(offset_of!(HdrField, next) == 56);
    assert!(size_of::<ProfilingCtx>() == 56 && offset_of!(ProfilingCtx, trace_flags) == 24);
    assert!(size_of::<ProfilingHandlers>() == 72);
    assert!(offset_of!(ProfilingHandlers, next) == 16);
    assert!(offset_of!(ProfilingHandlers, get_ctx) == 56);
};

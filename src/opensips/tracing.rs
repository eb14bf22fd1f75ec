//! HEP tracing of transfers through the tracer module: a transfer of a SIP message traced
//! with the `rest` type (`trace(..., "rest")`) is sent as two messages, the request and the
//! reply, correlated with each other and with the SIP Call-ID, in the message's context (for
//! an async call, in its resume, where tm restores that context).

use std::ffi::{CStr, c_void};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

use log::{error, info};

use crate::engine::{TracedMessage, Transcript};

use super::trace_api::{TraceApi, call_id};

static API: OnceLock<Option<TraceApi>> = OnceLock::new();

/// mod_init: binds the tracer, if it is loaded with a trace protocol.
pub fn init() {
    let api = API.get_or_init(TraceApi::bind);
    if api.is_some() {
        info!("HTTP transfers can be traced (tracer module, trace type \"rest\")");
    }
}

/// Whether transfers of the SIP message being processed now are traced.
pub fn wanted() -> bool {
    API.get()
        .and_then(Option::as_ref)
        .is_some_and(TraceApi::is_traced)
}

/// The unknown end of an exchange: the unspecified address of the known end's family.
fn unspecified_like(known: Option<SocketAddr>) -> SocketAddr {
    let ip = match known.map(|a| a.ip()) {
        Some(IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// The payload parts of one traced message: the C module's `first_line` and `payload`, and
/// ours: `headers`, `error` and `cache`.
fn parts<'a>(
    message: Option<&'a TracedMessage>,
    error: Option<&'a str>,
    from_cache: bool,
) -> Vec<(&'static CStr, &'a [u8])> {
    let mut parts = Vec::with_capacity(5);
    if let Some(m) = message {
        parts.push((c"first_line", m.first_line.as_slice()));
        parts.push((c"headers", m.headers.as_slice()));
        parts.push((c"payload", m.body.as_slice()));
    }
    if let Some(error) = error {
        parts.push((c"error", error.as_bytes()));
    }
    if from_cache {
        parts.push((c"cache", b"hit".as_slice()));
    }
    parts
}

/// Sends the request and the reply of each attempt of a traced call of SIP message `msg`
/// (those it failed over from first). A reply carries its failure's reason, and is sent even
/// when no response arrived.
pub fn send(msg: *mut c_void, transcript: &Transcript) {
    let Some(api) = API.get().and_then(Option::as_ref) else {
        return;
    };
    for attempt in transcript.earlier_attempts.iter().chain([transcript]) {
        send_attempt(api, msg, attempt);
    }
}

/// Sends one attempt's request and reply, correlated with each other and the SIP Call-ID.
fn send_attempt(api: &TraceApi, msg: *mut c_void, transcript: &Transcript) {
    let local = transcript
        .local
        .unwrap_or_else(|| unspecified_like(transcript.remote));
    let remote = transcript
        .remote
        .unwrap_or_else(|| unspecified_like(transcript.local));
    let call_id = call_id(msg);
    let correlation = api.new_correlation();
    let request = parts(Some(&transcript.request), None, transcript.from_cache);
    let reply = parts(
        transcript.response.as_ref(),
        transcript.error.as_deref(),
        transcript.from_cache,
    );
    let sent = api.send(local, remote, &correlation, call_id.as_deref(), &request)
        && api.send(remote, local, &correlation, call_id.as_deref(), &reply);
    if !sent {
        error!("failed to trace an HTTP transfer");
    }
}

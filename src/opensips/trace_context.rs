//! W3C trace context on the requests of a SIP message (`trace_context`): the trace of the
//! span OpenSIPS 4.0's opentelemetry module has active, or of the message's own
//! `traceparent`, or of its Call-ID; none of a call for the core's dummy message (timer and
//! startup routes). The computation is the engine's ([`TracePropagation`]).

use std::ffi::c_void;

use crate::engine::{CallTrace, Request, TRACEPARENT, TRACESTATE, TracePropagation};

use super::abi::is_dummy_message;
use super::trace_api::{active_span, call_id, header_values};

/// Adds the trace context of SIP message `msg` to `request`, unless the script (or the
/// request's service) gave it a `traceparent` of its own.
pub fn add(propagation: &TracePropagation, request: &mut Request, msg: *mut c_void) {
    if request.has_header(TRACEPARENT) {
        return;
    }
    let call = match active_span() {
        Some(span) => CallTrace {
            span: Some(span),
            ..CallTrace::default()
        },
        None if is_dummy_message(msg) => CallTrace::default(),
        None => CallTrace {
            span: None,
            traceparents: header_values(msg, TRACEPARENT),
            tracestates: header_values(msg, TRACESTATE),
            call_id: call_id(msg),
        },
    };
    propagation.apply(request, &call);
}

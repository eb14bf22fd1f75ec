//! The host-neutral HTTP engine. Nothing here names an OpenSIPS type; a host adaptor (see
//! `crate::opensips`) turns script arguments into [`Request`]s and [`Outcome`]s back into
//! script variables.
//!
//! Layers, each using only the ones below it (no file imports one that imports it back):
//! - bottom: [`Request`], [`ResultCode`], [`ClientSettings`], `secrets`, `text`, `escape`, and
//!   `curl_raw` (the libcurl calls the `curl` crate lacks);
//! - `tls`: the process's trust store and client identities;
//! - `transfer`: one attempt on one easy handle (options, collection, [`Outcome`], retry rule);
//! - `client`: who runs attempts in a process ([`Client`] blocking, [`Hub`] async);
//! - `services` (definitions, credentials, response caches) and `shared` (state shared by
//!   every process: connect gate, renewed texts, counters);
//! - top: `calls`, the pipeline every script call goes through, blocking or async (service,
//!   cache, gate, upstreams, transfer, settling). A decision about a call as a whole goes there.

mod calls;
mod client;
mod curl_raw;
mod escape;
mod request;
mod result_code;
mod secrets;
mod services;
mod settings;
mod shared;
mod text;
mod throttled_log;
mod tls;
mod trace_context;
mod transfer;

pub use calls::{
    Call, CallObserver, CallSpec, Calls, MethodChoice, Started, UpstreamChange, UpstreamState,
};
pub use client::{Client, Token};
pub use escape::{escape, escape_path, escape_xml, unescape};
pub use request::{
    Auth, ClientCert, KeyMaterial, Method, Request, breaks_header_line, header_name,
};
pub use result_code::ResultCode;
pub use secrets::redact_url;
pub use services::{
    Balance, RenewedServices, Service, ServiceCounter, ServiceRegistry, SharedStore,
};
pub use settings::{ClientSettings, DEFAULT_MAX_INFLIGHT_BODY_BYTES, HttpVersion};
pub use shared::{Availability, ConnectGate};
pub use text::{loggable, trim_http_whitespace};
pub use trace_context::{CallTrace, TRACEPARENT, TRACESTATE, TraceParent, TracePropagation};
pub use transfer::{Outcome, ResponseHead, TracedMessage, Transcript};

//! One call as the host asks for it ([`CallSpec`]) and as the pipeline resolved it ([`Call`]):
//! its service (`name://path`), the service's renewed credentials and default headers, the
//! limits, where its answer meets the service's cache, and its way through the service's
//! upstreams.

use std::time::Duration;

use crate::engine::request::{ClientCert, Method, Request, header_name};
use crate::engine::result_code::ResultCode;
use crate::engine::services::{Pending, ResponseCache, Service};
use crate::engine::shared::GateTicket;
use crate::engine::transfer::Outcome;

use super::upstreams::Route;

/// How the method of a call is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodChoice {
    /// The function's own or the one the script named.
    Given(Method),
    /// None named: the service's `method`, else POST with a body and GET without.
    Default,
}

/// What the host's script asks of one call.
pub struct CallSpec {
    pub method: MethodChoice,
    /// A URL, or `name://path` on a named service.
    pub url: String,
    /// Request body (an omitted one is empty).
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    /// Header lines the script set for this call; they win over the service's.
    pub headers: Vec<String>,
    pub client_cert: Option<ClientCert>,
    /// Limits the script set for this call (transfer, connect): they win over the service's.
    pub timeouts: Option<(Duration, Option<Duration>)>,
    /// Record a transcript of the exchange.
    pub trace: bool,
}

/// Where a call to a service with a cache meets that cache.
pub(super) struct CacheSlot {
    /// The service's position in the registry.
    pub index: usize,
    pub url: String,
    /// A GET's key, until it is looked up.
    pub key: Option<Vec<u8>>,
    /// A GET that missed: what storing its answer needs.
    pub pending: Option<Pending>,
    /// An unsafe method: its success invalidates the URL's answers.
    pub writes: bool,
}

impl CacheSlot {
    pub fn of(index: usize, request: &Request) -> Self {
        Self {
            index,
            url: request.url.clone(),
            key: ResponseCache::key(request),
            pending: None,
            writes: !request.method.is_safe(),
        }
    }
}

/// A call ready to run: its request and what the pipeline keeps beside it.
pub struct Call {
    pub request: Request,
    /// The service's `raw_body`: its answers are handed over as received.
    pub service_raw_body: bool,
    pub(super) slot: Option<CacheSlot>,
    /// A call to a named service: which of its base URLs each attempt goes to.
    pub(super) route: Option<Route>,
}

/// The per-call state of a running async transfer, until it ends.
pub(super) struct RunningCall {
    pub ticket: Option<GateTicket>,
    pub slot: Option<CacheSlot>,
    /// A call to a named service: its route, and its request for another attempt.
    pub routed: Option<Box<RoutedRequest>>,
}

/// How starting the attempts of an async call went.
pub(super) enum Launched {
    /// An attempt runs: the call is among the running ones.
    Running,
    /// The call is over with this outcome, not settled yet.
    Ended(Option<CacheSlot>, Outcome),
    /// Nothing was sent: the connect gate refused the call's first attempt.
    Unsent(Option<CacheSlot>, ResultCode),
}

/// What an async call to a named service keeps while an attempt runs.
pub(super) struct RoutedRequest {
    pub route: Route,
    pub request: Request,
}

/// The method of `choice` for a call to `service` with `body`.
pub(super) fn method_of(choice: MethodChoice, service: Option<&Service>, body: &[u8]) -> Method {
    match choice {
        MethodChoice::Given(method) => method,
        MethodChoice::Default => match service.and_then(|s| s.method) {
            Some(method) => method,
            None if !body.is_empty() => Method::Post,
            None => Method::Get,
        },
    }
}

/// The service's default header lines that the request does not set itself, before its own.
pub(super) fn add_service_headers(request: &mut Request, service: &Service) {
    let defaults: Vec<String> = service
        .headers
        .iter()
        .filter(|line| !request.has_header(header_name(line)))
        .cloned()
        .collect();
    request.headers.splice(0..0, defaults);
}

/// The lower of two transfer limits, where zero means "no limit".
pub(super) fn tighter_limit(a: Duration, b: Duration) -> Duration {
    match (a.is_zero(), b.is_zero()) {
        (true, _) => b,
        (_, true) => a,
        _ => a.min(b),
    }
}

//! The module's events, through the core's event interface: `event_route[E_REST_UPSTREAM]` in
//! a script, or any event transport subscribed to it (event_datagram, event_rabbitmq, ...).
//! `E_REST_UPSTREAM` is raised when a named service's base URL is ejected or restored, with
//! the parameters `service`, `url` (credentials masked), `state` (`ejected` or `restored`),
//! `reason` and `duration_ms` (how long the ejection lasts; 0 on restoration).

use std::sync::OnceLock;

use log::warn;

use crate::engine::{UpstreamChange, UpstreamState};

use super::abi::{Event, EventValue};

static UPSTREAM: OnceLock<Option<Event>> = OnceLock::new();

/// mod_init: publishes the events (before the workers fork, as the core requires).
pub fn init() {
    let event = UPSTREAM.get_or_init(|| Event::publish(c"E_REST_UPSTREAM"));
    if event.is_none() {
        warn!("cannot publish the E_REST_UPSTREAM event: upstream changes are not raised");
    }
}

/// Raises `E_REST_UPSTREAM` for `change`.
pub fn upstream_changed(change: &UpstreamChange) {
    let Some(event) = UPSTREAM.get().and_then(Option::as_ref) else {
        return;
    };
    let (state, duration) = match change.state {
        UpstreamState::Ejected { duration, .. } => ("ejected", duration),
        UpstreamState::Restored => ("restored", Default::default()),
    };
    let duration_ms = i32::try_from(duration.as_millis()).unwrap_or(i32::MAX);
    let raised = event.raise(&[
        ("service", EventValue::Text(change.service)),
        ("url", EventValue::Text(&change.url)),
        ("state", EventValue::Text(state)),
        ("reason", EventValue::Text(&change.reason)),
        ("duration_ms", EventValue::Int(duration_ms)),
    ]);
    if !raised {
        warn!(
            "service {}: cannot raise E_REST_UPSTREAM for {}",
            change.service, change.url
        );
    }
}

//! MI commands, run in the MI process (forked after mod_init): they read the configuration
//! parsed at startup and the shared-memory state every worker writes, never a worker's own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::engine::{
    Auth, Availability, Balance, RenewedServices, ServiceCounter, ServiceRegistry, header_name,
    redact_url,
};

use super::abi::{MiItem, MiResponse};
use super::module::config;

/// `rest_list_services`: each named service with its base URL, limits, cache settings and
/// counters. Credentials and header values never appear: the kind of credentials and the
/// header names only.
pub fn list_services() -> Option<MiResponse> {
    let (response, list) = MiResponse::array()?;
    let Some(config) = config() else {
        return Some(response);
    };
    let mut renewed = RenewedServices::default();
    let services = &config.services;
    for index in 0..services.definitions().len() {
        let service = services.current(&mut renewed, index);
        let entry = list.object("")?;
        entry.string("name", &service.name);
        entry.string("url", &redact_url(&service.base_url));
        entry.string(
            "auth",
            match &service.auth {
                Some(Auth::Bearer(_)) => "bearer",
                Some(Auth::Basic { .. }) => "basic",
                None => "none",
            },
        );
        let headers = entry.array("header_names")?;
        for line in &service.headers {
            headers.string("", header_name(line));
        }
        if let Some(method) = service.method {
            entry.string("method", method.name());
        }
        for (name, limit) in [
            ("timeout_ms", service.timeout),
            ("connect_timeout_ms", service.connect_timeout),
        ] {
            if let Some(limit) = limit {
                entry.number(name, limit.as_millis() as f64);
            }
        }
        if let Some(cache) = service.cache {
            let settings = entry.object("cache")?;
            settings.number("ttl_s", cache.ttl.as_secs() as f64);
            settings.number("max_entries", cache.max_entries as f64);
            settings.number("max_bytes", cache.max_bytes as f64);
        }
        add_counters(entry, services, index);
    }
    Some(response)
}

fn add_counters(entry: MiItem, services: &ServiceRegistry, index: usize) {
    entry.number("calls", services.read(index, ServiceCounter::Calls) as f64);
    entry.number(
        "cache_hits",
        services.read(index, ServiceCounter::CacheHits) as f64,
    );
    entry.number(
        "credential_updates",
        services.credential_updates(index) as f64,
    );
}

/// `rest_list_upstreams`: each named service's base URLs with their state (`healthy`, `busy`
/// or `ejected` until a time, `probe_due`, `probing` by a process) and counters, and the
/// service's calls in flight and retry budget. Node-wide: the state lives in shared memory.
pub fn list_upstreams() -> Option<MiResponse> {
    let (response, list) = MiResponse::array()?;
    let Some(config) = config() else {
        return Some(response);
    };
    let services = &config.services;
    let now = services.health().now();
    for (index, service) in services.definitions().iter().enumerate() {
        let Some(health) = services.service_health(index) else {
            continue;
        };
        let policy = &service.upstreams;
        let entry = list.object("")?;
        entry.string("name", &service.name);
        entry.string(
            "balance",
            match policy.balance {
                Balance::First => "first",
                Balance::RoundRobin => "round_robin",
            },
        );
        entry.number("in_flight", health.in_flight() as f64);
        entry.number("max_in_flight", f64::from(policy.max_in_flight));
        let (calls, retries) = health.budget_counts(now);
        entry.number("budget_calls", calls as f64);
        entry.number("budget_retries", retries as f64);
        let urls = entry.array("urls")?;
        for (position, url) in service.base_urls().enumerate() {
            let Some(snapshot) = health.url(position).map(|u| u.snapshot(now)) else {
                continue;
            };
            let item = urls.object("")?;
            item.string("url", &redact_url(url));
            let (state, until, pid) = match snapshot.availability {
                Availability::Healthy => ("healthy", None, None),
                Availability::Busy { until } => ("busy", Some(until), None),
                Availability::Ejected { until } => ("ejected", Some(until), None),
                Availability::ProbeDue => ("probe_due", None, None),
                Availability::Probing { pid } => ("probing", None, Some(pid)),
            };
            item.string("state", state);
            if let Some(until) = until {
                let left = Duration::from_millis(until.saturating_sub(now));
                item.number("ms_left", left.as_millis() as f64);
                let at = (SystemTime::now() + left)
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                item.number("until", at.as_secs_f64().floor());
            }
            if let Some(pid) = pid {
                item.number("probing_pid", f64::from(pid));
            }
            item.number("consecutive_failures", snapshot.consecutive_failures as f64);
            item.number("ejections", snapshot.ejections as f64);
            item.number("ejections_in_row", snapshot.ejections_in_row as f64);
            item.number("attempts", snapshot.attempts as f64);
            item.number("failed_attempts", snapshot.failed_attempts as f64);
        }
    }
    Some(response)
}

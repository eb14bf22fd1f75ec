//! MI commands, run in the MI process (forked after mod_init): they read the configuration
//! parsed at startup and the shared-memory state every worker writes, never a worker's own.

use crate::engine::{
    Auth, RenewedServices, ServiceCounter, ServiceRegistry, header_name, redact_url,
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

//! MI commands, run in the MI process (forked after mod_init): they read the configuration
//! parsed at startup and the shared-memory state every worker writes, never a worker's own.

use crate::engine::{Auth, RenewedServices, header_name, redact_url};

use super::abi::{MiItem, MiResponse};
use super::module::{ServiceCounter, config};

/// `rest_list_services`: each named service with its base URL, limits, cache settings and
/// counters. Credentials and header values never appear: the kind of credentials and the
/// header names only.
pub fn list_services() -> Option<MiResponse> {
    let (response, list) = MiResponse::array()?;
    let Some(config) = config() else {
        return Some(response);
    };
    let mut renewed = RenewedServices::default();
    for (index, definition) in config.services.iter().enumerate() {
        let service = renewed.current(&config.credentials, index, definition);
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
        add_counters(entry, config, index);
    }
    Some(response)
}

fn add_counters(entry: MiItem, config: &super::module::ModuleConfig, index: usize) {
    entry.number("calls", ServiceCounter::Calls.read(config, index) as f64);
    entry.number(
        "cache_hits",
        ServiceCounter::CacheHits.read(config, index) as f64,
    );
    entry.number(
        "credential_updates",
        config.credentials.updates(index) as f64,
    );
}

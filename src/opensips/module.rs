//! Module-wide configuration: the module parameters, validated and turned into what every
//! process inherits, once, in mod_init (see `worker.rs` for the per-process state).

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use log::{error, info, warn};
use parking_lot::Mutex;

use crate::engine::{
    ClientSettings, ConnectGate, DEFAULT_MAX_INFLIGHT_BODY_BYTES, HttpVersion, Service,
    ServiceRegistry, TracePropagation,
};

use super::abi::TlsMgm;
use super::cachedb::Cachedb;

/// Module parameters as the script set them (C module defaults in `Default`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleParams {
    pub connection_timeout: i32,
    pub connect_poll_interval: i32,
    pub max_async_transfers: i32,
    pub max_transfer_size: i32,
    pub curl_timeout: i32,
    pub ssl_capath: Option<String>,
    pub ssl_verifypeer: i32,
    pub ssl_verifyhost: i32,
    pub curl_http_version: i32,
    pub enable_expect_100: i32,
    pub no_concurrent_connects: i32,
    pub curl_conn_lifetime: i32,
    /// 1: an async call past `max_async_transfers` fails with -5 instead of running blocking.
    pub no_async_fallback: i32,
    /// Millisecond versions of `curl_timeout` / `connection_timeout` (0 = use the seconds).
    pub curl_timeout_ms: i32,
    pub connection_timeout_ms: i32,
    /// Cap on the response body bytes of a process's unfinished transfers (0 = none).
    pub max_inflight_body_bytes: i32,
    /// 1: every request carries W3C trace context (`traceparent`, `tracestate`).
    pub trace_context: i32,
    /// Its sampled flag (1, the default, or 0).
    pub trace_sampled: i32,
    /// Its `tracestate` members, if any.
    pub trace_state: Option<String>,
}

/// [`DEFAULT_MAX_INFLIGHT_BODY_BYTES`] as the parameter's C `int`.
pub const DEFAULT_MAX_INFLIGHT_BODY_BYTES_PARAM: i32 = {
    assert!(DEFAULT_MAX_INFLIGHT_BODY_BYTES <= i32::MAX as usize);
    DEFAULT_MAX_INFLIGHT_BODY_BYTES as i32
};

impl Default for ModuleParams {
    fn default() -> Self {
        Self {
            connection_timeout: 20,
            connect_poll_interval: 20,
            max_async_transfers: 100,
            max_transfer_size: 10240,
            curl_timeout: 20,
            ssl_capath: None,
            ssl_verifypeer: 1,
            ssl_verifyhost: 1,
            curl_http_version: 0,
            enable_expect_100: 0,
            no_concurrent_connects: 0,
            curl_conn_lifetime: 0,
            no_async_fallback: 0,
            curl_timeout_ms: 0,
            connection_timeout_ms: 0,
            max_inflight_body_bytes: DEFAULT_MAX_INFLIGHT_BODY_BYTES_PARAM,
            trace_context: 0,
            trace_sampled: 1,
            trace_state: None,
        }
    }
}

/// What mod_init derives from the parameters.
pub struct ModuleConfig {
    pub settings: ClientSettings,
    /// Present when `no_concurrent_connects` is on; cloned into each process.
    pub gate: Option<ConnectGate>,
    pub tls: Option<TlsMgm>,
    /// Async transfers one process runs at once.
    pub max_async_transfers: usize,
    /// Past `max_async_transfers`: fail with -5 (true) or run the transfer blocking (false).
    pub no_async_fallback: bool,
    /// Longest single wait of a resume call that the host makes without a readiness event.
    pub connect_poll_interval: Duration,
    /// Named services (`service` module parameter), with their renewed credentials and
    /// counters shared by every process.
    pub services: ServiceRegistry,
    /// The cachedb engines of the services whose cache is shared (`cache=`), by service name.
    pub shared_caches: HashMap<String, Cachedb>,
    /// Present when `trace_context` is on.
    pub trace_context: Option<TracePropagation>,
}

/// Services defined by `modparam("rest_client", "service", "...")` lines, until mod_init.
static SERVICES: Mutex<Vec<Service>> = Mutex::new(Vec::new());

/// One `service` modparam line.
pub fn add_service(spec: &str) -> Result<(), String> {
    let service = Service::parse(spec)?;
    let mut services = SERVICES.lock();
    if services
        .iter()
        .any(|s| s.name.eq_ignore_ascii_case(&service.name))
    {
        return Err(format!("service {} is defined twice", service.name));
    }
    services.push(service);
    Ok(())
}

fn non_negative(name: &str, value: i32) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("{name} must not be negative (got {value})"))
}

impl ModuleParams {
    /// Validates like the C module: warnings and clamps where it clamps, an error where it
    /// refuses to start (and where a negative value would silently become huge in C).
    pub fn to_settings(&self) -> Result<ClientSettings, String> {
        let millis = |ms_name: &str, ms: i32, secs_name: &str, secs: i32| -> Result<u64, String> {
            match non_negative(ms_name, ms)? {
                0 => Ok(non_negative(secs_name, secs)? * 1000),
                ms => Ok(ms),
            }
        };
        let curl_timeout = millis(
            "curl_timeout_ms",
            self.curl_timeout_ms,
            "curl_timeout",
            self.curl_timeout,
        )?;
        let mut connection_timeout = millis(
            "connection_timeout_ms",
            self.connection_timeout_ms,
            "connection_timeout",
            self.connection_timeout,
        )?;
        if curl_timeout > 0 && connection_timeout > curl_timeout {
            warn!(
                "connection_timeout ({connection_timeout} ms) is greater than curl_timeout \
                 ({curl_timeout} ms), using {curl_timeout} ms"
            );
            connection_timeout = curl_timeout;
        }
        if curl_timeout == 0 {
            warn!(
                "curl_timeout is 0: a transfer has no time limit unless async(..., seconds), \
                 rest_timeout() or its service gives one; an async call to a silent server \
                 then holds its transaction and its async slot for ever"
            );
        }
        non_negative("max_async_transfers", self.max_async_transfers)?;
        non_negative("curl_conn_lifetime", self.curl_conn_lifetime)?;
        let max_kb = non_negative("max_transfer_size", self.max_transfer_size)?;
        let max_inflight = non_negative("max_inflight_body_bytes", self.max_inflight_body_bytes)?;
        if max_inflight != 0 && (max_kb == 0 || max_kb * 1024 > max_inflight) {
            warn!(
                "max_transfer_size ({}) is larger than max_inflight_body_bytes ({max_inflight} \
                 bytes): a response body larger than {max_inflight} bytes fails even alone",
                if max_kb == 0 {
                    "0, no limit".to_string()
                } else {
                    format!("{max_kb} KB")
                }
            );
        }
        let http_version = HttpVersion::from_param(self.curl_http_version).ok_or_else(|| {
            format!(
                "curl_http_version {} is not supported (0 = any, 1 = 1.0, 2 = 1.1, 3 = 2, \
                 4 = 2 over TLS, 5 = 2 prior knowledge)",
                self.curl_http_version
            )
        })?;
        Ok(ClientSettings {
            connect_timeout: Duration::from_millis(connection_timeout),
            transfer_timeout: Duration::from_millis(curl_timeout),
            max_body_bytes: (max_kb != 0).then(|| (max_kb * 1024) as usize),
            max_inflight_body_bytes: (max_inflight != 0).then_some(max_inflight as usize),
            verify_peer: self.ssl_verifypeer != 0,
            verify_host: self.ssl_verifyhost != 0,
            ca_path: self.ssl_capath.clone(),
            http_version,
            expect_100: self.enable_expect_100 != 0,
            max_idle_connections: (self.max_async_transfers as u32 + 4).clamp(128, 10_000),
        })
    }
}

static MODULE: OnceLock<ModuleConfig> = OnceLock::new();

/// mod_init: validates the parameters and sets up what the workers inherit.
pub fn init(params: &ModuleParams, tls: Option<TlsMgm>) -> Result<(), String> {
    let settings = params.to_settings()?;
    let connect_poll_interval = u64::try_from(params.connect_poll_interval).unwrap_or_else(|_| {
        error!("connect_poll_interval must not be negative, using 20 ms");
        20
    });
    let gate = if params.no_concurrent_connects != 0 {
        let lifetime = Duration::from_secs(params.curl_conn_lifetime as u64);
        Some(ConnectGate::create(lifetime)?)
    } else {
        None
    };
    let services = std::mem::take(&mut *SERVICES.lock());
    let mut shared_caches = HashMap::new();
    for service in &services {
        if let Some(url) = &service.shared_cache {
            let cachedb =
                Cachedb::bind(url).map_err(|e| format!("service {}: {e}", service.name))?;
            if !cachedb.knows_missing() {
                warn!(
                    "service {}: the cachedb engine of {url} does not tell a missing key from a \
                     failed read: every key not found counts as an outage of the shared cache, \
                     so answers are cached per process only",
                    service.name
                );
            }
            shared_caches.insert(service.name.clone(), cachedb);
        }
    }
    let propagation =
        TracePropagation::new(params.trace_sampled != 0, params.trace_state.as_deref())?;
    let trace_context = (params.trace_context != 0).then_some(propagation);
    if trace_context.is_some() {
        info!("requests carry W3C trace context (traceparent)");
    }
    curl::init();
    let services = ServiceRegistry::new(services)?;
    MODULE
        .set(ModuleConfig {
            settings,
            gate,
            tls,
            max_async_transfers: params.max_async_transfers as usize,
            no_async_fallback: params.no_async_fallback != 0,
            connect_poll_interval: Duration::from_millis(connect_poll_interval),
            services,
            shared_caches,
            trace_context,
        })
        .map_err(|_| "mod_init called twice".to_string())
}

pub fn config() -> Option<&'static ModuleConfig> {
    MODULE.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_c_module() {
        let s = ModuleParams::default().to_settings().unwrap();
        assert_eq!(s, ClientSettings::default());
    }

    #[test]
    fn clamps_connection_timeout_and_refuses_bad_values() {
        let p = ModuleParams {
            connection_timeout: 30,
            curl_timeout: 5,
            ..Default::default()
        };
        assert_eq!(
            p.to_settings().unwrap().connect_timeout,
            Duration::from_secs(5)
        );
        let p = ModuleParams {
            connection_timeout_ms: 250,
            curl_timeout_ms: 1500,
            ..Default::default()
        };
        let s = p.to_settings().unwrap();
        assert_eq!(s.connect_timeout, Duration::from_millis(250));
        assert_eq!(s.transfer_timeout, Duration::from_millis(1500));
        // No transfer limit: connections keep theirs (the C module's became libcurl's 300 s).
        let p = ModuleParams {
            curl_timeout: 0,
            connection_timeout: 4,
            ..Default::default()
        };
        let s = p.to_settings().unwrap();
        assert_eq!(s.transfer_timeout, Duration::ZERO);
        assert_eq!(s.connect_timeout, Duration::from_secs(4));
        let p = ModuleParams {
            curl_http_version: 30,
            ..Default::default()
        };
        assert!(
            p.to_settings()
                .unwrap_err()
                .contains("curl_http_version 30")
        );
        let p = ModuleParams {
            max_transfer_size: -1,
            ..Default::default()
        };
        assert!(p.to_settings().is_err());
        let p = ModuleParams {
            max_transfer_size: 0,
            ..Default::default()
        };
        assert_eq!(p.to_settings().unwrap().max_body_bytes, None);
        assert_eq!(
            ModuleParams::default()
                .to_settings()
                .unwrap()
                .max_inflight_body_bytes,
            Some(64 << 20)
        );
        let p = ModuleParams {
            max_inflight_body_bytes: 0,
            ..Default::default()
        };
        assert_eq!(p.to_settings().unwrap().max_inflight_body_bytes, None);
        let p = ModuleParams {
            max_inflight_body_bytes: 1 << 20,
            ..Default::default()
        };
        assert_eq!(
            p.to_settings().unwrap().max_inflight_body_bytes,
            Some(1 << 20)
        );
        let p = ModuleParams {
            max_inflight_body_bytes: -1,
            ..Default::default()
        };
        assert!(p.to_settings().is_err());
    }
}

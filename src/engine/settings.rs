//! Per-module client settings: what every transfer of a process gets unless a request overrides it.

use std::time::Duration;

/// `curl_http_version` values 0..=5, in libcurl's CURL_HTTP_VERSION_* order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HttpVersion {
    /// Let libcurl choose (0).
    #[default]
    Any,
    Http10,
    Http11,
    Http2,
    Http2Tls,
    Http2PriorKnowledge,
}

impl HttpVersion {
    /// Maps the module parameter value; `None` for anything outside 0..=5 (HTTP/3 is refused).
    pub fn from_param(value: i32) -> Option<Self> {
        Some(match value {
            0 => Self::Any,
            1 => Self::Http10,
            2 => Self::Http11,
            3 => Self::Http2,
            4 => Self::Http2Tls,
            5 => Self::Http2PriorKnowledge,
            _ => return None,
        })
    }

    pub(crate) fn to_curl(self) -> Option<curl::easy::HttpVersion> {
        use curl::easy::HttpVersion as V;
        match self {
            Self::Any => None,
            Self::Http10 => Some(V::V10),
            Self::Http11 => Some(V::V11),
            Self::Http2 => Some(V::V2),
            Self::Http2Tls => Some(V::V2TLS),
            Self::Http2PriorKnowledge => Some(V::V2PriorKnowledge),
        }
    }
}

/// The default of `max_inflight_body_bytes`: 64 MiB of response bodies per process. The C module
/// kept bodies in the process's package memory (a few MB to a few tens of MB), which failed a
/// transfer long before `max_async_transfers` × `max_transfer_size` (1 GB with its defaults);
/// here bodies are on the system heap, so this bound keeps a worker's share of them small.
pub const DEFAULT_MAX_INFLIGHT_BODY_BYTES: usize = 64 << 20;

/// Settings shared by every transfer of a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSettings {
    /// Limit for the TCP connect and TLS handshake.
    pub connect_timeout: Duration,
    /// Limit for the whole transfer, connect included.
    pub transfer_timeout: Duration,
    /// Largest accepted response body in bytes; `None` = unlimited.
    pub max_body_bytes: Option<usize>,
    /// Most response body bytes the unfinished transfers of a client hold together; `None` =
    /// no cap (then up to `max_body_bytes` per transfer each).
    pub max_inflight_body_bytes: Option<usize>,
    pub verify_peer: bool,
    pub verify_host: bool,
    /// Directory of CA certificates (`CURLOPT_CAPATH`).
    pub ca_path: Option<String>,
    pub http_version: HttpVersion,
    /// Send `Expect: 100-continue` for bodies over 1024 bytes (not with HTTP/1.0).
    pub expect_100: bool,
    /// Idle kept-alive connections the process's cache keeps (libcurl's default of 4 per
    /// handle would close most connections of concurrent async transfers).
    pub max_idle_connections: u32,
}

impl Default for ClientSettings {
    /// The C module's defaults (20 s / 20 s, 10240 KB, verification on), and at most
    /// [`DEFAULT_MAX_INFLIGHT_BODY_BYTES`] of bodies in flight.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(20),
            transfer_timeout: Duration::from_secs(20),
            max_body_bytes: Some(10240 * 1024),
            max_inflight_body_bytes: Some(DEFAULT_MAX_INFLIGHT_BODY_BYTES),
            verify_peer: true,
            verify_host: true,
            ca_path: None,
            http_version: HttpVersion::Any,
            expect_100: false,
            max_idle_connections: 128,
        }
    }
}

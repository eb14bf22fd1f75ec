//! The host-neutral HTTP engine: requests, per-process client with its connection cache,
//! result codes, cross-process connect gate and URL escaping.
//!
//! Nothing here names an OpenSIPS type; a host adaptor (see `crate::opensips`) turns script
//! arguments into [`Request`]s and [`Outcome`]s back into script variables.

mod cache;
mod client;
mod collector;
mod connect_gate;
mod curl_raw;
mod escape;
mod hub;
mod request;
mod response_head;
mod result_code;
mod service;
mod settings;
mod shared_table;
mod watcher;

pub use cache::ResponseCache;
pub use client::{Client, Outcome};
pub use connect_gate::{ConnectGate, GateTicket};
pub use escape::{escape, unescape};
pub use hub::{Hub, Token};
pub use request::{ClientCert, KeyMaterial, Method, Request};
pub use response_head::ResponseHead;
pub use result_code::ResultCode;
pub use service::{Auth, CacheLimits, Service, service_reference};
pub use settings::{ClientSettings, HttpVersion};

/// Bytes trimmed from both ends of a body or Content-Type by the blocking functions.
pub fn trim_http_whitespace(text: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = text.iter().position(|b| !is_space(b)).unwrap_or(text.len());
    let end = text
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    &text[start..end]
}

/// The URL with any `user:password@` removed, for log lines.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_space_tab_cr_lf_at_both_ends_only() {
        assert_eq!(trim_http_whitespace(b" \t\r\na b\r\n \t"), b"a b");
        assert_eq!(trim_http_whitespace(b" \r\n"), b"");
        assert_eq!(trim_http_whitespace(b""), b"");
        assert_eq!(trim_http_whitespace(b"x"), b"x");
    }

    #[test]
    fn redacts_userinfo_only() {
        assert_eq!(redact_url("http://u:p@h:80/a@b"), "http://***@h:80/a@b");
        assert_eq!(redact_url("http://h/a@b"), "http://h/a@b");
        assert_eq!(redact_url("h/a"), "h/a");
    }
}

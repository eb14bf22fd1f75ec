//! The host-neutral HTTP engine: requests, per-process client with its connection cache,
//! result codes, cross-process connect gate, services and their renewable credentials, and URL
//! escaping.
//!
//! Nothing here names an OpenSIPS type; a host adaptor (see `crate::opensips`) turns script
//! arguments into [`Request`]s and [`Outcome`]s back into script variables.

use std::borrow::Cow;
use std::fmt::Write;

mod cache;
mod cache_control;
mod client;
mod collector;
mod connect_gate;
mod credentials;
mod curl_raw;
mod escape;
mod hub;
mod lookup_threads;
mod request;
mod response_head;
mod result_code;
mod service;
mod service_cache;
mod settings;
mod shared_table;
mod throttled_log;
mod tls;
mod tls_raw;
mod transcript;
mod watcher;

pub use cache::ResponseCache;
pub use cache_control::CacheControl;
pub use client::{Client, Outcome, Traffic};
pub use connect_gate::{ConnectGate, GateTicket};
pub use credentials::{RenewableCredentials, RenewedServices};
pub use escape::{escape, escape_path, escape_xml, unescape};
pub use hub::{Hub, Token};
pub use request::{ClientCert, KeyMaterial, Method, Request, breaks_header_line, header_name};
pub use response_head::ResponseHead;
pub use result_code::ResultCode;
pub use service::{Auth, CacheLimits, Service, service_reference};
pub use service_cache::{Pending, ServiceCache, SharedStore};
pub use settings::{ClientSettings, DEFAULT_MAX_INFLIGHT_BODY_BYTES, HttpVersion};
pub use shared_table::SharedCounters;
pub use transcript::{MAX_TRACED_BODY, MAX_TRACED_HEADERS, TracedMessage, Transcript};

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

/// Query parameters whose value a log line replaces by `***`: those whose name (decoded,
/// any case) contains one of these.
const SECRET_PARAMETER_MARKERS: [&str; 7] =
    ["token", "key", "secret", "pass", "pwd", "sig", "auth"];

/// The URL for log lines: any `user:password@` becomes `***@`, and the value of every query
/// parameter whose name looks like a credential (see [`SECRET_PARAMETER_MARKERS`]) `***`.
pub fn redact_url(url: &str) -> String {
    let (address, query) = url.split_once('?').unwrap_or((url, ""));
    let mut redacted = match address.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => address.to_string(),
            }
        }
        None => address.to_string(),
    };
    if !url.contains('?') {
        return redacted;
    }
    let (query, fragment) = query
        .split_once('#')
        .map_or((query, None), |(q, f)| (q, Some(f)));
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((name, _)) if is_secret_name(name) => format!("{name}=***"),
            _ => parameter.to_string(),
        })
        .collect();
    redacted.push('?');
    redacted.push_str(&parameters.join("&"));
    if let Some(fragment) = fragment {
        redacted.push('#');
        redacted.push_str(fragment);
    }
    redacted
}

fn is_secret_name(name: &str) -> bool {
    let name = String::from_utf8_lossy(&unescape(name.as_bytes())).to_ascii_lowercase();
    SECRET_PARAMETER_MARKERS.iter().any(|m| name.contains(m))
}

/// `text` fit for one log line: CR, LF, tab and every other control character written as an
/// escape (`\r`, `\n`, `\t`, `\x1b`, `\u{85}`), so that data from scripts or servers cannot
/// start a line of its own or drive a terminal.
pub fn loggable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            // Writing to a String cannot fail.
            c if c.is_control() && c.is_ascii() => _ = write!(out, "\\x{:02x}", u32::from(c)),
            c if c.is_control() => _ = write!(out, "\\u{{{:x}}}", u32::from(c)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
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
    fn redacts_userinfo_and_secret_query_parameters() {
        assert_eq!(redact_url("http://u:p@h:80/a@b"), "http://***@h:80/a@b");
        assert_eq!(redact_url("http://h/a@b"), "http://h/a@b");
        assert_eq!(redact_url("h/a"), "h/a");
        assert_eq!(
            redact_url("https://u:p@h/x?page=2&access_token=T&API_KEY=K&sig=S&passwd=P&q#f=1"),
            "https://***@h/x?page=2&access_token=***&API_KEY=***&sig=***&passwd=***&q#f=1"
        );
        assert_eq!(redact_url("h:1/x?%74oken=T&a="), "h:1/x?%74oken=***&a=");
        assert_eq!(redact_url("http://h/?"), "http://h/?");
        assert_eq!(redact_url("http://h?u@x=1"), "http://h?u@x=1");
    }

    #[test]
    fn escapes_control_characters_for_log_lines() {
        assert!(matches!(
            loggable("plain text"),
            Cow::Borrowed("plain text")
        ));
        assert_eq!(
            loggable("a\r\nFAKE: line\t\u{1b}[31m\u{0}\u{7f}\u{85}é"),
            "a\\r\\nFAKE: line\\t\\x1b[31m\\x00\\x7f\\u{85}é"
        );
    }
}

//! W3C Trace Context (`traceparent`, `tracestate`) on the requests a host's call makes, so that
//! a backend's trace of them joins the call's: every request of one call carries the call's
//! trace id and a span id of its own.
//!
//! The trace comes from, best first: the host's own active span (sent as it is); the call's
//! message's `traceparent`, when it has exactly one valid one (continued, with its
//! `tracestate`); the call's id (the first 16 bytes of its SHA-256, the same in every process
//! and every host); a random one when the host has no call.

use std::fmt;

use log::warn;
use sha2::{Digest, Sha256};

use super::Request;

/// The header that carries the trace and the span a request is sent from.
pub const TRACEPARENT: &str = "traceparent";
/// The header that carries vendors' trace state (`key=value` members, comma-separated).
pub const TRACESTATE: &str = "tracestate";
/// Most members a `tracestate` list may have.
const MAX_STATE_MEMBERS: usize = 32;
/// The `sampled` bit of the trace flags.
const SAMPLED: u8 = 0x01;

/// A `traceparent` (version 00): the trace, the span the request is sent from, the flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Parses a header value: `00-` 32 lowercase hex digits `-` 16 `-` 2, neither id all
    /// zero, nothing after (surrounding blanks aside). Any other version is not understood.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let value = value.trim_ascii();
        let fields: Vec<&[u8]> = value.split(|&b| b == b'-').collect();
        let [b"00", trace_id, parent_id, flags] = fields[..] else {
            return None;
        };
        let parent = Self {
            trace_id: lower_hex(trace_id)?,
            parent_id: lower_hex(parent_id)?,
            flags: lower_hex::<1>(flags)?[0],
        };
        (parent.trace_id != [0; 16] && parent.parent_id != [0; 8]).then_some(parent)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

/// `N` bytes from exactly `2 * N` lowercase hex digits.
fn lower_hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    let nibble = |d: u8| match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    };
    if digits.len() != 2 * N {
        return None;
    }
    let mut bytes = [0; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The trace id of the call named `id`: the first 16 bytes of its SHA-256 (never all zero).
pub fn trace_id_of(id: &[u8]) -> [u8; 16] {
    let digest = Sha256::digest(id);
    let mut trace_id = [0; 16];
    trace_id.copy_from_slice(&digest[..16]);
    if trace_id == [0; 16] {
        trace_id[15] = 1;
    }
    trace_id
}

/// `N` random bytes, not all zero (OpenSSL's generator, which reseeds in a forked process).
fn random_id<const N: usize>() -> Option<[u8; N]> {
    let mut id = [0; N];
    while id == [0; N] {
        if let Err(e) = openssl::rand::rand_bytes(&mut id) {
            warn!("trace context: no random span id: {e}");
            return None;
        }
    }
    Some(id)
}

/// What a host knows of its call's trace, for [`TracePropagation::apply`].
#[derive(Default)]
pub struct CallTrace {
    /// The host's own span that is active now (OpenSIPS 4.0's opentelemetry): sent as it is.
    pub span: Option<TraceParent>,
    /// The values of the `traceparent` headers of the call's message.
    pub traceparents: Vec<Vec<u8>>,
    /// The values of its `tracestate` headers, in order.
    pub tracestates: Vec<Vec<u8>>,
    /// The call's id (the SIP Call-ID); `None` when the request belongs to no call.
    pub call_id: Option<Vec<u8>>,
}

/// The trace context a host adds to its requests: the sampled flag and its own `tracestate`
/// members (the `trace_sampled` and `trace_state` parameters).
#[derive(Clone, Debug)]
pub struct TracePropagation {
    sampled: bool,
    /// `key=value` members, in order.
    state: Vec<String>,
}

impl TracePropagation {
    /// Validates `state` (a `tracestate` list of W3C `key=value` members, at most 32, no key
    /// twice).
    pub fn new(sampled: bool, state: Option<&str>) -> Result<Self, String> {
        let mut members: Vec<String> = Vec::new();
        for member in state.unwrap_or_default().split(',').map(trim_blanks) {
            if member.is_empty() {
                continue;
            }
            let key = state_key(member).ok_or_else(|| {
                format!(
                    "trace_state: '{}' is not a key=value member (key: lowercase letters, \
                     digits, _-*/ and one @; value: printable ASCII without , and =)",
                    member.escape_debug()
                )
            })?;
            if members.iter().any(|m| state_key(m) == Some(key)) {
                return Err(format!("trace_state: key '{key}' is given twice"));
            }
            members.push(member.to_string());
        }
        if members.len() > MAX_STATE_MEMBERS {
            return Err(format!(
                "trace_state: {} members, at most {MAX_STATE_MEMBERS} are allowed",
                members.len()
            ));
        }
        Ok(Self {
            sampled,
            state: members,
        })
    }

    /// Adds `traceparent` (and `tracestate`) for `call` to `request`, unless it has a
    /// `traceparent` of its own (a `tracestate` of its own is kept too).
    pub fn apply(&self, request: &mut Request, call: &CallTrace) {
        if request.has_header(TRACEPARENT) {
            return;
        }
        let continued = match call.traceparents.as_slice() {
            [one] => TraceParent::parse(one),
            _ => None,
        };
        let parent = match call.span {
            Some(span) => span,
            None => {
                let trace_id = match (continued, &call.call_id) {
                    (Some(parent), _) => Some(parent.trace_id),
                    (None, Some(id)) if !id.is_empty() => Some(trace_id_of(id)),
                    _ => random_id(),
                };
                let Some((trace_id, parent_id)) = trace_id.zip(random_id()) else {
                    return;
                };
                let flags = if self.sampled { SAMPLED } else { 0 };
                TraceParent {
                    trace_id,
                    parent_id,
                    flags,
                }
            }
        };
        request.headers.push(format!("{TRACEPARENT}: {parent}"));
        let received: &[Vec<u8>] = if call.span.is_none() && continued.is_some() {
            &call.tracestates
        } else {
            &[]
        };
        let state = self.state_with(received);
        if !state.is_empty() && !request.has_header(TRACESTATE) {
            request.headers.push(format!("{TRACESTATE}: {state}"));
        }
    }

    /// The `tracestate` sent: ours, then the valid members of `received` whose key is not
    /// ours, at most 32 in all.
    fn state_with(&self, received: &[Vec<u8>]) -> String {
        let mut members: Vec<&str> = self.state.iter().map(String::as_str).collect();
        let ours = |key: &str| self.state.iter().any(|m| state_key(m) == Some(key));
        members.extend(
            received
                .iter()
                .filter_map(|value| std::str::from_utf8(value).ok())
                .flat_map(|value| value.split(','))
                .map(trim_blanks)
                .filter(|member| state_key(member).is_some_and(|key| !ours(key))),
        );
        members.truncate(MAX_STATE_MEMBERS);
        members.join(",")
    }
}

fn trim_blanks(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

/// The key of a valid `tracestate` member `key=value`.
fn state_key(member: &str) -> Option<&str> {
    let (key, value) = member.split_once('=')?;
    (key_is_valid(key) && value_is_valid(value)).then_some(key)
}

/// `simple-key` (a lowercase letter, then up to 255 of a-z 0-9 _ - * /) or
/// `tenant@system` (tenant: up to 241 starting with a letter or digit; system: up to 14
/// starting with a letter).
fn key_is_valid(key: &str) -> bool {
    let part = |text: &str, max: usize, first: fn(u8) -> bool| {
        let bytes = text.as_bytes();
        (1..=max).contains(&bytes.len())
            && first(bytes[0])
            && bytes
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*/".contains(&b))
    };
    match key.split_once('@') {
        None => part(key, 256, |b| b.is_ascii_lowercase()),
        Some((tenant, system)) => {
            part(tenant, 241, |b| {
                b.is_ascii_lowercase() || b.is_ascii_digit()
            }) && part(system, 14, |b| b.is_ascii_lowercase())
        }
    }
}

/// Up to 256 printable ASCII characters but `,` and `=`, the last not a space.
fn value_is_valid(value: &str) -> bool {
    let bytes = value.as_bytes();
    (1..=256).contains(&bytes.len())
        && bytes
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
        && bytes.last() != Some(&b' ')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Method;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn request() -> Request {
        Request::new(Method::Get, "http://127.0.0.1/".into())
    }

    fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
    }

    fn sent(propagation: &TracePropagation, call: &CallTrace) -> (TraceParent, Option<String>) {
        let mut request = request();
        propagation.apply(&mut request, call);
        let parent = TraceParent::parse(header(&request, TRACEPARENT).unwrap().as_bytes());
        (
            parent.expect("a valid traceparent"),
            header(&request, TRACESTATE).map(str::to_string),
        )
    }

    fn of_call(id: &str) -> CallTrace {
        CallTrace {
            call_id: Some(id.into()),
            ..CallTrace::default()
        }
    }

    fn on() -> TracePropagation {
        TracePropagation::new(true, None).unwrap()
    }

    #[test]
    fn parses_version_00_and_prints_it_back() {
        let parent = TraceParent::parse(format!(" {VALID}\t").as_bytes()).unwrap();
        assert_eq!(parent.trace_id[0], 0x4b);
        assert_eq!(parent.parent_id[7], 0xb7);
        assert_eq!(parent.flags, 1);
        assert_eq!(parent.to_string(), VALID);
    }

    #[test]
    fn refuses_what_is_not_a_valid_version_00() {
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn a_call_id_gives_the_first_half_of_its_sha256() {
        assert_eq!(
            hex(&trace_id_of(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223"
        );
    }

    #[test]
    fn requests_of_one_call_share_its_trace_with_spans_of_their_own() {
        let (first, _) = sent(&on(), &of_call("a84b4c76e66710@pc33.example.com"));
        let (second, _) = sent(&on(), &of_call("a84b4c76e66710@pc33.example.com"));
        let (other, _) = sent(&on(), &of_call("another@pc33.example.com"));
        assert_eq!(
            first.trace_id,
            trace_id_of(b"a84b4c76e66710@pc33.example.com")
        );
        assert_eq!(first.trace_id, second.trace_id);
        assert_ne!(first.parent_id, second.parent_id);
        assert_ne!(first.trace_id, other.trace_id);
        assert_eq!(first.flags, SAMPLED);
        let unsampled = TracePropagation::new(false, None).unwrap();
        assert_eq!(sent(&unsampled, &of_call("x")).0.flags, 0);
    }

    #[test]
    fn without_a_call_each_request_starts_a_trace() {
        let (first, _) = sent(&on(), &CallTrace::default());
        let (second, _) = sent(&on(), &of_call(""));
        assert_ne!(first.trace_id, second.trace_id);
    }

    #[test]
    fn the_messages_one_valid_traceparent_is_continued_with_its_state() {
        let propagation = TracePropagation::new(true, Some("ours=1")).unwrap();
        let mut call = of_call("x");
        call.traceparents = vec![VALID.into()];
        call.tracestates = vec![b"ours=old, vendor=a".to_vec(), b"BAD=1,other=b".to_vec()];
        let (parent, state) = sent(&propagation, &call);
        let received = TraceParent::parse(VALID.as_bytes()).unwrap();
        assert_eq!(parent.trace_id, received.trace_id);
        assert_ne!(parent.parent_id, received.parent_id);
        assert_eq!(state.as_deref(), Some("ours=1,vendor=a,other=b"));
        // Two, or an invalid one, are ignored, and so is the state that goes with them.
        for traceparents in [vec![VALID.into(), VALID.into()], vec![b"01-xyz".to_vec()]] {
            call.traceparents = traceparents;
            let (parent, state) = sent(&propagation, &call);
            assert_eq!(parent.trace_id, trace_id_of(b"x"));
            assert_eq!(state.as_deref(), Some("ours=1"));
        }
    }

    #[test]
    fn the_hosts_span_is_sent_as_it_is() {
        let span = TraceParent::parse(VALID.as_bytes()).unwrap();
        let call = CallTrace {
            span: Some(span),
            traceparents: vec![b"00-11111111111111111111111111111111-2222222222222222-01".to_vec()],
            tracestates: vec![b"vendor=a".to_vec()],
            call_id: Some(b"x".to_vec()),
        };
        let (parent, state) = sent(&TracePropagation::new(false, None).unwrap(), &call);
        assert_eq!(parent, span);
        assert_eq!(state, None);
    }

    #[test]
    fn the_requests_own_headers_win() {
        let propagation = TracePropagation::new(true, Some("ours=1")).unwrap();
        let mut request = request();
        request.headers.push(format!("TraceParent: {VALID}"));
        propagation.apply(&mut request, &of_call("x"));
        assert_eq!(request.headers.len(), 1);
        let mut request = self::request();
        request.headers.push("tracestate: mine=2".into());
        propagation.apply(&mut request, &of_call("x"));
        assert!(header(&request, TRACEPARENT).is_some());
        assert_eq!(header(&request, TRACESTATE), Some("mine=2"));
        assert_eq!(request.headers.len(), 2);
    }

    #[test]
    fn the_configured_state_must_be_a_valid_list() {
        let state = TracePropagation::new(true, Some(" a=1 ,, t@sys=x y,b-*/_=~ ")).unwrap();
        assert_eq!(state.state, ["a=1", "t@sys=x y", "b-*/_=~"]);
        for bad in [
            "A=1",
            "a",
            "a=",
            "a=1=2",
            "a=x\ty",
            "1a=1",
            "a@B=1",
            "a=1\r\nX: y",
            "a=1,a=2",
        ] {
            assert!(TracePropagation::new(true, Some(bad)).is_err(), "{bad}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert!(TracePropagation::new(true, Some(&many.join(","))).is_err());
    }
}

//! What a traced transfer exchanged, for a host's tracing (HEP in OpenSIPS): the request as
//! libcurl sent it, the response as received, the addresses, and why it failed. Bounded, with
//! credentials masked; recorded only for requests that ask for it ([`Request::trace`]).

use std::net::{IpAddr, SocketAddr};

use super::response_head::ResponseHead;
use crate::engine::request::{Request, url_parts};
use crate::engine::secrets::{Secrets, mask_header_line};

/// Most bytes of header lines kept per traced message; the rest is cut.
pub const MAX_TRACED_HEADERS: usize = 4096;
/// Most bytes of body kept per traced message; the rest is cut.
pub const MAX_TRACED_BODY: usize = 4096;

/// One direction of the exchange.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TracedMessage {
    /// The request line or status line, without its line end.
    pub first_line: Vec<u8>,
    /// The header lines, each ending with CRLF (masked, at most [`MAX_TRACED_HEADERS`]).
    pub headers: Vec<u8>,
    /// The body (at most [`MAX_TRACED_BODY`], then a note of how much was cut).
    pub body: Vec<u8>,
}

/// A traced transfer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transcript {
    pub request: TracedMessage,
    /// `None` when no response arrived.
    pub response: Option<TracedMessage>,
    /// Why the transfer failed, if it did.
    pub error: Option<String>,
    /// This side of the connection, when one was made.
    pub local: Option<SocketAddr>,
    /// The server's side (the address tried, when the connection failed).
    pub remote: Option<SocketAddr>,
    /// The answer came from a service's response cache: nothing was sent.
    pub from_cache: bool,
    /// The attempts of the same call before this one, in order: the base URLs it failed over
    /// from (a named service's).
    pub earlier_attempts: Vec<Transcript>,
}

/// The server's address when the URL names it by IP (`http://127.0.0.1:8080/`, `http://[::1]/`).
fn url_address(url: &str) -> Option<SocketAddr> {
    let (scheme, authority) = url_parts(url)?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    if let Ok(address) = host_port.parse() {
        return Some(address);
    }
    let ip = host_port.trim_start_matches('[').trim_end_matches(']');
    Some(SocketAddr::new(ip.parse().ok()?, default_port))
}

/// Appends at most `limit - kept.len()` bytes of `data` to `kept`; counts what was left out.
fn keep_bounded(kept: &mut Vec<u8>, cut: &mut usize, data: &[u8], limit: usize) {
    let room = limit.saturating_sub(kept.len()).min(data.len());
    kept.extend_from_slice(&data[..room]);
    *cut += data.len() - room;
}

/// A body cut to [`MAX_TRACED_BODY`], with a note of how much is missing.
fn bounded_body(body: &[u8], cut_before: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut cut = cut_before;
    keep_bounded(&mut kept, &mut cut, body, MAX_TRACED_BODY);
    if cut > 0 {
        kept.extend_from_slice(format!("\r\n[{cut} more bytes not traced]").as_bytes());
    }
    kept
}

/// Header lines, each masked and ending with CRLF, within [`MAX_TRACED_HEADERS`].
fn bounded_headers<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines.map(<[u8]>::trim_ascii_end).filter(|l| !l.is_empty()) {
        let line = mask_header_line(line);
        if out.len() + line.len() + 2 > MAX_TRACED_HEADERS {
            out.extend_from_slice(b"[more header lines not traced]\r\n");
            break;
        }
        out.extend_from_slice(&line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Splits a header block into its first line and the header lines.
fn split_head(head: &[u8]) -> (&[u8], impl Iterator<Item = &[u8]>) {
    let mut lines = head.split(|&b| b == b'\n');
    let first = lines.next().unwrap_or_default().trim_ascii_end();
    (first, lines)
}

/// Collects, during one transfer, what libcurl reports through its debug callback.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    secrets: Secrets,
    /// The request line as sent, for a transfer that never sent one: `METHOD url`.
    intended_line: Vec<u8>,
    /// The server's address, for a transfer that never connected, when the URL gives it.
    intended_remote: Option<SocketAddr>,
    request_head: Vec<u8>,
    request_body: Vec<u8>,
    request_body_cut: usize,
    response_head: Vec<u8>,
}

impl Recorder {
    pub(crate) fn new(request: &Request) -> Self {
        let secrets = Secrets::of(request);
        Self {
            intended_line: format!("{} {}", request.method.name(), secrets.url(&request.url))
                .into_bytes(),
            intended_remote: url_address(&request.url),
            secrets,
            ..Self::default()
        }
    }

    /// The request's header block as sent (the last one, if libcurl sent it again on a new
    /// connection).
    pub(crate) fn header_out(&mut self, data: &[u8]) {
        for line in data.split(|&b| b == b'\n') {
            self.secrets.learn_header(line.trim_ascii_end());
        }
        self.request_head.clear();
        self.request_body.clear();
        self.request_body_cut = 0;
        let room = MAX_TRACED_HEADERS * 2;
        self.request_head
            .extend_from_slice(&data[..data.len().min(room)]);
    }

    pub(crate) fn data_out(&mut self, data: &[u8]) {
        keep_bounded(
            &mut self.request_body,
            &mut self.request_body_cut,
            data,
            MAX_TRACED_BODY,
        );
    }

    /// One response header line; a status line starts a new response (only the final one
    /// is kept).
    pub(crate) fn header_in(&mut self, line: &[u8]) {
        if line.starts_with(b"HTTP/") {
            self.response_head.clear();
        }
        if self.response_head.len() + line.len() <= MAX_TRACED_HEADERS * 2 {
            self.response_head.extend_from_slice(line);
        }
    }

    /// The transcript of the ended transfer, given its response body, addresses and error.
    pub(crate) fn finish(
        self,
        response_body: &[u8],
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
        error: Option<String>,
    ) -> Transcript {
        let mask = |text: &[u8]| self.secrets.mask(text);
        let request = if self.request_head.is_empty() {
            TracedMessage {
                first_line: mask(&self.intended_line),
                ..TracedMessage::default()
            }
        } else {
            let (first, lines) = split_head(&self.request_head);
            TracedMessage {
                first_line: self.secrets.request_line(first),
                headers: mask(&bounded_headers(lines)),
                body: mask(&bounded_body(&self.request_body, self.request_body_cut)),
            }
        };
        let response = (!self.response_head.is_empty()).then(|| {
            let (first, lines) = split_head(&self.response_head);
            TracedMessage {
                first_line: mask(first),
                headers: mask(&bounded_headers(lines)),
                body: mask(&bounded_body(response_body, 0)),
            }
        });
        Transcript {
            request,
            response,
            error: error.map(|e| String::from_utf8_lossy(&mask(e.as_bytes())).into_owned()),
            local,
            remote: remote.or(self.intended_remote),
            from_cache: false,
            earlier_attempts: Vec::new(),
        }
    }
}

/// An address libcurl reported (`CURLINFO_*_IP` / `_PORT`).
pub(crate) fn socket_address(ip: Option<&str>, port: u16) -> Option<SocketAddr> {
    let ip: IpAddr = ip?.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

impl Transcript {
    /// The transcript of an answer taken from a service's response cache: the request that
    /// was not sent (`GET url` and its extra headers) and the cached response.
    pub fn cache_hit(request: &Request, head: &ResponseHead, body: &[u8]) -> Self {
        let secrets = Secrets::of(request);
        let line = format!("{} {}", request.method.name(), secrets.url(&request.url));
        Self {
            request: TracedMessage {
                first_line: secrets.mask(line.as_bytes()),
                headers: secrets.mask(&bounded_headers(
                    request.headers.iter().map(String::as_bytes),
                )),
                body: Vec::new(),
            },
            response: Some(TracedMessage {
                first_line: head.status_line().trim_ascii_end().to_vec(),
                headers: secrets.mask(&bounded_headers(head.lines())),
                body: secrets.mask(&bounded_body(body, 0)),
            }),
            error: None,
            local: None,
            remote: None,
            from_cache: true,
            earlier_attempts: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Auth, Method};

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn masks_credentials_everywhere() {
        let mut request = Request::new(Method::Post, "http://bob:hunter2@h/x?k=hunter2".into());
        request.auth = Some(Auth::Bearer("tok-123".into()));
        let mut recorder = Recorder::new(&request);
        recorder.header_out(
            b"POST /x?k=hunter2 HTTP/1.1\r\nHost: h\r\nAuthorization: Basic Ym9iOmh1bnRlcjI=\r\n\
              X-Api-Key: abc\r\nAccept: */*\r\n\r\n",
        );
        recorder.data_out(b"{\"t\":\"tok-123\"}");
        recorder.header_in(b"HTTP/1.1 200 OK\r\n");
        recorder.header_in(b"Set-Cookie: s=1\r\n");
        recorder.header_in(b"\r\n");
        let t = recorder.finish(b"echo abc", None, None, Some("failed for tok-123".into()));
        assert_eq!(text(&t.request.first_line), "POST /x?k=*** HTTP/1.1");
        assert_eq!(
            text(&t.request.headers),
            "Host: h\r\nAuthorization: Basic ***\r\nX-Api-Key: ***\r\nAccept: */*\r\n"
        );
        assert_eq!(text(&t.request.body), "{\"t\":\"***\"}");
        let response = t.response.unwrap();
        assert_eq!(text(&response.first_line), "HTTP/1.1 200 OK");
        assert_eq!(text(&response.headers), "Set-Cookie: ***\r\n");
        assert_eq!(
            text(&response.body),
            "echo ***",
            "credentials sent are masked in echoes"
        );
        assert_eq!(t.error.as_deref(), Some("failed for ***"));
    }

    #[test]
    fn unsent_request_shows_method_and_redacted_url() {
        let request = Request::new(Method::Get, "http://u:pw@127.0.0.1:1/a".into());
        let t = Recorder::new(&request).finish(b"", None, None, Some("refused".into()));
        assert_eq!(text(&t.request.first_line), "GET http://***@127.0.0.1:1/a");
        assert!(t.response.is_none());
    }

    #[test]
    fn bounds_bodies_and_headers() {
        let request = Request::new(Method::Post, "http://h/".into());
        let mut recorder = Recorder::new(&request);
        recorder.header_out(b"POST / HTTP/1.1\r\n\r\n");
        recorder.data_out(&[b'a'; 3000]);
        recorder.data_out(&[b'b'; 3000]);
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        recorder.header_in(&big);
        for _ in 0..200 {
            big = format!("X-Filler: {}\r\n", "f".repeat(40)).into_bytes();
            recorder.header_in(&big);
        }
        let t = recorder.finish(&[b'c'; 5000], None, None, None);
        assert!(text(&t.request.body).ends_with("[1904 more bytes not traced]"));
        assert!(t.request.body.len() < MAX_TRACED_BODY + 40);
        let response = t.response.unwrap();
        assert!(response.headers.len() <= MAX_TRACED_HEADERS);
        assert!(text(&response.headers).ends_with("[more header lines not traced]\r\n"));
        assert!(text(&response.body).ends_with("[904 more bytes not traced]"));
    }

    #[test]
    fn only_the_final_response_and_the_last_request_are_kept() {
        let request = Request::new(Method::Get, "http://h/".into());
        let mut recorder = Recorder::new(&request);
        recorder.header_out(b"GET /first HTTP/1.1\r\n\r\n");
        recorder.header_out(b"GET /again HTTP/1.1\r\n\r\n");
        recorder.header_in(b"HTTP/1.1 100 Continue\r\n");
        recorder.header_in(b"HTTP/1.1 204 No Content\r\n");
        let t = recorder.finish(b"", None, None, None);
        assert_eq!(text(&t.request.first_line), "GET /again HTTP/1.1");
        assert_eq!(
            text(&t.response.unwrap().first_line),
            "HTTP/1.1 204 No Content"
        );
    }

    #[test]
    fn parses_addresses() {
        assert_eq!(
            socket_address(Some("127.0.0.1"), 80),
            Some("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(
            socket_address(Some("::1"), 8),
            Some("[::1]:8".parse().unwrap())
        );
        assert_eq!(socket_address(Some(""), 80), None);
        assert_eq!(socket_address(None, 80), None);
        let address = |url: &str| url_address(url).map(|a| a.to_string());
        assert_eq!(
            address("http://u:p@127.0.0.1:1/x").as_deref(),
            Some("127.0.0.1:1")
        );
        assert_eq!(address("https://[::1]/").as_deref(), Some("[::1]:443"));
        assert_eq!(address("http://[::1]:8/").as_deref(), Some("[::1]:8"));
        assert_eq!(address("http://localhost/"), None);
    }
}

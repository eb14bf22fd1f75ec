//! The per-process HTTP client: the connection caches (a libcurl share per client identity,
//! see `tls.rs`) used by every transfer of the process, one reusable easy handle for
//! blocking transfers, and the bound on slow name lookups (see `lookup_threads.rs`).

use std::time::{Duration, Instant};

use curl::easy::{Easy2, List};
use log::{error, info};

use super::collector::{Collector, InflightBodies, Overflow};
use super::curl_raw::{allow_http_only, leave_slow_lookups_behind, name_resolved, request_sent};
use super::hub::{Hub, Token};
use super::lookup_threads::LookupThreads;
use super::redact_url;
use super::request::{Method, Request, header_name_is};
use super::response_head::ResponseHead;
use super::result_code::ResultCode;
use super::service::Auth;
use super::settings::{ClientSettings, HttpVersion};
use super::tls::{ConnectionTls, ProcessTls};
use super::transcript::{Recorder, Transcript, socket_address};

/// Bodies larger than this ask for `100-continue` when `expect_100` is on (the C module's
/// documented threshold; libcurl 7.88 on its own only asks above 1 MiB).
const EXPECT_100_ABOVE_BYTES: usize = 1024;

/// What a transfer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub result: ResultCode,
    /// HTTP status of the final response, 0 if none was received.
    pub status: u32,
    pub body: Vec<u8>,
    /// Value of the final response's Content-Type header, if any.
    pub content_type: Option<Vec<u8>>,
    /// The final response's status line and headers.
    pub head: ResponseHead,
    /// What was exchanged, for a request that asked for it ([`Request::trace`]).
    pub transcript: Option<Box<Transcript>>,
    /// What the transfer cost on the wire (all zero for an answer that did not come from one).
    pub traffic: Traffic,
}

/// What one transfer did on the wire, for statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Connections opened for it (0: it reused a kept-alive one, or none was made).
    pub connections_opened: u64,
    /// Whether a request was sent (on a new or a reused connection).
    pub request_sent: bool,
    /// Whether its connections are TLS (`https://`).
    pub tls: bool,
    /// Request and response bytes, headers included (as libcurl counts them).
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl Outcome {
    /// A transfer that never started.
    pub fn failed(result: ResultCode) -> Self {
        Self {
            result,
            status: 0,
            body: Vec::new(),
            content_type: None,
            head: ResponseHead::default(),
            transcript: None,
            traffic: Traffic::default(),
        }
    }
}

/// One process's client. Field order is drop order: easy handles before the caches they use.
pub struct Client {
    blocking: Easy2<Collector>,
    /// The process's async transfers.
    pub hub: Hub,
    tls: ProcessTls,
    lookups: LookupThreads,
    settings: ClientSettings,
}

impl Client {
    pub fn new(settings: ClientSettings) -> Result<Self, String> {
        let tls = ProcessTls::new(&settings)?;
        let inflight = InflightBodies::new(settings.max_inflight_body_bytes);
        Ok(Self {
            blocking: Easy2::new(Collector::new(std::rc::Rc::clone(&inflight))),
            hub: Hub::new(&settings, inflight)?,
            tls,
            lookups: LookupThreads::new(),
            settings,
        })
    }

    /// Starts `request` as async transfer `token` without waiting for anything: see [`Hub`].
    /// `Some` when it is already over (e.g. connection refused at once, or bad options).
    pub fn start(&mut self, token: Token, request: &Request) -> Option<Outcome> {
        if !self.lookups.admit(&request.url) {
            return Some(Outcome::failed(ResultCode::ConnectTimeout));
        }
        let started = Instant::now();
        match self
            .hub
            .start(token, &mut self.tls, &self.settings, request)
        {
            Ok(()) => {
                if self.hub.resolving(token) {
                    let limit = connect_limit(&self.settings, request);
                    self.lookups.unresolved(&request.url, started, limit);
                }
                let outcome = self.hub.take_finished(token);
                self.hub.wake_for_finished();
                outcome
            }
            Err(code) => Some(Outcome::failed(code)),
        }
    }

    /// Runs `request` to completion, blocking the calling thread.
    pub fn perform(&mut self, request: &Request) -> Outcome {
        if !self.lookups.admit(&request.url) {
            return Outcome::failed(ResultCode::ConnectTimeout);
        }
        let started = Instant::now();
        if let Err(e) = configure(&mut self.blocking, &mut self.tls, &self.settings, request) {
            error!(
                "cannot set up {} {}: {e}",
                request.method.name(),
                redact_url(&request.url)
            );
            return Outcome::failed(ResultCode::InternalError);
        }
        let mut result = self.blocking.perform();
        if retry_on_new_connection(
            &mut self.blocking,
            &result,
            transfer_limit(&self.settings, request),
            request.method,
            &request.url,
        ) {
            result = self.blocking.perform();
        }
        if result.is_err() && !name_resolved(self.blocking.raw()) {
            // Its lookup thread may be left behind (see `lookup_threads.rs`).
            let limit = connect_limit(&self.settings, request);
            self.lookups.unresolved(&request.url, started, limit);
        }
        let outcome = finish(&mut self.blocking, result, request.method, &request.url);
        scrub(&mut self.blocking);
        outcome
    }
}

/// Why a transfer could not be set up.
pub(super) enum SetupError {
    /// The request asks for something a transfer must not do (see [`Request::refusal`]).
    Refused(String),
    Curl(curl::Error),
}

impl From<curl::Error> for SetupError {
    fn from(e: curl::Error) -> Self {
        Self::Curl(e)
    }
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Self::Refused(why) => f.write_str(why),
            Self::Curl(e) => e.fmt(f),
        }
    }
}

/// Resets `easy` and applies the settings and the request: the one place that decides which
/// libcurl options a transfer gets. Only HTTP and HTTPS are allowed.
pub(super) fn configure(
    easy: &mut Easy2<Collector>,
    tls: &mut ProcessTls,
    settings: &ClientSettings,
    request: &Request,
) -> Result<(), SetupError> {
    if let Some(why) = request.refusal() {
        return Err(SetupError::Refused(why));
    }
    easy.reset();
    allow_http_only(easy)?;
    easy.get_mut().start(settings.max_body_bytes);
    if request.trace {
        // Only traced transfers pay for the debug callback.
        easy.get_mut().record(Recorder::new(request));
        easy.verbose(true)?;
    }
    tls.apply(easy, settings, request.client_cert.as_ref())?;
    // Refused by libcurl before 7.87 (the module then waits for slow lookups as before).
    let _ = leave_slow_lookups_behind(easy);
    easy.signal(false)?;
    easy.max_connects(settings.max_idle_connections)?;
    easy.url(&request.url)?;
    easy.connect_timeout(connect_limit(settings, request))?;
    easy.timeout(transfer_limit(settings, request))?;
    if let Some(version) = settings.http_version.to_curl() {
        easy.http_version(version)?;
    }
    if !settings.verify_peer {
        easy.ssl_verify_peer(false)?;
    }
    if !settings.verify_host {
        easy.ssl_verify_host(false)?;
    }
    let own_type =
        request.sends_body() && request.content_type.as_ref().is_some_and(|c| !c.is_empty());
    let mut headers = List::new();
    for line in &request.headers {
        // The request's own Content-Type replaces one appended by the script.
        if !(own_type && header_name_is(line, "Content-Type")) {
            headers.append(line)?;
        }
    }
    match &request.auth {
        Some(Auth::Basic { user, password }) => {
            easy.username(user)?;
            easy.password(password)?;
            easy.http_auth(curl::easy::Auth::new().basic(true))?;
        }
        Some(Auth::Bearer(token)) if !request.has_header("Authorization") => {
            headers.append(&format!("Authorization: Bearer {token}"))?;
        }
        _ => {}
    }
    if request.sends_body() {
        match &request.content_type {
            Some(ctype) if !ctype.is_empty() => {
                headers.append(&format!("Content-Type: {ctype}"))?
            }
            // No type given: suppress libcurl's form-urlencoded default, unless the script
            // appended its own Content-Type header.
            _ if !request.has_header("Content-Type") => headers.append("Content-Type:")?,
            _ => {}
        }
        if !request.has_header("Expect") {
            if !settings.expect_100 {
                headers.append("Expect:")?;
            } else if request.body.len() > EXPECT_100_ABOVE_BYTES
                && settings.http_version != HttpVersion::Http10
            {
                // Named explicitly, libcurl sends it and waits for "100 Continue" (at most
                // its 1 s expect timeout) before the body.
                headers.append("Expect: 100-continue")?;
            }
        }
    }
    easy.http_headers(headers)?;
    match request.method {
        Method::Get => {}
        Method::Head => easy.nobody(true)?,
        Method::Post => easy.post(true)?,
        other => easy.custom_request(other.name())?,
    }
    if request.sends_body() {
        easy.post_fields_copy(&request.body)?;
    }
    Ok(())
}

/// The time limit of `request`'s whole transfer; zero for none.
pub(super) fn transfer_limit(settings: &ClientSettings, request: &Request) -> Duration {
    request.timeout.unwrap_or(settings.transfer_timeout)
}

/// The time limit of `request`'s connect phase (name lookup, TCP and TLS handshakes), within
/// its transfer's; zero for libcurl's default.
fn connect_limit(settings: &ClientSettings, request: &Request) -> Duration {
    let transfer = transfer_limit(settings, request);
    let connect = request.connect_timeout.unwrap_or(settings.connect_timeout);
    if transfer.is_zero() {
        connect
    } else {
        connect.min(transfer)
    }
}

/// libcurl (7.88) reuses a kept-alive connection the server has already closed when the close
/// does not show yet (a TLS connection whose close_notify waits unread looks alive), retries on
/// the next cached connection of that server when nothing came back, and gives up with
/// CURLE_SEND_ERROR after five such retries, which a server closing all its idle connections
/// at once (an nginx reload) reaches. When `result` failed that way (a send or receive error,
/// no response byte, only kept-alive connections tried), this sets `easy` up for one more
/// attempt on a new connection within what is left of `limit` (zero: no limit), and says so.
pub(super) fn retry_on_new_connection(
    easy: &mut Easy2<Collector>,
    result: &Result<(), curl::Error>,
    limit: Duration,
    method: Method,
    url: &str,
) -> bool {
    let Err(e) = result else {
        return false;
    };
    let stale = (e.is_send_error() || e.is_recv_error())
        && easy.header_size().is_ok_and(|bytes| bytes == 0)
        && easy.num_connects().is_ok_and(|new| new == 0);
    if !stale {
        return false;
    }
    let left = if limit.is_zero() {
        Duration::ZERO
    } else {
        match easy
            .total_time()
            .ok()
            .and_then(|spent| limit.checked_sub(spent))
        {
            Some(left) if !left.is_zero() => left,
            _ => return false,
        }
    };
    if easy.timeout(left).and(easy.fresh_connect(true)).is_err() {
        return false;
    }
    info!(
        "{} {}: the server closed the kept-alive connections tried ({e}), trying a new one",
        method.name(),
        redact_url(url)
    );
    true
}

/// Forgets the options the last transfer set on `easy` (request body, credentials, client
/// certificate and key, header list), so that a handle waiting for its next transfer holds none
/// of them.
pub(super) fn scrub(easy: &mut Easy2<Collector>) {
    easy.reset();
    // reset() leaves the handle in its share: it leaves it here, so that caches the process
    // dropped meanwhile are freed.
    if let Err(e) = ConnectionTls::release(easy) {
        error!("cannot detach a transfer from its connection cache: {e}");
    }
    // reset() leaves the header list with the handle: an empty one replaces it.
    if let Err(e) = easy.http_headers(List::new()) {
        error!("cannot clear a transfer's headers: {e}");
    }
}

/// Reads the outcome of a finished transfer out of `easy`.
pub(super) fn finish(
    easy: &mut Easy2<Collector>,
    result: Result<(), curl::Error>,
    method: Method,
    url: &str,
) -> Outcome {
    let status = easy.response_code().unwrap_or(0);
    // The request could be sent: connected (TLS included) on a new or a reused connection.
    let connected = request_sent(easy.raw());
    let code = ResultCode::from_curl(result.as_ref().map(|_| ()), connected);
    let failure = result.as_ref().err().map(|e| {
        let url = redact_url(url);
        let method = method.name();
        let collector = easy.get_ref();
        let message = match code {
            _ if collector.overflow() == Some(Overflow::TransferLimit) => {
                format!("{method} {url}: response body larger than max_transfer_size, aborted")
            }
            _ if collector.overflow() == Some(Overflow::InflightCap) => format!(
                "{method} {url}: the response bodies of this process's unfinished transfers \
                 would exceed max_inflight_body_bytes ({} bytes), aborted",
                collector.inflight().cap().unwrap_or_default()
            ),
            ResultCode::ConnectRefused => format!("connect refused for {url}"),
            ResultCode::ConnectTimeout => format!("connect timeout on {url}"),
            ResultCode::TransferTimeout => format!("connected, but transfer timed out for {url}"),
            _ => format!("{method} {url} failed: {e}"),
        };
        error!("{message}");
        let detail = e
            .extra_description()
            .map(str::to_owned)
            .or_else(|| easy.take_error_buf())
            .unwrap_or_else(|| e.description().to_string());
        if message.contains(&detail) {
            message
        } else {
            format!("{message} ({detail})")
        }
    });
    let transcript = easy.get_mut().take_recorder().map(|recorder| {
        let local = socket_address(
            easy.local_ip().ok().flatten(),
            easy.local_port().unwrap_or(0),
        );
        let remote = socket_address(
            easy.primary_ip().ok().flatten(),
            easy.primary_port().unwrap_or(0),
        );
        Box::new(recorder.finish(easy.get_ref().body(), local, remote, failure))
    });
    let traffic = Traffic {
        connections_opened: easy.num_connects().unwrap_or(0),
        request_sent: connected,
        tls: url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://")),
        bytes_sent: bytes_sent(easy),
        bytes_received: easy.header_size().unwrap_or(0)
            + easy.download_size().unwrap_or(0.0) as u64,
    };
    let (body, content_type, head) = easy.get_mut().take();
    Outcome {
        result: code,
        status,
        body,
        content_type,
        head,
        transcript,
        traffic,
    }
}

/// The request bytes a finished transfer sent: request line, headers and body, once.
/// CURLINFO_REQUEST_SIZE counts what went out with the headers, which includes a body small
/// enough to go in the same write (libcurl 7.88: under 64 KiB), which CURLINFO_SIZE_UPLOAD
/// counts again; a larger body is in the upload size only.
fn bytes_sent(easy: &Easy2<Collector>) -> u64 {
    let with_headers = easy.request_size().unwrap_or(0);
    let body = easy.upload_size().unwrap_or(0.0) as u64;
    if with_headers >= body {
        with_headers
    } else {
        with_headers + body
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    /// A URL without a scheme lets libcurl guess one from the host name (`dict.` → DICT):
    /// the transfer's protocol list refuses it before any lookup or connect.
    #[test]
    fn a_guessed_scheme_other_than_http_is_refused_by_libcurl() {
        let settings = ClientSettings::default();
        let mut tls = ProcessTls::new(&settings).unwrap();
        let mut easy = Easy2::new(Collector::new(InflightBodies::new(None)));
        let request = Request::new(Method::Get, "dict.localhost:1/d".into());
        assert!(request.refusal().is_none());
        assert!(configure(&mut easy, &mut tls, &settings, &request).is_ok());
        let e = easy.perform().unwrap_err();
        assert!(e.is_unsupported_protocol(), "{e}");
    }

    /// A server on 127.0.0.1 that answers `count` requests with an empty 200, one connection
    /// each, and returns what it received.
    fn recording_server(count: usize) -> (u16, thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            (0..count)
                .map(|_| {
                    let (mut conn, _) = listener.accept().unwrap();
                    let mut received = Vec::new();
                    let mut buf = [0; 4096];
                    while !String::from_utf8_lossy(&received).contains("\r\n\r\n") {
                        let n = conn.read(&mut buf).unwrap();
                        received.extend_from_slice(&buf[..n]);
                    }
                    // The bodies of the test are small: one more read gets one still in flight.
                    conn.set_read_timeout(Some(std::time::Duration::from_millis(200)))
                        .unwrap();
                    if let Ok(n) = conn.read(&mut buf) {
                        received.extend_from_slice(&buf[..n]);
                    }
                    conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .unwrap();
                    String::from_utf8_lossy(&received).into_owned()
                })
                .collect()
        });
        (port, server)
    }

    #[test]
    fn a_handle_between_transfers_keeps_no_body_headers_or_credentials() {
        let (port, server) = recording_server(2);
        let url = format!("http://127.0.0.1:{port}/");
        let mut client = Client::new(ClientSettings::default()).unwrap();
        let mut request = Request::new(Method::Post, url.clone());
        request.body = b"secret-body".to_vec();
        request.headers = vec!["X-Secret: s1".into()];
        request.auth = Some(Auth::Basic {
            user: "u".into(),
            password: "secret-password".into(),
        });
        assert_eq!(client.perform(&request).result, ResultCode::Ok);
        // The idle handle, used as it is: nothing of the first request goes out again.
        client.blocking.url(&url).unwrap();
        client.blocking.perform().unwrap();
        let received = server.join().unwrap();
        assert!(received[0].starts_with("POST ") && received[0].contains("secret-body"));
        assert!(received[0].contains("X-Secret") && received[0].contains("Authorization"));
        let second = &received[1];
        assert!(second.starts_with("GET "), "{second}");
        for kept in ["secret-body", "X-Secret", "Authorization"] {
            assert!(!second.contains(kept), "{kept} in {second}");
        }
    }
}

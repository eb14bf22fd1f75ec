//! The per-process HTTP client: one connection cache (a libcurl share) used by every transfer
//! of the process, and one reusable easy handle for blocking transfers.

use curl::easy::{Easy2, List};
use log::error;

use super::collector::Collector;
use super::curl_raw::{CurlShare, allow_http_only, leave_slow_lookups_behind, request_sent};
use super::hub::{Hub, Token};
use super::redact_url;
use super::request::{KeyMaterial, Method, Request, header_name_is};
use super::response_head::ResponseHead;
use super::result_code::ResultCode;
use super::service::Auth;
use super::settings::{ClientSettings, HttpVersion};

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
        }
    }
}

/// One process's client. Field order is drop order: easy handles before the share.
pub struct Client {
    blocking: Easy2<Collector>,
    /// The process's async transfers.
    pub hub: Hub,
    share: CurlShare,
    settings: ClientSettings,
}

impl Client {
    pub fn new(settings: ClientSettings) -> Result<Self, String> {
        let share = CurlShare::new()?;
        Ok(Self {
            blocking: Easy2::new(Collector::default()),
            hub: Hub::new(&settings)?,
            share,
            settings,
        })
    }

    /// Starts `request` as async transfer `token` without waiting for anything: see [`Hub`].
    /// `Some` when it is already over (e.g. connection refused at once, or bad options).
    pub fn start(&mut self, token: Token, request: &Request) -> Option<Outcome> {
        match self.hub.start(token, &self.share, &self.settings, request) {
            Ok(()) => {
                let outcome = self.hub.take_finished(token);
                self.hub.wake_for_finished();
                outcome
            }
            Err(outcome) => Some(outcome),
        }
    }

    /// Runs `request` to completion, blocking the calling thread.
    pub fn perform(&mut self, request: &Request) -> Outcome {
        if let Err(e) = configure(&mut self.blocking, &self.share, &self.settings, request) {
            error!(
                "cannot set up {} {}: {e}",
                request.method.name(),
                redact_url(&request.url)
            );
            return Outcome::failed(ResultCode::InternalError);
        }
        let result = self.blocking.perform();
        finish(&mut self.blocking, result, request.method, &request.url)
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
    share: &CurlShare,
    settings: &ClientSettings,
    request: &Request,
) -> Result<(), SetupError> {
    if let Some(why) = request.refusal() {
        return Err(SetupError::Refused(why));
    }
    easy.reset();
    allow_http_only(easy)?;
    easy.get_mut().start(settings.max_body_bytes);
    share.attach(easy)?;
    // Refused by libcurl before 7.87 (the module then waits for slow lookups as before).
    let _ = leave_slow_lookups_behind(easy);
    easy.signal(false)?;
    easy.max_connects(settings.max_idle_connections)?;
    easy.url(&request.url)?;
    let transfer_timeout = request.timeout.unwrap_or(settings.transfer_timeout);
    let connect_timeout = request.connect_timeout.unwrap_or(settings.connect_timeout);
    easy.connect_timeout(if transfer_timeout.is_zero() {
        connect_timeout
    } else {
        connect_timeout.min(transfer_timeout)
    })?;
    easy.timeout(transfer_timeout)?;
    if let Some(version) = settings.http_version.to_curl() {
        easy.http_version(version)?;
    }
    if let Some(path) = &settings.ca_path {
        easy.capath(path)?;
    }
    if !settings.verify_peer {
        easy.ssl_verify_peer(false)?;
    }
    if !settings.verify_host {
        easy.ssl_verify_host(false)?;
    }
    if let Some(cert) = &request.client_cert {
        match &cert.certificate {
            KeyMaterial::File(path) => easy.ssl_cert(path)?,
            KeyMaterial::Pem(pem) => easy.ssl_cert_blob(pem)?,
        }
        match &cert.private_key {
            KeyMaterial::File(path) => easy.ssl_key(path)?,
            KeyMaterial::Pem(pem) => easy.ssl_key_blob(pem)?,
        }
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
    if let Err(e) = &result {
        let url = redact_url(url);
        let method = method.name();
        match code {
            _ if easy.get_ref().body_overflowed() => {
                error!("{method} {url}: response body larger than max_transfer_size, aborted")
            }
            ResultCode::ConnectRefused => error!("connect refused for {url}"),
            ResultCode::ConnectTimeout => error!("connect timeout on {url}"),
            ResultCode::TransferTimeout => error!("connected, but transfer timed out for {url}"),
            _ => error!("{method} {url} failed: {e}"),
        }
    }
    let (body, content_type, head) = easy.get_mut().take();
    Outcome {
        result: code,
        status,
        body,
        content_type,
        head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL without a scheme lets libcurl guess one from the host name (`dict.` → DICT):
    /// the transfer's protocol list refuses it before any lookup or connect.
    #[test]
    fn a_guessed_scheme_other_than_http_is_refused_by_libcurl() {
        let share = CurlShare::new().unwrap();
        let mut easy = Easy2::new(Collector::default());
        let request = Request::new(Method::Get, "dict.localhost:1/d".into());
        assert!(request.refusal().is_none());
        let settings = ClientSettings::default();
        assert!(configure(&mut easy, &share, &settings, &request).is_ok());
        let e = easy.perform().unwrap_err();
        assert!(e.is_unsupported_protocol(), "{e}");
    }
}

//! The one place that decides which libcurl options a transfer gets, for blocking and async
//! transfers alike.

use std::time::Duration;

use curl::easy::{Easy2, List};

use super::collector::Collector;
use super::connection_check;
use super::transcript::Recorder;
use crate::engine::curl_raw::{allow_http_only, leave_slow_lookups_behind};
use crate::engine::request::{Auth, Method, Request, header_name_is};
use crate::engine::settings::{ClientSettings, HttpVersion};
use crate::engine::tls::ProcessTls;

/// Bodies larger than this ask for `100-continue` when `expect_100` is on (the C module's
/// documented threshold; libcurl 7.88 on its own only asks above 1 MiB).
const EXPECT_100_ABOVE_BYTES: usize = 1024;

/// Why a transfer could not be set up.
pub(crate) enum SetupError {
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
pub(crate) fn configure(
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
    connection_check::watch(easy, &easy.get_ref().connection, settings)?;
    easy.get_mut().start(settings.max_body_bytes);
    if request.trace {
        // Only traced transfers pay for the debug callback.
        easy.get_mut().record(Recorder::new(request));
        easy.verbose(true)?;
    }
    let connection_tls = tls.apply(easy, settings, request.client_cert.as_ref())?;
    easy.get_mut().tls = connection_tls;
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
pub(crate) fn transfer_limit(settings: &ClientSettings, request: &Request) -> Duration {
    request.timeout.unwrap_or(settings.transfer_timeout)
}

/// The time limit of `request`'s connect phase (name lookup, TCP and TLS handshakes), within
/// its transfer's; zero for libcurl's default.
pub(crate) fn connect_limit(settings: &ClientSettings, request: &Request) -> Duration {
    let transfer = transfer_limit(settings, request);
    let connect = request.connect_timeout.unwrap_or(settings.connect_timeout);
    if transfer.is_zero() {
        connect
    } else {
        connect.min(transfer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::transfer::InflightBodies;

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
}

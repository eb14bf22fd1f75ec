//! What one HTTP transfer asks for.

use std::time::Duration;

/// Longest method name accepted for a custom method.
const MAX_METHOD_LEN: usize = 24;

/// The request method: the common ones, or any other RFC 9110 token (kept inline so that the
/// type stays `Copy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Other { name: [u8; MAX_METHOD_LEN], len: u8 },
}

impl Method {
    /// A method from its name (case-sensitive, as HTTP methods are); `None` unless it is a
    /// token of 1 to 24 characters.
    pub fn parse(name: &[u8]) -> Option<Self> {
        let is_tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
        if name.is_empty() || name.len() > MAX_METHOD_LEN || !name.iter().all(is_tchar) {
            return None;
        }
        Some(match name {
            b"GET" => Self::Get,
            b"HEAD" => Self::Head,
            b"POST" => Self::Post,
            b"PUT" => Self::Put,
            b"PATCH" => Self::Patch,
            b"DELETE" => Self::Delete,
            b"OPTIONS" => Self::Options,
            _ => {
                let mut bytes = [0; MAX_METHOD_LEN];
                bytes[..name.len()].copy_from_slice(name);
                Self::Other {
                    name: bytes,
                    len: name.len() as u8,
                }
            }
        })
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Options => "OPTIONS",
            // Only tokens (ASCII) are stored.
            Self::Other { name, len } => {
                std::str::from_utf8(&name[..usize::from(*len)]).unwrap_or("?")
            }
        }
    }

    /// A safe method (RFC 9110 §9.2.1: GET, HEAD, OPTIONS, TRACE) changes nothing on the
    /// server; any other may, so its success invalidates cached answers (RFC 9111 §4.4).
    pub fn is_safe(&self) -> bool {
        matches!(self, Self::Get | Self::Head | Self::Options) || self.name() == "TRACE"
    }
}

impl Method {
    /// An idempotent method (RFC 9110 §9.2.2: the safe ones, PUT, DELETE): sending it twice
    /// has the effect of sending it once, so it may go to another server after it was sent.
    pub fn is_idempotent(&self) -> bool {
        self.is_safe() || matches!(self, Self::Put | Self::Delete)
    }
}

/// Credentials a request sends (a service's, as renewed). Never printed: there is no `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    Basic { user: String, password: String },
    Bearer(String),
}

/// Where a client certificate or key comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyMaterial {
    /// A PEM file on disk.
    File(String),
    /// PEM text held in memory (e.g. a certificate provisioned from a database).
    Pem(Vec<u8>),
}

impl KeyMaterial {
    /// Interprets text given by a TLS configuration: PEM content if it looks like PEM, else a path.
    pub fn from_config(text: &[u8]) -> Self {
        if text.trim_ascii_start().starts_with(b"-----BEGIN") {
            Self::Pem(text.to_vec())
        } else {
            Self::File(String::from_utf8_lossy(text).into_owned())
        }
    }
}

/// A client certificate and its private key, for one transfer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientCert {
    pub certificate: KeyMaterial,
    pub private_key: KeyMaterial,
}

/// Whether `text` holds a CR, LF or NUL byte, any of which would end or cut a header line.
pub fn breaks_header_line(text: &[u8]) -> bool {
    text.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
}

/// The scheme written at the start of `url`, the way libcurl reads one: RFC 3986 scheme
/// characters followed by `:/`. Without one (`host:port/path`), libcurl guesses the scheme
/// from the host name, within the protocols a transfer allows.
fn explicit_scheme(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    (well_formed && rest.starts_with('/')).then_some(scheme)
}

/// The scheme and the authority (`user:password@host:port`) of a URL.
pub(crate) fn url_parts(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    Some((
        scheme,
        &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())],
    ))
}

/// `host:port` of a URL, lowercase, with the scheme's default port when none is given.
pub(crate) fn host_key(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let has_port = match host_port.rfind(':') {
        Some(colon) => !host_port[colon..].contains(']'),
        None => false,
    };
    let mut key = host_port.to_ascii_lowercase();
    if !has_port {
        key.push_str(if scheme.eq_ignore_ascii_case("https") {
            ":443"
        } else {
            ":80"
        });
    }
    key
}

/// The name of the header line `line` (the text before its `:`, trimmed).
pub fn header_name(line: &str) -> &str {
    line.split(':').next().unwrap_or_default().trim()
}

/// Whether the header line `line` has the name `name` (ASCII case-insensitive).
pub fn header_name_is(line: &str, name: &str) -> bool {
    line.split_once(':')
        .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
}

/// One HTTP transfer. (No `Debug`: it may carry credentials.)
#[derive(Clone)]
pub struct Request {
    pub method: Method,
    pub url: String,
    /// Request body: always sent for POST, PUT and PATCH, for other methods when not empty
    /// (never for GET and HEAD).
    pub body: Vec<u8>,
    /// Content-Type of the body; `None` sends none.
    pub content_type: Option<String>,
    /// Extra header lines (`Name: value`), without CRLF.
    pub headers: Vec<String>,
    pub client_cert: Option<ClientCert>,
    /// Credentials (from a service).
    pub auth: Option<Auth>,
    /// Limit for this whole transfer, instead of the client's.
    pub timeout: Option<Duration>,
    /// Limit for this transfer's connect phase, instead of the client's (never above the
    /// transfer limit).
    pub connect_timeout: Option<Duration>,
    /// Query parameters whose values no output shows (the service's own `param=` items), besides
    /// those whose name looks like a credential (see `secrets`).
    pub masked_parameters: Vec<String>,
    /// Record a [`Transcript`](super::Transcript) of the exchange in the outcome (libcurl's
    /// verbose debug callback runs for this transfer only).
    pub trace: bool,
}

impl Request {
    pub fn new(method: Method, url: String) -> Self {
        Self {
            method,
            url,
            body: Vec::new(),
            content_type: None,
            headers: Vec::new(),
            client_cert: None,
            auth: None,
            timeout: None,
            connect_timeout: None,
            masked_parameters: Vec::new(),
            trace: false,
        }
    }

    /// Whether the request carries a body (and so a Content-Type and an `Expect:` header).
    pub fn sends_body(&self) -> bool {
        match self.method {
            Method::Get | Method::Head => false,
            Method::Post | Method::Put | Method::Patch => true,
            _ => !self.body.is_empty(),
        }
    }

    /// Why this request must not be sent, if it must not: a URL scheme other than `http` and
    /// `https`, or a CR, LF or NUL in its Content-Type or a header line.
    pub fn refusal(&self) -> Option<String> {
        if let Some(scheme) = explicit_scheme(&self.url)
            .filter(|s| !s.eq_ignore_ascii_case("http") && !s.eq_ignore_ascii_case("https"))
        {
            return Some(format!(
                "URL scheme '{scheme}' is not allowed, only http and https"
            ));
        }
        if self
            .content_type
            .as_ref()
            .is_some_and(|c| breaks_header_line(c.as_bytes()))
        {
            return Some("the content type must not contain CR, LF or NUL bytes".into());
        }
        if self
            .headers
            .iter()
            .any(|h| breaks_header_line(h.as_bytes()))
        {
            return Some("a header line must not contain CR, LF or NUL bytes".into());
        }
        None
    }

    /// Whether an extra header of this name (case-insensitive) is present.
    pub fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|line| header_name_is(line, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_ignores_path_userinfo_and_case() {
        assert_eq!(host_key("http://u:p@Example.COM/a:b?c"), "example.com:80");
        assert_eq!(host_key("https://h:8443/x"), "h:8443");
        assert_eq!(host_key("https://[::1]/x"), "[::1]:443");
        assert_eq!(host_key("http://[::1]:81"), "[::1]:81");
    }

    #[test]
    fn parses_known_and_custom_methods() {
        assert_eq!(Method::parse(b"PATCH"), Some(Method::Patch));
        assert_eq!(
            Method::parse(b"PURGE").map(|m| m.name().to_string()),
            Some("PURGE".into())
        );
        assert_eq!(
            Method::parse(b"get").map(|m| m.name().to_string()),
            Some("get".into())
        );
        assert_eq!(Method::parse(b""), None);
        assert_eq!(Method::parse(b"GET /x"), None);
        assert_eq!(Method::parse(&[b'A'; 25]), None);
    }

    #[test]
    fn refuses_schemes_other_than_http_and_https() {
        let refusal = |url: &str| Request::new(Method::Get, url.into()).refusal();
        for url in [
            "file:/etc/hostname",
            "file:///etc/hostname",
            "FILE:/etc/hostname",
            "dict://127.0.0.1:1/d",
            "gopher:/127.0.0.1:1/x",
            "smb://h/s",
            "tftp://h/f",
        ] {
            assert!(
                refusal(url).is_some_and(|r| r.contains("not allowed")),
                "{url}"
            );
        }
        for url in [
            "http://h/",
            "HTTPS://h/",
            "h:8080/x",
            "localhost:8080/x",
            "127.0.0.1/x",
        ] {
            assert!(refusal(url).is_none(), "{url}");
        }
    }

    #[test]
    fn refuses_line_breaks_in_content_type_and_headers() {
        let mut r = Request::new(Method::Post, "http://h/".into());
        r.content_type = Some("a/b\r\nX-Injected: 1".into());
        assert!(r.refusal().is_some_and(|e| e.contains("content type")));
        r.content_type = Some("a/b".into());
        r.headers = vec!["X-A: 1\nX-B: 2".into()];
        assert!(r.refusal().is_some_and(|e| e.contains("header line")));
        r.headers = vec!["X-A: 1".into()];
        assert_eq!(r.refusal(), None);
    }

    #[test]
    fn body_rules_per_method() {
        let mut r = Request::new(Method::Delete, "http://h/".into());
        assert!(!r.sends_body());
        r.body = b"x".to_vec();
        assert!(r.sends_body());
        r.method = Method::Head;
        assert!(!r.sends_body());
        r.method = Method::Patch;
        r.body.clear();
        assert!(r.sends_body());
    }
}

//! The one secret policy: what must never leave the module in clear, in log lines, MI output,
//! HEP traces and cache entries (keys and stored values).
//!
//! A request's secrets are its credentials (basic password, also base64-encoded with the user
//! as sent, bearer token), the password of the URL's `user:password@`, the value of every
//! header and query parameter whose name looks like a credential (it contains one of
//! [`SECRET_NAME_MARKERS`], any case, percent-decoded), and the value of every query parameter
//! its service adds (`param=`), whatever its name. In URLs the userinfo and those parameters'
//! values read `***`; in any other text each secret value does.

use super::escape::unescape;
use super::request::{Auth, Request, url_parts};

/// A header or query parameter whose name (any case, percent-decoded) contains one of these
/// carries a credential.
pub const SECRET_NAME_MARKERS: [&str; 8] = [
    "token", "key", "secret", "pass", "pwd", "sig", "auth", "cookie",
];

/// What replaces a masked secret.
const MASK: &str = "***";

/// Whether a header or query parameter of this name carries a credential.
fn looks_secret(name: &[u8]) -> bool {
    let name = String::from_utf8_lossy(&unescape(name)).to_ascii_lowercase();
    SECRET_NAME_MARKERS.iter().any(|m| name.contains(m))
}

/// A URL for an output that has no request at hand (MI, configuration errors): the userinfo
/// and the secret-named query parameters masked.
pub fn redact_url(url: &str) -> String {
    mask_url(url, &[])
}

/// `url` with any `user:password@` as `***@`, and the value of every query parameter whose
/// name looks secret or is one of `masked_parameters` as `***`.
pub(crate) fn mask_url(url: &str, masked_parameters: &[String]) -> String {
    let (address, query) = url.split_once('?').unwrap_or((url, ""));
    let mut redacted = match address.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{MASK}@{}", &rest[at + 1..]),
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
    let masked = |name: &str| {
        looks_secret(name.as_bytes())
            || masked_parameters
                .iter()
                .any(|m| m.as_bytes() == unescape(name.as_bytes()))
    };
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((name, _)) if masked(name) => format!("{name}={MASK}"),
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

/// The secrets of one request, for everything that shows or keeps some of it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Secrets {
    /// Query parameters whose value is masked in URLs besides the secret-named ones.
    masked_parameters: Vec<String>,
    /// Values masked wherever they appear.
    values: Vec<Vec<u8>>,
}

impl Secrets {
    pub fn of(request: &Request) -> Self {
        let basic = |user: &str, password: &str| {
            [
                password.to_string(),
                base64(format!("{user}:{password}").as_bytes()),
            ]
        };
        let mut values = Vec::new();
        match &request.auth {
            Some(Auth::Basic { user, password }) => values.extend(basic(user, password)),
            Some(Auth::Bearer(token)) => values.push(token.clone()),
            None => {}
        }
        if let Some((user, password)) = url_credentials(&request.url) {
            values.extend(basic(user, password));
        }
        let mut secrets = Self {
            masked_parameters: request.masked_parameters.clone(),
            values: values.into_iter().map(String::into_bytes).collect(),
        };
        secrets.learn_query(&request.url);
        for line in &request.headers {
            secrets.learn_header(line.as_bytes());
        }
        secrets
    }

    /// Learns the values of the masked query parameters of `url` (a server may echo them).
    fn learn_query(&mut self, url: &str) {
        let Some((_, query)) = url.split_once('?') else {
            return;
        };
        let query = query.split('#').next().unwrap_or_default();
        for (name, value) in query.split('&').filter_map(|p| p.split_once('=')) {
            let name = unescape(name.as_bytes());
            let masked =
                looks_secret(&name) || self.masked_parameters.iter().any(|m| m.as_bytes() == name);
            if masked && !value.is_empty() {
                self.values.push(value.as_bytes().to_vec());
                let decoded = unescape(value.as_bytes());
                if decoded != value.as_bytes() {
                    self.values.push(decoded);
                }
            }
        }
    }

    /// Learns the credentials of a header line (a server may echo them in its answer).
    pub fn learn_header(&mut self, line: &[u8]) {
        if let Some(header) = SecretHeader::parse(line) {
            self.values.push(header.credentials.to_vec());
        }
    }

    /// `text` with every secret value replaced by the mask.
    pub fn mask(&self, text: &[u8]) -> Vec<u8> {
        let mut out = text.to_vec();
        for secret in self.values.iter().filter(|s| !s.is_empty()) {
            out = replace_all(&out, secret, MASK.as_bytes());
        }
        out
    }

    /// `url` as an output may show it.
    pub fn url(&self, url: &str) -> String {
        let masked = mask_url(url, &self.masked_parameters);
        String::from_utf8_lossy(&self.mask(masked.as_bytes())).into_owned()
    }

    /// A request line (`METHOD target VERSION`) as an output may show it: its target masked as a
    /// URL.
    pub fn request_line(&self, line: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(line);
        let mut parts = text.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(method), Some(target), rest) => {
                let mut shown = format!("{method} {}", mask_url(target, &self.masked_parameters));
                if let Some(rest) = rest {
                    shown.push(' ');
                    shown.push_str(rest);
                }
                self.mask(shown.as_bytes())
            }
            _ => self.mask(line),
        }
    }
}

/// How a log line names a request's transfer: `METHOD url`, with the URL masked.
pub(crate) fn transfer_for_logs(request: &Request) -> String {
    format!("{} {}", request.method.name(), url_for_logs(request))
}

/// A request's URL as a log line or a cache key may show it (a cache key holds the whole URL
/// only through a digest).
pub(crate) fn url_for_logs(request: &Request) -> String {
    mask_url(&request.url, &request.masked_parameters)
}

/// `user` and `password` of `scheme://user:password@host/...`.
fn url_credentials(url: &str) -> Option<(&str, &str)> {
    let (_, authority) = url_parts(url)?;
    authority[..authority.rfind('@')?].split_once(':')
}

fn replace_all(text: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.windows(needle.len()).position(|w| w == needle) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(with);
        rest = &rest[at + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A header line that carries credentials: its value is masked.
struct SecretHeader<'a> {
    name: &'a [u8],
    /// The scheme of an `Authorization` or `Proxy-Authorization` value (`Bearer`), kept.
    scheme: Option<&'a [u8]>,
    credentials: &'a [u8],
}

impl<'a> SecretHeader<'a> {
    /// `Some` for a header whose name says it carries credentials.
    fn parse(line: &'a [u8]) -> Option<Self> {
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line[..colon].trim_ascii();
        let lower = name.to_ascii_lowercase();
        let contains = |word: &str| lower.windows(word.len()).any(|w| w == word.as_bytes());
        let secret = ["auth", "token", "secret", "key", "cookie", "password"]
            .into_iter()
            .any(contains);
        if !secret {
            return None;
        }
        let value = line[colon + 1..].trim_ascii();
        let scheme_end = lower
            .ends_with(b"authorization")
            .then(|| value.iter().position(|&b| b == b' '))
            .flatten();
        Some(Self {
            name,
            scheme: scheme_end.map(|end| &value[..end]),
            credentials: scheme_end.map_or(value, |end| value[end..].trim_ascii()),
        })
    }
}

/// A header line with its value masked if the header carries credentials (the scheme of an
/// `Authorization` value is kept: `Authorization: Bearer ***`).
pub(crate) fn mask_header_line(line: &[u8]) -> Vec<u8> {
    let Some(header) = SecretHeader::parse(line) else {
        return line.to_vec();
    };
    let mut masked = header.name.to_vec();
    masked.extend_from_slice(b": ");
    if let Some(scheme) = header.scheme {
        masked.extend_from_slice(scheme);
        masked.push(b' ');
    }
    masked.extend_from_slice(MASK.as_bytes());
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b"user:p4ss"), "dXNlcjpwNHNz");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b""), "");
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
    fn a_requests_secrets_are_masked_in_urls_request_lines_and_text() {
        let mut request = Request::new(
            crate::engine::Method::Get,
            "http://u:pw1@h/x?appid=A1&token=T1&page=2".into(),
        );
        request.masked_parameters = vec!["appid".into()];
        request.auth = Some(Auth::Bearer("B1".into()));
        request.headers = vec!["X-Api-Key: H1".into(), "Accept: text/plain".into()];
        let secrets = Secrets::of(&request);
        assert_eq!(
            secrets.url(&request.url),
            "http://***@h/x?appid=***&token=***&page=2"
        );
        assert_eq!(
            secrets.request_line(b"GET /x?appid=A1&token=T1&page=2 HTTP/1.1"),
            b"GET /x?appid=***&token=***&page=2 HTTP/1.1"
        );
        assert_eq!(
            secrets.mask(b"A1 T1 B1 H1 pw1 text/plain"),
            b"*** *** *** *** *** text/plain"
        );
        assert_eq!(
            url_for_logs(&request),
            "http://***@h/x?appid=***&token=***&page=2"
        );
    }
}

//! Named services: a base URL with default headers, credentials, limits, a default method and
//! an optional response cache, addressed from scripts as `name://path`.
//!
//! Defined by a text of `key=value` items separated by `;` (write `\;` for a `;` inside a
//! value): `name=crossbar; url=http://10.0.0.5:8000/v2/; header=Accept: application/json;
//! auth=bearer:TOKEN; connect_timeout_ms=500; timeout_ms=2000; method=GET; cache_ttl=30;
//! param=api_key=K; raw_body=1; cache=redis://127.0.0.1:6379/; stale_if_error=600;
//! stale_while_revalidate=10; cache_timeout_ms=5; cache_skip_ms=1000; cache_lock_ms=100`.
//! Further `url` items and the upstream items (`balance`, `eject_after`, ...) are read by
//! [`UpstreamPolicy`].

use std::time::Duration;

use super::shared_guard::SharedLimits;
use super::stale::StaleLimits;
use super::upstreams::UpstreamPolicy;
use crate::engine::escape::{escape, percent_decode, unescape};
use crate::engine::request::{Auth, Method, breaks_header_line, header_name, header_name_is};

/// The items a definition may hold.
const ITEM_NAMES: &str = "name, url, header, auth, connect_timeout_ms, timeout_ms, method, \
                          param, raw_body, cache_ttl, cache_entries, cache_bytes, cache, \
                          stale_if_error, stale_while_revalidate, cache_timeout_ms, cache_skip_ms, \
                          cache_lock_ms, \
                          balance, failover_statuses, failover_all_methods, eject_after, \
                          eject_ms, eject_max_ms, panic, max_in_flight, retry_budget, \
                          retry_budget_min";

/// Bounds of a service's per-process response cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    pub ttl: Duration,
    pub max_entries: usize,
    pub max_bytes: usize,
}

/// One service.
#[derive(Clone)]
pub struct Service {
    pub name: String,
    /// The first `url` item: the URL a call is made on (its cache key's), and its first
    /// upstream.
    pub base_url: String,
    /// Header lines sent with every request, unless the script appends one of the same name.
    pub headers: Vec<String>,
    pub auth: Option<Auth>,
    pub connect_timeout: Option<Duration>,
    pub timeout: Option<Duration>,
    /// Method of `rest_request` calls that name none.
    pub method: Option<Method>,
    /// Query parameters (name, value; not escaped) added to every request's URL that does not
    /// have a parameter of that name already.
    pub params: Vec<(String, String)>,
    /// Hand the response body to the script as received, not whitespace-trimmed.
    pub raw_body: bool,
    pub cache: Option<CacheLimits>,
    /// Where the cache is shared between processes and nodes: a URL of the host's key-value
    /// store (OpenSIPS cachedb: `local://`, `redis://host:port/`); `None` keeps it per process.
    pub shared_cache: Option<String>,
    /// How long past their freshness cached answers may still be served (`stale_if_error`,
    /// `stale_while_revalidate`, in seconds).
    pub stale: StaleLimits,
    /// How the shared cache is used as an upstream (`cache_timeout_ms`, `cache_skip_ms`,
    /// `cache_lock_ms`).
    pub shared_limits: SharedLimits,
    /// Its further base URLs and how calls use them all.
    pub upstreams: UpstreamPolicy,
}

/// Splits `name://path` when `name` is not `http` or `https`.
pub fn service_reference(url: &str) -> Option<(&str, &str)> {
    let (scheme, path) = url.split_once("://")?;
    let plain = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    (!plain).then_some((scheme, path))
}

fn millis(key: &str, value: &str) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(format!("{key} must be a positive number of milliseconds")),
    }
}

fn millis_or_zero(key: &str, value: &str) -> Result<Duration, String> {
    Ok(Duration::from_millis(count(key, value)? as u64))
}

fn secs(key: &str, value: &str) -> Result<Duration, String> {
    Ok(Duration::from_secs(count(key, value)? as u64))
}

/// `value` of item `key`, noted in `items` (the items that need something else set).
fn needing(items: &mut Vec<String>, key: &str, value: Duration) -> Duration {
    items.push(key.to_string());
    value
}

fn flag(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(format!("{key} must be 0 or 1")),
    }
}

fn count(key: &str, value: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .map_err(|_| format!("{key} must be a number"))
}

/// A `header` item's value: one `Name: value` line.
fn header_line(value: &str) -> Result<String, String> {
    if !value.contains(':') || breaks_header_line(value.as_bytes()) {
        return Err("header must be one 'Name: value' line".into());
    }
    Ok(value.to_string())
}

/// An `auth` item's value. The error never quotes it.
fn auth(value: &str) -> Result<Auth, String> {
    match value.split_once(':') {
        Some(("bearer", token)) if token.chars().any(char::is_control) => {
            Err("the bearer token must not contain CR, LF or other control characters".into())
        }
        Some(("bearer", token)) if !token.is_empty() => Ok(Auth::Bearer(token.into())),
        Some(("basic", credentials)) => {
            let (user, password) = credentials
                .split_once(':')
                .ok_or("auth=basic needs basic:user:password")?;
            Ok(Auth::Basic {
                user: user.into(),
                password: password.into(),
            })
        }
        _ => Err("auth must be bearer:TOKEN or basic:user:password".into()),
    }
}

/// The non-empty `key=value` items of a definition or update, each with its position (from 1,
/// counting empty items too, to name a bad item without quoting it).
fn key_values(spec: &str) -> Result<Vec<(usize, String, String)>, String> {
    let mut pairs = Vec::new();
    for (position, item) in items(spec).iter().enumerate() {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let position = position + 1;
        let (key, value) = item.split_once('=').ok_or_else(|| {
            format!("item {position} is not key=value (write \\; for a ';' in a value)")
        })?;
        pairs.push((position, key.trim().to_string(), value.trim().to_string()));
    }
    Ok(pairs)
}

/// The `;`-separated items of a definition, with `\;` unescaped.
fn items(spec: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&';') => {
                items.last_mut().expect("never empty").push(';');
                chars.next();
            }
            ';' => items.push(String::new()),
            c => items.last_mut().expect("never empty").push(c),
        }
    }
    items
}

/// Whether a server could read a segment of `path` (without its query) as `.` or `..`: one
/// that is so once percent-decoded as often as it decodes (a proxy and then the application may
/// each decode once: `%252e%252e` is `..`), split at `/` and `\\` too (encoded, or as Windows
/// servers read them) and at a NUL, and without its `;params` (servlet containers drop them:
/// `..;/admin` is `../admin`).
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let mut decoded = segment.as_bytes().to_vec();
        // Each round that changes the text shortens it: this ends.
        loop {
            let again = percent_decode(&decoded);
            if again == decoded {
                break;
            }
            decoded = again;
        }
        decoded
            .split(|&b| matches!(b, b'/' | b'\\' | b'\0'))
            .any(|piece| {
                let name = piece.split(|&b| b == b';').next().unwrap_or_default();
                name == b"." || name == b".."
            })
    })
}

impl Service {
    /// Parses a definition; the error says which item is wrong (credentials are not quoted).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut service = Service {
            name: String::new(),
            base_url: String::new(),
            headers: Vec::new(),
            auth: None,
            connect_timeout: None,
            timeout: None,
            method: None,
            params: Vec::new(),
            raw_body: false,
            cache: None,
            shared_cache: None,
            stale: StaleLimits::NONE,
            shared_limits: SharedLimits::default(),
            upstreams: UpstreamPolicy::default(),
        };
        // Items that need a cache (`cache_ttl`) or a shared one (`cache`), by name.
        let mut needing_cache = Vec::new();
        let mut needing_shared = Vec::new();
        let mut cache_ttl = None;
        let mut alternates = Vec::new();
        let mut limits = CacheLimits {
            ttl: Duration::ZERO,
            max_entries: 1000,
            max_bytes: 1 << 20,
        };
        // An item is named by its position, never quoted: after a `;` left unescaped in a
        // credential, the rest of the credential is an item of its own.
        for (position, key, value) in key_values(spec)? {
            let (key, value) = (key.as_str(), value.as_str());
            if UpstreamPolicy::ITEMS.contains(&key) {
                service.upstreams.set(key, value)?;
                continue;
            }
            match key {
                "name" => service.name = value.to_string(),
                "url" => {
                    if value.chars().any(char::is_control) {
                        return Err(
                            "url must not contain CR, LF or other control characters".into()
                        );
                    }
                    if service.base_url.is_empty() {
                        service.base_url = value.to_string();
                    } else {
                        alternates.push(value.to_string());
                    }
                }
                "header" => service.headers.push(header_line(value)?),
                "auth" => service.auth = Some(auth(value)?),
                "connect_timeout_ms" => service.connect_timeout = Some(millis(key, value)?),
                "timeout_ms" => service.timeout = Some(millis(key, value)?),
                // Written in any case, sent upper-case.
                "method" => {
                    service.method = Some(
                        Method::parse(value.to_ascii_uppercase().as_bytes())
                            .ok_or(format!("invalid method '{value}'"))?,
                    )
                }
                "param" => match value.split_once('=') {
                    Some((name, value)) if !name.trim().is_empty() => service
                        .params
                        .push((name.trim().to_string(), value.trim().to_string())),
                    _ => return Err("param must be name=value".into()),
                },
                "raw_body" => service.raw_body = flag(key, value)?,
                "cache_ttl" => cache_ttl = Some(count(key, value)?),
                "cache_entries" => limits.max_entries = count(key, value)?,
                "cache_bytes" => limits.max_bytes = count(key, value)?,
                "cache" => {
                    if !value.contains(':') || value.chars().any(char::is_control) {
                        return Err("cache must be a cachedb URL such as local:// or \
                                    redis://127.0.0.1:6379/"
                            .into());
                    }
                    service.shared_cache = Some(value.to_string());
                }
                "stale_if_error" => {
                    service.stale.if_error = needing(&mut needing_cache, key, secs(key, value)?)
                }
                "stale_while_revalidate" => {
                    service.stale.while_revalidate =
                        needing(&mut needing_cache, key, secs(key, value)?)
                }
                "cache_timeout_ms" => {
                    service.shared_limits.timeout =
                        needing(&mut needing_shared, key, millis(key, value)?)
                }
                "cache_skip_ms" => {
                    service.shared_limits.skip =
                        needing(&mut needing_shared, key, millis_or_zero(key, value)?)
                }
                "cache_lock_ms" => {
                    service.shared_limits.wait_for_fill =
                        needing(&mut needing_shared, key, millis_or_zero(key, value)?)
                }
                _ => {
                    return Err(format!(
                        "item {position} has an unknown name (known: {ITEM_NAMES})"
                    ));
                }
            }
        }
        let valid_name = !service.name.is_empty()
            && service
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c))
            && service_reference(&format!("{}://", service.name)).is_some();
        if !valid_name {
            return Err(format!(
                "name '{}' must be letters, digits, '+', '-', '.' or '_', other than http/https",
                service.name
            ));
        }
        if !(service.base_url.starts_with("http://") || service.base_url.starts_with("https://")) {
            return Err(format!(
                "service {}: url must start with http:// or https://",
                service.name
            ));
        }
        for url in alternates {
            service
                .upstreams
                .add_alternate(&service.base_url, &url)
                .map_err(|e| format!("service {}: {e}", service.name))?;
        }
        service
            .upstreams
            .check()
            .map_err(|e| format!("service {}: {e}", service.name))?;
        if let Some(ttl) = cache_ttl.filter(|&ttl| ttl > 0) {
            limits.ttl = Duration::from_secs(ttl as u64);
            service.cache = Some(limits);
        }
        if service.shared_cache.is_some() && service.cache.is_none() {
            return Err(format!("service {}: cache needs a cache_ttl", service.name));
        }
        if let Some(item) = needing_cache.first().filter(|_| service.cache.is_none()) {
            return Err(format!(
                "service {}: {item} needs a cache_ttl",
                service.name
            ));
        }
        if let Some(item) = needing_shared
            .first()
            .filter(|_| service.shared_cache.is_none())
        {
            return Err(format!(
                "service {}: {item} needs a shared cache (cache=)",
                service.name
            ));
        }
        Ok(service)
    }

    /// This service with its credentials renewed by `update`: `auth` and `header` items in
    /// the definition's syntax. `auth` replaces the definition's credentials, and each
    /// `header` the definition's header of the same name (or is added). An empty update gives
    /// the definition back. The error names a bad item without quoting it.
    pub fn with_update(&self, update: &str) -> Result<Service, String> {
        let mut renewed = self.clone();
        for (position, key, value) in key_values(update)? {
            match key.as_str() {
                "auth" => renewed.auth = Some(auth(&value)?),
                "header" => {
                    let line = header_line(&value)?;
                    renewed
                        .headers
                        .retain(|h| !header_name_is(h, header_name(&line)));
                    renewed.headers.push(line);
                }
                _ => {
                    return Err(format!(
                        "item {position}: only auth and header items can be updated"
                    ));
                }
            }
        }
        Ok(renewed)
    }

    /// Its base URLs in the definition's order: the first, then the upstream alternates.
    pub fn base_urls(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.base_url.as_str())
            .chain(self.upstreams.alternates.iter().map(String::as_str))
    }

    /// The URL of `path` (the part after `name://`) on this service, with the service's query
    /// parameters that `path` does not set itself. A path that a server could read as having a
    /// `.` or `..` segment (see [`has_dot_segment`]) is refused: the service's base path is a
    /// boundary that its credentials must not cross.
    pub fn url(&self, path: &str) -> Result<String, String> {
        let path_end = path.find(['?', '#']).unwrap_or(path.len());
        if has_dot_segment(&path[..path_end]) {
            return Err("a '.' or '..' segment in the path is not allowed".into());
        }
        let url = match (self.base_url.ends_with('/'), path.starts_with('/')) {
            (true, true) => format!("{}{}", self.base_url, &path[1..]),
            (false, false) if !path.is_empty() => format!("{}/{path}", self.base_url),
            _ => format!("{}{path}", self.base_url),
        };
        Ok(self.with_params(url))
    }

    /// The URL a response's `Location` or `Content-Location` (`reference`, absolute or relative
    /// to `request_url`) names, as a call to `name://path` on this service would have it (the
    /// service's parameters added), if it is under the base URL.
    pub fn own_url(&self, reference: &str, request_url: &str) -> Option<String> {
        let reference = reference.trim();
        let (scheme, rest) = request_url.split_once("://")?;
        let origin_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let origin = &request_url[..scheme.len() + 3 + origin_end];
        let absolute = if reference.contains("://") {
            reference.to_string()
        } else if reference.starts_with("//") {
            format!("{scheme}:{reference}")
        } else if reference.starts_with('/') {
            format!("{origin}{reference}")
        } else {
            let path_end = request_url.find(['?', '#']).unwrap_or(request_url.len());
            let directory_end = request_url[..path_end].rfind('/')? + 1;
            format!(
                "{}{reference}",
                &request_url[..directory_end.max(origin.len())]
            )
        };
        let base = self.base_url.trim_end_matches('/');
        let path = absolute.strip_prefix(base)?;
        if !(path.is_empty() || path.starts_with(['/', '?'])) {
            return None;
        }
        self.url(path).ok()
    }

    /// `url` with the service's parameters whose name (compared unescaped) its query lacks,
    /// percent-encoded, appended to the query (before any `#fragment`).
    fn with_params(&self, url: String) -> String {
        let (head, fragment) = url.split_at(url.find('#').unwrap_or(url.len()));
        let query = head.split_once('?').map(|(_, query)| query);
        let present: Vec<Vec<u8>> = query
            .unwrap_or_default()
            .split('&')
            .map(|pair| unescape(pair.split('=').next().unwrap_or_default().as_bytes()))
            .collect();
        let encode = |text: &str| String::from_utf8_lossy(&escape(text.as_bytes())).into_owned();
        let added: Vec<String> = self
            .params
            .iter()
            .filter(|(name, _)| !present.iter().any(|p| p == name.as_bytes()))
            .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
            .collect();
        if added.is_empty() {
            return url;
        }
        let separator = match query {
            None => "?",
            Some(q) if q.is_empty() || q.ends_with('&') => "",
            Some(_) => "&",
        };
        format!("{head}{separator}{}{fragment}", added.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_definition() {
        let s = Service::parse(
            "name=crossbar; url=http://127.0.0.1:8000/v2/; header=Accept: a/b\\; q=1; \
             header=X-Team: 7; auth=basic:u:p:w; connect_timeout_ms=250; timeout_ms=1500; \
             method=PATCH; cache_ttl=30; cache_entries=5; cache_bytes=100",
        )
        .unwrap();
        assert_eq!(s.name, "crossbar");
        assert_eq!(s.headers, ["Accept: a/b; q=1", "X-Team: 7"]);
        assert!(
            s.auth
                == Some(Auth::Basic {
                    user: "u".into(),
                    password: "p:w".into()
                })
        );
        assert_eq!(s.timeout, Some(Duration::from_millis(1500)));
        assert_eq!(s.method, Some(Method::Patch));
        assert_eq!(
            s.cache,
            Some(CacheLimits {
                ttl: Duration::from_secs(30),
                max_entries: 5,
                max_bytes: 100
            })
        );
        assert_eq!(
            s.url("accounts/1").unwrap(),
            "http://127.0.0.1:8000/v2/accounts/1"
        );
        assert_eq!(
            s.url("/accounts/1").unwrap(),
            "http://127.0.0.1:8000/v2/accounts/1"
        );
    }

    #[test]
    fn names_with_underscores_and_methods_in_any_case() {
        let s = Service::parse("name=api_github; url=http://h/; method=get").unwrap();
        assert_eq!(s.name, "api_github");
        assert_eq!(s.method, Some(Method::Get));
        let s = Service::parse("name=a; url=http://h/; method=purge").unwrap();
        assert_eq!(s.method.map(|m| m.name().to_string()), Some("PURGE".into()));
    }

    #[test]
    fn params_are_escaped_and_lose_to_the_path_query() {
        let s = Service::parse(
            "name=a; url=http://h/v1; param=api_key=k 1&x; param=lang=de; param=a b=c/d",
        )
        .unwrap();
        let all = "api_key=k%201%26x&lang=de&a%20b=c%2Fd";
        assert_eq!(s.url("x").unwrap(), format!("http://h/v1/x?{all}"));
        assert_eq!(s.url("x?").unwrap(), format!("http://h/v1/x?{all}"));
        assert_eq!(s.url("x?q=1&").unwrap(), format!("http://h/v1/x?q=1&{all}"));
        assert_eq!(
            s.url("x?lang=en&a%20b=e#top").unwrap(),
            "http://h/v1/x?lang=en&a%20b=e&api_key=k%201%26x#top"
        );
        assert_eq!(
            s.url("x?api_key=&lang&a%20b").unwrap(),
            "http://h/v1/x?api_key=&lang&a%20b"
        );
    }

    #[test]
    fn refuses_bad_definitions_without_quoting_secrets() {
        for (spec, error) in [
            ("url=http://h/", "name ''"),
            ("name=http; url=http://h/", "name 'http'"),
            ("name=a; url=ftp://h/", "url must start"),
            ("name=a; url=http://h/; auth=token:secret", "auth must be"),
            ("name=a; url=http://h/; timeout_ms=0", "timeout_ms"),
            ("name=a; url=http://h/; param=secret", "param must be"),
            ("name=a; url=http://h/; param==secret", "param must be"),
            ("name=a; url=http://h/; raw_body=yes", "raw_body must be"),
            ("name=a b; url=http://h/", "name 'a b'"),
            (
                "name=a; url=http://h/; colour=blue",
                "item 3 has an unknown",
            ),
            (
                "name=a; url=http://h/; bearer:secret",
                "item 3 is not key=value",
            ),
            // A `;` left unescaped in a password: the rest is never quoted.
            (
                "name=a; url=http://h/; auth=basic:u:pa;secret",
                "item 4 is not",
            ),
            (
                "name=a; url=http://h/; auth=basic:u:pa;secret=1",
                "item 4 has an",
            ),
            (
                "name=a; url=http://h/\r\nX-Injected: 1",
                "url must not contain CR",
            ),
            (
                "name=a; url=http://h/; auth=bearer:secret\r\nX-Injected: 1",
                "bearer token must not contain CR",
            ),
            (
                "name=a; url=http://h/; header=X-A: 1\nX-B: 2",
                "header must be one",
            ),
        ] {
            let e = Service::parse(spec).err().unwrap();
            assert!(e.contains(error) && !e.contains("secret"), "{spec}: {e}");
        }
    }

    #[test]
    fn a_path_cannot_leave_the_base_path() {
        let s = Service::parse("name=users; url=http://h/users/").unwrap();
        for path in [
            "..",
            "../admin",
            "a/../../admin",
            "./x",
            "a/.",
            "%2e%2e/admin",
            "%2E./admin",
            ".%2e/admin",
            "%2e/x",
            "a/..%2fadmin",
            "a%2f..%2f..%2fadmin",
            "a/..%5cadmin",
            "..\\admin",
            "../x?q=1",
            // Servlet containers drop `;params` from a segment: `..;/admin` is `../admin`.
            "..;/admin",
            "a/..;jsessionid=1/..;/admin",
            ".;x/y",
            "..%3b/admin",
            // Decoded twice (or more) by a proxy and then the application.
            "%252e%252e/admin",
            "%252E%252e%252fadmin",
            "%2e%252e/admin",
            "a/%25252e%25252e/x",
            "%25%32%65%25%32%65/admin",
            "a%252f..%252fadmin",
            "..%00/admin",
            "a%00%2f..%2fadmin",
        ] {
            assert!(s.url(path).is_err(), "{path}");
        }
        for path in [
            "a..b/x",
            "...",
            "x.json",
            ".well-known/x",
            "x?next=../y",
            "x#../y",
            "a;..",
            "a;v=1/b",
            "%25/x",
            "100%25.json",
            "%252",
        ] {
            assert!(s.url(path).is_ok(), "{path}");
        }
    }

    #[test]
    fn locations_name_urls_of_the_service() {
        let s = Service::parse("name=a; url=http://h:8/v2/; param=k=1").unwrap();
        let request = "http://h:8/v2/devices?k=1";
        for (reference, own) in [
            ("/v2/devices/7", Some("http://h:8/v2/devices/7?k=1")),
            ("devices/7", Some("http://h:8/v2/devices/7?k=1")),
            (
                "http://h:8/v2/devices/7?k=2",
                Some("http://h:8/v2/devices/7?k=2"),
            ),
            ("//h:8/v2/x", Some("http://h:8/v2/x?k=1")),
            ("/v2", Some("http://h:8/v2/?k=1")),
            ("/v2x/devices", None),
            ("/other/7", None),
            ("http://elsewhere/v2/devices/7", None),
            ("/v2/../admin", None),
        ] {
            assert_eq!(s.own_url(reference, request).as_deref(), own, "{reference}");
        }
    }

    #[test]
    fn stale_windows_and_shared_limits_need_their_cache() {
        let s = Service::parse(
            "name=a; url=http://h/; cache_ttl=5; cache=local://; stale_if_error=600; \
             stale_while_revalidate=10; cache_timeout_ms=7; cache_skip_ms=0; cache_lock_ms=50",
        )
        .unwrap();
        assert_eq!(
            (s.stale.if_error, s.stale.while_revalidate),
            (Duration::from_secs(600), Duration::from_secs(10))
        );
        assert_eq!(
            s.shared_limits,
            SharedLimits {
                timeout: Duration::from_millis(7),
                skip: Duration::ZERO,
                wait_for_fill: Duration::from_millis(50),
            }
        );
        for (spec, error) in [
            ("stale_if_error=60", "stale_if_error needs a cache_ttl"),
            (
                "cache_ttl=5; cache_lock_ms=5",
                "cache_lock_ms needs a shared cache",
            ),
            (
                "cache_ttl=5; cache=local://; cache_timeout_ms=0",
                "cache_timeout_ms must be",
            ),
            (
                "cache_ttl=5; stale_while_revalidate=x",
                "stale_while_revalidate must be",
            ),
        ] {
            let e = Service::parse(&format!("name=a; url=http://h/; {spec}"))
                .err()
                .unwrap();
            assert!(e.contains(error), "{spec}: {e}");
        }
    }

    #[test]
    fn a_shared_cache_needs_a_ttl_and_a_url() {
        let s = Service::parse("name=a; url=http://h/; cache_ttl=5; cache=redis://127.0.0.1:6379/")
            .unwrap();
        assert_eq!(s.shared_cache.as_deref(), Some("redis://127.0.0.1:6379/"));
        assert!(Service::parse("name=a; url=http://h/; cache=local://").is_err());
        assert!(Service::parse("name=a; url=http://h/; cache_ttl=5; cache=local").is_err());
    }

    #[test]
    fn service_references() {
        assert_eq!(
            service_reference("crossbar://v2/x"),
            Some(("crossbar", "v2/x"))
        );
        assert_eq!(service_reference("HTTPS://h/"), None);
        assert_eq!(service_reference("no-scheme"), None);
    }
}

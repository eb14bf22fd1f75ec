//! What a response's `Cache-Control` header allows a cache to do with it (RFC 9111 §5.2.2,
//! RFC 5861): whether it may be kept at all, kept by a shared cache, for how long, and whether
//! it may be served once stale.

use std::time::Duration;

use crate::engine::transfer::ResponseHead;

/// The directives of a response that bear on keeping it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`, or `no-cache` (a cache that does not revalidate may not reuse the answer
    /// without asking again): kept nowhere.
    pub no_store: bool,
    /// `private`: for one client only, never kept in a shared cache.
    pub private: bool,
    /// `max-age`: fresh for this long at most.
    pub max_age: Option<Duration>,
    /// `s-maxage`: for shared caches, replaces `max-age` (and forbids serving it stale).
    pub s_maxage: Option<Duration>,
    /// `must-revalidate`: never served stale.
    pub must_revalidate: bool,
    /// `proxy-revalidate`: never served stale by a shared cache.
    pub proxy_revalidate: bool,
    /// `stale-if-error` (RFC 5861): how long past its freshness it may replace a failure.
    pub stale_if_error: Option<Duration>,
    /// `stale-while-revalidate` (RFC 5861): how long past its freshness it may be served while
    /// it is fetched again.
    pub stale_while_revalidate: Option<Duration>,
}

/// `delta-seconds` (digits, possibly quoted); anything else is an answer that is already
/// stale (RFC 9111 §4.2.1: an invalid value counts as no freshness).
fn seconds(value: &str) -> Duration {
    let value = value.trim().trim_matches('"');
    let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    // Values past u64 saturate, as §1.2.2 asks for delta-seconds that overflow.
    let secs = value
        .parse::<u64>()
        .unwrap_or(if digits { u64::MAX } else { 0 });
    Duration::from_secs(secs)
}

impl CacheControl {
    /// The directives of the response's `Cache-Control` headers (names in any case, several
    /// headers joined).
    pub fn of(head: &ResponseHead) -> Self {
        let mut directives = Self::default();
        let Some(value) = head.header("Cache-Control") else {
            return directives;
        };
        for directive in String::from_utf8_lossy(&value).split(',') {
            let (name, argument) = directive.split_once('=').unwrap_or((directive, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "no-store" | "no-cache" => directives.no_store = true,
                "private" => directives.private = true,
                "max-age" => directives.max_age = Some(seconds(argument)),
                "s-maxage" => directives.s_maxage = Some(seconds(argument)),
                "must-revalidate" => directives.must_revalidate = true,
                "proxy-revalidate" => directives.proxy_revalidate = true,
                "stale-if-error" => directives.stale_if_error = Some(seconds(argument)),
                "stale-while-revalidate" => {
                    directives.stale_while_revalidate = Some(seconds(argument))
                }
                _ => {}
            }
        }
        directives
    }

    /// How long a cache whose own limit is `ttl` keeps the answer: the directives can only
    /// shorten it (`shared`: `s-maxage` first, as a shared cache reads them).
    pub fn lifetime(&self, ttl: Duration, shared: bool) -> Duration {
        let max_age = if shared {
            self.s_maxage.or(self.max_age)
        } else {
            self.max_age
        };
        max_age.map_or(ttl, |age| age.min(ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &[&str]) -> ResponseHead {
        let lines: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
        ResponseHead::from_parts(b"HTTP/1.1 200 OK\r\n", lines.as_bytes())
    }

    #[test]
    fn reads_the_directives_in_any_case_over_several_headers() {
        let cc = CacheControl::of(&head(&[
            "Cache-Control: Private, MAX-AGE=\"5\"",
            "cache-control: s-maxage=7, must-revalidate, Stale-If-Error=60",
            "Cache-Control: stale-while-revalidate=x, proxy-revalidate",
        ]));
        assert_eq!(
            cc,
            CacheControl {
                no_store: false,
                private: true,
                max_age: Some(Duration::from_secs(5)),
                s_maxage: Some(Duration::from_secs(7)),
                must_revalidate: true,
                proxy_revalidate: true,
                stale_if_error: Some(Duration::from_secs(60)),
                stale_while_revalidate: Some(Duration::ZERO),
            }
        );
        assert!(CacheControl::of(&head(&["Cache-Control: no-cache=\"Set-Cookie\""])).no_store);
        assert!(CacheControl::of(&head(&["Cache-Control: no-store"])).no_store);
        assert_eq!(CacheControl::of(&head(&[])), CacheControl::default());
    }

    #[test]
    fn directives_only_shorten_the_cache_ttl() {
        let ttl = Duration::from_secs(30);
        let cc = CacheControl::of(&head(&["Cache-Control: max-age=5, s-maxage=60"]));
        assert_eq!(cc.lifetime(ttl, false), Duration::from_secs(5));
        assert_eq!(cc.lifetime(ttl, true), ttl);
        let cc = CacheControl::of(&head(&["Cache-Control: max-age=abc"]));
        assert_eq!(cc.lifetime(ttl, false), Duration::ZERO);
        let cc = CacheControl::of(&head(&["Cache-Control: max-age=99999999999999999999999"]));
        assert_eq!(cc.lifetime(ttl, true), ttl);
        assert_eq!(CacheControl::default().lifetime(ttl, true), ttl);
    }
}

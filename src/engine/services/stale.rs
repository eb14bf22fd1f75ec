//! How long past its freshness a cached answer may still be served (RFC 5861): in place of a
//! failure of the backend (`stale-if-error`), or at once while one background transfer
//! fetches it again (`stale-while-revalidate`). The service's items set the windows; an
//! answer's own `Cache-Control` can only shorten them, and forbids both with
//! `must-revalidate`, and at the shared level with `proxy-revalidate` or `s-maxage` (RFC 9111
//! §4.2.4).

use std::time::Duration;

use super::cache_control::CacheControl;

/// The windows past an answer's freshness in which it may still be served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StaleLimits {
    /// Served in place of a failure of the backend.
    pub if_error: Duration,
    /// Served at once while it is fetched again.
    pub while_revalidate: Duration,
}

/// How a cached answer may be used now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Freshness {
    /// Past its freshness, within `stale-if-error` only: it replaces a failure.
    IfError,
    /// Past its freshness, within `stale-while-revalidate`: served now, fetched again.
    Revalidate,
    Fresh,
}

impl StaleLimits {
    pub const NONE: Self = Self {
        if_error: Duration::ZERO,
        while_revalidate: Duration::ZERO,
    };

    /// The windows of an answer with `control` in a cache with these limits (`shared`: the
    /// shared level).
    pub fn for_answer(self, control: &CacheControl, shared: bool) -> Self {
        let forbidden = control.must_revalidate
            || (shared && (control.proxy_revalidate || control.s_maxage.is_some()));
        if forbidden {
            return Self::NONE;
        }
        let shorten = |own: Duration, asked: Option<Duration>| asked.map_or(own, |a| a.min(own));
        Self {
            if_error: shorten(self.if_error, control.stale_if_error),
            while_revalidate: shorten(self.while_revalidate, control.stale_while_revalidate),
        }
    }

    /// How long past its freshness an answer is kept for stale use.
    pub fn longest(self) -> Duration {
        self.if_error.max(self.while_revalidate)
    }

    /// How an answer that is `past` its freshness (`None`: still fresh) may be used; `None`
    /// when not at all.
    pub fn freshness(self, past: Option<Duration>) -> Option<Freshness> {
        match past {
            None => Some(Freshness::Fresh),
            Some(past) if past < self.while_revalidate => Some(Freshness::Revalidate),
            Some(past) if past < self.if_error => Some(Freshness::IfError),
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::transfer::ResponseHead;

    fn control(value: &str) -> CacheControl {
        let line = format!("Cache-Control: {value}\r\n");
        CacheControl::of(&ResponseHead::from_parts(
            b"HTTP/1.1 200 OK\r\n",
            line.as_bytes(),
        ))
    }

    const LIMITS: StaleLimits = StaleLimits {
        if_error: Duration::from_secs(60),
        while_revalidate: Duration::from_secs(10),
    };

    #[test]
    fn the_answer_shortens_the_windows_or_forbids_them() {
        let secs = Duration::from_secs;
        assert_eq!(LIMITS.for_answer(&control("max-age=5"), true), LIMITS);
        let shortened = LIMITS.for_answer(
            &control("stale-if-error=30, stale-while-revalidate=99"),
            false,
        );
        assert_eq!(
            (shortened.if_error, shortened.while_revalidate),
            (secs(30), secs(10))
        );
        assert_eq!(
            StaleLimits::NONE.for_answer(&control("stale-if-error=30"), false),
            StaleLimits::NONE,
            "the service's items enable it"
        );
        for (value, shared, none) in [
            ("must-revalidate", false, true),
            ("proxy-revalidate", false, false),
            ("proxy-revalidate", true, true),
            ("s-maxage=5", false, false),
            ("s-maxage=5", true, true),
        ] {
            let limits = LIMITS.for_answer(&control(value), shared);
            assert_eq!(limits == StaleLimits::NONE, none, "{value} shared={shared}");
        }
    }

    #[test]
    fn windows_follow_each_other_past_freshness() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(LIMITS.freshness(None), Some(Freshness::Fresh));
        assert_eq!(LIMITS.freshness(secs(0)), Some(Freshness::Revalidate));
        assert_eq!(LIMITS.freshness(secs(10)), Some(Freshness::IfError));
        assert_eq!(LIMITS.freshness(secs(60)), None);
        assert_eq!(StaleLimits::NONE.freshness(secs(0)), None);
        assert_eq!(LIMITS.longest(), Duration::from_secs(60));
    }
}

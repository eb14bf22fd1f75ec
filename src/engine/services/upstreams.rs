//! A service's upstreams: the base URLs its calls may go to (its `url` items, in order) and the
//! rules the call pipeline follows between them: balancing, failover, outlier ejection, panic,
//! admission and the retry budget (the items of [`UpstreamPolicy::ITEMS`]).

use std::time::Duration;

/// Base URLs a service may have, at most.
pub const MAX_UPSTREAMS: usize = 16;

/// Which healthy URL a call goes to first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    /// The first healthy one in the order of the definition (the others are backups).
    First,
    /// Each in turn, over every process of the node.
    RoundRobin,
}

/// How a service's calls use its base URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamPolicy {
    /// The base URLs after the first (the service's `base_url`), each ending with `/` exactly
    /// when the first does, so that a call's URL moves from one to another by its prefix.
    pub alternates: Vec<String>,
    pub balance: Balance,
    /// Statuses that count as a failure of the URL and fail over like one.
    pub failover_statuses: Vec<u32>,
    /// Fail over after the request was sent for every method, not only idempotent ones.
    pub failover_all_methods: bool,
    /// Consecutive failures that eject a URL (0: never); `None`: the default, 5 with several
    /// URLs, never with one (a single URL's calls keep failing the way they did).
    pub eject_after: Option<u32>,
    /// An ejection lasts this × the ejections in a row, at most [`Self::eject_max`].
    pub eject_base: Duration,
    /// The longest ejection, and the longest a `Retry-After` marks a URL busy.
    pub eject_max: Duration,
    /// With every URL ejected, try the least recently ejected one instead of failing fast.
    pub panic: bool,
    /// Calls to the service in flight on the node at once, at most (0: no limit).
    pub max_in_flight: u32,
    /// Retries after a sent request, in percent of the service's calls of the last 10 s.
    pub retry_budget_percent: u32,
    /// Retries allowed in the window whatever the share (the floor of the budget).
    pub retry_budget_min: u32,
}

impl Default for UpstreamPolicy {
    /// Envoy's outlier-detection and retry-budget defaults (docs/extensions.md).
    fn default() -> Self {
        Self {
            alternates: Vec::new(),
            balance: Balance::First,
            failover_statuses: vec![502, 503, 504],
            failover_all_methods: false,
            eject_after: None,
            eject_base: Duration::from_secs(30),
            eject_max: Duration::from_secs(300),
            panic: false,
            max_in_flight: 0,
            retry_budget_percent: 20,
            retry_budget_min: 10,
        }
    }
}

fn number(key: &str, value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .map_err(|_| format!("{key} must be a number"))
}

fn positive_millis(key: &str, value: &str) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(format!("{key} must be a positive number of milliseconds")),
    }
}

impl UpstreamPolicy {
    /// The definition items this policy reads, besides the repeated `url`.
    pub const ITEMS: [&'static str; 10] = [
        "balance",
        "failover_statuses",
        "failover_all_methods",
        "eject_after",
        "eject_ms",
        "eject_max_ms",
        "panic",
        "max_in_flight",
        "retry_budget",
        "retry_budget_min",
    ];

    /// Applies item `key` (one of [`Self::ITEMS`]); the error names the item, never quotes it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let flag = |value: &str| match value {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(format!("{key} must be 0 or 1")),
        };
        match key {
            "balance" => {
                self.balance = match value {
                    "first" => Balance::First,
                    "round_robin" => Balance::RoundRobin,
                    _ => return Err("balance must be first or round_robin".into()),
                }
            }
            "failover_statuses" => {
                self.failover_statuses = if value == "none" {
                    Vec::new()
                } else {
                    value
                        .split(',')
                        .map(|s| match s.trim().parse::<u32>() {
                            Ok(status @ 100..=599) => Ok(status),
                            _ => Err("failover_statuses must be statuses (100-599) separated by \
                                      commas, or none"
                                .to_string()),
                        })
                        .collect::<Result<_, _>>()?
                }
            }
            "failover_all_methods" => self.failover_all_methods = flag(value)?,
            "eject_after" => self.eject_after = Some(number(key, value)?),
            "eject_ms" => self.eject_base = positive_millis(key, value)?,
            "eject_max_ms" => self.eject_max = positive_millis(key, value)?,
            "panic" => self.panic = flag(value)?,
            "max_in_flight" => self.max_in_flight = number(key, value)?,
            "retry_budget" => match number(key, value)? {
                percent @ 0..=100 => self.retry_budget_percent = percent,
                _ => return Err("retry_budget must be a percentage (0-100)".into()),
            },
            "retry_budget_min" => self.retry_budget_min = number(key, value)?,
            _ => return Err(format!("{key} is not an upstream item")),
        }
        Ok(())
    }

    /// Adds a further base URL (a `url` item after the first): checked like the first, and
    /// ending with `/` exactly when `first` does.
    pub fn add_alternate(&mut self, first: &str, url: &str) -> Result<(), String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err("url must start with http:// or https://".into());
        }
        if self.alternates.len() + 1 >= MAX_UPSTREAMS {
            return Err(format!("a service has at most {MAX_UPSTREAMS} url items"));
        }
        let trimmed = url.trim_end_matches('/');
        let alternate = if first.ends_with('/') {
            format!("{trimmed}/")
        } else {
            trimmed.to_string()
        };
        self.alternates.push(alternate);
        Ok(())
    }

    /// Checks what depends on more than one item.
    pub fn check(&self) -> Result<(), String> {
        if self.eject_max < self.eject_base {
            return Err("eject_max_ms must not be less than eject_ms".into());
        }
        Ok(())
    }

    /// Consecutive failures that eject a URL (0: never).
    pub fn ejects_after(&self) -> u32 {
        match self.eject_after {
            Some(failures) => failures,
            None if self.alternates.is_empty() => 0,
            None => 5,
        }
    }

    /// Whether an answer with `status` counts as a failure of its URL.
    pub fn fails_over_on(&self, status: u32) -> bool {
        self.failover_statuses.contains(&status)
    }

    /// How long the `ejections`-th ejection in a row lasts.
    pub fn ejection(&self, ejections: u32) -> Duration {
        self.eject_base
            .saturating_mul(ejections.max(1))
            .min(self.eject_max)
    }
}

/// `url` (made on the base URL `first`) moved to the base URL `to`; `None` when it is not
/// under `first`.
pub fn rebase(url: &str, first: &str, to: &str) -> Option<String> {
    url.strip_prefix(first).map(|rest| format!("{to}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_parse_and_bad_values_are_named() {
        let mut policy = UpstreamPolicy::default();
        for (key, value) in [
            ("balance", "round_robin"),
            ("failover_statuses", "500, 503"),
            ("failover_all_methods", "1"),
            ("eject_after", "3"),
            ("eject_ms", "250"),
            ("eject_max_ms", "1000"),
            ("panic", "1"),
            ("max_in_flight", "50"),
            ("retry_budget", "10"),
            ("retry_budget_min", "2"),
        ] {
            policy.set(key, value).unwrap();
        }
        assert_eq!(policy.balance, Balance::RoundRobin);
        assert_eq!(policy.failover_statuses, [500, 503]);
        assert!(policy.failover_all_methods && policy.panic);
        assert_eq!((policy.ejects_after(), policy.max_in_flight), (3, 50));
        assert_eq!(policy.eject_base, Duration::from_millis(250));
        assert_eq!(
            (policy.retry_budget_percent, policy.retry_budget_min),
            (10, 2)
        );
        policy.set("failover_statuses", "none").unwrap();
        assert!(!policy.fails_over_on(503));
        for (key, value, error) in [
            ("balance", "random", "balance must be"),
            ("failover_statuses", "503,abc", "failover_statuses must be"),
            ("failover_statuses", "99", "failover_statuses must be"),
            ("eject_ms", "0", "eject_ms must be a positive"),
            ("panic", "yes", "panic must be 0 or 1"),
            ("retry_budget", "101", "retry_budget must be a percentage"),
            ("max_in_flight", "-1", "max_in_flight must be a number"),
        ] {
            let e = policy.set(key, value).unwrap_err();
            assert!(e.contains(error), "{key}={value}: {e}");
        }
    }

    #[test]
    fn ejections_grow_with_each_one_in_a_row_up_to_the_cap() {
        let mut policy = UpstreamPolicy::default();
        assert_eq!(policy.ejects_after(), 0, "one URL: never by default");
        policy.add_alternate("http://a/", "http://b/").unwrap();
        assert_eq!(policy.ejects_after(), 5);
        assert_eq!(policy.ejection(1), Duration::from_secs(30));
        assert_eq!(policy.ejection(3), Duration::from_secs(90));
        assert_eq!(policy.ejection(11), Duration::from_secs(300));
        assert_eq!(policy.ejection(u32::MAX), Duration::from_secs(300));
        let mut bad = policy.clone();
        bad.set("eject_max_ms", "1000").unwrap();
        assert!(bad.check().is_err());
    }

    #[test]
    fn alternates_follow_the_first_url_slash_and_urls_move_by_prefix() {
        let mut policy = UpstreamPolicy::default();
        policy
            .add_alternate("http://a/v2/", "http://b:81/api/v2")
            .unwrap();
        policy
            .add_alternate("http://a/v2/", "https://c/v2//")
            .unwrap();
        assert_eq!(policy.alternates, ["http://b:81/api/v2/", "https://c/v2/"]);
        assert!(policy.add_alternate("http://a/", "ftp://c/").is_err());
        let mut bare = UpstreamPolicy::default();
        bare.add_alternate("http://a", "http://b/").unwrap();
        assert_eq!(bare.alternates, ["http://b"]);
        assert_eq!(
            rebase("http://a/v2/x?k=1", "http://a/v2/", "http://b:81/api/v2/").as_deref(),
            Some("http://b:81/api/v2/x?k=1")
        );
        assert_eq!(rebase("http://z/x", "http://a/", "http://b/"), None);
        let mut many = UpstreamPolicy::default();
        for _ in 1..MAX_UPSTREAMS {
            many.add_alternate("http://a/", "http://b/").unwrap();
        }
        assert!(many.add_alternate("http://a/", "http://b/").is_err());
    }
}

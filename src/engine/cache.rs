//! A service's per-process response cache: successful GET answers kept for a TTL, bounded in
//! entries and bytes, keyed by method, full URL and the request's extra headers.

use std::collections::HashMap;
use std::time::Instant;

use super::client::Outcome;
use super::request::{Method, Request};
use super::result_code::ResultCode;
use super::service::CacheLimits;

struct Entry {
    stored: Instant,
    outcome: Outcome,
    bytes: usize,
}

pub struct ResponseCache {
    limits: CacheLimits,
    entries: HashMap<String, Entry>,
    bytes: usize,
}

fn size(outcome: &Outcome) -> usize {
    outcome.body.len() + outcome.content_type.as_ref().map_or(0, Vec::len) + 64
}

impl ResponseCache {
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
            bytes: 0,
        }
    }

    /// The key of a cacheable request (GET only).
    pub fn key(request: &Request) -> Option<String> {
        (request.method == Method::Get).then(|| {
            let mut headers: Vec<&str> = request.headers.iter().map(String::as_str).collect();
            headers.sort_unstable();
            format!("GET {}\n{}", request.url, headers.join("\n"))
        })
    }

    /// A fresh copy of the cached answer; an expired entry is dropped.
    pub fn get(&mut self, key: &str) -> Option<Outcome> {
        let expired = self.entries.get(key)?.stored.elapsed() >= self.limits.ttl;
        if expired {
            self.remove(key);
            return None;
        }
        self.entries.get(key).map(|e| e.outcome.clone())
    }

    /// Keeps a successful (2xx) answer, evicting expired then oldest entries to stay in bounds.
    pub fn put(&mut self, key: String, outcome: &Outcome) {
        let bytes = size(outcome);
        let cacheable = outcome.result == ResultCode::Ok && (200..300).contains(&outcome.status);
        if !cacheable || bytes > self.limits.max_bytes || self.limits.max_entries == 0 {
            return;
        }
        self.remove(&key);
        let ttl = self.limits.ttl;
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.stored.elapsed() >= ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            self.remove(&k);
        }
        while self.entries.len() >= self.limits.max_entries
            || self.bytes + bytes > self.limits.max_bytes
        {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.stored)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.remove(&oldest);
        }
        self.bytes += bytes;
        self.entries.insert(
            key,
            Entry {
                stored: Instant::now(),
                outcome: outcome.clone(),
                bytes,
            },
        );
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= entry.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ok(body: &str) -> Outcome {
        let mut o = Outcome::failed(ResultCode::Ok);
        o.status = 200;
        o.body = body.as_bytes().to_vec();
        o
    }

    fn limits(ttl_ms: u64, max_entries: usize, max_bytes: usize) -> CacheLimits {
        CacheLimits {
            ttl: Duration::from_millis(ttl_ms),
            max_entries,
            max_bytes,
        }
    }

    #[test]
    fn keys_only_gets_and_ignores_header_order() {
        let mut a = Request::new(Method::Get, "http://h/x".into());
        a.headers = vec!["B: 2".into(), "A: 1".into()];
        let mut b = a.clone();
        b.headers.reverse();
        assert_eq!(ResponseCache::key(&a), ResponseCache::key(&b));
        b.headers.push("C: 3".into());
        assert_ne!(ResponseCache::key(&a), ResponseCache::key(&b));
        a.method = Method::Post;
        assert_eq!(ResponseCache::key(&a), None);
    }

    #[test]
    fn keeps_successes_for_the_ttl_within_bounds() {
        let mut cache = ResponseCache::new(limits(50, 2, 1000));
        cache.put("a".into(), &ok("1"));
        let mut not_found = ok("x");
        not_found.status = 404;
        cache.put("b".into(), &not_found);
        assert_eq!(cache.get("a").map(|o| o.body), Some(b"1".to_vec()));
        assert!(cache.get("b").is_none());
        cache.put("b".into(), &ok("2"));
        cache.put("c".into(), &ok("3"));
        assert!(cache.get("a").is_none(), "oldest evicted past max_entries");
        assert!(cache.get("c").is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("c").is_none(), "expired");
        assert!(cache.entries.len() <= 1);
    }

    #[test]
    fn bounded_in_bytes() {
        let mut cache = ResponseCache::new(limits(10_000, 100, 200));
        cache.put("big".into(), &ok(&"x".repeat(300)));
        assert!(cache.get("big").is_none());
        cache.put("a".into(), &ok(&"x".repeat(100)));
        cache.put("b".into(), &ok(&"x".repeat(100)));
        assert!(cache.bytes <= 200);
        assert!(cache.get("a").is_none() && cache.get("b").is_some());
    }
}

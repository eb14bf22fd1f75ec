//! A service's per-process response cache: successful GET answers kept until they expire (and
//! past that for as long as they may be served stale, see `stale`), bounded in entries and in
//! bytes (everything an entry holds counts: key, body, Content-Type,
//! response head), keyed by everything in the request that can change the answer, and found
//! by URL to be invalidated.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::service::CacheLimits;
use super::stale::{Freshness, StaleLimits};
use crate::engine::request::{Auth, KeyMaterial, Method, Request};
use crate::engine::secrets::url_for_logs;
use crate::engine::transfer::Outcome;

/// Bytes an entry costs besides its key and answer: its records in the maps and the index.
const ENTRY_OVERHEAD: usize = 160;

/// The state of the shared cache an entry was checked against when it was stored (see
/// `ServiceCache`); [`Generation::NONE`] without a shared cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Generation(pub [u8; 16]);

impl Generation {
    pub const NONE: Self = Self([0; 16]);
    /// Stored while the shared cache could not be read: never equal to what it holds.
    pub const UNKNOWN: Self = Self([0xff; 16]);
}

struct Entry {
    fresh_until: Instant,
    /// How long past `fresh_until` it may be served stale (and is kept).
    stale: StaleLimits,
    /// Its place in [`ResponseCache::order`].
    seq: u64,
    url: Rc<str>,
    generation: Generation,
    outcome: Outcome,
    bytes: usize,
}

pub struct ResponseCache {
    limits: CacheLimits,
    entries: HashMap<Rc<[u8]>, Entry>,
    /// The keys in the order they were stored, the oldest first. Eviction takes from the
    /// front and never scans the entries; an entry that expires before older ones (a shorter
    /// `max-age`) is dropped when it is read or reaches the front.
    order: BTreeMap<u64, Rc<[u8]>>,
    /// The keys of each URL (every header and credential variant), for invalidation.
    by_url: HashMap<Rc<str>, Vec<Rc<[u8]>>>,
    next_seq: u64,
    bytes: usize,
}

/// Appends `bytes` to `key`, preceded by its length, so that no field can run into the next.
fn field(key: &mut Vec<u8>, bytes: &[u8]) {
    key.extend_from_slice(&bytes.len().to_le_bytes());
    key.extend_from_slice(bytes);
}

impl ResponseCache {
    /// How many answers it holds (fresh or not yet evicted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            by_url: HashMap::new(),
            next_seq: 0,
            bytes: 0,
        }
    }

    /// The key of a cacheable request (GET only): what can change the answer or whom it is
    /// for (method, URL, extra headers in any order, credentials, client certificate), each
    /// field length-prefixed. The URL enters with its secrets masked (see `secrets`), and in
    /// full, with the headers, credentials and certificate, through their SHA-256 digest, so
    /// that a key (which a shared cache stores) holds no secret. What the script
    /// wants to see of the answer is not part of it: an entry holds the whole answer.
    pub fn key(request: &Request) -> Option<Vec<u8>> {
        if request.method != Method::Get {
            return None;
        }
        let mut key = Vec::new();
        field(&mut key, request.method.name().as_bytes());
        // The URL in clear with its secrets masked; the whole of it in the digest.
        field(&mut key, url_for_logs(request).as_bytes());
        let mut who = Vec::new();
        field(&mut who, request.url.as_bytes());
        let mut headers: Vec<&str> = request.headers.iter().map(String::as_str).collect();
        headers.sort_unstable();
        field(&mut who, &headers.len().to_le_bytes());
        for header in headers {
            field(&mut who, header.as_bytes());
        }
        match &request.auth {
            None => field(&mut who, b"no auth"),
            Some(Auth::Basic { user, password }) => {
                field(&mut who, b"basic");
                field(&mut who, user.as_bytes());
                field(&mut who, password.as_bytes());
            }
            Some(Auth::Bearer(token)) => {
                field(&mut who, b"bearer");
                field(&mut who, token.as_bytes());
            }
        }
        // The certificate names the client (a key that does not match it fails the
        // handshake, and failures are never kept).
        match request.client_cert.as_ref().map(|cert| &cert.certificate) {
            None => field(&mut who, b"no certificate"),
            Some(KeyMaterial::File(path)) => {
                field(&mut who, b"certificate file");
                field(&mut who, path.as_bytes());
            }
            Some(KeyMaterial::Pem(pem)) => {
                field(&mut who, b"certificate");
                field(&mut who, pem);
            }
        }
        field(&mut key, &Sha256::digest(&who));
        Some(key)
    }

    /// A copy of the answer under `key`, with the generation it was stored under and how it
    /// may be used now; an entry past its stale windows is dropped.
    pub fn get(&mut self, key: &[u8]) -> Option<(Outcome, Generation, Freshness)> {
        let entry = self.entries.get(key)?;
        let past = Instant::now().checked_duration_since(entry.fresh_until);
        let Some(freshness) = entry.stale.freshness(past) else {
            self.remove(key);
            return None;
        };
        Some((entry.outcome.clone(), entry.generation, freshness))
    }

    /// Keeps an answer of `url` until `fresh_until` (at most the TTL from now), and for the
    /// `stale` windows past it, evicting expired then oldest entries to stay in bounds. The
    /// caller decided it may be kept.
    pub fn put(
        &mut self,
        key: Vec<u8>,
        url: &str,
        outcome: &Outcome,
        fresh_until: Instant,
        stale: StaleLimits,
        generation: Generation,
    ) {
        let now = Instant::now();
        let fresh_until = fresh_until.min(now + self.limits.ttl);
        let bytes = key.len()
            + outcome.body.len()
            + outcome.content_type.as_ref().map_or(0, Vec::len)
            + outcome.head.byte_len()
            + ENTRY_OVERHEAD;
        let kept = fresh_until > now || now < fresh_until + stale.longest();
        if !kept || bytes > self.limits.max_bytes || self.limits.max_entries == 0 {
            return;
        }
        self.remove(&key);
        while let Some((_, oldest)) = self.order.first_key_value() {
            let oldest_entry = &self.entries[oldest];
            let expired = oldest_entry.fresh_until + oldest_entry.stale.longest() <= now;
            let full = self.entries.len() >= self.limits.max_entries
                || self.bytes + bytes > self.limits.max_bytes;
            if !expired && !full {
                break;
            }
            let oldest = Rc::clone(oldest);
            self.remove(&oldest);
        }
        let key: Rc<[u8]> = key.into();
        let url: Rc<str> = match self.by_url.get_key_value(url) {
            Some((known, _)) => Rc::clone(known),
            None => url.into(),
        };
        self.by_url
            .entry(Rc::clone(&url))
            .or_default()
            .push(Rc::clone(&key));
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, Rc::clone(&key));
        self.bytes += bytes;
        let outcome = Outcome {
            transcript: None,
            stale: false,
            ..outcome.clone()
        };
        self.entries.insert(
            key,
            Entry {
                fresh_until,
                stale,
                seq,
                url,
                generation,
                outcome,
                bytes,
            },
        );
    }

    /// Drops every answer of `url`, whatever headers or credentials asked for it.
    pub fn invalidate_url(&mut self, url: &str) {
        for key in self.by_url.remove(url).unwrap_or_default() {
            if let Some(entry) = self.entries.remove(&key) {
                self.order.remove(&entry.seq);
                self.bytes -= entry.bytes;
            }
        }
    }

    /// Drops every answer.
    pub fn clear(&mut self) {
        *self = Self::new(self.limits);
    }

    pub fn remove(&mut self, key: &[u8]) {
        let Some(entry) = self.entries.remove(key) else {
            return;
        };
        self.order.remove(&entry.seq);
        self.bytes -= entry.bytes;
        if let Some(keys) = self.by_url.get_mut(&entry.url) {
            keys.retain(|k| &**k != key);
            if keys.is_empty() {
                self.by_url.remove(&entry.url);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::{ClientCert, ResponseHead, ResultCode};

    fn ok(body: &str) -> Outcome {
        let mut o = Outcome::failed(ResultCode::Ok);
        o.status = 200;
        o.body = body.as_bytes().to_vec();
        o
    }

    /// Stores an answer of URL `u` for the whole TTL.
    fn keep(cache: &mut ResponseCache, key: Vec<u8>, outcome: &Outcome) {
        let until = Instant::now() + Duration::from_secs(3600);
        cache.put(
            key,
            "u",
            outcome,
            until,
            StaleLimits::NONE,
            Generation::NONE,
        );
    }

    fn limits(ttl_ms: u64, max_entries: usize, max_bytes: usize) -> CacheLimits {
        CacheLimits {
            ttl: Duration::from_millis(ttl_ms),
            max_entries,
            max_bytes,
        }
    }

    fn get(url: &str, headers: &[&str]) -> Request {
        let mut r = Request::new(Method::Get, url.into());
        r.headers = headers.iter().map(|h| h.to_string()).collect();
        r
    }

    #[test]
    fn keys_only_gets_and_ignores_header_order() {
        let mut a = get("http://h/x", &["B: 2", "A: 1"]);
        let mut b = a.clone();
        b.headers.reverse();
        assert_eq!(ResponseCache::key(&a), ResponseCache::key(&b));
        b.headers.push("C: 3".into());
        assert_ne!(ResponseCache::key(&a), ResponseCache::key(&b));
        a.method = Method::Post;
        assert_eq!(ResponseCache::key(&a), None);
    }

    #[test]
    fn keys_differ_by_credentials_and_client_certificate() {
        let plain = get("http://h/x", &[]);
        let mut bearer = plain.clone();
        bearer.auth = Some(Auth::Bearer("t1".into()));
        let mut other_bearer = plain.clone();
        other_bearer.auth = Some(Auth::Bearer("t2".into()));
        let mut basic = plain.clone();
        basic.auth = Some(Auth::Basic {
            user: "u".into(),
            password: "t1".into(),
        });
        let with_cert = |certificate| {
            let mut r = plain.clone();
            r.client_cert = Some(ClientCert {
                certificate,
                private_key: KeyMaterial::File("k.pem".into()),
            });
            r
        };
        let keys: Vec<Vec<u8>> = [
            plain.clone(),
            bearer,
            other_bearer,
            basic,
            with_cert(KeyMaterial::File("a.pem".into())),
            with_cert(KeyMaterial::File("b.pem".into())),
            with_cert(KeyMaterial::Pem(b"a.pem".to_vec())),
        ]
        .iter()
        .map(|r| ResponseCache::key(r).unwrap())
        .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn separators_in_urls_and_headers_cannot_collide() {
        // Joined with line ends, both were "GET http://h/x\nA: 1\nB: 2".
        let a = get("http://h/x\nA: 1", &["B: 2"]);
        let b = get("http://h/x", &["A: 1", "B: 2"]);
        assert_ne!(ResponseCache::key(&a), ResponseCache::key(&b));
        let a = get("http://h/x", &["A: 1B: 2"]);
        let b = get("http://h/x", &["A: 1", "B: 2"]);
        assert_ne!(ResponseCache::key(&a), ResponseCache::key(&b));
    }

    #[test]
    fn keeps_answers_for_the_ttl_within_bounds() {
        let mut cache = ResponseCache::new(limits(50, 2, 1000));
        keep(&mut cache, b"a".to_vec(), &ok("1"));
        assert_eq!(cache.get(b"a").map(|(o, ..)| o.body), Some(b"1".to_vec()));
        keep(&mut cache, b"b".to_vec(), &ok("2"));
        keep(&mut cache, b"c".to_vec(), &ok("3"));
        assert!(cache.get(b"a").is_none(), "oldest evicted past max_entries");
        assert!(cache.get(b"c").is_some());
        std::thread::sleep(Duration::from_millis(60));
        keep(&mut cache, b"d".to_vec(), &ok("4"));
        assert_eq!(cache.entries.len(), 1, "expired entries dropped on insert");
        assert_eq!(cache.order.len(), 1);
        assert!(cache.get(b"d").is_some());
    }

    #[test]
    fn counts_every_byte_an_entry_holds() {
        let mut answer = ok("body");
        answer.content_type = Some(b"text/plain".to_vec());
        let mut head = ResponseHead::default();
        head.set_status_line(b"HTTP/1.1 200 OK\r\n");
        head.add_line(format!("X-Pad: {}\r\n", "p".repeat(500)).as_bytes(), 1000);
        answer.head = head;
        let key = vec![b'k'; 300];
        let expected = 300 + 4 + 10 + answer.head.byte_len() + ENTRY_OVERHEAD;
        let mut cache = ResponseCache::new(limits(10_000, 100, 2 * expected - 1));
        keep(&mut cache, key.clone(), &answer);
        assert_eq!(cache.bytes, expected);
        // A second one does not fit beside it: the first goes.
        let mut other = key.clone();
        other[0] = b'o';
        keep(&mut cache, other.clone(), &answer);
        assert_eq!(cache.bytes, expected);
        assert!(cache.get(&key).is_none() && cache.get(&other).is_some());
        // Too large on its own (the key counts too): not kept.
        let mut cache = ResponseCache::new(limits(10_000, 100, expected - 1));
        keep(&mut cache, key.clone(), &answer);
        assert_eq!((cache.bytes, cache.entries.len()), (0, 0));
    }

    #[test]
    fn a_replaced_entry_is_the_newest() {
        let mut cache = ResponseCache::new(limits(10_000, 2, 100_000));
        keep(&mut cache, b"a".to_vec(), &ok("1"));
        keep(&mut cache, b"b".to_vec(), &ok("2"));
        keep(&mut cache, b"a".to_vec(), &ok("3"));
        keep(&mut cache, b"c".to_vec(), &ok("4"));
        assert!(cache.get(b"b").is_none());
        assert_eq!(cache.get(b"a").map(|(o, ..)| o.body), Some(b"3".to_vec()));
        assert_eq!(cache.order.len(), cache.entries.len());
        let held: usize = cache.entries.values().map(|e| e.bytes).sum();
        assert_eq!(cache.bytes, held);
    }

    #[test]
    fn expires_each_entry_at_its_own_time_and_invalidates_by_url() {
        let mut cache = ResponseCache::new(limits(10_000, 10, 100_000));
        let now = Instant::now();
        cache.put(
            b"long".to_vec(),
            "/a",
            &ok("1"),
            now + Duration::from_secs(60),
            StaleLimits::NONE,
            Generation::NONE,
        );
        cache.put(
            b"short".to_vec(),
            "/b",
            &ok("2"),
            now + Duration::from_millis(30),
            StaleLimits::NONE,
            Generation::NONE,
        );
        cache.put(
            b"past".to_vec(),
            "/b",
            &ok("3"),
            now,
            StaleLimits::NONE,
            Generation::NONE,
        );
        assert!(cache.get(b"past").is_none(), "not kept: already stale");
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get(b"short").is_none());
        assert!(cache.get(b"long").is_some());
        // Every variant of a URL goes; other URLs stay.
        let tag = Generation([7; 16]);
        cache.put(
            b"a2".to_vec(),
            "/a",
            &ok("4"),
            now + Duration::from_secs(60),
            StaleLimits::NONE,
            tag,
        );
        cache.put(
            b"c".to_vec(),
            "/c",
            &ok("5"),
            now + Duration::from_secs(60),
            StaleLimits::NONE,
            tag,
        );
        assert_eq!(cache.get(b"a2").map(|(_, g, _)| g), Some(tag));
        cache.invalidate_url("/a");
        assert!(cache.get(b"long").is_none() && cache.get(b"a2").is_none());
        assert!(cache.get(b"c").is_some());
        assert_eq!(
            (cache.entries.len(), cache.order.len(), cache.by_url.len()),
            (1, 1, 1)
        );
        let held: usize = cache.entries.values().map(|e| e.bytes).sum();
        assert_eq!(cache.bytes, held);
        cache.clear();
        assert!(cache.get(b"c").is_none());
        assert_eq!(cache.bytes, 0);
    }
}

//! A service's response cache as a whole: the per-process [`ResponseCache`] as the first
//! level, and optionally a [`SharedStore`] (a key-value store that every process and node of
//! the fleet reaches) behind it, with the `Cache-Control` rules and the invalidations that
//! apply to both.
//!
//! Shared keys (printable, the same on every node for a service of the same name):
//! - `rest_client:NAME:epoch`: a random value replaced by a flush (no expiry);
//! - `rest_client:NAME:url:SHA256(url)`: a random value replaced by every write to the URL
//!   (expires after the TTL: by then every answer stored before the write has expired);
//! - `rest_client:NAME:answer:SHA256(epoch, url value, key)`: an answer, stored with its full
//!   key (compared on reading) and its expiry time. An answer stored before a flush or a write
//!   is under other values, so it is never found again, in any process.
//!
//! A store that fails is a miss (answers still come from the first level and the network),
//! logged at most once per [`OUTAGE_LOG_INTERVAL`] per service and process.

use std::collections::hash_map::RandomState;
use std::fmt::Write;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, warn};
use sha2::{Digest, Sha256};

use super::cache_control::CacheControl;
use super::response_cache::{Generation, ResponseCache};
use super::service::{CacheLimits, Service};
use crate::engine::result_code::ResultCode;
use crate::engine::throttled_log::ThrottledLog;
use crate::engine::transfer::{Outcome, ResponseHead};

/// Least time between two log lines about a failing shared store (per service and process).
const OUTAGE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// First bytes of a stored answer: the format, so that another one is a miss.
const ANSWER_MAGIC: &[u8] = b"rest_client answer 1\n";

/// A key-value store shared by processes (and nodes): the host's (OpenSIPS's cachedb).
pub trait SharedStore {
    /// The value under `key`, `Ok(None)` when there is none.
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Stores `value` under `key` for `ttl_secs` seconds (0: until replaced).
    fn set(&mut self, key: &str, value: &[u8], ttl_secs: u32) -> Result<(), String>;
}

/// Rate-limited reports of a failing store.
#[derive(Default)]
struct OutageLog(ThrottledLog);

impl OutageLog {
    fn failed(&mut self, service: &str, action: &str, error: &str) {
        if let Some(more) = self.0.happened(OUTAGE_LOG_INTERVAL, "failures") {
            warn!(
                "service {service}: the shared cache failed to {action} ({error}); calls go on \
                 without it{more}"
            );
        }
    }
}

/// A cacheable request that missed: what storing its answer needs.
pub struct Pending {
    key: Vec<u8>,
    url: String,
    /// When it was looked up: an answer's age counts from its request.
    started: Instant,
    /// The shared state it was looked up under; `None` without a reachable shared store.
    generation: Option<Generation>,
}

pub struct ServiceCache {
    name: String,
    /// Key prefix in the shared store: `rest_client:NAME:` (name in lower case).
    prefix: String,
    ttl: Duration,
    local: ResponseCache,
    shared: Option<Box<dyn SharedStore>>,
    outage: OutageLog,
}

fn hex_sha256(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// A value no other process or node picks (8 bytes, never all zero).
fn fresh_value() -> [u8; 8] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(unix_time().as_nanos());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish().max(1).to_le_bytes()
}

fn unix_time() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn is_success(outcome: &Outcome) -> bool {
    outcome.result == ResultCode::Ok && (200..300).contains(&outcome.status)
}

impl ServiceCache {
    pub fn new(name: &str, limits: CacheLimits, shared: Option<Box<dyn SharedStore>>) -> Self {
        Self {
            name: name.to_string(),
            prefix: format!("rest_client:{}:", name.to_ascii_lowercase()),
            ttl: limits.ttl,
            local: ResponseCache::new(limits),
            shared,
            outage: OutageLog::default(),
        }
    }

    fn url_key(&self, url: &str) -> String {
        format!("{}url:{}", self.prefix, hex_sha256(&[url.as_bytes()]))
    }

    /// The shared state `url` is read under (`None` without a reachable store).
    fn generation(&mut self, url: &str) -> Option<Generation> {
        let epoch_key = format!("{}epoch", self.prefix);
        let url_key = self.url_key(url);
        let store = self.shared.as_mut()?;
        let values = store
            .get(&epoch_key)
            .and_then(|epoch| Ok((epoch, store.get(&url_key)?)));
        // A marker is 8 bytes (see `fresh_value`): another value (an engine that answers an
        // empty "found" when short of memory) is no marker to trust, nor a missing one.
        let values = values.and_then(|markers| match markers {
            (Some(bad), _) | (_, Some(bad)) if bad.len() != 8 => {
                Err(format!("a marker of {} bytes", bad.len()))
            }
            markers => Ok(markers),
        });
        match values {
            Ok((epoch, url_value)) => {
                let mut generation = Generation::NONE;
                for (half, value) in generation.0.chunks_mut(8).zip([epoch, url_value]) {
                    if let Some(value) = value {
                        half.copy_from_slice(&value);
                    }
                }
                Some(generation)
            }
            Err(e) => {
                self.outage.failed(&self.name, "read", &e);
                None
            }
        }
    }

    fn answer_key(&self, generation: Generation, key: &[u8]) -> String {
        format!(
            "{}answer:{}",
            self.prefix,
            hex_sha256(&[&generation.0, key])
        )
    }

    /// A fresh answer for `key` (a request of `url`): from this process, else from the shared
    /// store (then kept in this process too). A miss gives what storing its answer needs.
    /// How many answers this process's level holds.
    pub fn local_entries(&self) -> usize {
        self.local.len()
    }

    pub fn lookup(&mut self, key: Vec<u8>, url: String) -> Result<Outcome, Pending> {
        let started = Instant::now();
        let generation = self.generation(&url);
        if let Some((outcome, stored_under)) = self.local.get(&key) {
            // Without a reachable shared store, this process's copy answers alone.
            if generation.is_none_or(|now| now == stored_under) {
                return Ok(outcome);
            }
            // Flushed or written to since, by this or another process.
            self.local.remove(&key);
        }
        if let Some(generation) = generation
            && let Some((outcome, fresh_for)) = self.shared_answer(generation, &key)
        {
            self.local
                .put(key, &url, &outcome, started + fresh_for, generation);
            return Ok(outcome);
        }
        Err(Pending {
            key,
            url,
            started,
            generation,
        })
    }

    /// The answer under `key` in the shared store and how long it stays fresh.
    fn shared_answer(&mut self, generation: Generation, key: &[u8]) -> Option<(Outcome, Duration)> {
        let answer_key = self.answer_key(generation, key);
        let store = self.shared.as_mut()?;
        match store.get(&answer_key) {
            Ok(value) => {
                let found = value.and_then(|v| decode_answer(&v, key));
                if found.is_none() {
                    debug!("shared cache miss {answer_key}");
                }
                found
            }
            Err(e) => {
                self.outage.failed(&self.name, "read", &e);
                None
            }
        }
    }

    /// Keeps a successful (2xx) answer of a request that missed, as its `Cache-Control`
    /// allows: nowhere (`no-store`, `no-cache`), in this process only (`private`), else in
    /// both levels; `max-age` (`s-maxage` for the shared level) can shorten the TTL.
    pub fn store(&mut self, pending: Pending, outcome: &Outcome) {
        if !is_success(outcome) {
            return;
        }
        let control = CacheControl::of(&outcome.head);
        if control.no_store {
            return;
        }
        let Pending {
            key,
            url,
            started,
            generation,
        } = pending;
        let local_until = started + control.lifetime(self.ttl, false);
        // Stored blind while the shared store is down: checked again once it is back.
        let tag = match (generation, &self.shared) {
            (Some(generation), _) => generation,
            (None, Some(_)) => Generation::UNKNOWN,
            (None, None) => Generation::NONE,
        };
        let shared_for = (started + control.lifetime(self.ttl, true))
            .saturating_duration_since(Instant::now())
            .as_secs();
        let shared = match generation {
            Some(generation) if !control.private && shared_for > 0 => {
                let expires = unix_time().as_secs() + shared_for;
                Some((
                    self.answer_key(generation, &key),
                    encode_answer(&key, expires, outcome),
                ))
            }
            _ => None,
        };
        self.local.put(key, &url, outcome, local_until, tag);
        if let (Some((answer_key, value)), Some(store)) = (shared, self.shared.as_mut()) {
            let ttl_secs = u32::try_from(shared_for).unwrap_or(u32::MAX);
            if let Err(e) = store.set(&answer_key, &value, ttl_secs) {
                self.outage.failed(&self.name, "store", &e);
            }
        }
    }

    /// A write to `url` succeeded: its answers (every header and credential variant) are
    /// dropped here and, through the shared store, in every process.
    pub fn invalidate(&mut self, url: &str) {
        self.local.invalidate_url(url);
        let url_key = self.url_key(url);
        let ttl_secs = u32::try_from(self.ttl.as_secs().max(1)).unwrap_or(u32::MAX);
        if let Some(store) = self.shared.as_mut()
            && let Err(e) = store.set(&url_key, &fresh_value(), ttl_secs)
        {
            self.outage.failed(&self.name, "invalidate", &e);
        }
    }

    /// After a request with an unsafe method to `url` on `service`: when it succeeded (2xx),
    /// invalidates `url` and the URLs of the service that its `Location` and
    /// `Content-Location` name.
    pub fn written(&mut self, service: &Service, url: &str, outcome: &Outcome) {
        if !is_success(outcome) {
            return;
        }
        self.invalidate(url);
        for name in ["Location", "Content-Location"] {
            let named = outcome.head.header(name);
            let own = named.and_then(|r| service.own_url(&String::from_utf8_lossy(&r), url));
            if let Some(own) = own.filter(|own| own != url) {
                self.invalidate(&own);
            }
        }
    }

    /// Drops every answer: this process's, and the shared store's for every process.
    /// Other processes' first levels drop theirs at their next lookup, when they have a
    /// shared store; without one, only this process's are dropped.
    pub fn flush(&mut self) -> Result<(), String> {
        self.local.clear();
        let epoch_key = format!("{}epoch", self.prefix);
        match self.shared.as_mut() {
            Some(store) => store.set(&epoch_key, &fresh_value(), 0),
            None => Ok(()),
        }
    }
}

/// Bytes read from a stored answer, in order.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }
    fn field(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u64()?).ok()?;
        self.bytes(len)
    }
}

fn put_field(value: &mut Vec<u8>, bytes: &[u8]) {
    value.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    value.extend_from_slice(bytes);
}

/// A stored answer: the format, the full key, the expiry (Unix seconds), status,
/// Content-Type (a presence byte, then the field), status line, header lines and body.
fn encode_answer(key: &[u8], expires: u64, outcome: &Outcome) -> Vec<u8> {
    let (status_line, lines) = outcome.head.parts();
    let mut value = Vec::with_capacity(ANSWER_MAGIC.len() + key.len() + outcome.body.len() + 256);
    value.extend_from_slice(ANSWER_MAGIC);
    put_field(&mut value, key);
    value.extend_from_slice(&expires.to_le_bytes());
    value.extend_from_slice(&u64::from(outcome.status).to_le_bytes());
    value.push(u8::from(outcome.content_type.is_some()));
    put_field(
        &mut value,
        outcome.content_type.as_deref().unwrap_or_default(),
    );
    put_field(&mut value, status_line);
    put_field(&mut value, lines);
    put_field(&mut value, &outcome.body);
    value
}

/// The answer stored in `value` and how long it stays fresh, if it is the answer to `key`
/// (another key, a digest collision, or a value of another format is a miss), well-formed and
/// not expired.
fn decode_answer(value: &[u8], key: &[u8]) -> Option<(Outcome, Duration)> {
    let mut reader = Reader(value.strip_prefix(ANSWER_MAGIC)?);
    if reader.field()? != key {
        return None;
    }
    let fresh_for = reader.u64()?.checked_sub(unix_time().as_secs())?;
    let status = u32::try_from(reader.u64()?).ok()?;
    let has_content_type = reader.bytes(1)? == [1];
    let content_type = reader.field()?;
    let head = ResponseHead::from_parts(reader.field()?, reader.field()?);
    let body = reader.field()?;
    if !reader.0.is_empty() || fresh_for == 0 {
        return None;
    }
    let mut outcome = Outcome::failed(ResultCode::Ok);
    outcome.status = status;
    outcome.content_type = has_content_type.then(|| content_type.to_vec());
    outcome.head = head;
    outcome.body = body.to_vec();
    Some((outcome, Duration::from_secs(fresh_for)))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use super::*;

    /// Values by key, with the TTL they were stored for.
    type Values = HashMap<String, (Vec<u8>, u32)>;

    /// A store shared by the caches of one test (as cachedb is by processes), that can fail.
    #[derive(Clone, Default)]
    struct MemoryStore {
        values: Rc<RefCell<Values>>,
        down: Rc<RefCell<bool>>,
    }

    impl SharedStore for MemoryStore {
        fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
            if *self.down.borrow() {
                return Err("down".into());
            }
            Ok(self.values.borrow().get(key).map(|(v, _)| v.clone()))
        }
        fn set(&mut self, key: &str, value: &[u8], ttl_secs: u32) -> Result<(), String> {
            if *self.down.borrow() {
                return Err("down".into());
            }
            self.values
                .borrow_mut()
                .insert(key.into(), (value.to_vec(), ttl_secs));
            Ok(())
        }
    }

    fn answer(body: &str, headers: &[&str]) -> Outcome {
        let mut outcome = Outcome::failed(ResultCode::Ok);
        outcome.status = 200;
        outcome.body = body.as_bytes().to_vec();
        outcome.content_type = Some(b"text/plain".to_vec());
        let lines: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
        outcome.head = ResponseHead::from_parts(b"HTTP/1.1 200 OK\r\n", lines.as_bytes());
        outcome
    }

    fn limits(ttl_secs: u64) -> CacheLimits {
        CacheLimits {
            ttl: Duration::from_secs(ttl_secs),
            max_entries: 100,
            max_bytes: 1 << 20,
        }
    }

    fn cache(store: &MemoryStore) -> ServiceCache {
        ServiceCache::new("Svc", limits(30), Some(Box::new(store.clone())))
    }

    /// Looks `url` up (key: the URL and a variant); on a miss stores `fill`.
    fn fetch(
        cache: &mut ServiceCache,
        url: &str,
        variant: &str,
        fill: &Outcome,
    ) -> Option<Vec<u8>> {
        let key = format!("{url}|{variant}").into_bytes();
        match cache.lookup(key, url.into()) {
            Ok(outcome) => Some(outcome.body),
            Err(pending) => {
                cache.store(pending, fill);
                None
            }
        }
    }

    #[test]
    fn processes_share_answers_with_their_whole_head() {
        let store = MemoryStore::default();
        let (mut a, mut b) = (cache(&store), cache(&store));
        let first = answer("one", &["ETag: \"1\""]);
        assert_eq!(fetch(&mut a, "http://h/x", "", &first), None);
        let (value, ttl) = store.values.borrow().values().next().cloned().unwrap();
        assert_eq!(ttl, 29, "the whole seconds left of the TTL");
        assert!(value.starts_with(ANSWER_MAGIC));
        let found = b
            .lookup(b"http://h/x|".to_vec(), "http://h/x".into())
            .ok()
            .unwrap();
        assert_eq!(found.body, b"one");
        assert_eq!(found.content_type.as_deref(), Some(&b"text/plain"[..]));
        assert_eq!(found.head.header("etag"), Some(b"\"1\"".to_vec()));
        assert_eq!(found.head.reason(), b"OK");
        // Now in b's own level too: found while the store is down.
        *store.down.borrow_mut() = true;
        assert_eq!(
            fetch(&mut b, "http://h/x", "", &first),
            Some(b"one".to_vec())
        );
    }

    #[test]
    fn a_write_invalidates_every_variant_in_every_process() {
        let store = MemoryStore::default();
        let (mut a, mut b) = (cache(&store), cache(&store));
        let old = answer("old", &[]);
        for variant in ["alice", "bob"] {
            fetch(&mut a, "http://h/x", variant, &old);
            assert_eq!(
                fetch(&mut b, "http://h/x", variant, &old),
                Some(b"old".to_vec())
            );
        }
        fetch(&mut a, "http://h/y", "alice", &old);
        b.invalidate("http://h/x");
        let new = answer("new", &[]);
        for variant in ["alice", "bob"] {
            assert_eq!(
                fetch(&mut a, "http://h/x", variant, &new),
                None,
                "{variant}"
            );
            assert_eq!(
                fetch(&mut a, "http://h/x", variant, &new),
                Some(b"new".to_vec())
            );
        }
        assert_eq!(
            fetch(&mut b, "http://h/y", "alice", &new),
            Some(b"old".to_vec())
        );
        // A flush reaches every URL and process.
        a.flush().unwrap();
        assert_eq!(fetch(&mut b, "http://h/y", "alice", &new), None);
    }

    #[test]
    fn cache_control_decides_where_and_how_long() {
        let store = MemoryStore::default();
        let mut a = cache(&store);
        let stored = |store: &MemoryStore| {
            let values = store.values.borrow();
            let answers = values.iter().filter(|(k, _)| k.contains(":answer:"));
            answers.map(|(_, (_, ttl))| *ttl).collect::<Vec<_>>()
        };
        fetch(
            &mut a,
            "http://h/none",
            "",
            &answer("x", &["Cache-Control: no-store"]),
        );
        assert_eq!(fetch(&mut a, "http://h/none", "", &answer("x", &[])), None);
        fetch(
            &mut a,
            "http://h/private",
            "",
            &answer("p", &["Cache-Control: private"]),
        );
        assert_eq!(
            fetch(&mut a, "http://h/private", "", &answer("x", &[])),
            Some(b"p".to_vec()),
            "private: kept in the process"
        );
        assert_eq!(stored(&store), [29], "only /none's second answer is shared");
        store.values.borrow_mut().clear();
        fetch(
            &mut a,
            "http://h/age",
            "",
            &answer("a", &["Cache-Control: max-age=5"]),
        );
        fetch(
            &mut a,
            "http://h/s",
            "",
            &answer("s", &["Cache-Control: max-age=1, s-maxage=9"]),
        );
        let mut ttls = stored(&store);
        ttls.sort();
        assert_eq!(ttls, [4, 8]);
        fetch(
            &mut a,
            "http://h/zero",
            "",
            &answer("z", &["Cache-Control: max-age=0"]),
        );
        assert_eq!(fetch(&mut a, "http://h/zero", "", &answer("z", &[])), None);
        let mut failed = answer("e", &[]);
        failed.status = 404;
        fetch(&mut a, "http://h/404", "", &failed);
        assert_eq!(fetch(&mut a, "http://h/404", "", &failed), None);
    }

    #[test]
    fn an_outage_is_a_miss_and_a_wrong_value_too() {
        let store = MemoryStore::default();
        let mut a = cache(&store);
        *store.down.borrow_mut() = true;
        assert_eq!(fetch(&mut a, "http://h/x", "", &answer("1", &[])), None);
        assert_eq!(
            fetch(&mut a, "http://h/x", "", &answer("1", &[])),
            Some(b"1".to_vec())
        );
        *store.down.borrow_mut() = false;
        // Stored blind while the store was down: asked again once it is back (a write may
        // have gone unrecorded meanwhile), then shared.
        assert_eq!(fetch(&mut a, "http://h/x", "", &answer("2", &[])), None);
        let mut b = cache(&store);
        assert_eq!(
            fetch(&mut b, "http://h/x", "", &answer("3", &[])),
            Some(b"2".to_vec())
        );
        // An answer under another key (a digest collision) is a miss.
        let key = b"http://h/x|".to_vec();
        let (answer_key, (value, _)) = {
            let values = store.values.borrow();
            let (k, v) = values.iter().find(|(k, _)| k.contains(":answer:")).unwrap();
            (k.clone(), v.clone())
        };
        assert!(decode_answer(&value, &key).is_some());
        assert!(decode_answer(&value, b"other").is_none());
        assert!(decode_answer(&value[..value.len() - 1], &key).is_none());
        store
            .values
            .borrow_mut()
            .insert(answer_key, (b"garbage".to_vec(), 0));
        let mut c = cache(&store);
        assert_eq!(fetch(&mut c, "http://h/x", "", &answer("3", &[])), None);
    }

    /// Issue 17, item 10: a marker that is not one (cachedb_redis answers an empty "found"
    /// when short of memory) is an outage, never "no write": that would serve the answer
    /// stored before the write.
    #[test]
    fn a_marker_of_another_size_is_an_outage() {
        let store = MemoryStore::default();
        let (mut a, mut b) = (cache(&store), cache(&store));
        assert_eq!(fetch(&mut a, "http://h/x", "", &answer("old", &[])), None);
        b.written(
            &Service::parse("name=Svc; url=http://h/").unwrap(),
            "http://h/x",
            &answer("", &[]),
        );
        let url_key = b.url_key("http://h/x");
        store.values.borrow_mut().insert(url_key, (Vec::new(), 30));
        let mut c = cache(&store);
        assert_eq!(fetch(&mut c, "http://h/x", "", &answer("new", &[])), None);
        assert_eq!(
            fetch(&mut c, "http://h/x", "", &answer("newer", &[])),
            Some(b"new".to_vec())
        );
    }
}

//! A service's response cache as a whole: the per-process [`ResponseCache`] as the first
//! level, and optionally a [`SharedStore`] (a key-value store that every process and node of
//! the fleet reaches) behind it, with the `Cache-Control` and stale rules and the
//! invalidations that apply to both.
//!
//! Shared keys (printable, the same on every node for a service of the same name):
//! - `rest_client:NAME:epoch`: a random value replaced by a flush (no expiry);
//! - `rest_client:NAME:url:SHA256(url)`: a random value replaced by every write to the URL
//!   (expires after the TTL: by then every answer stored before the write has expired);
//! - `rest_client:NAME:answer:SHA256(epoch, url value, key)`: an answer, stored with its full
//!   key (compared on reading), its expiry time and its stale windows (kept that much longer).
//!   An answer stored before a flush or a write is under other values, so it is never found
//!   again, in any process;
//! - `rest_client:NAME:fill:SHA256(...)`: the fill counter of the answer of the same digest
//!   (see `fill`), for a few seconds.
//!
//! A store that fails or is slow is a miss (answers still come from the first level and the
//! network), and skipped for a while: see `shared_guard`.

use std::collections::hash_map::RandomState;
use std::fmt::Write;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::debug;
use sha2::{Digest, Sha256};

use super::cache_control::CacheControl;
use super::fill::{Claim, Fill};
use super::response_cache::{Generation, ResponseCache};
use super::service::Service;
use super::shared_guard::{GuardedStore, SharedStore, Urgency};
use super::stale::{Freshness, StaleLimits};
use crate::engine::result_code::ResultCode;
use crate::engine::shared::FillMarks;
use crate::engine::transfer::{Outcome, ResponseHead};

/// First bytes of a stored answer: the format, so that another one is a miss.
const ANSWER_MAGIC: &[u8] = b"rest_client answer 2\n";

/// A cached answer past its freshness that may still be served.
struct StaleAnswer {
    outcome: Outcome,
    freshness: Freshness,
}

/// A cacheable request that missed: what storing its answer needs, the answer past its
/// freshness it may be served instead, and its part in fetching the answer for the others.
pub struct Pending {
    key: Vec<u8>,
    url: String,
    /// When it was looked up: an answer's age counts from its request.
    started: Instant,
    /// The shared state it was looked up under; `None` without a reachable shared store.
    generation: Option<Generation>,
    stale: Option<Box<StaleAnswer>>,
    fill: Fill,
}

impl Pending {
    /// The cache key it missed.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Takes the answer to serve at once while this request fetches it again
    /// (stale-while-revalidate), if it has one.
    pub fn take_revalidating(&mut self) -> Option<Outcome> {
        if self.stale.as_ref()?.freshness != Freshness::Revalidate {
            return None;
        }
        self.take_stale()
    }

    /// Takes the answer that may replace a failure of its transfer (either stale window).
    pub fn take_stale(&mut self) -> Option<Outcome> {
        self.stale.take().map(|stale| Outcome {
            stale: true,
            ..stale.outcome
        })
    }

    /// Whether it waits for another process's or instance's transfer of the answer.
    pub fn waits(&self) -> bool {
        self.fill.waits()
    }
}

pub struct ServiceCache {
    /// Key prefix in the shared store: `rest_client:NAME:` (name in lower case).
    prefix: String,
    ttl: Duration,
    stale: StaleLimits,
    local: ResponseCache,
    shared: Option<GuardedStore>,
    /// This instance's fill marks (with a shared store).
    marks: Option<FillMarks>,
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
    /// The cache of `service` (which has a `cache_ttl`), with this process's connection to
    /// its shared store, if it has one, and the instance's fill marks.
    pub fn new(
        service: &Service,
        shared: Option<Box<dyn SharedStore>>,
        marks: Option<FillMarks>,
    ) -> Self {
        let limits = service.cache.unwrap_or(super::service::CacheLimits {
            ttl: Duration::ZERO,
            max_entries: 0,
            max_bytes: 0,
        });
        Self {
            prefix: format!("rest_client:{}:", service.name.to_ascii_lowercase()),
            ttl: limits.ttl,
            stale: service.stale,
            local: ResponseCache::new(limits),
            shared: shared
                .map(|store| GuardedStore::new(&service.name, store, service.shared_limits)),
            marks,
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
        let marker = |value: &[u8]| match value.len() {
            8 => Ok(()),
            // A marker is 8 bytes (see `fresh_value`): another value (an engine that answers
            // an empty "found" when short of memory) is no marker to trust, nor a missing one.
            n => Err(format!("a marker of {n} bytes")),
        };
        let epoch = store.get_checked(&epoch_key, "read", marker).ok()?;
        let url_value = store.get_checked(&url_key, "read", marker).ok()?;
        let mut generation = Generation::NONE;
        for (half, value) in generation.0.chunks_mut(8).zip([epoch, url_value]) {
            if let Some(value) = value {
                half.copy_from_slice(&value);
            }
        }
        Some(generation)
    }

    /// The digest an answer and its fill counter are stored under.
    fn digest(generation: Generation, key: &[u8]) -> String {
        hex_sha256(&[&generation.0, key])
    }

    /// How many answers this process's level holds.
    pub fn local_entries(&self) -> usize {
        self.local.len()
    }

    /// How long a miss waits for another process's or instance's transfer of its answer.
    pub fn wait_for_fill(&self) -> Duration {
        self.shared
            .as_ref()
            .map_or(Duration::ZERO, |store| store.limits().wait_for_fill)
    }

    /// Lookups made without the shared store so far, because it was skipped after a failure.
    pub fn shared_skips(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, GuardedStore::skipped_lookups)
    }

    /// A fresh answer for `key` (a request of `url`): from this process, else from the shared
    /// store (then kept in this process too). A miss gives what storing its answer needs, with
    /// the best answer past its freshness that may still be served.
    pub fn lookup(&mut self, key: Vec<u8>, url: String) -> Result<Outcome, Box<Pending>> {
        let started = Instant::now();
        let reachable = self.shared.as_mut().is_some_and(GuardedStore::begin_lookup);
        let generation = if reachable {
            self.generation(&url)
        } else {
            None
        };
        let found = self.find(&key, &url, started, generation);
        if let Some(store) = self.shared.as_mut() {
            store.end_lookup();
        }
        found.map_err(|stale| {
            Box::new(Pending {
                key,
                url,
                started,
                generation,
                stale,
                fill: Fill::default(),
            })
        })
    }

    /// The fresh answer for `key`, or the best one past its freshness still usable.
    fn find(
        &mut self,
        key: &[u8],
        url: &str,
        started: Instant,
        generation: Option<Generation>,
    ) -> Result<Outcome, Option<Box<StaleAnswer>>> {
        let mut stale = None;
        if let Some((outcome, stored_under, freshness)) = self.local.get(key) {
            // Without a reachable shared store, this process's copy answers alone.
            if generation.is_none_or(|now| now == stored_under) {
                if freshness == Freshness::Fresh {
                    return Ok(outcome);
                }
                stale = Some(Box::new(StaleAnswer { outcome, freshness }));
            } else {
                // Flushed or written to since, by this or another process.
                self.local.remove(key);
            }
        }
        let Some(generation) = generation else {
            return Err(stale);
        };
        match self.shared_answer(generation, key) {
            Some((outcome, Ok(fresh_for), limits)) => {
                self.local.put(
                    key.to_vec(),
                    url,
                    &outcome,
                    started + fresh_for,
                    limits,
                    generation,
                );
                Ok(outcome)
            }
            Some((outcome, Err(freshness), _)) => {
                // The store's copy is the newest one past its freshness.
                if stale.as_ref().is_none_or(|s| freshness >= s.freshness) {
                    stale = Some(Box::new(StaleAnswer { outcome, freshness }));
                }
                Err(stale)
            }
            None => Err(stale),
        }
    }

    /// The answer under `key` in the shared store, how long it stays fresh (or how it may be
    /// used past its freshness), and its stale windows.
    #[allow(clippy::type_complexity)]
    fn shared_answer(
        &mut self,
        generation: Generation,
        key: &[u8],
    ) -> Option<(Outcome, Result<Duration, Freshness>, StaleLimits)> {
        let answer_key = format!("{}answer:{}", self.prefix, Self::digest(generation, key));
        let value = self.shared.as_mut()?.get(&answer_key, "read").ok()?;
        let found = value.and_then(|v| decode_answer(&v, key));
        if found.is_none() {
            debug!("shared cache miss {answer_key}");
        }
        let (outcome, expires, limits) = found?;
        let now = unix_time().as_secs();
        let usable = match expires.checked_sub(now).filter(|&left| left > 0) {
            Some(left) => Ok(Duration::from_secs(left)),
            None => Err(limits.freshness(Some(Duration::from_secs(now - expires)))?),
        };
        Some((outcome, usable, limits))
    }

    /// Decides who fetches the answer `pending` missed, among the processes and instances
    /// that share the store (see `fill`): this process ([`Claim::Lead`]), another one
    /// ([`Claim::Wait`]: wait, then [`ServiceCache::look_again`]), or nobody any more
    /// ([`Claim::Filled`]: look again now). Without a reachable store, this process leads.
    pub fn claim(&mut self, pending: &mut Pending) -> Claim {
        let (Some(generation), Some(store)) = (pending.generation, self.shared.as_mut()) else {
            return Claim::Lead;
        };
        let digest = Self::digest(generation, &pending.key);
        let counter_key = format!("{}fill:{digest}", self.prefix);
        let (fill, claim) = Fill::claim(store, self.marks, &digest, counter_key);
        pending.fill = fill;
        claim
    }

    /// Whether the transfer `pending` waits for is over (or given up).
    pub fn awaited_over(&mut self, pending: &Pending) -> bool {
        pending.fill.awaited_over(self.shared.as_mut(), self.marks)
    }

    /// After a wait (or [`Claim::Filled`]): the answer, or `pending` back (with a new look
    /// up's stale answer) for this process to fetch it, keeping its part in the fill.
    pub fn look_again(&mut self, pending: Pending) -> Result<Outcome, Box<Pending>> {
        let Pending { key, url, fill, .. } = pending;
        self.lookup(key, url).map_err(|mut again| {
            again.fill = fill;
            again.fill.go_alone();
            again
        })
    }

    /// Keeps a successful (2xx) answer of a request that missed, as its `Cache-Control`
    /// allows: nowhere (`no-store`, `no-cache`), in this process only (`private`), else in
    /// both levels; `max-age` (`s-maxage` for the shared level) can shorten the TTL, and
    /// `stale-if-error` / `stale-while-revalidate` the stale windows. Then (stored or not) the
    /// request's part in the fill is over.
    pub fn store(&mut self, pending: Pending, outcome: &Outcome) {
        let Pending {
            key,
            url,
            started,
            generation,
            fill,
            ..
        } = pending;
        let control = CacheControl::of(&outcome.head);
        if is_success(outcome) && !control.no_store {
            self.keep(key, &url, started, generation, &control, outcome);
        }
        fill.finish(self.shared.as_mut());
    }

    fn keep(
        &mut self,
        key: Vec<u8>,
        url: &str,
        started: Instant,
        generation: Option<Generation>,
        control: &CacheControl,
        outcome: &Outcome,
    ) {
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
        let shared_stale = self.stale.for_answer(control, true);
        let shared = match generation {
            Some(generation) if !control.private && shared_for > 0 => {
                let expires = unix_time().as_secs() + shared_for;
                Some((
                    format!("{}answer:{}", self.prefix, Self::digest(generation, &key)),
                    encode_answer(&key, expires, shared_stale, outcome),
                ))
            }
            _ => None,
        };
        let local_stale = self.stale.for_answer(control, false);
        self.local
            .put(key, url, outcome, local_until, local_stale, tag);
        if let (Some((answer_key, value)), Some(store)) = (shared, self.shared.as_mut()) {
            let kept_for = shared_for.saturating_add(shared_stale.longest().as_secs());
            let ttl_secs = u32::try_from(kept_for).unwrap_or(u32::MAX);
            let _ = store.set(&answer_key, &value, ttl_secs, "store", Urgency::Normal);
        }
    }

    /// A write to `url` succeeded: its answers (every header and credential variant) are
    /// dropped here and, through the shared store, in every process.
    pub fn invalidate(&mut self, url: &str) {
        self.local.invalidate_url(url);
        let url_key = self.url_key(url);
        let ttl_secs =
            u32::try_from((self.ttl + self.stale.longest()).as_secs().max(1)).unwrap_or(u32::MAX);
        if let Some(store) = self.shared.as_mut() {
            let _ = store.set(
                &url_key,
                &fresh_value(),
                ttl_secs,
                "invalidate",
                Urgency::Always,
            );
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
            Some(store) => store.set(&epoch_key, &fresh_value(), 0, "flush", Urgency::Always),
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

/// A stored answer: the format, the full key, the expiry (Unix seconds), the stale windows
/// (seconds: if error, while revalidating), status, Content-Type (a presence byte, then the
/// field), status line, header lines and body.
fn encode_answer(key: &[u8], expires: u64, stale: StaleLimits, outcome: &Outcome) -> Vec<u8> {
    let (status_line, lines) = outcome.head.parts();
    let mut value = Vec::with_capacity(ANSWER_MAGIC.len() + key.len() + outcome.body.len() + 256);
    value.extend_from_slice(ANSWER_MAGIC);
    put_field(&mut value, key);
    value.extend_from_slice(&expires.to_le_bytes());
    value.extend_from_slice(&stale.if_error.as_secs().to_le_bytes());
    value.extend_from_slice(&stale.while_revalidate.as_secs().to_le_bytes());
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

/// The answer stored in `value`, its expiry (Unix seconds) and its stale windows, if it is the
/// answer to `key` (another key, a digest collision, or a value of another format is a miss)
/// and well-formed.
fn decode_answer(value: &[u8], key: &[u8]) -> Option<(Outcome, u64, StaleLimits)> {
    let mut reader = Reader(value.strip_prefix(ANSWER_MAGIC)?);
    if reader.field()? != key {
        return None;
    }
    let expires = reader.u64()?;
    let stale = StaleLimits {
        if_error: Duration::from_secs(reader.u64()?),
        while_revalidate: Duration::from_secs(reader.u64()?),
    };
    let status = u32::try_from(reader.u64()?).ok()?;
    let has_content_type = reader.bytes(1)? == [1];
    let content_type = reader.field()?;
    let head = ResponseHead::from_parts(reader.field()?, reader.field()?);
    let body = reader.field()?;
    if !reader.0.is_empty() {
        return None;
    }
    let mut outcome = Outcome::failed(ResultCode::Ok);
    outcome.status = status;
    outcome.content_type = has_content_type.then(|| content_type.to_vec());
    outcome.head = head;
    outcome.body = body.to_vec();
    Some((outcome, expires, stale))
}

#[cfg(test)]
mod tests {
    use super::super::shared_guard::tests::MemoryStore;
    use super::*;

    fn answer(body: &str, headers: &[&str]) -> Outcome {
        let mut outcome = Outcome::failed(ResultCode::Ok);
        outcome.status = 200;
        outcome.body = body.as_bytes().to_vec();
        outcome.content_type = Some(b"text/plain".to_vec());
        let lines: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
        outcome.head = ResponseHead::from_parts(b"HTTP/1.1 200 OK\r\n", lines.as_bytes());
        outcome
    }

    /// A cache of service Svc (TTL 30 s, and `items`) over `store`, as one process has it.
    fn cache_with(store: &MemoryStore, items: &str) -> ServiceCache {
        let service = Service::parse(&format!(
            "name=Svc; url=http://h/; cache_ttl=30; cache=local://; cache_timeout_ms=1000; {items}"
        ))
        .unwrap();
        ServiceCache::new(&service, Some(Box::new(store.clone())), None)
    }

    fn cache(store: &MemoryStore) -> ServiceCache {
        cache_with(store, "")
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
                cache.store(*pending, fill);
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
        // Never skipped: the store is asked again at once when it is back.
        let mut a = cache_with(&store, "cache_skip_ms=0");
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

    #[test]
    fn answers_past_their_freshness_stay_for_their_stale_windows() {
        let store = MemoryStore::default();
        let items = "stale_if_error=30; stale_while_revalidate=5";
        let mut a = cache_with(&store, &format!("cache_ttl=2; {items}"));
        fetch(&mut a, "http://h/s", "", &answer("s", &[]));
        fetch(
            &mut a,
            "http://h/m",
            "",
            &answer("m", &["Cache-Control: must-revalidate"]),
        );
        let ttls: Vec<u32> = {
            let values = store.values.borrow();
            let mut ttls: Vec<u32> = values
                .iter()
                .filter(|(k, _)| k.contains(":answer:"))
                .map(|(_, (_, ttl))| *ttl)
                .collect();
            ttls.sort();
            ttls
        };
        assert_eq!(
            ttls,
            [1, 31],
            "kept for the stale window too, unless must-revalidate"
        );
        std::thread::sleep(Duration::from_millis(2100));
        // Another process finds the store's copy past its freshness: served while revalidated.
        let mut b = cache_with(&store, &format!("cache_ttl=2; {items}"));
        let mut pending = b
            .lookup(b"http://h/s|".to_vec(), "http://h/s".into())
            .err()
            .unwrap();
        let stale = pending
            .take_revalidating()
            .expect("within stale-while-revalidate");
        assert!(stale.stale && stale.body == b"s");
        assert!(pending.take_stale().is_none(), "taken");
        let mut pending = b
            .lookup(b"http://h/m|".to_vec(), "http://h/m".into())
            .err()
            .unwrap();
        assert!(pending.take_stale().is_none());
        // This process's own copy too.
        let mut pending = a
            .lookup(b"http://h/s|".to_vec(), "http://h/s".into())
            .err()
            .unwrap();
        assert!(pending.take_revalidating().is_some());
    }

    #[test]
    fn one_instance_fetches_and_the_others_wait_for_it() {
        let store = MemoryStore::default();
        let (mut a, mut b) = (cache(&store), cache(&store));
        let key = || b"http://h/f|".to_vec();
        let mut first = a.lookup(key(), "http://h/f".into()).err().unwrap();
        assert_eq!(a.claim(&mut first), Claim::Lead);
        let mut second = b.lookup(key(), "http://h/f".into()).err().unwrap();
        assert_eq!(b.claim(&mut second), Claim::Wait);
        assert!(second.waits() && !b.awaited_over(&second));
        a.store(*first, &answer("f", &[]));
        assert!(b.awaited_over(&second));
        assert_eq!(
            b.look_again(*second).ok().map(|o| o.body),
            Some(b"f".to_vec())
        );
        // A fill that ended without an answer (a 404): the next miss fetches at once.
        let mut failed = answer("nf", &[]);
        failed.status = 404;
        let mut first = a
            .lookup(b"http://h/g|".to_vec(), "http://h/g".into())
            .err()
            .unwrap();
        assert_eq!(a.claim(&mut first), Claim::Lead);
        a.store(*first, &failed);
        let mut next = b
            .lookup(b"http://h/g|".to_vec(), "http://h/g".into())
            .err()
            .unwrap();
        assert_eq!(b.claim(&mut next), Claim::Filled);
        let mut again = b.look_again(*next).err().unwrap();
        assert!(!again.waits());
        assert!(again.take_stale().is_none());
        // Without waiting (cache_lock_ms=0), every miss fetches.
        let mut c = cache_with(&store, "cache_lock_ms=0");
        let mut own = c
            .lookup(b"http://h/h|".to_vec(), "http://h/h".into())
            .err()
            .unwrap();
        assert_eq!(c.claim(&mut own), Claim::Lead);
        let mut other = c
            .lookup(b"http://h/h|".to_vec(), "http://h/h".into())
            .err()
            .unwrap();
        assert_eq!(c.claim(&mut other), Claim::Lead);
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

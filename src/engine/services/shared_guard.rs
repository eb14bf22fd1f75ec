//! The shared level of a response cache as an upstream of its own: each operation on the
//! store is timed, a lookup never spends more than `cache_timeout_ms` on it (the operations
//! left once over are not made), and after a failed operation, or [`SLOW_IN_A_ROW`] slow ones
//! in a row, the store is skipped for `cache_skip_ms` (logged, at most once per
//! [`OUTAGE_LOG_INTERVAL`] per service and process); the first call after that probes it
//! again. Invalidations and flushes are always
//! tried: a write must reach the other processes whenever the store can take it.
//!
//! An operation itself is bounded by the store's own limits only (cachedb_redis:
//! `connect_timeout` and `query_timeout`, see extensions.md): the store is called in the
//! process's thread.

use std::time::{Duration, Instant};

use log::warn;

use crate::engine::throttled_log::ThrottledLog;

/// Least time between two log lines about a failing shared store (per service and process).
const OUTAGE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Operations past their time, one after the other, that start a skip. One alone is mostly
/// the host's doing (the worker waited for a core), not the store's: skipping the store for it
/// would send every miss of the next `cache_skip_ms` to the backend.
pub const SLOW_IN_A_ROW: u32 = 3;

/// A key-value store shared by processes (and nodes): the host's (OpenSIPS's cachedb).
pub trait SharedStore {
    /// The value under `key`, `Ok(None)` when there is none.
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String>;
    /// Stores `value` under `key` for `ttl_secs` seconds (0: until replaced).
    fn set(&mut self, key: &str, value: &[u8], ttl_secs: u32) -> Result<(), String>;
    /// Adds `delta` to the counter under `key` (created at 0, expiring after `ttl_secs`) and
    /// returns its new value, as one atomic step; `Ok(None)` for a store that cannot count.
    fn add(&mut self, key: &str, delta: i32, ttl_secs: u32) -> Result<Option<i64>, String>;
}

/// How a service uses its shared level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedLimits {
    /// `cache_timeout_ms`: the most a lookup spends on the store.
    pub timeout: Duration,
    /// `cache_skip_ms`: how long the store is skipped after a failed operation or
    /// [`SLOW_IN_A_ROW`] slow ones in a row.
    pub skip: Duration,
    /// `cache_lock_ms`: how long a miss waits for another process's or instance's transfer of
    /// the same answer before it asks the backend itself (0: it never waits).
    pub wait_for_fill: Duration,
}

impl Default for SharedLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(5),
            skip: Duration::from_millis(1000),
            wait_for_fill: Duration::from_millis(100),
        }
    }
}

/// Rate-limited reports of a failing store.
#[derive(Default)]
struct OutageLog(ThrottledLog);

impl OutageLog {
    fn report(&mut self, service: &str, what: &str, skip: Duration) {
        let Some(more) = self.0.happened(OUTAGE_LOG_INTERVAL, "failures") else {
            return;
        };
        let skipped = if skip.is_zero() {
            String::new()
        } else {
            format!(", skipped for {} ms", skip.as_millis())
        };
        warn!("service {service}: the shared cache {what}; calls go on without it{skipped}{more}");
    }
}

/// Whether an operation may be skipped while the store is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Reads, stores of answers, fill counters: skipped while the store is.
    Normal,
    /// Invalidations and flushes: always tried.
    Always,
}

/// A service's store, used within its limits.
pub struct GuardedStore {
    service: String,
    store: Box<dyn SharedStore>,
    limits: SharedLimits,
    skipped_until: Option<Instant>,
    /// The start of the running lookup, and the end of its time on the store.
    lookup_began: Option<Instant>,
    lookup_deadline: Option<Instant>,
    /// Lookups made without the store because it was skipped.
    skipped_lookups: u64,
    /// Operations past their time since the last one within it.
    slow_in_a_row: u32,
    log: OutageLog,
}

impl GuardedStore {
    pub fn new(service: &str, store: Box<dyn SharedStore>, limits: SharedLimits) -> Self {
        Self {
            service: service.to_string(),
            store,
            limits,
            skipped_until: None,
            lookup_began: None,
            lookup_deadline: None,
            skipped_lookups: 0,
            slow_in_a_row: 0,
            log: OutageLog::default(),
        }
    }

    pub fn limits(&self) -> SharedLimits {
        self.limits
    }

    /// Lookups made without the store so far, because it was skipped.
    pub fn skipped_lookups(&self) -> u64 {
        self.skipped_lookups
    }

    fn skipped(&mut self) -> bool {
        match self.skipped_until {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                // The next operation probes the store.
                self.skipped_until = None;
                false
            }
            None => false,
        }
    }

    /// Starts a lookup's time on the store; false (and counted) while the store is skipped.
    pub fn begin_lookup(&mut self) -> bool {
        if self.skipped() {
            self.skipped_lookups += 1;
            return false;
        }
        let now = Instant::now();
        self.lookup_began = Some(now);
        self.lookup_deadline = Some(now + self.limits.timeout);
        true
    }

    pub fn end_lookup(&mut self) {
        self.lookup_began = None;
        self.lookup_deadline = None;
    }

    /// Runs `operation` on the store unless it is skipped (or the lookup's time is spent),
    /// timing it; a failure, or the [`SLOW_IN_A_ROW`]th operation past its time, starts a
    /// skip. An operation past its time ends the lookup's time on the store.
    fn run<R>(
        &mut self,
        action: &str,
        urgency: Urgency,
        operation: impl FnOnce(&mut dyn SharedStore) -> Result<R, String>,
    ) -> Result<R, String> {
        let started = Instant::now();
        let deadline = self
            .lookup_deadline
            .unwrap_or(started + self.limits.timeout);
        if urgency == Urgency::Normal && (self.skipped() || started >= deadline) {
            return Err("skipped".into());
        }
        let result = operation(self.store.as_mut());
        let ended = Instant::now();
        let slow = ended > deadline;
        self.slow_in_a_row = if slow { self.slow_in_a_row + 1 } else { 0 };
        let problem = match &result {
            Err(e) => Some(format!("failed to {action} ({e})")),
            Ok(_) if self.slow_in_a_row >= SLOW_IN_A_ROW => Some(format!(
                "took {} ms to {action}, {SLOW_IN_A_ROW} times in a row over cache_timeout_ms ({})",
                (ended - self.lookup_began.unwrap_or(started)).as_millis(),
                self.limits.timeout.as_millis()
            )),
            Ok(_) => None,
        };
        if let Some(problem) = problem {
            self.slow_in_a_row = 0;
            if !self.limits.skip.is_zero() {
                self.skipped_until = Some(Instant::now() + self.limits.skip);
            }
            self.log.report(&self.service, &problem, self.limits.skip);
        }
        if slow || result.is_err() {
            // A slow answer is used all the same; what is left of the lookup is not made.
            self.lookup_deadline = self.lookup_deadline.map(|_| started);
        }
        result
    }

    pub fn get(&mut self, key: &str, action: &str) -> Result<Option<Vec<u8>>, String> {
        self.get_checked(key, action, |_| Ok(()))
    }

    /// [`get`](Self::get), where a value that `check` refuses is a failure of the store.
    pub fn get_checked(
        &mut self,
        key: &str,
        action: &str,
        check: impl FnOnce(&[u8]) -> Result<(), String>,
    ) -> Result<Option<Vec<u8>>, String> {
        self.run(action, Urgency::Normal, |store| {
            let value = store.get(key)?;
            value.as_deref().map_or(Ok(()), check)?;
            Ok(value)
        })
    }

    pub fn set(
        &mut self,
        key: &str,
        value: &[u8],
        ttl_secs: u32,
        action: &str,
        urgency: Urgency,
    ) -> Result<(), String> {
        self.run(action, urgency, |store| store.set(key, value, ttl_secs))
    }

    pub fn add(&mut self, key: &str, delta: i32, ttl_secs: u32) -> Result<Option<i64>, String> {
        self.run("count a fill", Urgency::Normal, |store| {
            store.add(key, delta, ttl_secs)
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use super::*;

    /// Values by key, with the TTL they were stored for.
    pub type Values = HashMap<String, (Vec<u8>, u32)>;

    /// A store shared by the caches of one test (as cachedb is by processes), that can fail
    /// or be slow, and counts its operations.
    #[derive(Clone, Default)]
    pub struct MemoryStore {
        pub values: Rc<RefCell<Values>>,
        pub down: Rc<RefCell<bool>>,
        pub delay: Rc<RefCell<Duration>>,
        pub operations: Rc<RefCell<u64>>,
    }

    impl MemoryStore {
        fn enter(&self) -> Result<(), String> {
            *self.operations.borrow_mut() += 1;
            std::thread::sleep(*self.delay.borrow());
            if *self.down.borrow() {
                return Err("down".into());
            }
            Ok(())
        }
    }

    impl SharedStore for MemoryStore {
        fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
            self.enter()?;
            Ok(self.values.borrow().get(key).map(|(v, _)| v.clone()))
        }
        fn set(&mut self, key: &str, value: &[u8], ttl_secs: u32) -> Result<(), String> {
            self.enter()?;
            self.values
                .borrow_mut()
                .insert(key.into(), (value.to_vec(), ttl_secs));
            Ok(())
        }
        fn add(&mut self, key: &str, delta: i32, ttl_secs: u32) -> Result<Option<i64>, String> {
            self.enter()?;
            let mut values = self.values.borrow_mut();
            let entry = values
                .entry(key.into())
                .or_insert((b"0".to_vec(), ttl_secs));
            let value = String::from_utf8_lossy(&entry.0)
                .parse::<i64>()
                .unwrap_or(0)
                + i64::from(delta);
            *entry = (value.to_string().into_bytes(), ttl_secs);
            Ok(Some(value))
        }
    }

    fn guarded(store: &MemoryStore, timeout_ms: u64, skip_ms: u64) -> GuardedStore {
        let limits = SharedLimits {
            timeout: Duration::from_millis(timeout_ms),
            skip: Duration::from_millis(skip_ms),
            ..SharedLimits::default()
        };
        GuardedStore::new("svc", Box::new(store.clone()), limits)
    }

    #[test]
    fn a_failure_skips_the_store_until_one_call_probes_it_again() {
        let store = MemoryStore::default();
        let mut guard = guarded(&store, 1000, 50);
        *store.down.borrow_mut() = true;
        assert!(guard.begin_lookup());
        assert!(guard.get("k", "read").is_err());
        guard.end_lookup();
        *store.down.borrow_mut() = false;
        assert!(!guard.begin_lookup(), "skipped");
        assert_eq!(guard.skipped_lookups(), 1);
        assert!(
            guard.get("k", "read").is_err(),
            "no operation while skipped"
        );
        assert_eq!(*store.operations.borrow(), 1);
        // Writes still reach it.
        assert!(
            guard
                .set("w", b"1", 0, "invalidate", Urgency::Always)
                .is_ok()
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(guard.begin_lookup(), "probed again");
        assert_eq!(guard.get("w", "read"), Ok(Some(b"1".to_vec())));
    }

    #[test]
    fn a_lookup_stops_at_its_time_on_the_store() {
        let store = MemoryStore::default();
        let mut guard = guarded(&store, 5, 1000);
        *store.delay.borrow_mut() = Duration::from_millis(20);
        for lookup in 1..=SLOW_IN_A_ROW {
            assert!(
                guard.begin_lookup(),
                "not skipped before slow lookup {lookup}"
            );
            assert_eq!(guard.get("a", "read"), Ok(None), "a slow answer is used");
            assert!(
                guard.get("b", "read").is_err(),
                "nothing more in this lookup"
            );
            guard.end_lookup();
        }
        assert_eq!(*store.operations.borrow(), u64::from(SLOW_IN_A_ROW));
        assert!(
            !guard.begin_lookup(),
            "skipped after slow operations in a row"
        );
    }

    #[test]
    fn one_slow_operation_among_quick_ones_starts_no_skip() {
        let store = MemoryStore::default();
        let mut guard = guarded(&store, 5, 1000);
        for _ in 0..2 * SLOW_IN_A_ROW {
            *store.delay.borrow_mut() = Duration::from_millis(20);
            assert!(guard.begin_lookup());
            assert_eq!(guard.get("a", "read"), Ok(None));
            guard.end_lookup();
            *store.delay.borrow_mut() = Duration::ZERO;
            assert!(guard.begin_lookup(), "not skipped");
            assert_eq!(guard.get("a", "read"), Ok(None));
            guard.end_lookup();
        }
    }
}

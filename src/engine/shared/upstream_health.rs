//! The health of the services' upstreams (their base URLs), shared by every process of the
//! node. Per URL: its consecutive failures, its ejection (until when, how many in a row), the
//! process that probes it once the ejection is over, until when a `Retry-After` marks it busy,
//! and counters. Per service: the round-robin turn, the calls in flight (the admission limit)
//! and the retry budget's counts, in one-second buckets.
//!
//! A read is an atomic load; a count an atomic add; the transitions that write several words
//! (an ejection, a restoration, a probe taken, a budget bucket started) hold the service's
//! [`SharedLock`] over atomics only, no system call. Times are [`Millis`] since the map was
//! made, on the monotonic clock every process shares. A probe is held by one process: its
//! [`ProcessId`] in the URL's probe word, with the time past which it is given up (its call's
//! deadline); a holder that died is replaced after that time, or sooner once a process (at
//! most one a second) finds it gone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::lock::{SharedLock, SharedLockGuard};
use super::process::ProcessId;
use super::region::SharedRegion;

/// Milliseconds since the map was made, plus one: 0 means "never" in shared words.
pub type Millis = u64;

/// Per service: its lock, round-robin turn, calls in flight, then the budget buckets.
const LOCK: usize = 0;
const TURN: usize = 1;
const IN_FLIGHT: usize = 2;
const BUDGET: usize = 3;
/// One-second buckets of the retry budget: [second + 1 (0: unused), calls, retries].
const BUCKETS: u64 = 10;
const BUCKET_WORDS: usize = 3;
const SERVICE_WORDS: usize = BUDGET + BUCKETS as usize * BUCKET_WORDS;

/// Per URL, after its service's words.
const FAILURES: usize = 0;
const EJECTED_UNTIL: usize = 1;
const EJECTED_AT: usize = 2;
const EJECTIONS_IN_ROW: usize = 3;
const PROBE_HOLDER: usize = 4;
const PROBE_UNTIL: usize = 5;
const PROBE_CHECKED: usize = 6;
const BUSY_UNTIL: usize = 7;
const EJECTIONS: usize = 8;
const ATTEMPTS: usize = 9;
const FAILED_ATTEMPTS: usize = 10;
const URL_WORDS: usize = 11;

/// How often (at most, over every process) a probe's holder is checked for being alive.
const HOLDER_CHECK_INTERVAL: Millis = 1000;

/// Whether a URL may take a call now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    Healthy,
    /// A `Retry-After` asked for no calls until then.
    Busy {
        until: Millis,
    },
    Ejected {
        until: Millis,
    },
    /// Its ejection is over: the next call probes it.
    ProbeDue,
    /// A process (this pid) probes it.
    Probing {
        pid: i32,
    },
}

/// An ejection that a failure caused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ejection {
    pub duration: Duration,
    /// Its place in the ejections in a row (1: the first since the URL was healthy).
    pub in_row: u32,
}

/// What [`UrlHealth::snapshot`] shows of a URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UrlSnapshot {
    pub availability: Availability,
    pub consecutive_failures: u64,
    pub ejections_in_row: u64,
    pub ejections: u64,
    pub attempts: u64,
    pub failed_attempts: u64,
}

/// Every service's upstream health (cloned into each process after fork).
#[derive(Clone)]
pub struct UpstreamHealth {
    words: &'static [AtomicU64],
    /// Per service, the offset of its words and its number of URLs.
    services: Vec<(usize, usize)>,
    epoch: Instant,
}

impl UpstreamHealth {
    /// Maps the health of services with `urls[i]` URLs each: call before forking the
    /// processes that share it.
    pub fn map(urls: &[usize]) -> Result<Self, String> {
        let mut services = Vec::with_capacity(urls.len());
        let mut total = 0;
        for &count in urls {
            services.push((total, count));
            total += SERVICE_WORDS + count * URL_WORDS;
        }
        Ok(Self {
            words: SharedRegion::map(total)?.words(),
            services,
            epoch: Instant::now(),
        })
    }

    /// Now, as the shared words count time.
    pub fn now(&self) -> Millis {
        self.at(Instant::now())
    }

    /// `instant` as the shared words count time (the map's start for an earlier one).
    pub fn at(&self, instant: Instant) -> Millis {
        instant.saturating_duration_since(self.epoch).as_millis() as Millis + 1
    }

    /// Service `index`'s health (`None`: no such service).
    pub fn service(&self, index: usize) -> Option<ServiceHealth<'static>> {
        let &(offset, urls) = self.services.get(index)?;
        Some(ServiceHealth {
            words: &self.words[offset..offset + SERVICE_WORDS + urls * URL_WORDS],
            urls,
        })
    }
}

/// One service's health.
#[derive(Clone, Copy)]
pub struct ServiceHealth<'a> {
    words: &'a [AtomicU64],
    urls: usize,
}

fn second(now: Millis) -> u64 {
    now / 1000
}

impl<'a> ServiceHealth<'a> {
    fn lock(&self) -> SharedLockGuard<'a> {
        SharedLock::new(&self.words[LOCK]).lock()
    }

    /// URL `index`'s health.
    pub fn url(&self, index: usize) -> Option<UrlHealth<'a>> {
        (index < self.urls).then(|| {
            let start = SERVICE_WORDS + index * URL_WORDS;
            UrlHealth {
                words: &self.words[start..start + URL_WORDS],
                lock: &self.words[LOCK],
            }
        })
    }

    /// The next round-robin turn (every process counts the same turns).
    pub fn next_turn(&self) -> u64 {
        self.words[TURN].fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a call in flight, unless `max` (0: no limit) are already.
    pub fn admit(&self, max: u32) -> bool {
        let before = self.words[IN_FLIGHT].fetch_add(1, Ordering::AcqRel);
        if max > 0 && before >= u64::from(max) {
            self.leave();
            return false;
        }
        true
    }

    /// A call admitted by [`ServiceHealth::admit`] ended.
    pub fn leave(&self) {
        let _ = self.words[IN_FLIGHT]
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    pub fn in_flight(&self) -> u64 {
        self.words[IN_FLIGHT].load(Ordering::Relaxed)
    }

    /// The budget bucket of `now`'s second, started if it was another second's.
    fn bucket(&self, now: Millis) -> &'a [AtomicU64] {
        let id = second(now) + 1;
        let start = BUDGET + (second(now) % BUCKETS) as usize * BUCKET_WORDS;
        let bucket = &self.words[start..start + BUCKET_WORDS];
        if bucket[0].load(Ordering::Acquire) != id {
            let _lock = self.lock();
            if bucket[0].load(Ordering::Relaxed) != id {
                bucket[1].store(0, Ordering::Relaxed);
                bucket[2].store(0, Ordering::Relaxed);
                bucket[0].store(id, Ordering::Release);
            }
        }
        bucket
    }

    /// Counts a call in the retry budget's window.
    pub fn count_call(&self, now: Millis) {
        self.bucket(now)[1].fetch_add(1, Ordering::Relaxed);
    }

    /// The calls and retries counted over the window that ends with `now`'s second.
    pub fn budget_counts(&self, now: Millis) -> (u64, u64) {
        let newest = second(now) + 1;
        let mut counts = (0, 0);
        for bucket in self.words[BUDGET..SERVICE_WORDS].chunks_exact(BUCKET_WORDS) {
            let id = bucket[0].load(Ordering::Acquire);
            if id != 0 && id <= newest && newest - id < BUCKETS {
                counts.0 += bucket[1].load(Ordering::Relaxed);
                counts.1 += bucket[2].load(Ordering::Relaxed);
            }
        }
        counts
    }

    /// Takes one retry from the budget (`min` retries in the window, plus `percent` % of its
    /// calls); false when it is spent.
    pub fn take_retry(&self, now: Millis, percent: u32, min: u32) -> bool {
        let bucket = self.bucket(now);
        let _lock = self.lock();
        let (calls, retries) = self.budget_counts(now);
        if retries >= u64::from(min) + calls * u64::from(percent) / 100 {
            return false;
        }
        bucket[2].fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// One URL's health.
#[derive(Clone, Copy)]
pub struct UrlHealth<'a> {
    words: &'a [AtomicU64],
    /// The service's lock.
    lock: &'a AtomicU64,
}

impl<'a> UrlHealth<'a> {
    fn load(&self, word: usize) -> u64 {
        self.words[word].load(Ordering::Acquire)
    }

    fn store(&self, word: usize, value: u64) {
        self.words[word].store(value, Ordering::Release);
    }

    fn lock(&self) -> SharedLockGuard<'a> {
        SharedLock::new(self.lock).lock()
    }

    pub fn availability(&self, now: Millis) -> Availability {
        let until = self.load(EJECTED_UNTIL);
        if until != 0 {
            return match self.load(PROBE_HOLDER) {
                _ if now < until => Availability::Ejected { until },
                0 => Availability::ProbeDue,
                holder => Availability::Probing {
                    pid: ProcessId::from_word(holder).map_or(0, |p| p.pid),
                },
            };
        }
        match self.load(BUSY_UNTIL) {
            until if until > now => Availability::Busy { until },
            _ => Availability::Healthy,
        }
    }

    /// When its last ejection started (0: never ejected).
    pub fn ejected_at(&self) -> Millis {
        self.load(EJECTED_AT)
    }

    /// Takes the probe of an ejected URL whose ejection is over, for this process until
    /// `until` (its call's deadline): when nobody holds it, when its holder's time is over,
    /// or when its holder died. False if another process probes it, or it is not due.
    pub fn try_probe(&self, now: Millis, until: Millis) -> bool {
        let ejected_until = self.load(EJECTED_UNTIL);
        if ejected_until == 0 || now < ejected_until {
            return false;
        }
        let holder = self.load(PROBE_HOLDER);
        let given_up = holder != 0 && now > self.load(PROBE_UNTIL);
        // The liveness check reads /proc: outside the lock, by one process a second at most.
        if holder != 0 && !given_up && !self.holder_died(holder, now) {
            return false;
        }
        let me = ProcessId::current().word();
        let _lock = self.lock();
        if self.load(PROBE_HOLDER) != holder || self.load(EJECTED_UNTIL) != ejected_until {
            return false;
        }
        self.store(PROBE_HOLDER, me);
        self.store(PROBE_UNTIL, until);
        true
    }

    /// Whether the probe's `holder` died, checked by this process if no process checked in the
    /// last [`HOLDER_CHECK_INTERVAL`].
    fn holder_died(&self, holder: u64, now: Millis) -> bool {
        let checked = self.load(PROBE_CHECKED);
        if now.saturating_sub(checked) < HOLDER_CHECK_INTERVAL
            || self.words[PROBE_CHECKED]
                .compare_exchange(checked, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        ProcessId::from_word(holder).is_some_and(|h| !h.is_running())
    }

    /// Gives this process's probe back without an outcome (its call ended before its attempt
    /// did).
    pub fn release_probe(&self) {
        let me = ProcessId::current().word();
        let _lock = self.lock();
        if self.load(PROBE_HOLDER) == me {
            self.store(PROBE_HOLDER, 0);
        }
    }

    /// An attempt got a good answer. A `probe` (this process's, or an attempt on an ejected
    /// URL made anyway) restores an ejected URL: true if it did.
    pub fn succeeded(&self, probe: bool) -> bool {
        self.words[ATTEMPTS].fetch_add(1, Ordering::Relaxed);
        if !probe || self.load(EJECTED_UNTIL) == 0 {
            if self.load(FAILURES) != 0 && self.load(EJECTED_UNTIL) == 0 {
                self.store(FAILURES, 0);
            }
            return false;
        }
        let _lock = self.lock();
        if self.load(EJECTED_UNTIL) == 0 {
            return false;
        }
        self.store(FAILURES, 0);
        self.store(EJECTIONS_IN_ROW, 0);
        self.store(EJECTED_UNTIL, 0);
        self.store(PROBE_HOLDER, 0);
        true
    }

    /// An attempt failed at `now`. This process's `probe` ejects the URL again, for longer;
    /// otherwise the `eject_after`-th consecutive failure (0: never) of a URL that is not
    /// ejected ejects it for `ejection(1)`. Returns the ejection it caused.
    pub fn failed(
        &self,
        now: Millis,
        probe: bool,
        eject_after: u32,
        ejection: impl Fn(u32) -> Duration,
    ) -> Option<Ejection> {
        self.words[ATTEMPTS].fetch_add(1, Ordering::Relaxed);
        self.words[FAILED_ATTEMPTS].fetch_add(1, Ordering::Relaxed);
        let failures = self.words[FAILURES].fetch_add(1, Ordering::AcqRel) + 1;
        let due = eject_after > 0 && failures >= u64::from(eject_after);
        if !probe && (!due || self.load(EJECTED_UNTIL) != 0) {
            return None;
        }
        let me = ProcessId::current().word();
        let _lock = self.lock();
        let ejected = self.load(EJECTED_UNTIL) != 0;
        // A probe taken over meanwhile, or a failure of an attempt made anyway (panic).
        if ejected && !(probe && self.load(PROBE_HOLDER) == me) {
            return None;
        }
        if !ejected && !due {
            return None;
        }
        let in_row = (self.load(EJECTIONS_IN_ROW) + 1).min(u64::from(u32::MAX)) as u32;
        let duration = ejection(in_row);
        self.store(EJECTIONS_IN_ROW, u64::from(in_row));
        self.store(EJECTED_UNTIL, now + duration.as_millis() as Millis);
        self.store(EJECTED_AT, now);
        self.store(PROBE_HOLDER, 0);
        self.words[EJECTIONS].fetch_add(1, Ordering::Relaxed);
        Some(Ejection { duration, in_row })
    }

    /// A `Retry-After` asked for no calls for `duration` from `now`.
    pub fn busy(&self, now: Millis, duration: Duration) {
        let until = now + duration.as_millis() as Millis;
        self.words[BUSY_UNTIL].fetch_max(until, Ordering::AcqRel);
    }

    pub fn snapshot(&self, now: Millis) -> UrlSnapshot {
        UrlSnapshot {
            availability: self.availability(now),
            consecutive_failures: self.load(FAILURES),
            ejections_in_row: self.load(EJECTIONS_IN_ROW),
            ejections: self.load(EJECTIONS),
            attempts: self.load(ATTEMPTS),
            failed_attempts: self.load(FAILED_ATTEMPTS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ejection(in_row: u32) -> Duration {
        Duration::from_secs(30 * u64::from(in_row)).min(Duration::from_secs(300))
    }

    /// A live process other than this one (the test runner's parent).
    fn other_process() -> u64 {
        let parent = std::os::unix::process::parent_id() as i32;
        ProcessId::of(parent).unwrap().word()
    }

    #[test]
    fn five_failures_eject_and_a_probe_restores() {
        let health = UpstreamHealth::map(&[2]).unwrap();
        let url = health.service(0).unwrap().url(1).unwrap();
        let now = 1000;
        for _ in 0..4 {
            assert_eq!(url.failed(now, false, 5, ejection), None);
        }
        // A success in between starts the count again.
        assert!(!url.succeeded(false));
        for _ in 0..4 {
            assert_eq!(url.failed(now, false, 5, ejection), None);
        }
        assert_eq!(url.availability(now), Availability::Healthy);
        let first = url.failed(now, false, 5, ejection);
        assert_eq!(
            first,
            Some(Ejection {
                duration: Duration::from_secs(30),
                in_row: 1
            })
        );
        // Failures and successes of calls that were in flight change nothing.
        assert_eq!(url.failed(now + 1, false, 5, ejection), None);
        assert!(!url.succeeded(false));
        assert_eq!(
            url.availability(now + 29_999),
            Availability::Ejected { until: 31_000 }
        );
        assert!(!url.try_probe(now + 29_999, u64::MAX));
        assert_eq!(url.availability(now + 30_000), Availability::ProbeDue);
        // A failed probe ejects it again, for twice as long.
        assert!(url.try_probe(now + 30_000, now + 31_000));
        assert!(!url.try_probe(now + 30_001, now + 31_000), "one probe");
        let again = url.failed(now + 30_500, true, 5, ejection).unwrap();
        assert_eq!((again.duration, again.in_row), (Duration::from_secs(60), 2));
        assert_eq!(
            url.availability(now + 60_000),
            Availability::Ejected { until: 91_500 }
        );
        assert!(url.try_probe(now + 90_500, now + 92_000));
        assert!(url.succeeded(true), "the probe's success restores it");
        assert_eq!(url.availability(now + 90_600), Availability::Healthy);
        let snapshot = url.snapshot(now + 90_600);
        assert_eq!((snapshot.ejections, snapshot.ejections_in_row), (2, 0));
        assert_eq!((snapshot.attempts, snapshot.failed_attempts), (14, 11));
        // Restored, it starts from the first ejection again.
        for _ in 0..4 {
            url.failed(now + 100_000, false, 5, ejection);
        }
        let next = url.failed(now + 100_000, false, 5, ejection).unwrap();
        assert_eq!(next.in_row, 1);
        // The other URL was never touched.
        let other = health.service(0).unwrap().url(0).unwrap();
        assert_eq!(other.availability(now), Availability::Healthy);
        assert!(health.service(0).unwrap().url(2).is_none());
    }

    #[test]
    fn another_process_holds_the_probe_until_its_time_is_over() {
        let health = UpstreamHealth::map(&[1]).unwrap();
        let url = health.service(0).unwrap().url(0).unwrap();
        url.failed(10, false, 1, ejection).unwrap();
        let due = 10 + 30_000;
        // A live process other than this one holds it until due + 5000.
        url.store(PROBE_HOLDER, other_process());
        url.store(PROBE_UNTIL, due + 5000);
        url.store(PROBE_CHECKED, due);
        assert!(matches!(
            url.availability(due),
            Availability::Probing { .. }
        ));
        assert!(!url.try_probe(due + 10, due + 9000));
        // Its liveness checked (a second later): alive, it keeps it.
        assert!(!url.try_probe(due + 1500, due + 9000));
        // A failure of an attempt made anyway (panic) ejects nothing more.
        assert_eq!(url.failed(due + 1600, true, 1, ejection), None);
        assert!(
            url.try_probe(due + 5001, due + 9000),
            "given up after its time"
        );
        assert_eq!(url.load(PROBE_HOLDER), ProcessId::current().word());
        url.release_probe();
        assert_eq!(url.availability(due + 5002), Availability::ProbeDue);
    }

    #[test]
    fn a_probe_held_by_a_process_that_died_is_taken_over() {
        let health = UpstreamHealth::map(&[1]).unwrap();
        let url = health.service(0).unwrap().url(0).unwrap();
        url.failed(10, false, 1, ejection).unwrap();
        let due = 10 + 30_000;
        let dead = ProcessId {
            pid: i32::MAX,
            start: 1,
        };
        url.store(PROBE_HOLDER, dead.word());
        url.store(PROBE_UNTIL, due + 60_000);
        assert!(url.try_probe(due + 10, due + 1000));
    }

    #[test]
    fn busy_urls_and_admission() {
        let health = UpstreamHealth::map(&[1, 2]).unwrap();
        let service = health.service(1).unwrap();
        let url = service.url(1).unwrap();
        url.busy(100, Duration::from_secs(2));
        url.busy(100, Duration::from_secs(1));
        assert_eq!(url.availability(2099), Availability::Busy { until: 2100 });
        assert_eq!(url.availability(2100), Availability::Healthy);
        assert!(service.admit(2) && service.admit(2));
        assert!(!service.admit(2));
        assert_eq!(service.in_flight(), 2);
        service.leave();
        assert!(service.admit(2));
        for _ in 0..3 {
            service.leave();
        }
        assert_eq!(service.in_flight(), 0, "never below zero");
        assert!(service.admit(0), "0: no limit");
        assert_eq!(health.service(0).unwrap().in_flight(), 0);
        assert_eq!(service.next_turn() + 1, service.next_turn());
    }

    #[test]
    fn the_retry_budget_is_a_share_of_the_calls_of_the_last_ten_seconds() {
        let health = UpstreamHealth::map(&[2]).unwrap();
        let service = health.service(0).unwrap();
        let now = 5_000;
        // The floor: 2 retries without calls.
        assert!(service.take_retry(now, 20, 2));
        assert!(service.take_retry(now, 20, 2));
        assert!(!service.take_retry(now, 20, 2));
        // 10 calls: 20 % of them, 2 more.
        for _ in 0..10 {
            service.count_call(now + 1000);
        }
        assert!(service.take_retry(now + 1000, 20, 2));
        assert!(service.take_retry(now + 1000, 20, 2));
        assert!(!service.take_retry(now + 1000, 20, 2));
        assert_eq!(service.budget_counts(now + 1000), (10, 4));
        // Ten seconds later the first second's counts are out of the window.
        assert_eq!(service.budget_counts(now + 10_000), (10, 2));
        assert_eq!(service.budget_counts(now + 11_000), (0, 0));
        assert!(service.take_retry(now + 11_000, 20, 2));
    }
}

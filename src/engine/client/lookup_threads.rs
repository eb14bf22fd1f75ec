//! The name lookups a process has in flight, per host, and the bound that keeps their threads
//! few during a DNS brownout.
//!
//! libcurl's threaded resolver runs each lookup of a name that is not in its DNS cache in a
//! thread of its own. A call whose limit fires while its lookup still runs ends at once (the
//! module sets `CURLOPT_QUICK_EXIT`: see `curl_raw::leave_slow_lookups_behind`) and leaves the
//! thread behind, blocked in `getaddrinfo` until the DNS server answers or the C library gives
//! up (5 to 30 s), with a descriptor of its own. Left alone, a brownout would pile up call
//! rate × lookup time of them in every worker.
//!
//! A lookup is in flight while its thread runs: from its transfer's start until it resolved
//! (libcurl then joins the thread) or, for one left behind, until `getaddrinfo` returns. The
//! threads are told apart by their ids in `/proc/self/task`, listed after each start that
//! leaves its lookup unresolved and after each blocking transfer that ended unresolved: the one
//! thread that appeared since the previous listing is that lookup's (when more appeared, none is
//! taken for it).
//!
//! A host (`host:port`) whose lookups are slow, one of them still running past its call's
//! connect limit, gets at most [`MAX_SLOW_LOOKUPS`] lookups in flight: past that a call to it
//! fails at once with -2 (what its own lookup would most likely end with), logged at most once
//! per [`REFUSAL_LOG_INTERVAL`] per process. Lookups that are not slow are not limited: a burst
//! of calls to a name just out of the DNS cache each starts one, as with libcurl alone (there
//! are at most `max_async_transfers` + 1 of those). So the onset of a brownout may leave that
//! many threads, but their number no longer grows with the call rate. Remembering a failed
//! host for a second instead would not bound it: each second would leave another round of
//! threads behind while the lookups take 5 to 30 s.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use log::warn;

use crate::engine::request::host_key;
use crate::engine::throttled_log::ThrottledLog;

/// Lookups of a slow host that may be in flight at once in one process.
const MAX_SLOW_LOOKUPS: usize = 8;

/// Least time between two log lines about calls refused here (per process).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// libcurl's connect limit where none is set (`CURLOPT_CONNECTTIMEOUT` 0).
const LIBCURL_DEFAULT_CONNECT_LIMIT: Duration = Duration::from_secs(300);

/// A thread id (a `/proc/self/task` entry).
type ThreadId = u32;

/// A lookup whose thread ran at the last listing.
struct Lookup {
    thread: ThreadId,
    /// When its call reaches its connect limit: a lookup still running then is slow.
    slow_after: Instant,
}

/// One process's lookups in flight (see the module doc).
pub(super) struct LookupThreads {
    /// The process's threads at the last listing; `None` where `/proc/self/task` cannot be
    /// read (lookups are then not bounded).
    known: Option<HashSet<ThreadId>>,
    /// Per host, its lookups whose thread ran at the last listing.
    hosts: HashMap<String, Vec<Lookup>>,
    refusals: ThrottledLog,
}

impl LookupThreads {
    pub(super) fn new() -> Self {
        let known = threads();
        if known.is_none() {
            warn!("/proc/self/task cannot be read: slow DNS lookups are not bounded");
        }
        Self {
            known,
            hosts: HashMap::new(),
            refusals: ThrottledLog::default(),
        }
    }

    /// Whether a transfer to `url` may start: not when its host's lookups are slow and
    /// [`MAX_SLOW_LOOKUPS`] of them are in flight (logged, rate-limited).
    pub(super) fn admit(&mut self, url: &str) -> bool {
        if self.hosts.is_empty() {
            return true;
        }
        let host = host_key(url);
        if !self.hosts.contains_key(&host) {
            return true;
        }
        self.list();
        let now = Instant::now();
        let Some(lookups) = self.hosts.get(&host) else {
            return true;
        };
        let slow = lookups.iter().any(|lookup| lookup.slow_after <= now);
        if lookups.len() < MAX_SLOW_LOOKUPS || !slow {
            return true;
        }
        let in_flight = lookups.len();
        self.refused(&host, in_flight);
        false
    }

    /// Notes the lookup of a transfer to `url` that is not resolved after its start (or at
    /// its end, for a blocking one): the thread that appeared since the last listing, slow once
    /// `connect_limit` (zero: libcurl's default) has passed since `started`.
    pub(super) fn unresolved(&mut self, url: &str, started: Instant, connect_limit: Duration) {
        let before = self.known.take();
        self.list();
        let (Some(before), Some(now)) = (before, &self.known) else {
            return;
        };
        let mut new = now.difference(&before);
        let (Some(&thread), None) = (new.next(), new.next()) else {
            return;
        };
        let limit = if connect_limit.is_zero() {
            LIBCURL_DEFAULT_CONNECT_LIMIT
        } else {
            connect_limit
        };
        self.hosts.entry(host_key(url)).or_default().push(Lookup {
            thread,
            slow_after: started + limit,
        });
    }

    /// Lists the process's threads and forgets the lookups whose thread ended.
    fn list(&mut self) {
        self.known = threads();
        let Some(known) = &self.known else {
            self.hosts.clear();
            return;
        };
        self.hosts.retain(|_, lookups| {
            lookups.retain(|lookup| known.contains(&lookup.thread));
            !lookups.is_empty()
        });
    }

    fn refused(&mut self, host: &str, in_flight: usize) {
        if let Some(more) = self
            .refusals
            .happened(REFUSAL_LOG_INTERVAL, "calls refused")
        {
            warn!(
                "name lookups of {host} are slow, {in_flight} still running: calls to it fail \
                 at once with -2 until fewer than {MAX_SLOW_LOOKUPS} run{more}"
            );
        }
    }
}

/// The ids of the process's threads, `None` when `/proc/self/task` cannot be read.
fn threads() -> Option<HashSet<ThreadId>> {
    let entries = std::fs::read_dir("/proc/self/task").ok()?;
    Some(
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
    )
}

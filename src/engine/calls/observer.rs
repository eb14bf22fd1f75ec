//! What the call pipeline tells the host as calls go, for its statistics and events.

use std::time::Duration;

use crate::engine::transfer::Outcome;

/// A base URL of a named service ejected or restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamChange<'a> {
    pub service: &'a str,
    /// The base URL, as log lines may show it.
    pub url: String,
    pub state: UpstreamState,
    /// Why, in words (`5 consecutive failures, the last: connect timeout`).
    pub reason: String,
}

/// What happened to a base URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamState {
    /// No call goes to it for `duration` (the `in_row`-th ejection since it was healthy).
    Ejected { duration: Duration, in_row: u32 },
    /// A probe succeeded: calls go to it again.
    Restored,
}

/// Events of the call pipeline; a host that keeps no statistics ignores them.
pub trait CallObserver {
    /// A transfer ended (blocking or async), with its outcome and its traffic.
    fn transfer_ended(&self, outcome: &Outcome);
    /// A call was answered from its service's cache.
    fn cache_hit(&self);
    /// A cacheable call missed and went to the network.
    fn cache_miss(&self);
    /// The answers held by this process's caches changed by `delta`.
    fn cache_entries_changed(&self, delta: i64);
    /// `no_concurrent_connects` refused a call (-4).
    fn gate_refused(&self);
    /// A call went on to another base URL of its service after an attempt failed.
    fn failed_over(&self);
    /// A retry after a sent request was refused by its service's retry budget.
    fn retry_refused(&self);
    /// A call failed at once (-6): every base URL of its service was ejected or busy.
    fn failed_fast(&self);
    /// A call was shed at once (-7) by its service's `max_in_flight`.
    fn shed(&self);
    /// A base URL of a service was ejected or restored.
    fn upstream_changed(&self, change: &UpstreamChange);
    /// A call was answered from its cache past the answer's freshness (stale-if-error,
    /// stale-while-revalidate).
    fn stale_served(&self);
    /// A call that missed waited for another call's transfer of the same answer (in this
    /// process, another one, or another instance) instead of asking the backend at once.
    fn coalesced(&self);
    /// `n` lookups went without the shared level of their cache, skipped after a failure.
    fn shared_level_skipped(&self, n: u64);
}

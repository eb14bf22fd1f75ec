//! What the call pipeline tells the host as calls go, for its statistics.

use crate::engine::transfer::Outcome;

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
    /// A call was answered from its cache past the answer's freshness (stale-if-error,
    /// stale-while-revalidate).
    fn stale_served(&self);
    /// A call that missed waited for another call's transfer of the same answer (in this
    /// process, another one, or another instance) instead of asking the backend at once.
    fn coalesced(&self);
    /// `n` lookups went without the shared level of their cache, skipped after a failure.
    fn shared_level_skipped(&self, n: u64);
}

//! The module's statistics, in the core's statistics (`get_statistics rest_client:` over MI):
//! counters in shared memory that every process adds to, so they are totals of the whole
//! OpenSIPS instance. The core allocates them after mod_init (`exports.stats`); a core built
//! without statistics allocates none, and every update is then a no-op.

use std::ffi::CStr;

use crate::engine::{CallObserver, Outcome, ResultCode, UpstreamChange, UpstreamState};

use super::abi::{STAT_NO_RESET, StatCell, StatExport, StaticTable};
use super::events;

/// One statistic: its index in [`STATS`].
#[derive(Clone, Copy)]
pub enum Stat {
    Requests,
    RepliesOk,
    ConnectRefused,
    ConnectTimeouts,
    TransferTimeouts,
    OtherErrors,
    GateBlocked,
    AsyncLimitReached,
    AsyncInFlight,
    AsyncFallbacks,
    ConnectionsOpened,
    ConnectionsReused,
    TlsHandshakes,
    CacheHits,
    CacheMisses,
    CacheEntries,
    CacheStaleServed,
    CacheCoalesced,
    CacheSharedSkips,
    BytesSent,
    BytesReceived,
    Failovers,
    RetriesRefused,
    FailedFast,
    Shed,
    Ejections,
    Restorations,
}

const COUNT: usize = Stat::Restorations as usize + 1;

static CELLS: [StatCell; COUNT] = [const { StatCell::new() }; COUNT];

const fn export(name: &'static CStr, flags: u16, stat: Stat) -> StatExport {
    StatExport {
        name: name.as_ptr(),
        flags,
        stat_pointer: &CELLS[stat as usize],
    }
}

/// `exports.stats`, in [`Stat`] order, NULL-terminated. Documented in the admin guide.
pub static STATS: StaticTable<[StatExport; COUNT + 1]> = StaticTable([
    export(c"requests", 0, Stat::Requests),
    export(c"replies_ok", 0, Stat::RepliesOk),
    export(c"connect_refused", 0, Stat::ConnectRefused),
    export(c"connect_timeouts", 0, Stat::ConnectTimeouts),
    export(c"transfer_timeouts", 0, Stat::TransferTimeouts),
    export(c"other_errors", 0, Stat::OtherErrors),
    export(c"gate_blocked", 0, Stat::GateBlocked),
    export(c"async_limit_reached", 0, Stat::AsyncLimitReached),
    export(c"async_in_flight", STAT_NO_RESET, Stat::AsyncInFlight),
    export(c"async_fallbacks", 0, Stat::AsyncFallbacks),
    export(c"connections_opened", 0, Stat::ConnectionsOpened),
    export(c"connections_reused", 0, Stat::ConnectionsReused),
    export(c"tls_handshakes", 0, Stat::TlsHandshakes),
    export(c"cache_hits", 0, Stat::CacheHits),
    export(c"cache_misses", 0, Stat::CacheMisses),
    export(c"cache_entries", STAT_NO_RESET, Stat::CacheEntries),
    export(c"cache_stale_served", 0, Stat::CacheStaleServed),
    export(c"cache_coalesced", 0, Stat::CacheCoalesced),
    export(c"cache_shared_skips", 0, Stat::CacheSharedSkips),
    export(c"bytes_sent", 0, Stat::BytesSent),
    export(c"bytes_received", 0, Stat::BytesReceived),
    export(c"failovers", 0, Stat::Failovers),
    export(c"retries_refused", 0, Stat::RetriesRefused),
    export(c"failed_fast", 0, Stat::FailedFast),
    export(c"shed", 0, Stat::Shed),
    export(c"ejections", 0, Stat::Ejections),
    export(c"restorations", 0, Stat::Restorations),
    StatExport {
        name: std::ptr::null(),
        flags: 0,
        stat_pointer: std::ptr::null(),
    },
]);

/// Adds `n` to `stat` (negative for a gauge going down).
pub fn add(stat: Stat, n: i64) {
    CELLS[stat as usize].add(n);
}

/// The engine's call pipeline, counted in the statistics (and its upstreams' changes raised as
/// events).
pub struct StatsObserver;

pub static STATS_OBSERVER: StatsObserver = StatsObserver;

impl CallObserver for StatsObserver {
    fn transfer_ended(&self, outcome: &Outcome) {
        transfer_ended(outcome);
    }

    fn cache_hit(&self) {
        add(Stat::CacheHits, 1);
    }

    fn cache_miss(&self) {
        add(Stat::CacheMisses, 1);
    }

    fn cache_entries_changed(&self, delta: i64) {
        add(Stat::CacheEntries, delta);
    }

    fn gate_refused(&self) {
        add(Stat::GateBlocked, 1);
    }

    fn failed_over(&self) {
        add(Stat::Failovers, 1);
    }

    fn retry_refused(&self) {
        add(Stat::RetriesRefused, 1);
    }

    fn failed_fast(&self) {
        add(Stat::FailedFast, 1);
    }

    fn shed(&self) {
        add(Stat::Shed, 1);
    }

    /// Counted, and raised as the `E_REST_UPSTREAM` event.
    fn upstream_changed(&self, change: &UpstreamChange) {
        add(
            match change.state {
                UpstreamState::Ejected { .. } => Stat::Ejections,
                UpstreamState::Restored => Stat::Restorations,
            },
            1,
        );
        events::upstream_changed(change);
    }

    fn stale_served(&self) {
        add(Stat::CacheStaleServed, 1);
    }

    fn coalesced(&self) {
        add(Stat::CacheCoalesced, 1);
    }

    fn shared_level_skipped(&self, n: u64) {
        add(Stat::CacheSharedSkips, i64::try_from(n).unwrap_or(i64::MAX));
    }
}

/// A transfer ended (blocking or async): its outcome and its traffic.
fn transfer_ended(outcome: &Outcome) {
    add(Stat::Requests, 1);
    add(
        match outcome.result {
            ResultCode::Ok => Stat::RepliesOk,
            ResultCode::ConnectRefused => Stat::ConnectRefused,
            ResultCode::ConnectTimeout => Stat::ConnectTimeouts,
            ResultCode::TransferTimeout => Stat::TransferTimeouts,
            _ => Stat::OtherErrors,
        },
        1,
    );
    let traffic = &outcome.traffic;
    let opened = traffic.connections_opened as i64;
    add(Stat::ConnectionsOpened, opened);
    if traffic.request_sent && opened == 0 {
        add(Stat::ConnectionsReused, 1);
    }
    if traffic.tls {
        add(Stat::TlsHandshakes, opened);
    }
    add(Stat::BytesSent, traffic.bytes_sent as i64);
    add(Stat::BytesReceived, traffic.bytes_received as i64);
}

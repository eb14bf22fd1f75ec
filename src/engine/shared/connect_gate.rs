//! `no_concurrent_connects` / `curl_conn_lifetime`: at most one process at a time connects to
//! a given host; the others get `AlreadyConnecting` (-4) instead of piling up on a dead backend.
//!
//! The gate keys on the URL's authority (`host:port`, lowercase, default port by scheme).
//! Entries record the owning process (pid and start time), so a host held by a process that
//! died is taken over, even when a new process got the dead one's pid. The shared table holds
//! [`SLOT_COUNT`] hosts at once; when it is full a call goes ahead ungated (logged). Each
//! process remembers at most [`MAX_RECENT_HOSTS`] recent successes for `curl_conn_lifetime`.

use std::collections::HashMap;
use std::hash::Hasher;
use std::time::{Duration, Instant};

use super::holder_table::{Claim, HolderTable, SLOT_COUNT};
use super::process::ProcessId;
use crate::engine::request::host_key;

/// Hosts a process remembers a recent success with (`curl_conn_lifetime`); past it, expired
/// entries are dropped, then the oldest.
pub const MAX_RECENT_HOSTS: usize = 1024;

/// The result of [`ConnectGate::enter`]: pass it back to [`ConnectGate::leave`].
#[derive(Debug, PartialEq, Eq)]
pub enum GateTicket {
    /// No lock was taken (the gate is off, this process connected there recently, or the
    /// table is full).
    Unlocked,
    /// This process holds the host's slot.
    Locked { key: String, key_hash: u64 },
}

/// One process's view of the cross-process gate (cloned into each process after fork).
#[derive(Clone)]
pub struct ConnectGate {
    table: HolderTable,
    /// `curl_conn_lifetime`: a connection this recent is trusted to be reusable.
    conn_lifetime: Duration,
    recent_connects: HashMap<String, Instant>,
}

impl ConnectGate {
    /// Maps the shared table: call before forking the processes that share it.
    pub fn create(conn_lifetime: Duration) -> Result<Self, String> {
        Ok(Self {
            table: HolderTable::map()?,
            conn_lifetime,
            recent_connects: HashMap::new(),
        })
    }

    /// Takes the host of `url`, or `None` when a live process (this one included) holds it.
    pub fn enter(&mut self, url: &str) -> Option<GateTicket> {
        let key = host_key(url);
        if let Some(at) = self.recent_connects.get(&key)
            && at.elapsed() < self.conn_lifetime
        {
            return Some(GateTicket::Unlocked);
        }
        let key_hash = hash_key(&key);
        match self.table.claim(key_hash, ProcessId::current()) {
            Claim::Taken => Some(GateTicket::Locked { key, key_hash }),
            Claim::Full => {
                log::warn!(
                    "no_concurrent_connects: {SLOT_COUNT} hosts connecting at once, not gating \
                     {key}"
                );
                Some(GateTicket::Unlocked)
            }
            Claim::HeldBy(_) => None,
        }
    }

    /// Releases the host taken by `enter`; a successful transfer starts the host's
    /// `curl_conn_lifetime` window in this process.
    pub fn leave(&mut self, ticket: GateTicket, succeeded: bool) {
        let GateTicket::Locked { key, key_hash } = ticket else {
            return;
        };
        let me = ProcessId::current();
        self.table.release(key_hash, me);
        if succeeded && !self.conn_lifetime.is_zero() {
            self.remember_success(key);
        }
    }

    /// Starts `key`'s `curl_conn_lifetime` window, within [`MAX_RECENT_HOSTS`] hosts.
    fn remember_success(&mut self, key: String) {
        if self.recent_connects.len() >= MAX_RECENT_HOSTS
            && !self.recent_connects.contains_key(&key)
        {
            let lifetime = self.conn_lifetime;
            self.recent_connects.retain(|_, at| at.elapsed() < lifetime);
            if self.recent_connects.len() >= MAX_RECENT_HOSTS
                && let Some(oldest) = self
                    .recent_connects
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(host, _)| host.clone())
            {
                self.recent_connects.remove(&oldest);
            }
        }
        self.recent_connects.insert(key, Instant::now());
    }
}

fn hash_key(key: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hasher.write(key.as_bytes());
    hasher.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parent process (the test runner's), as a holder: a live process other than this one.
    fn parent() -> ProcessId {
        ProcessId::of(std::os::unix::process::parent_id() as i32).unwrap()
    }

    fn key_hash_of(ticket: &Option<GateTicket>) -> u64 {
        match ticket {
            Some(GateTicket::Locked { key_hash, .. }) => *key_hash,
            other => panic!("not locked: {other:?}"),
        }
    }

    #[test]
    fn second_holder_is_refused_until_release() {
        let mut gate = ConnectGate::create(Duration::ZERO).unwrap();
        let ticket = gate.enter("http://a:1/x");
        let key_hash = key_hash_of(&ticket);
        // Neither the same process (issue 17 item 5) nor another live one may enter again.
        assert_eq!(gate.enter("http://a:1/y"), None);
        gate.table.reassign(key_hash, parent());
        assert_eq!(gate.enter("http://a:1/other"), None);
        let me = ProcessId::current();
        gate.table.reassign(key_hash, me);
        gate.leave(ticket.unwrap(), true);
        let key_hash = key_hash_of(&gate.enter("http://a:1/"));
        gate.table.reassign(key_hash, parent());
        assert_eq!(gate.enter("http://a:1/"), None);
    }

    #[test]
    fn a_dead_holder_is_taken_over_even_when_its_pid_runs_again() {
        let mut gate = ConnectGate::create(Duration::ZERO).unwrap();
        let key_hash = key_hash_of(&gate.enter("http://dead:1/"));
        // The pid of a live process with another start time: the holder died and its pid
        // was reused.
        let reused = ProcessId {
            start: parent().start.wrapping_add(1),
            ..parent()
        };
        gate.table.reassign(key_hash, reused);
        assert_eq!(key_hash_of(&gate.enter("http://dead:1/")), key_hash);
        // A pid that runs no process at all.
        gate.table.reassign(
            key_hash,
            ProcessId {
                pid: i32::MAX,
                start: 1,
            },
        );
        assert_eq!(key_hash_of(&gate.enter("http://dead:1/")), key_hash);
    }

    #[test]
    fn a_full_table_lets_calls_go_ungated_until_a_slot_is_free() {
        let mut gate = ConnectGate::create(Duration::ZERO).unwrap();
        let tickets: Vec<GateTicket> = (0..SLOT_COUNT)
            .map(|i| gate.enter(&format!("http://h{i}/")).unwrap())
            .collect();
        assert!(
            tickets
                .iter()
                .all(|t| matches!(t, GateTicket::Locked { .. }))
        );
        assert_eq!(gate.enter("http://one-more/"), Some(GateTicket::Unlocked));
        for ticket in tickets {
            gate.leave(ticket, false);
        }
        assert!(matches!(
            gate.enter("http://one-more/"),
            Some(GateTicket::Locked { .. })
        ));
    }

    #[test]
    fn recent_successes_are_bounded() {
        let mut gate = ConnectGate::create(Duration::from_secs(60)).unwrap();
        for i in 0..MAX_RECENT_HOSTS + 100 {
            let ticket = gate.enter(&format!("http://r{i}/")).unwrap();
            gate.leave(ticket, true);
        }
        assert_eq!(gate.recent_connects.len(), MAX_RECENT_HOSTS);
        // The newest are kept.
        let last = format!("http://r{}/", MAX_RECENT_HOSTS + 99);
        assert_eq!(gate.enter(&last), Some(GateTicket::Unlocked));
    }

    #[test]
    fn recent_success_skips_the_lock() {
        let mut gate = ConnectGate::create(Duration::from_secs(60)).unwrap();
        let ticket = gate.enter("http://b:1/").unwrap();
        gate.leave(ticket, true);
        assert_eq!(gate.enter("http://b:1/"), Some(GateTicket::Unlocked));
    }
}

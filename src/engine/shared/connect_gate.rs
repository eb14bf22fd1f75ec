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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::lock::SharedLock;
use super::process::ProcessId;
use super::region::SharedRegion;
use crate::engine::request::host_key;

/// Hosts held at the same moment, at most.
pub const SLOT_COUNT: usize = 1024;

/// Hosts a process remembers a recent success with (`curl_conn_lifetime`); past it, expired
/// entries are dropped, then the oldest.
pub const MAX_RECENT_HOSTS: usize = 1024;

/// How often [`ConnectGate::enter`] looks again at a host whose dead holder changed meanwhile.
const TAKEOVER_ATTEMPTS: usize = 3;

/// What [`HolderTable::claim`] found.
#[derive(Debug, PartialEq, Eq)]
enum Claim {
    /// The key is the caller's now.
    Taken,
    /// Another process holds the key (maybe a dead one: the caller checks, without the lock).
    HeldBy(ProcessId),
    /// Every slot is taken by other keys.
    Full,
}

/// Which process holds which host, in shared memory: a lock word, then [`SLOT_COUNT`] slots of
/// two words, the key hash (0: free) and the holder. A slot is taken holder first and freed key
/// first, so that one left half written by a process that died holding the lock is free, or
/// held by that dead process (and taken over).
#[derive(Clone, Copy)]
struct HolderTable {
    words: &'static [AtomicU64],
}

/// One slot of the table.
struct Slot<'a> {
    key_hash: &'a AtomicU64,
    holder: &'a AtomicU64,
}

impl Slot<'_> {
    fn holder(&self) -> Option<ProcessId> {
        ProcessId::from_word(self.holder.load(Ordering::Relaxed))
    }

    fn take(&self, key_hash: u64, holder: ProcessId) {
        self.holder.store(holder.word(), Ordering::Relaxed);
        self.key_hash.store(key_hash, Ordering::Relaxed);
    }

    fn free(&self) {
        self.key_hash.store(0, Ordering::Relaxed);
        self.holder.store(0, Ordering::Relaxed);
    }
}

impl HolderTable {
    fn map() -> Result<Self, String> {
        Ok(Self {
            words: SharedRegion::map(1 + 2 * SLOT_COUNT)?.words(),
        })
    }

    fn slots(&self) -> impl Iterator<Item = Slot<'static>> {
        self.words[1..].chunks_exact(2).map(|pair| Slot {
            key_hash: &pair[0],
            holder: &pair[1],
        })
    }

    /// Takes `key_hash` for `me` if it is free and a slot is left. A key `me` holds already is
    /// [`Claim::HeldBy`] `me`: one process connects once at a time too.
    fn claim(&self, key_hash: u64, me: ProcessId) -> Claim {
        let _lock = SharedLock::new(&self.words[0]).lock();
        let mut free = None;
        for slot in self.slots() {
            let hash = slot.key_hash.load(Ordering::Relaxed);
            if hash == key_hash {
                return match slot.holder() {
                    Some(holder) => Claim::HeldBy(holder),
                    // Left half freed by a process that died: free.
                    None => {
                        slot.take(key_hash, me);
                        Claim::Taken
                    }
                };
            }
            if hash == 0 && free.is_none() {
                free = Some(slot);
            }
        }
        match free {
            Some(slot) => {
                slot.take(key_hash, me);
                Claim::Taken
            }
            None => Claim::Full,
        }
    }

    /// Gives `key_hash` to `me` if `dead` still holds it; false if it changed meanwhile.
    fn take_over(&self, key_hash: u64, dead: ProcessId, me: ProcessId) -> bool {
        let _lock = SharedLock::new(&self.words[0]).lock();
        self.find(key_hash, dead)
            .map(|slot| slot.take(key_hash, me))
            .is_some()
    }

    /// Frees `key_hash` if `me` holds it.
    fn release(&self, key_hash: u64, me: ProcessId) {
        let _lock = SharedLock::new(&self.words[0]).lock();
        if let Some(slot) = self.find(key_hash, me) {
            slot.free();
        }
    }

    /// The slot of `key_hash` if `holder` holds it. Call with the lock held.
    fn find(&self, key_hash: u64, holder: ProcessId) -> Option<Slot<'static>> {
        self.slots()
            .find(|s| s.key_hash.load(Ordering::Relaxed) == key_hash && s.holder() == Some(holder))
    }

    /// Makes `holder` the holder of `key_hash`, whoever held it: for tests that play another
    /// process.
    #[cfg(test)]
    fn reassign(&self, key_hash: u64, holder: ProcessId) {
        let _lock = SharedLock::new(&self.words[0]).lock();
        let slot = self
            .slots()
            .find(|s| s.key_hash.load(Ordering::Relaxed) == key_hash);
        slot.expect("key held").take(key_hash, holder);
    }
}

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
        let me = ProcessId::current();
        for _ in 0..TAKEOVER_ATTEMPTS {
            match self.table.claim(key_hash, me) {
                Claim::Taken => return Some(GateTicket::Locked { key, key_hash }),
                Claim::Full => {
                    log::warn!(
                        "no_concurrent_connects: {SLOT_COUNT} hosts connecting at once, not \
                         gating {key}"
                    );
                    return Some(GateTicket::Unlocked);
                }
                Claim::HeldBy(holder) if holder.is_running() => return None,
                Claim::HeldBy(dead) => {
                    if self.table.take_over(key_hash, dead, me) {
                        return Some(GateTicket::Locked { key, key_hash });
                    }
                }
            }
        }
        None
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

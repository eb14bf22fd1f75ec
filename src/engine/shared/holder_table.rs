//! Which process holds which key, in shared memory: the table under the connect gate of
//! `no_concurrent_connects` (hosts being connected to) and the fill marks of the response
//! caches (answers being fetched). A holder is named by its [`ProcessId`], so a key held by a
//! process that died is taken over, even when a new process got the dead one's pid.

use std::sync::atomic::{AtomicU64, Ordering};

use super::lock::{SharedLock, SharedLockGuard};
use super::process::ProcessId;
use super::region::SharedRegion;

/// Keys held at the same moment, at most.
pub const SLOT_COUNT: usize = 1024;

/// How often [`HolderTable::claim`] looks again at a key whose dead holder changed meanwhile.
const TAKEOVER_ATTEMPTS: usize = 3;

/// What [`HolderTable::claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is the caller's now.
    Taken,
    /// A live process (the caller included: one process holds a key once at a time too)
    /// holds the key.
    HeldBy(ProcessId),
    /// Every slot is taken by other keys.
    Full,
}

/// A lock word, then [`SLOT_COUNT`] slots of two words, the key hash (0: free) and the holder.
/// A slot is taken holder first and freed key first, so that one left half written by a
/// process that died holding the lock is free, or held by that dead process (and taken over).
#[derive(Clone, Copy)]
pub struct HolderTable {
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

/// What [`HolderTable::try_claim`] found, before any liveness check.
enum Attempt {
    Taken,
    HeldBy(ProcessId),
    Full,
}

impl HolderTable {
    /// Maps an empty table: call before forking the processes that share it.
    pub fn map() -> Result<Self, String> {
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

    fn lock(&self) -> SharedLockGuard<'static> {
        SharedLock::new(&self.words[0]).lock()
    }

    /// Takes `key_hash` (never 0) for `me`, taking it over from a holder that died; see
    /// [`Claim`]. The liveness of a holder is checked without the lock.
    pub fn claim(&self, key_hash: u64, me: ProcessId) -> Claim {
        let mut holder = me;
        for _ in 0..TAKEOVER_ATTEMPTS {
            match self.try_claim(key_hash, me) {
                Attempt::Taken => return Claim::Taken,
                Attempt::Full => return Claim::Full,
                Attempt::HeldBy(live) if live.is_running() => return Claim::HeldBy(live),
                Attempt::HeldBy(dead) => {
                    if self.take_over(key_hash, dead, me) {
                        return Claim::Taken;
                    }
                    holder = dead;
                }
            }
        }
        // The holder changed under each attempt: someone else is taking it.
        Claim::HeldBy(holder)
    }

    /// Takes `key_hash` for `me` if it is free and a slot is left.
    fn try_claim(&self, key_hash: u64, me: ProcessId) -> Attempt {
        let _lock = self.lock();
        let mut free = None;
        for slot in self.slots() {
            let hash = slot.key_hash.load(Ordering::Relaxed);
            if hash == key_hash {
                return match slot.holder() {
                    Some(holder) => Attempt::HeldBy(holder),
                    // Left half freed by a process that died: free.
                    None => {
                        slot.take(key_hash, me);
                        Attempt::Taken
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
                Attempt::Taken
            }
            None => Attempt::Full,
        }
    }

    /// Gives `key_hash` to `me` if `dead` still holds it; false if it changed meanwhile.
    fn take_over(&self, key_hash: u64, dead: ProcessId, me: ProcessId) -> bool {
        let _lock = self.lock();
        self.find(key_hash, dead)
            .map(|slot| slot.take(key_hash, me))
            .is_some()
    }

    /// Frees `key_hash` if `me` holds it.
    pub fn release(&self, key_hash: u64, me: ProcessId) {
        let _lock = self.lock();
        if let Some(slot) = self.find(key_hash, me) {
            slot.free();
        }
    }

    /// The process holding `key_hash` (alive or not), if any.
    pub fn holder(&self, key_hash: u64) -> Option<ProcessId> {
        let _lock = self.lock();
        self.slots()
            .find(|s| s.key_hash.load(Ordering::Relaxed) == key_hash)
            .and_then(|s| s.holder())
    }

    /// The slot of `key_hash` if `holder` holds it. Call with the lock held.
    fn find(&self, key_hash: u64, holder: ProcessId) -> Option<Slot<'static>> {
        self.slots()
            .find(|s| s.key_hash.load(Ordering::Relaxed) == key_hash && s.holder() == Some(holder))
    }

    /// Makes `holder` the holder of `key_hash`, whoever held it: for tests that play another
    /// process.
    #[cfg(test)]
    pub fn reassign(&self, key_hash: u64, holder: ProcessId) {
        let _lock = self.lock();
        let slot = self
            .slots()
            .find(|s| s.key_hash.load(Ordering::Relaxed) == key_hash);
        slot.expect("key held").take(key_hash, holder);
    }
}

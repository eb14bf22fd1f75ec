//! A small table in anonymous shared memory, mapped before the workers fork so that every
//! process sees the same slots: which process holds which key. This file's unsafe code is the
//! `mmap` call and the cast of the fresh mapping to the table type.
//!
//! Every operation is one scan of the slots under a spin lock, reading and writing atomics
//! only: no system call and no allocation happens while the lock is held, so a process waits
//! for another one for no longer than such a scan.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

/// Slots in the table: distinct keys held at the same moment.
pub const SLOT_COUNT: usize = 1024;

/// A process, told apart from a later process that reuses its pid by its start time (clock
/// ticks after boot, field 22 of `/proc/<pid>/stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    pub start: u64,
}

/// One entry: a key hash (0 = free) and the process that holds it.
#[repr(C)]
pub struct Slot {
    key_hash: AtomicU64,
    owner_pid: AtomicI32,
    owner_start: AtomicU64,
}

impl Slot {
    fn holder(&self) -> Holder {
        Holder {
            pid: self.owner_pid.load(Ordering::Relaxed),
            start: self.owner_start.load(Ordering::Relaxed),
        }
    }

    fn set(&self, key_hash: u64, holder: Holder) {
        self.key_hash.store(key_hash, Ordering::Relaxed);
        self.owner_pid.store(holder.pid, Ordering::Relaxed);
        self.owner_start.store(holder.start, Ordering::Relaxed);
    }
}

/// What [`SharedTable::claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is the caller's now (or was already).
    Taken,
    /// Another process holds the key (maybe a dead one: the caller checks, without the lock).
    HeldBy(Holder),
    /// Every slot is taken by other keys.
    Full,
}

/// The shared table: a spin lock word and the slots it protects.
#[repr(C)]
pub struct SharedTable {
    lock: AtomicU32,
    slots: [Slot; SLOT_COUNT],
}

impl SharedTable {
    /// Maps a zeroed table shared with every process forked after this call. Never unmapped.
    pub fn map() -> Result<&'static SharedTable, String> {
        let size = std::mem::size_of::<SharedTable>();
        // SAFETY: an anonymous mapping with no address hint has no preconditions.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(format!(
                "mmap of {size} bytes failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: the mapping is page aligned, `size` bytes long, zero-filled (a valid value
        // for atomics) and never unmapped, so a shared 'static reference to it is sound; all
        // access goes through atomics.
        Ok(unsafe { &*(addr as *const SharedTable) })
    }

    /// Takes `key_hash` for `me` if it is free (or already `me`'s) and a slot is left.
    pub fn claim(&self, key_hash: u64, me: Holder) -> Claim {
        let _lock = TableLock::acquire(self);
        let mut free = None;
        for slot in &self.slots {
            let hash = slot.key_hash.load(Ordering::Relaxed);
            if hash == key_hash {
                return match slot.holder() {
                    holder if holder == me => Claim::Taken,
                    holder => Claim::HeldBy(holder),
                };
            }
            if hash == 0 && free.is_none() {
                free = Some(slot);
            }
        }
        match free {
            Some(slot) => {
                slot.set(key_hash, me);
                Claim::Taken
            }
            None => Claim::Full,
        }
    }

    /// Gives `key_hash` to `me` if `dead` still holds it; false if it changed meanwhile.
    pub fn take_over(&self, key_hash: u64, dead: Holder, me: Holder) -> bool {
        let _lock = TableLock::acquire(self);
        self.find(key_hash, dead)
            .map(|slot| slot.set(key_hash, me))
            .is_some()
    }

    /// Frees `key_hash` if `me` holds it.
    pub fn release(&self, key_hash: u64, me: Holder) {
        let _lock = TableLock::acquire(self);
        if let Some(slot) = self.find(key_hash, me) {
            slot.set(0, Holder { pid: 0, start: 0 });
        }
    }

    /// The slot of `key_hash` if `holder` holds it. Call with the lock held.
    fn find(&self, key_hash: u64, holder: Holder) -> Option<&Slot> {
        self.slots
            .iter()
            .find(|s| s.key_hash.load(Ordering::Relaxed) == key_hash && s.holder() == holder)
    }

    /// Makes `holder` the holder of `key_hash`, whoever held it: for tests that play another
    /// process.
    #[cfg(test)]
    pub fn reassign(&self, key_hash: u64, holder: Holder) {
        let _lock = TableLock::acquire(self);
        let slot = self
            .slots
            .iter()
            .find(|s| s.key_hash.load(Ordering::Relaxed) == key_hash);
        slot.expect("key held").set(key_hash, holder);
    }
}

/// Holds the table's spin lock until dropped.
struct TableLock<'a>(&'a SharedTable);

impl<'a> TableLock<'a> {
    fn acquire(table: &'a SharedTable) -> Self {
        while table
            .lock
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // Waiting, not holding: the holder is inside a short scan.
            std::thread::yield_now();
        }
        Self(table)
    }
}

impl Drop for TableLock<'_> {
    fn drop(&mut self) {
        self.0.lock.store(0, Ordering::Release);
    }
}

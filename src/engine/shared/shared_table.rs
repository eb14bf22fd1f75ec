//! Tables in anonymous shared memory, mapped before the workers fork so that every process
//! sees the same slots: which process holds which key (the connect gate), the credentials of
//! named services renewed at run time, and counters every process adds to. This file's unsafe code is the `mmap` call and the
//! cast of the fresh mapping to the table type.
//!
//! Every operation runs under a spin lock and reads and writes atomics only: no system call and
//! no allocation happens while a lock is held, so a process waits for another one for no
//! longer than a scan of the slots or a copy of one slot's bytes.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};

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
        let addr = map_zeroed(std::mem::size_of::<SharedTable>())?;
        // SAFETY: the mapping is page aligned, as long as the table, zero-filled (a valid
        // value for its atomics) and never unmapped, so a shared 'static reference to it is
        // sound; all access goes through atomics.
        Ok(unsafe { &*(addr as *const SharedTable) })
    }

    /// Takes `key_hash` for `me` if it is free (or already `me`'s) and a slot is left.
    pub fn claim(&self, key_hash: u64, me: Holder) -> Claim {
        let _lock = SpinLock::acquire(&self.lock);
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
        let _lock = SpinLock::acquire(&self.lock);
        self.find(key_hash, dead)
            .map(|slot| slot.set(key_hash, me))
            .is_some()
    }

    /// Frees `key_hash` if `me` holds it.
    pub fn release(&self, key_hash: u64, me: Holder) {
        let _lock = SpinLock::acquire(&self.lock);
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
        let _lock = SpinLock::acquire(&self.lock);
        let slot = self
            .slots
            .iter()
            .find(|s| s.key_hash.load(Ordering::Relaxed) == key_hash);
        slot.expect("key held").set(key_hash, holder);
    }
}

/// `size` zeroed bytes of anonymous memory shared with every process forked afterwards.
fn map_zeroed(size: usize) -> Result<*mut libc::c_void, String> {
    // SAFETY: an anonymous mapping with no address hint has no preconditions.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size.max(1),
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
    Ok(addr)
}

/// Holds a spin lock word of shared memory until dropped.
struct SpinLock<'a>(&'a AtomicU32);

impl<'a> SpinLock<'a> {
    fn acquire(word: &'a AtomicU32) -> Self {
        while word
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // Waiting, not holding: the holder is inside a short scan or copy.
            std::thread::yield_now();
        }
        Self(word)
    }
}

impl Drop for SpinLock<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

/// Longest text one slot of [`SharedTexts`] holds.
pub const SHARED_TEXT_BYTES: usize = 4096;

/// One text and the number of times it was written (0: never).
#[repr(C)]
struct TextSlot {
    lock: AtomicU32,
    len: AtomicU32,
    generation: AtomicU64,
    bytes: [AtomicU8; SHARED_TEXT_BYTES],
}

/// A fixed number of texts in shared memory, each written by any process and read by all,
/// with a generation that tells a reader whether the text changed since it last read it.
pub struct SharedTexts {
    slots: &'static [TextSlot],
}

impl SharedTexts {
    /// Maps `count` empty texts shared with every process forked after this call.
    pub fn map(count: usize) -> Result<Self, String> {
        let addr = map_zeroed(count * std::mem::size_of::<TextSlot>())?;
        // SAFETY: the mapping is page aligned, holds `count` slots, is zero-filled (a valid
        // value for their atomics) and is never unmapped; all access goes through atomics.
        let slots = unsafe { std::slice::from_raw_parts(addr as *const TextSlot, count) };
        Ok(Self { slots })
    }

    /// How many times text `index` was written (0: never, or no such text).
    pub fn generation(&self, index: usize) -> u64 {
        self.slots
            .get(index)
            .map_or(0, |slot| slot.generation.load(Ordering::Acquire))
    }

    /// Replaces text `index`; returns its new generation. `Err` if there is no such text or
    /// `text` is longer than [`SHARED_TEXT_BYTES`].
    pub fn write(&self, index: usize, text: &[u8]) -> Result<u64, String> {
        let slot = self.slots.get(index).ok_or("no such shared text")?;
        if text.len() > SHARED_TEXT_BYTES {
            return Err(format!("longer than {SHARED_TEXT_BYTES} bytes"));
        }
        let _lock = SpinLock::acquire(&slot.lock);
        for (cell, &byte) in slot.bytes.iter().zip(text) {
            cell.store(byte, Ordering::Relaxed);
        }
        slot.len.store(text.len() as u32, Ordering::Relaxed);
        Ok(slot.generation.fetch_add(1, Ordering::Release) + 1)
    }

    /// Text `index` and its generation, copied into `buffer` (allocated by the caller, so
    /// that nothing is allocated under the lock).
    pub fn read<'b>(
        &self,
        index: usize,
        buffer: &'b mut [u8; SHARED_TEXT_BYTES],
    ) -> (u64, &'b [u8]) {
        let Some(slot) = self.slots.get(index) else {
            return (0, &buffer[..0]);
        };
        let _lock = SpinLock::acquire(&slot.lock);
        let len = (slot.len.load(Ordering::Relaxed) as usize).min(SHARED_TEXT_BYTES);
        for (byte, cell) in buffer.iter_mut().zip(&slot.bytes[..len]) {
            *byte = cell.load(Ordering::Relaxed);
        }
        (slot.generation.load(Ordering::Relaxed), &buffer[..len])
    }
}

/// Counters in shared memory that every process adds to.
pub struct SharedCounters {
    cells: &'static [AtomicU64],
}

impl SharedCounters {
    /// Maps `count` zeroed counters shared with every process forked after this call.
    pub fn map(count: usize) -> Result<Self, String> {
        let addr = map_zeroed(count * std::mem::size_of::<AtomicU64>())?;
        // SAFETY: the mapping is page aligned, holds `count` zero-filled (valid) atomics and is
        // never unmapped; all access goes through atomics.
        let cells = unsafe { std::slice::from_raw_parts(addr as *const AtomicU64, count) };
        Ok(Self { cells })
    }

    /// Adds `n` to counter `index` (nothing if there is no such counter).
    pub fn add(&self, index: usize, n: u64) {
        if let Some(cell) = self.cells.get(index) {
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counter `index` (0 if there is no such counter).
    pub fn get(&self, index: usize) -> u64 {
        self.cells
            .get(index)
            .map_or(0, |cell| cell.load(Ordering::Relaxed))
    }
}

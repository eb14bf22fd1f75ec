//! A small table in anonymous shared memory, mapped before the workers fork so that every
//! process sees the same slots. This file's unsafe code is the `mmap` call and the cast of the
//! fresh mapping to the table type.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64};

/// Slots in the table: distinct hosts being connected to at the same moment.
pub const SLOT_COUNT: usize = 1024;

/// One entry: a key hash (0 = free) and the pid of the process that holds it.
#[repr(C)]
pub struct Slot {
    pub key_hash: AtomicU64,
    pub owner_pid: AtomicI32,
}

/// The shared table: a spin lock word and the slots it protects.
#[repr(C)]
pub struct SharedTable {
    pub lock: AtomicU32,
    pub slots: [Slot; SLOT_COUNT],
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
}

//! The one kind of shared memory the module makes for its own cross-process state: an array of
//! 64-bit atomic words, anonymous and shared, mapped before the workers fork (so that every
//! process sees the same words) and never unmapped. Every structure the processes share is a
//! view over such words, read and written with atomic operations only, so no other file needs
//! unsafe code for it. This file's unsafe code is the `mmap` call and the view of the fresh
//! mapping as atomics.
#![allow(unsafe_code)]

use std::ops::Deref;
use std::sync::atomic::AtomicU64;

/// Words of memory shared with every process forked after [`SharedRegion::map`].
#[derive(Clone, Copy, Debug)]
pub struct SharedRegion {
    words: &'static [AtomicU64],
}

impl SharedRegion {
    /// Maps `count` zeroed words shared with every process forked after this call.
    pub fn map(count: usize) -> Result<Self, String> {
        let size = count.max(1) * std::mem::size_of::<AtomicU64>();
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
                "mmap of {size} bytes of shared memory failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: the mapping is page aligned (more than an AtomicU64 needs), `size` bytes long,
        // zero-filled (a valid AtomicU64) and never unmapped, so a 'static shared slice of it is
        // sound; every access goes through the atomics.
        let words = unsafe { std::slice::from_raw_parts(addr as *const AtomicU64, count) };
        Ok(Self { words })
    }

    /// The words, for as long as the process runs.
    pub fn words(self) -> &'static [AtomicU64] {
        self.words
    }
}

impl Deref for SharedRegion {
    type Target = [AtomicU64];

    fn deref(&self) -> &[AtomicU64] {
        self.words
    }
}

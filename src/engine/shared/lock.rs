//! The lock of the module's shared-memory structures: one shared word, 0 when free, else the
//! holder's [`ProcessId`]. A process killed inside a critical section leaves its id there; a
//! waiter that keeps seeing the same holder checks, every [`SPINS_BETWEEN_CHECKS`] spins,
//! whether that process still runs, and takes the lock over from a dead one. Critical sections
//! read and write atomics only (no system call, no allocation), so a live holder keeps the
//! lock for no longer than a scan or a copy; the check (a read of `/proc`) is made by a waiter,
//! never inside a critical section. What a dead holder left half written must be harmless to
//! the next holder (each structure says why it is).

use std::sync::atomic::{AtomicU64, Ordering};

use log::warn;

use super::process::ProcessId;

/// Spins a waiter makes, seeing the same holder, before it checks whether that one still runs.
const SPINS_BETWEEN_CHECKS: u32 = 1024;

/// A lock word in shared memory.
pub struct SharedLock<'a>(&'a AtomicU64);

/// The lock, held until dropped.
pub struct SharedLockGuard<'a> {
    word: &'a AtomicU64,
    me: u64,
}

impl<'a> SharedLock<'a> {
    pub fn new(word: &'a AtomicU64) -> Self {
        Self(word)
    }

    /// Waits for the lock (or takes it from a holder that died) and holds it.
    pub fn lock(&self) -> SharedLockGuard<'a> {
        let me = ProcessId::current().word();
        let mut watched = 0;
        let mut spins = 0u32;
        loop {
            let holder =
                match self
                    .0
                    .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
                {
                    Ok(_) => return SharedLockGuard { word: self.0, me },
                    Err(holder) => holder,
                };
            if holder != watched {
                (watched, spins) = (holder, 0);
            }
            spins += 1;
            // Another thread of this process holds it (tests): it is alive.
            if spins >= SPINS_BETWEEN_CHECKS && holder != me {
                spins = 0;
                let dead = ProcessId::from_word(holder).is_some_and(|h| !h.is_running());
                if dead
                    && self
                        .0
                        .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    let pid = ProcessId::from_word(holder).map_or(0, |h| h.pid);
                    warn!("took over a shared lock from process {pid}, which died holding it");
                    return SharedLockGuard { word: self.0, me };
                }
            }
            // Waiting, not holding: the holder is inside a short scan or copy.
            std::thread::yield_now();
        }
    }
}

impl Drop for SharedLockGuard<'_> {
    fn drop(&mut self) {
        // Only this holder's own lock is freed.
        let _ = self
            .word
            .compare_exchange(self.me, 0, Ordering::Release, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    /// A process that ran and ended: its id names no running process.
    fn ended_process() -> ProcessId {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let id = ProcessId::of(child.id() as i32).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        id
    }

    #[test]
    fn a_lock_left_by_a_dead_process_is_taken_over() {
        let word: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        word.store(ended_process().word(), Ordering::Relaxed);
        let (done, taken) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let guard = SharedLock::new(word).lock();
            done.send(word.load(Ordering::Relaxed)).unwrap();
            drop(guard);
        });
        // A liveness bound, not a speed measure: without owner recovery it never returns.
        let holder = taken.recv_timeout(Duration::from_secs(30));
        assert_eq!(holder, Ok(ProcessId::current().word()));
        waiter.join().unwrap();
        assert_eq!(word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_live_holder_keeps_the_lock_until_it_lets_go() {
        let word: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        // The parent of the test runner is alive and is not this process.
        let parent = ProcessId::of(std::os::unix::process::parent_id() as i32).unwrap();
        word.store(parent.word(), Ordering::Relaxed);
        let (done, taken) = mpsc::channel();
        std::thread::spawn(move || {
            let _guard = SharedLock::new(word).lock();
            done.send(()).unwrap();
        });
        assert!(taken.recv_timeout(Duration::from_millis(300)).is_err());
        word.store(0, Ordering::Release);
        assert!(taken.recv_timeout(Duration::from_secs(30)).is_ok());
    }
}

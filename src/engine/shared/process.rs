//! Which process holds something in shared memory: its pid and its start time, so that a
//! process that died is told apart from a later one that got its pid.

use std::sync::atomic::{AtomicU64, Ordering};

/// A process: its pid and the low 32 bits of its start time (clock ticks after boot, field 22
/// of `/proc/<pid>/stat`), which fit together in one shared word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: i32,
    pub start: u32,
}

/// This process's [`ProcessId::word`], once read (0: not yet, or read by the parent of a fork).
static CURRENT: AtomicU64 = AtomicU64::new(0);

impl ProcessId {
    /// The calling process (its start time read once per process).
    pub fn current() -> Self {
        let pid = std::process::id() as i32;
        if let Some(known) = Self::from_word(CURRENT.load(Ordering::Relaxed))
            && known.pid == pid
        {
            return known;
        }
        let me = Self {
            pid,
            start: start_time(pid).unwrap_or(0),
        };
        CURRENT.store(me.word(), Ordering::Relaxed);
        me
    }

    /// Process `pid` if it runs (tests play other processes with it).
    #[cfg(test)]
    pub fn of(pid: i32) -> Option<Self> {
        Some(Self {
            pid,
            start: start_time(pid)?,
        })
    }

    /// Whether this process still runs: its pid is alive with the same start time.
    pub fn is_running(self) -> bool {
        self.pid > 0 && start_time(self.pid) == Some(self.start)
    }

    /// The process as one word, never 0 (0 means "nobody" in shared memory).
    pub fn word(self) -> u64 {
        (u64::from(self.pid as u32) << 32) | u64::from(self.start)
    }

    /// The process a word written by [`ProcessId::word`] names; `None` for 0.
    pub fn from_word(word: u64) -> Option<Self> {
        (word != 0).then_some(Self {
            pid: (word >> 32) as u32 as i32,
            start: word as u32,
        })
    }
}

/// The low 32 bits of the start time of process `pid`, `None` when no such process runs.
fn start_time(pid: i32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command name, is in parentheses and may hold spaces and parentheses.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    Some(ticks as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_round_trips_through_its_word() {
        let me = ProcessId::current();
        assert!(me.is_running());
        assert_eq!(ProcessId::from_word(me.word()), Some(me));
        assert_ne!(me.word(), 0);
        assert_eq!(ProcessId::from_word(0), None);
        assert_eq!(ProcessId::of(me.pid), Some(me));
        let reused = ProcessId {
            start: me.start.wrapping_add(1),
            ..me
        };
        assert!(!reused.is_running());
    }
}

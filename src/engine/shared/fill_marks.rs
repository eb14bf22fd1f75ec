//! Which process of the instance is fetching which answer of a shared response cache: the
//! first process that misses a key marks it; the others see the mark and wait for the answer
//! (up to a bound) instead of asking the backend too. A mark names its holder, so one left by
//! a process that died is no mark; it is freed when its [`FillMark`] is dropped.

use super::holder_table::{Claim, HolderTable};
use super::process::ProcessId;

/// The marks of every process of the instance (copied into each process by fork).
#[derive(Clone, Copy)]
pub struct FillMarks {
    table: HolderTable,
}

/// What [`FillMarks::mark`] found.
pub enum Marking {
    /// This process marked the key: it fetches the answer.
    Marked(FillMark),
    /// Another live process fetches it.
    HeldElsewhere,
    /// This process marked it already, or the table is full: go on unmarked.
    Unmarked,
}

/// A key this process marked, until dropped.
pub struct FillMark {
    table: HolderTable,
    key_hash: u64,
}

impl Drop for FillMark {
    fn drop(&mut self) {
        self.table.release(self.key_hash, ProcessId::current());
    }
}

impl FillMarks {
    /// Maps an empty table: call before forking the processes that share it.
    pub fn create() -> Result<Self, String> {
        Ok(Self {
            table: HolderTable::map()?,
        })
    }

    /// Marks `key_hash` (never 0) for this process, unless a live process holds it.
    pub fn mark(&self, key_hash: u64) -> Marking {
        let me = ProcessId::current();
        match self.table.claim(key_hash, me) {
            Claim::Taken => Marking::Marked(FillMark {
                table: self.table,
                key_hash,
            }),
            Claim::HeldBy(holder) if holder != me => Marking::HeldElsewhere,
            Claim::HeldBy(_) | Claim::Full => Marking::Unmarked,
        }
    }

    /// Whether a live process holds `key_hash`.
    pub fn held(&self, key_hash: u64) -> bool {
        self.table
            .holder(key_hash)
            .is_some_and(ProcessId::is_running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_holds_until_dropped_and_a_dead_holder_holds_nothing() {
        let marks = FillMarks::create().unwrap();
        let Marking::Marked(mark) = marks.mark(7) else {
            panic!("not marked");
        };
        assert!(marks.held(7));
        assert!(matches!(marks.mark(7), Marking::Unmarked), "mine already");
        // Another live process (the test runner's parent) holds it.
        let parent = ProcessId::of(std::os::unix::process::parent_id() as i32).unwrap();
        marks.table.reassign(7, parent);
        assert!(matches!(marks.mark(7), Marking::HeldElsewhere));
        drop(mark); // not this process's any more: nothing freed
        assert!(marks.held(7));
        // A holder that died: no mark, and taken over.
        let dead = ProcessId {
            pid: i32::MAX,
            start: 1,
        };
        marks.table.reassign(7, dead);
        assert!(!marks.held(7));
        let Marking::Marked(mark) = marks.mark(7) else {
            panic!("not taken over");
        };
        drop(mark);
        assert!(!marks.held(7));
    }
}

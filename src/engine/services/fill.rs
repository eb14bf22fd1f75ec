//! Who fetches an answer of a shared cache that several processes or instances miss at once.
//! The first process of an instance to miss a key marks it in shared memory ([`FillMarks`]);
//! the others of that instance wait for the mark to go. The marking process then counts
//! itself into the key's fill counter in the store (one atomic add, `rest_client:NAME:fill:…`,
//! expiring after a few seconds): the first count fetches, the processes of other instances
//! that count after it wait for the counter to say the fill is over ([`DONE`] added by the
//! fetching process once the answer is stored). A waiter gives up after `cache_lock_ms` (or
//! when the mark's holder died, or the store fails) and asks the backend itself; a process
//! that asked after waiting marks the fill over too, so a fill whose process died holds
//! later misses up for one wait at most.

use std::time::Duration;

use super::shared_guard::GuardedStore;
use crate::engine::shared::{FillMark, FillMarks, Marking};

/// A fill counter at or above this: the last fill of the answer is over.
const DONE: i32 = 1 << 20;

/// How often a waiter looks at the mark or the counter again.
pub const FILL_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// What [`Fill::claim`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// This process fetches the answer.
    Lead,
    /// Another process or instance fetches it: wait, then look up again.
    Wait,
    /// A fill ended just before: look up again (this process fetches if it is still missing).
    Filled,
}

/// What another process or instance fetches, for a waiter.
enum Awaited {
    /// The holder of this instance's mark of the key.
    Process(u64),
    /// The fill counter in the store (another instance fetches).
    Instance(String),
}

/// One process's part in fetching one answer, released when dropped or finished.
#[derive(Default)]
pub struct Fill {
    /// This instance's mark, held while this process fetches or waits for another instance.
    mark: Option<FillMark>,
    /// The fill counter in the store and the value this process's count gave it.
    counted: Option<(String, i64)>,
    awaited: Option<Awaited>,
    ttl_secs: u32,
}

impl Fill {
    /// Decides who fetches the answer whose store digest is `digest` (hex), among the
    /// processes of the instance (`marks`) and the instances sharing `store`. `counter_key` is
    /// its fill counter's key in the store.
    pub fn claim(
        store: &mut GuardedStore,
        marks: Option<FillMarks>,
        digest: &str,
        counter_key: String,
    ) -> (Self, Claim) {
        let wait = store.limits().wait_for_fill;
        let mut fill = Self {
            ttl_secs: u32::try_from((2 * wait.as_millis()).div_ceil(1000).max(1)).unwrap_or(1),
            ..Self::default()
        };
        if wait.is_zero() {
            return (fill, Claim::Lead);
        }
        let key_hash = digest_hash(digest);
        match marks.map(|marks| marks.mark(key_hash)) {
            Some(Marking::Marked(mark)) => fill.mark = Some(mark),
            Some(Marking::HeldElsewhere) => {
                fill.awaited = Some(Awaited::Process(key_hash));
                return (fill, Claim::Wait);
            }
            Some(Marking::Unmarked) | None => {}
        }
        let n = match store.add(&counter_key, 1, fill.ttl_secs) {
            Ok(Some(n)) => n,
            // A store that cannot count, or failed: no other instance to wait for.
            Ok(None) | Err(_) => return (fill, Claim::Lead),
        };
        if n >= i64::from(DONE) {
            return (fill, Claim::Filled);
        }
        let claim = if n == 1 {
            Claim::Lead
        } else {
            fill.awaited = Some(Awaited::Instance(counter_key.clone()));
            Claim::Wait
        };
        fill.counted = Some((counter_key, n));
        (fill, claim)
    }

    /// Whether it waits for another process or instance.
    pub fn waits(&self) -> bool {
        self.awaited.is_some()
    }

    /// Whether the fill it waits for is over, or to be given up (its holder died, the store
    /// failed).
    pub fn awaited_over(&self, store: Option<&mut GuardedStore>, marks: Option<FillMarks>) -> bool {
        match (&self.awaited, store) {
            (Some(Awaited::Process(key_hash)), _) => !marks.is_some_and(|m| m.held(*key_hash)),
            (Some(Awaited::Instance(counter_key)), Some(store)) => {
                match store.get(counter_key, "read a fill") {
                    Ok(Some(value)) => String::from_utf8_lossy(&value)
                        .trim()
                        .parse::<i64>()
                        .is_ok_and(|n| n >= i64::from(DONE)),
                    Ok(None) | Err(_) => true,
                }
            }
            _ => true,
        }
    }

    /// The wait is over and the answer is still missing: this process fetches it (keeping its
    /// mark and count, to mark the fill over when it ends).
    pub fn go_alone(&mut self) {
        self.awaited = None;
    }

    /// The answer is stored (or could not be): the fill is marked over for the other
    /// instances, and this instance's mark goes.
    pub fn finish(mut self, store: Option<&mut GuardedStore>) {
        if let (Some((counter_key, n)), Some(store)) = (self.counted.take(), store)
            && n < i64::from(DONE)
            && self.awaited.is_none()
        {
            let _ = store.add(&counter_key, DONE, self.ttl_secs);
        }
    }
}

/// A mark's key: the first 8 bytes of the digest, never 0.
fn digest_hash(digest: &str) -> u64 {
    let prefix = digest.get(..16).unwrap_or(digest);
    u64::from_str_radix(prefix, 16).unwrap_or(1).max(1)
}

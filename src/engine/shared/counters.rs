//! Counters in shared memory that every process adds to.

use std::sync::atomic::Ordering;

use super::region::SharedRegion;

pub struct SharedCounters {
    region: SharedRegion,
}

impl SharedCounters {
    /// Maps `count` zeroed counters shared with every process forked after this call.
    pub fn map(count: usize) -> Result<Self, String> {
        Ok(Self {
            region: SharedRegion::map(count)?,
        })
    }

    /// Adds `n` to counter `index` (nothing if there is no such counter).
    pub fn add(&self, index: usize, n: u64) {
        if let Some(cell) = self.region.get(index) {
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counter `index` (0 if there is no such counter).
    pub fn get(&self, index: usize) -> u64 {
        self.region
            .get(index)
            .map_or(0, |cell| cell.load(Ordering::Relaxed))
    }
}

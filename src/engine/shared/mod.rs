//! State shared by every process of the host, in memory mapped before the workers fork: the
//! connect gate of `no_concurrent_connects`, texts every process reads (renewed credentials),
//! and counters every process adds to.

mod connect_gate;
mod shared_table;

pub use connect_gate::{ConnectGate, GateTicket};
pub use shared_table::SharedCounters;
pub(crate) use shared_table::{SHARED_TEXT_BYTES, SharedTexts};

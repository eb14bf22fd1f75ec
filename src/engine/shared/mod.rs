//! State shared by every process of the host: one kind of shared memory ([`SharedRegion`]:
//! atomic words mapped before the workers fork) and one lock ([`SharedLock`]: a word naming its
//! holder, taken over from a holder that died), and what is built on them: a table of which
//! process holds which key (under the connect gate of `no_concurrent_connects`), texts every
//! process reads (renewed credentials), and counters every process adds to.

mod connect_gate;
mod counters;
mod holder_table;
mod lock;
mod process;
mod region;
mod texts;

pub use connect_gate::{ConnectGate, GateTicket};
pub use counters::SharedCounters;
pub(crate) use texts::{SHARED_TEXT_BYTES, SharedTexts};

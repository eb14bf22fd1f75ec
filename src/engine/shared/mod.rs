//! State shared by every process of the host: one kind of shared memory ([`SharedRegion`]:
//! atomic words mapped before the workers fork) and one lock ([`SharedLock`]: a word naming its
//! holder, taken over from a holder that died), and what is built on them: a table of which
//! process holds which key (under the connect gate of `no_concurrent_connects` and the fill
//! marks of the shared response caches), texts every process reads (renewed credentials),
//! counters every process adds to, and the health of the services' upstreams.

mod connect_gate;
mod counters;
mod fill_marks;
mod holder_table;
mod lock;
mod process;
mod region;
mod texts;
mod upstream_health;

pub use connect_gate::{ConnectGate, GateTicket};
pub use counters::SharedCounters;
pub use fill_marks::{FillMark, FillMarks, Marking};
pub(crate) use texts::{SHARED_TEXT_BYTES, SharedTexts};
pub use upstream_health::{Availability, Millis, ServiceHealth, UpstreamHealth, UrlHealth};

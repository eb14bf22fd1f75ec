//! One transfer on one libcurl easy handle, the same for blocking and async transfers: which
//! options it gets (`configure`), what its handler collects (`Collector`, `ResponseHead`, the
//! traced `Transcript`), how it ends (`finish` into an [`Outcome`], one more attempt on a new
//! connection, the handle scrubbed), and the libcurl calls the `curl` crate lacks.
//!
//! Nothing here knows who runs the handle (the blocking client or the async hub, in
//! `engine::client`) or why (the call pipeline); both sit on top of this.

mod collector;
mod configure;
mod connection_check;
mod connection_raw;
mod finish;
mod outcome;
mod response_head;
mod target;
mod transcript;

pub(crate) use collector::Collector;
pub use collector::InflightBodies;
pub(crate) use configure::{configure, connect_limit, transfer_limit};
pub(crate) use finish::{finish, retry_on_new_connection, scrub};
pub use outcome::Outcome;
pub use response_head::ResponseHead;
pub(crate) use target::Target;
pub use transcript::{TracedMessage, Transcript};

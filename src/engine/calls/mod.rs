//! The call pipeline of one process: what happens around the transfer of each script call,
//! blocking or async, in one place — its service, cache, connect gate, and the settling of its
//! outcome. Decisions that span attempts of one call (which backend, fail over or not, serve
//! a stale answer, wait for another call's transfer) belong here, on top of `client` and
//! `transfer`: a named service's upstreams in `upstreams.rs` (the decisions) and `failover.rs`
//! (the attempts, blocking and async).

mod call;
mod coalesce;
mod failover;
mod fills;
mod observer;
mod process_calls;
mod stale;
mod upstreams;

pub use call::{Call, CallSpec, MethodChoice};
pub use observer::{CallObserver, UpstreamChange, UpstreamState};
pub use process_calls::{Calls, Started};

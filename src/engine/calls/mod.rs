//! The call pipeline of one process: what happens around the transfer of each script call,
//! blocking or async, in one place — its service, cache, connect gate, and the settling of its
//! outcome. Decisions that span attempts of one call (which backend, try again or not, serve a
//! stale answer, wait for another call's transfer) belong here, on top of `client` and
//! `transfer`.

mod call;
mod coalesce;
mod fills;
mod observer;
mod process_calls;
mod stale;

pub use call::{Call, CallSpec, MethodChoice};
pub use observer::CallObserver;
pub use process_calls::{Calls, Started};

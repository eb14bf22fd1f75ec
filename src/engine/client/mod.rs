//! Who runs transfers in one process: the [`Client`] with its blocking easy handle, and the
//! [`Hub`] of async transfers (one libcurl multi handle mirrored into one descriptor). Both
//! configure and finish their transfers with `engine::transfer`.

mod hub;
mod lookup_threads;
mod process_client;
mod watcher;

pub use hub::Token;
pub use process_client::Client;

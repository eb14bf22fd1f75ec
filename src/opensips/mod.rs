//! The OpenSIPS adaptor: ABI mirrors, the `exports` table and its entry points, module
//! parameters, per-process state, and the script functions. It never calls libcurl directly.

mod abi;
mod async_call;
mod async_script;
mod cachedb;
mod cachedb_engines;
mod call_args;
mod events;
mod exports;
mod log_bridge;
mod message;
mod mi;
mod module;
mod script;
mod stats;
mod target;
mod trace_api;
mod trace_context;
mod tracing;
mod worker;

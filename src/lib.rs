//! rest_client: a drop-in replacement for OpenSIPS's `rest_client` module.
//!
//! - [`engine`]: the host-neutral HTTP engine over libcurl (no OpenSIPS types).
//! - `opensips`: the OpenSIPS adaptor: ABI mirrors, the `exports` table, script functions.
//! - `capi`: the host-neutral C API declared in `include/rest_client.h`.
//!
//! Unsafe code is allowed only in the files that cross the FFI boundary; each says so at its top.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

mod capi;
pub mod engine;
mod opensips;

//! A transfer function's arguments as the core passed them, and the output variables its
//! result goes to.

use std::ffi::c_void;

use crate::engine::Method;

use super::abi::{MessageId, ScriptVar};

/// The output variables of a transfer function.
pub struct Outputs {
    pub body: Option<ScriptVar>,
    pub content_type: Option<ScriptVar>,
    pub code: Option<ScriptVar>,
    /// Write the body as received instead of whitespace-trimmed (a service's `raw_body`, or
    /// `rest_raw_body()` before the call).
    pub body_as_received: bool,
}

/// Which method a transfer function uses: its own, or the one the script names
/// (`rest_request`).
#[derive(Clone, Copy)]
pub enum MethodArg<'a> {
    Fixed(Method),
    Named(Option<&'a [u8]>),
}

/// The arguments of a transfer function, as the core passed them.
pub struct CallArgs<'a> {
    pub message: MessageId,
    /// The SIP message being processed (`struct sip_msg *`), for tracing.
    pub msg: *mut c_void,
    pub method: MethodArg<'a>,
    pub url: Option<&'a [u8]>,
    pub body: Option<&'a [u8]>,
    pub content_type: Option<&'a [u8]>,
    pub outputs: Outputs,
}

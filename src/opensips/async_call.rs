//! One suspended async call as the adaptor keeps it: the core's context to resume, who resumes
//! it, where its results go, and its outcome once its transfer ended (until the core resumes
//! it). What the engine keeps for the same call (gate, cache) stays in the engine.

use crate::engine::Outcome;

use super::abi::{AsyncCaller, AsyncCtxRef};
use super::call_args::Outputs;

pub struct AsyncCall {
    /// Taken when the module asks the core to resume the call (once).
    pub ctx: Option<AsyncCtxRef>,
    pub caller: AsyncCaller,
    pub outputs: Outputs,
    /// The transfer's outcome once it ended, until the core resumes the call.
    pub outcome: Option<Outcome>,
}

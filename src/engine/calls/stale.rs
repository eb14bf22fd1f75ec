//! Stale if error (RFC 5861): a call whose backend failed gets, instead of the failure, the
//! answer its lookup found past its freshness, within the answer's `stale-if-error` window
//! (see `services::stale`). What counts as the backend failing is decided here only.

use super::call::CacheSlot;
use super::process_calls::Calls;
use crate::engine::result_code::ResultCode;
use crate::engine::transfer::Outcome;

/// Whether a call's result (and the HTTP status of its answer) says that its backend failed:
/// it could not be reached or did not answer in time, answered 5xx, or another process of the
/// instance is connecting to it (`no_concurrent_connects`). A result code meaning "no backend
/// to ask" (a service failing fast) belongs here too, one line each.
pub fn backend_failed(result: ResultCode, status: u32) -> bool {
    match result {
        ResultCode::ConnectRefused
        | ResultCode::ConnectTimeout
        | ResultCode::TransferTimeout
        | ResultCode::AlreadyConnecting => true,
        ResultCode::NoHealthyUpstream => true,
        ResultCode::AdmissionLimit => true,
        ResultCode::Ok => (500..600).contains(&status),
        ResultCode::AsyncLimitReached | ResultCode::InternalError => false,
    }
}

impl Calls {
    /// `outcome`, or `stale` in its place when the backend failed and there is one.
    pub(super) fn stale_if_failed(&self, stale: Option<Outcome>, outcome: Outcome) -> Outcome {
        match stale {
            Some(stale) if backend_failed(outcome.result, outcome.status) => {
                self.observer.stale_served();
                stale
            }
            _ => outcome,
        }
    }

    /// A call that ended with `code` before its transfer started: its part in the cache is
    /// released, and a stale answer replaces a failure of the backend (`Err(code)` otherwise).
    pub(super) fn unsent(
        &mut self,
        slot: Option<CacheSlot>,
        code: ResultCode,
    ) -> Result<Outcome, ResultCode> {
        let outcome = self.settle_in_cache(slot, Outcome::failed(code));
        if outcome.stale {
            Ok(outcome)
        } else {
            Err(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_of_the_backend_and_nothing_else() {
        for (result, status, failed) in [
            (ResultCode::ConnectRefused, 0, true),
            (ResultCode::ConnectTimeout, 0, true),
            (ResultCode::TransferTimeout, 0, true),
            (ResultCode::AlreadyConnecting, 0, true),
            (ResultCode::Ok, 503, true),
            (ResultCode::Ok, 599, true),
            (ResultCode::Ok, 200, false),
            (ResultCode::Ok, 404, false),
            (ResultCode::AsyncLimitReached, 0, false),
            (ResultCode::InternalError, 0, false),
        ] {
            assert_eq!(
                backend_failed(result, status),
                failed,
                "{result:?} {status}"
            );
        }
    }
}

//! The attempts of one call, blocking or async, each through the connect gate, and between
//! them the decisions of the call's route (`upstreams.rs`) for a call to a named service. A
//! blocking call runs its attempts in a loop; an async call whose attempt ended and should fail
//! over starts its next attempt under the same token, inside the engine, so the host only
//! ever sees the call's last outcome.

use super::call::{Call, Launched, RoutedRequest, RunningCall};
use super::process_calls::Calls;
use super::upstreams::{Next, Route};
use crate::engine::client::Token;
use crate::engine::request::Request;
use crate::engine::result_code::ResultCode;
use crate::engine::transfer::Outcome;

impl Calls {
    /// Admits a call to a named service and points it at its first URL (see [`Route::begin`]):
    /// `Err` with -7 or -6 when it fails at once.
    pub(super) fn begin_route(&mut self, call: &mut Call) -> Result<(), ResultCode> {
        let default_limit = self.client.settings().transfer_timeout;
        match call.route.as_mut() {
            Some(route) => route.begin(
                self.registry,
                &mut call.request,
                default_limit,
                self.observer,
            ),
            None => Ok(()),
        }
    }

    /// Runs `call`'s attempts blocking until its route is done. `Err` when nothing was sent
    /// (-6, -7, or -4 from the gate).
    pub(super) fn transfer_blocking(&mut self, call: &mut Call) -> Result<Outcome, ResultCode> {
        self.begin_route(call)?;
        loop {
            let ticket = match self.enter_gate(&call.request) {
                Ok(ticket) => ticket,
                Err(code) => return self.not_started(call.route.as_mut(), code),
            };
            let outcome = self.client.perform(&call.request);
            self.leave_gate(ticket, outcome.result == ResultCode::Ok);
            if let Next::Done(outcome) =
                self.next_attempt(call.route.as_mut(), &mut call.request, outcome)
            {
                return Ok(outcome);
            }
        }
    }

    /// Starts attempts of an async call as transfer `token` until one runs (it is then among
    /// the running calls) or the call is over (its outcome not settled yet).
    pub(super) fn launch(&mut self, token: Token, mut call: Call) -> Launched {
        loop {
            let ticket = match self.enter_gate(&call.request) {
                Ok(ticket) => ticket,
                Err(code) => {
                    return match self.not_started(call.route.as_mut(), code) {
                        Ok(outcome) => Launched::Ended(call.slot, outcome),
                        Err(code) => Launched::Unsent(call.slot, code),
                    };
                }
            };
            let Some(outcome) = self.client.start(token, &call.request) else {
                self.fills.leading(token, &call, self.client.settings());
                let routed = call.route.map(|route| {
                    Box::new(RoutedRequest {
                        route,
                        request: call.request,
                    })
                });
                self.running.insert(
                    token,
                    RunningCall {
                        ticket,
                        slot: call.slot,
                        routed,
                    },
                );
                return Launched::Running;
            };
            self.leave_gate(ticket, outcome.result == ResultCode::Ok);
            if let Next::Done(outcome) =
                self.next_attempt(call.route.as_mut(), &mut call.request, outcome)
            {
                return Launched::Ended(call.slot, outcome);
            }
        }
    }

    /// The attempt of async call `token` ended with `outcome` (its gate ticket left): the call
    /// with its outcome (not settled yet) when it is over, `None` when its next attempt runs,
    /// under the same token.
    pub(super) fn attempt_ended(
        &mut self,
        token: Token,
        mut call: RunningCall,
        outcome: Outcome,
    ) -> Option<(RunningCall, Outcome)> {
        let Some(routed) = call.routed.take() else {
            return Some((call, outcome));
        };
        let RoutedRequest { mut route, request } = *routed;
        let mut request = request;
        let outcome = match route.after(self.registry, &mut request, outcome, self.observer) {
            Next::Done(outcome) => return Some((call, outcome)),
            Next::Again => self.launch(
                token,
                Call {
                    request,
                    service_raw_body: false,
                    slot: call.slot.take(),
                    route: Some(route),
                },
            ),
        };
        match outcome {
            Launched::Running => None,
            Launched::Ended(slot, outcome) => Some((RunningCall { slot, ..call }, outcome)),
            // After a failed attempt the route ends with it: no code comes back.
            Launched::Unsent(slot, code) => {
                Some((RunningCall { slot, ..call }, Outcome::failed(code)))
            }
        }
    }

    fn next_attempt(
        &mut self,
        route: Option<&mut Route>,
        request: &mut Request,
        outcome: Outcome,
    ) -> Next {
        match route {
            Some(route) => route.after(self.registry, request, outcome, self.observer),
            None => Next::Done(outcome),
        }
    }

    fn not_started(
        &mut self,
        route: Option<&mut Route>,
        code: ResultCode,
    ) -> Result<Outcome, ResultCode> {
        match route {
            Some(route) => route.not_started(code, self.observer),
            None => Err(code),
        }
    }
}

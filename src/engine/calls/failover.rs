//! The attempts of one call, blocking or async, each through the connect gate, and between
//! them the decisions of the call's route (`upstreams.rs`) for a call to a named service. A
//! blocking call runs its attempts in a loop; an async call whose attempt ended and should fail
//! over starts its next attempt under the same token, inside the engine, so the host only
//! ever sees the call's last outcome.

use super::call::{CacheSlot, Call, RoutedRequest, RunningCall};
use super::process_calls::{Calls, Started};
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
    /// the running calls) or the call is over (its outcome settled).
    pub(super) fn launch(
        &mut self,
        token: Token,
        slot: Option<CacheSlot>,
        mut request: Request,
        mut route: Option<Route>,
    ) -> Result<Started, ResultCode> {
        loop {
            let ticket = match self.enter_gate(&request) {
                Ok(ticket) => ticket,
                Err(code) => {
                    let outcome = self.not_started(route.as_mut(), code)?;
                    return Ok(Started::Done(self.settle(slot, outcome)));
                }
            };
            let Some(outcome) = self.client.start(token, &request) else {
                let routed = route.map(|route| Box::new(RoutedRequest { route, request }));
                self.running.insert(
                    token,
                    RunningCall {
                        ticket,
                        slot,
                        routed,
                    },
                );
                return Ok(Started::Running);
            };
            self.leave_gate(ticket, outcome.result == ResultCode::Ok);
            if let Next::Done(outcome) = self.next_attempt(route.as_mut(), &mut request, outcome) {
                return Ok(Started::Done(self.settle(slot, outcome)));
            }
        }
    }

    /// The attempt of async call `token` ended with `outcome` (its gate ticket left): the
    /// call's settled outcome, or `None` when its next attempt runs, under the same token.
    pub(super) fn attempt_ended(
        &mut self,
        token: Token,
        call: RunningCall,
        outcome: Outcome,
    ) -> Option<Outcome> {
        let Some(routed) = call.routed else {
            return Some(self.settle(call.slot, outcome));
        };
        let RoutedRequest {
            mut route,
            mut request,
        } = *routed;
        match route.after(self.registry, &mut request, outcome, self.observer) {
            Next::Done(outcome) => Some(self.settle(call.slot, outcome)),
            Next::Again => match self.launch(token, call.slot, request, Some(route)) {
                Ok(Started::Running) => None,
                Ok(Started::Done(outcome)) => Some(outcome),
                // After a failed attempt the route ends with it: no code comes back.
                Err(code) => Some(Outcome::failed(code)),
            },
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

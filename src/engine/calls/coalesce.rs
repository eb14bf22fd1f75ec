//! One transfer for many misses of the same answer, and the background refreshes of
//! stale-while-revalidate.
//!
//! - In one process: a cacheable call that misses while an async transfer of this process
//!   fetches the same key (a call's, or a background refresh) waits for it. An async call is
//!   resumed with a copy of that transfer's outcome when [`Calls::progress`] hands out the
//!   transfer's; it follows only a transfer whose time limit ends no later than its own. A
//!   blocking call drives the hub until that transfer ends, or its own limit passes (-3).
//! - Across processes and instances (a shared cache): the store decides who fetches
//!   (`services::fill`); the others wait up to `cache_lock_ms`, then look up again, and ask the
//!   backend themselves if the answer is still missing. A blocking call waits in slices of
//!   [`FILL_POLL_INTERVAL`]; an async one is suspended, and the hub's descriptor is made
//!   readable every slice to look again, so the worker never sleeps for it.
//! - Stale while revalidate: the call is answered at once, and a background transfer (an
//!   engine token, `INTERNAL_TOKENS` up) fetches the answer again, one per key among the
//!   processes and instances; a process whose hub no reactor watches drives it at its next
//!   calls.

use std::time::{Duration, Instant};

use super::call::{CacheSlot, Call, RunningCall};
use super::fills::{Follower, Waiter, deadline_of, fill_key};
use super::process_calls::{Calls, Started};
use super::upstreams::Route;
use crate::engine::client::Token;
use crate::engine::request::Request;
use crate::engine::result_code::ResultCode;
use crate::engine::services::{Claim, FILL_POLL_INTERVAL, Pending};
use crate::engine::transfer::{Outcome, Transcript};

/// Longest a blocking call waits on the hub's descriptor at once, for a transfer it follows.
const FOLLOW_SLICE: Duration = Duration::from_millis(50);

impl Calls {
    /// A cacheable `call` missed (`pending`): served at once past its freshness (and fetched
    /// again in the background), or set to fetch the answer, or to wait for whoever does.
    pub(super) fn missed(&mut self, call: &mut Call, mut pending: Pending) -> Option<Outcome> {
        let index = call.slot.as_ref()?.index;
        let here = self.fills.leads(index, pending.key());
        let cache = self.caches.get_mut(&index)?;
        if let Some(answer) = pending.take_revalidating() {
            self.observer.stale_served();
            if !here && cache.claim(&mut pending) == Claim::Lead {
                self.refresh(index, &call.request, pending);
            }
            return Some(self.answered_from_cache(index, &call.request, answer));
        }
        if !here && cache.claim(&mut pending) == Claim::Filled {
            match cache.look_again(pending) {
                Ok(outcome) => {
                    return Some(self.answered_from_cache(index, &call.request, outcome));
                }
                Err(again) => pending = *again,
            }
        }
        call.slot.as_mut()?.pending = Some(pending);
        None
    }

    /// Fetches the answer of `request` (of service `index`) again, in the background.
    fn refresh(&mut self, index: usize, request: &Request, pending: Pending) {
        let mut request = request.clone();
        request.trace = false;
        let url = request.url.clone();
        let route = Route::new(self.registry, index, &request);
        let call = Call {
            request,
            service_raw_body: false,
            route,
            slot: Some(CacheSlot {
                index,
                url,
                key: None,
                pending: Some(pending),
                writes: false,
            }),
        };
        let token = self.fills.next_internal();
        // Ended at once or refused: it settled; nothing waits for it.
        let _ = self.start_transfer(token, call);
    }

    /// Without a reactor watching the hub, the process's calls drive its background
    /// transfers, without waiting.
    pub(super) fn drive_unwatched(&mut self) {
        if self.watched || self.running.is_empty() {
            return;
        }
        self.drive_hub();
    }

    /// Async call `token` waits for another call's transfer of its answer, if one runs (or
    /// another process or instance fetches it); the call is given back to start its own
    /// transfer otherwise.
    pub(super) fn join_fill(&mut self, token: Token, call: Call) -> Option<Call> {
        let Some(key) = fill_key(&call) else {
            return Some(call);
        };
        if let Some(leader) = self.fills.leaders.get(&key) {
            let mine = deadline_of(self.client.settings(), &call.request);
            let in_time = match (leader.deadline, mine) {
                (_, None) => true,
                (Some(theirs), Some(mine)) => theirs <= mine,
                (None, Some(_)) => false,
            };
            if in_time {
                let leader = leader.token;
                self.follow(leader, token, call);
                return None;
            }
            return Some(call);
        }
        let waits = call
            .slot
            .as_ref()
            .and_then(|s| s.pending.as_ref())
            .is_some_and(Pending::waits);
        if !waits {
            return Some(call);
        }
        self.observer.coalesced();
        let wait = self
            .caches
            .get(&key.0)
            .map_or(Duration::ZERO, |c| c.wait_for_fill());
        self.fills.waiters.push(Waiter {
            token,
            call,
            until: Instant::now() + wait,
        });
        self.client.hub.wake_after(FILL_POLL_INTERVAL);
        None
    }

    fn follow(&mut self, leader: Token, token: Token, call: Call) {
        self.observer.coalesced();
        let follower = Follower {
            token,
            traced: call.request.trace.then_some(call.request),
            slot: call.slot,
        };
        self.fills
            .followers
            .entry(leader)
            .or_default()
            .push(follower);
    }

    /// Looks again at the async calls that wait for another process or instance: those whose
    /// wait is over are answered from the cache, or start their own transfer.
    pub(super) fn check_waiting(&mut self) {
        if self.fills.waiters.is_empty() {
            return;
        }
        let now = Instant::now();
        for waiter in std::mem::take(&mut self.fills.waiters) {
            let Waiter { token, call, until } = waiter;
            let cache = call
                .slot
                .as_ref()
                .and_then(|s| self.caches.get_mut(&s.index));
            let pending = call.slot.as_ref().and_then(|s| s.pending.as_ref());
            let over = match (cache, pending) {
                (Some(cache), Some(pending)) => now >= until || cache.awaited_over(pending),
                _ => true,
            };
            if !over {
                self.fills.waiters.push(Waiter { token, call, until });
                continue;
            }
            let mut call = call;
            let outcome = match self.after_wait(&mut call) {
                Some(outcome) => Ok(Started::Done(outcome)),
                None => self.start(token, call),
            };
            match outcome {
                Ok(Started::Done(outcome)) => self.fills.ended.push((token, outcome)),
                Ok(Started::Running) => {}
                Err(code) => self.fills.ended.push((token, Outcome::failed(code))),
            }
        }
        if !self.fills.waiters.is_empty() {
            self.client.hub.wake_after(FILL_POLL_INTERVAL);
        }
    }

    /// A call's wait for another process or instance is over: its answer, or `None` with the
    /// call set to fetch it itself.
    fn after_wait(&mut self, call: &mut Call) -> Option<Outcome> {
        let slot = call.slot.as_mut()?;
        let index = slot.index;
        let pending = slot.pending.take()?;
        let cache = self.caches.get_mut(&index)?;
        match cache.look_again(pending) {
            Ok(outcome) => Some(self.answered_from_cache(index, &call.request, outcome)),
            Err(pending) => {
                slot.pending = Some(*pending);
                None
            }
        }
    }

    /// A blocking `call` that missed while another call fetches its answer: waits for it
    /// (see the file's comment). `None`: it fetches the answer itself.
    pub(super) fn wait_blocking(&mut self, call: &mut Call) -> Option<Result<Outcome, ResultCode>> {
        let key = fill_key(call)?;
        if let Some(leader) = self.fills.leaders.get(&key).map(|l| l.token) {
            return Some(Ok(self.follow_blocking(leader, call)));
        }
        let slot = call.slot.as_mut()?;
        let cache = self.caches.get_mut(&slot.index)?;
        if !slot.pending.as_ref().is_some_and(Pending::waits) {
            return None;
        }
        self.observer.coalesced();
        let until = Instant::now() + cache.wait_for_fill();
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if slot.pending.as_ref().is_none_or(|p| cache.awaited_over(p)) {
                break;
            }
            std::thread::sleep(left.min(FILL_POLL_INTERVAL));
        }
        self.after_wait(call).map(Ok)
    }

    /// Follows transfer `leader` for blocking `call`: drives the hub until it ends, or the
    /// call's own limit passes (then a timeout, or the call's stale answer).
    fn follow_blocking(&mut self, leader: Token, call: &mut Call) -> Outcome {
        let token = self.fills.next_internal();
        let deadline = deadline_of(self.client.settings(), &call.request);
        let request = call.request.clone();
        self.follow(
            leader,
            token,
            Call {
                request,
                service_raw_body: call.service_raw_body,
                slot: call.slot.take(),
                route: None,
            },
        );
        let outcome = loop {
            if let Some(outcome) = self.fills.take_ended(token) {
                break outcome;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|left| left.is_zero()) {
                let slot = self.unfollow(leader, token);
                break self.settle_in_cache(slot, Outcome::failed(ResultCode::TransferTimeout));
            }
            self.client
                .hub
                .wait(left.map_or(FOLLOW_SLICE, |l| l.min(FOLLOW_SLICE)));
            self.drive_hub();
        };
        // The host's calls that ended meanwhile: its reactor comes back for them.
        self.wake_for_finished();
        outcome
    }

    /// Stops follower `token` of `leader`; its place in the cache.
    fn unfollow(&mut self, leader: Token, token: Token) -> Option<CacheSlot> {
        let followers = self.fills.followers.get_mut(&leader)?;
        let index = followers.iter().position(|f| f.token == token)?;
        followers.swap_remove(index).slot
    }

    /// Transfer `token` of `call` ended with `outcome` (not settled yet): the calls that
    /// followed it get a copy (or their stale answer in place of a failure).
    pub(super) fn fill_ended(&mut self, token: Token, call: &RunningCall, outcome: &Outcome) {
        if let Some(slot) = &call.slot
            && let Some(pending) = &slot.pending
        {
            let key = (slot.index, pending.key().to_vec());
            if self
                .fills
                .leaders
                .get(&key)
                .is_some_and(|l| l.token == token)
            {
                self.fills.leaders.remove(&key);
            }
        }
        for follower in self.fills.followers.remove(&token).unwrap_or_default() {
            let mut copy = Outcome {
                transcript: None,
                ..outcome.clone()
            };
            if let Some(request) = &follower.traced {
                copy.transcript = Some(Box::new(Transcript::cache_hit(
                    request, &copy.head, &copy.body,
                )));
            }
            let stale = follower
                .slot
                .and_then(|slot| slot.pending)
                .and_then(|mut pending| pending.take_stale());
            let copy = self.stale_if_failed(stale, copy);
            self.fills.ended.push((follower.token, copy));
        }
    }
}

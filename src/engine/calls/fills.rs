//! What a process keeps about the calls that wait for another one's transfer (see
//! `coalesce`): the transfers that fetch a cacheable answer, the calls following each, the
//! async calls waiting for another process or instance, and the outcomes settled for calls
//! outside [`Calls::progress`](super::Calls::progress).

use std::collections::HashMap;
use std::time::Instant;

use super::call::{CacheSlot, Call};
use crate::engine::client::Token;
use crate::engine::request::Request;
use crate::engine::settings::ClientSettings;
use crate::engine::transfer::{Outcome, transfer_limit};

/// Tokens from here up name the engine's own transfers (background refreshes, blocking calls
/// waiting for a transfer of the hub); the host names its calls below.
pub const INTERNAL_TOKENS: Token = 1 << (Token::BITS - 1);

/// A transfer of this process that fetches a cacheable answer.
pub(super) struct Leader {
    pub token: Token,
    /// When its time limit ends (`None`: no limit).
    pub deadline: Option<Instant>,
}

/// A call waiting for a transfer of this process.
pub(super) struct Follower {
    pub token: Token,
    /// Its own place in the cache (its stale answer, for a failure).
    pub slot: Option<CacheSlot>,
    /// Its request, for a traced call's transcript.
    pub traced: Option<Request>,
}

/// An async call waiting for another process's or instance's transfer.
pub(super) struct Waiter {
    pub token: Token,
    pub call: Call,
    pub until: Instant,
}

/// A process's calls that wait for another one's transfer.
#[derive(Default)]
pub struct Fills {
    /// Transfers of this process that fetch a cacheable answer, by service and key.
    pub leaders: HashMap<(usize, Vec<u8>), Leader>,
    /// The calls waiting for each of them, by its token.
    pub followers: HashMap<Token, Vec<Follower>>,
    pub waiters: Vec<Waiter>,
    /// Calls that ended, settled, not handed out yet: the host's (see [`Calls::progress`])
    /// and the engine's blocking followers (taken by the call itself).
    pub ended: Vec<(Token, Outcome)>,
    last_internal: Token,
}

/// When a transfer of `request` started now must end (`None`: no limit).
pub(super) fn deadline_of(settings: &ClientSettings, request: &Request) -> Option<Instant> {
    let limit = transfer_limit(settings, request);
    (!limit.is_zero()).then(|| Instant::now() + limit)
}

/// The service and key a call that missed fetches.
pub(super) fn fill_key(call: &Call) -> Option<(usize, Vec<u8>)> {
    let slot = call.slot.as_ref()?;
    Some((slot.index, slot.pending.as_ref()?.key().to_vec()))
}

impl Fills {
    /// Transfer `token` of `call` (started now) fetches its answer, if it missed.
    pub fn leading(&mut self, token: Token, call: &Call, settings: &ClientSettings) {
        if let Some(key) = fill_key(call) {
            let deadline = deadline_of(settings, &call.request);
            self.leaders.insert(key, Leader { token, deadline });
        }
    }

    pub fn leads(&self, index: usize, key: &[u8]) -> bool {
        self.leaders.contains_key(&(index, key.to_vec()))
    }

    pub fn next_internal(&mut self) -> Token {
        self.last_internal = self.last_internal.wrapping_add(1);
        INTERNAL_TOKENS | self.last_internal
    }

    /// Call `token`'s outcome, if it ended.
    pub fn take_ended(&mut self, token: Token) -> Option<Outcome> {
        let index = self.ended.iter().position(|(t, _)| *t == token)?;
        Some(self.ended.swap_remove(index).1)
    }
}

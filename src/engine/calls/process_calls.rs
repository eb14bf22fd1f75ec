//! One process's calls, blocking and async, through one pipeline: the service resolved, its
//! cache looked up (a flush asked by the host applied first), the connect gate entered, the
//! transfer run by the client or the hub, and its outcome settled (gate left, answer stored or
//! invalidated, a stale answer in place of a failure, the host told). Both paths go through
//! the same steps in the same order; the async one spreads them over the start and the reactor
//! rounds that end the transfer. A miss may wait for another call's transfer of the same
//! answer instead (`coalesce`). A call to a named service runs its attempts through its route
//! (`failover.rs`): admitted, sent to a healthy base URL, failed over to the next.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::time::Duration;

use log::{debug, error, warn};

use super::call::{
    CacheSlot, Call, CallSpec, Launched, RunningCall, add_service_headers, method_of, tighter_limit,
};
use super::fills::{Fills, INTERNAL_TOKENS};
use super::observer::CallObserver;
use super::upstreams::Route;
use crate::engine::client::{Client, Token};
use crate::engine::request::Request;
use crate::engine::result_code::ResultCode;
use crate::engine::secrets::url_for_logs;
use crate::engine::services::{
    RenewedServices, Service, ServiceCache, ServiceCounter, ServiceRegistry, SharedStore,
    service_reference,
};
use crate::engine::settings::ClientSettings;
use crate::engine::shared::{ConnectGate, GateTicket};
use crate::engine::transfer::{Outcome, Transcript};

/// How starting an async call went.
pub enum Started {
    /// Over already (it ended at once): its outcome, settled.
    Done(Outcome),
    /// Running: [`Calls::progress`] or [`Calls::poll`] hands its outcome out when it ends.
    Running,
}

/// A process's calls. Field order is drop order: the client's handles before anything else.
pub struct Calls {
    pub(super) client: Client,
    gate: Option<ConnectGate>,
    pub(super) registry: &'static ServiceRegistry,
    /// Response caches of the services that have one, by position in the registry (with this
    /// process's connection to the shared store, for a shared cache).
    pub(super) caches: HashMap<usize, ServiceCache>,
    /// This process's copies of the services whose credentials were renewed.
    renewed: RenewedServices,
    /// Per service, the [`ServiceCounter::CacheFlushes`] count this process last acted on.
    flushes_seen: Vec<u64>,
    /// Async transfers running (the host's calls and background refreshes), by token.
    pub(super) running: HashMap<Token, RunningCall>,
    /// Calls waiting for another one's transfer, and outcomes settled outside
    /// [`Calls::progress`] (see `coalesce`).
    pub(super) fills: Fills,
    /// Whether the host's reactor watches [`Calls::fd`] (see [`Calls::watched`]).
    pub(super) watched: bool,
    pub(super) observer: &'static dyn CallObserver,
}

fn invalid(what: &str) -> ResultCode {
    error!("{what}");
    ResultCode::InternalError
}

impl Calls {
    /// The calls of a new process; `shared_store` opens this process's connection to the
    /// shared store of a service whose cache has one.
    pub fn new(
        settings: ClientSettings,
        gate: Option<ConnectGate>,
        registry: &'static ServiceRegistry,
        mut shared_store: impl FnMut(&Service) -> Option<Box<dyn SharedStore>>,
        observer: &'static dyn CallObserver,
    ) -> Result<Self, String> {
        let definitions = registry.definitions();
        let caches = definitions
            .iter()
            .enumerate()
            .filter_map(|(index, service)| {
                service.cache?;
                let store = shared_store(service);
                let marks = registry.fill_marks();
                Some((index, ServiceCache::new(service, store, marks)))
            })
            .collect();
        Ok(Self {
            client: Client::new(settings)?,
            gate,
            registry,
            caches,
            renewed: RenewedServices::default(),
            flushes_seen: (0..definitions.len())
                .map(|index| registry.read(index, ServiceCounter::CacheFlushes))
                .collect(),
            running: HashMap::new(),
            fills: Fills::default(),
            watched: false,
            observer,
        })
    }

    /// The host's reactor watches [`Calls::fd`] from now on: background transfers are driven
    /// by it (before, by the process's next calls).
    pub fn watched(&mut self) {
        self.watched = true;
    }

    /// Resolves `spec` into a call: its service's URL, method, limits, renewed credentials and
    /// default headers (the script's win), and its place in the service's cache.
    pub fn prepare(&mut self, spec: CallSpec) -> Result<Call, ResultCode> {
        let (service, url) = match service_reference(&spec.url) {
            Some((name, path)) => {
                let (index, service) = self
                    .registry
                    .find(name)
                    .ok_or_else(|| invalid(&format!("unknown service '{name}' in URL")))?;
                let url = service
                    .url(path)
                    .map_err(|e| invalid(&format!("service {}: {e}", service.name)))?;
                (Some((index, service)), url)
            }
            None => (None, spec.url.clone()),
        };
        let method = method_of(spec.method, service.map(|(_, s)| s), &spec.body);
        let mut request = Request::new(method, url);
        request.body = spec.body;
        request.content_type = spec.content_type;
        request.headers = spec.headers;
        if let Some((index, definition)) = service {
            request.timeout = definition.timeout;
            request.connect_timeout = definition.connect_timeout;
            request.masked_parameters = definition.params.iter().map(|(n, _)| n.clone()).collect();
            self.registry.count(index, ServiceCounter::Calls);
            // The credentials and headers as last renewed.
            let current = self.registry.current(&mut self.renewed, index);
            request.auth = current.auth.clone();
            add_service_headers(&mut request, current);
        }
        request.client_cert = spec.client_cert;
        request.trace = spec.trace;
        if let Some((transfer, connect)) = spec.timeouts {
            request.timeout = Some(transfer);
            request.connect_timeout = connect;
        }
        let slot = service
            .filter(|(_, s)| s.cache.is_some())
            .map(|(index, _)| CacheSlot::of(index, &request));
        let route = service.and_then(|(index, _)| Route::new(self.registry, index, &request));
        Ok(Call {
            service_raw_body: service.is_some_and(|(_, s)| s.raw_body),
            request,
            slot,
            route,
        })
    }

    /// Runs `call` to completion, blocking: its cached answer, another call's transfer of it,
    /// or its transfer's attempts.
    pub fn run_blocking(&mut self, mut call: Call) -> Result<Outcome, ResultCode> {
        if let Some(outcome) = self.cached(&mut call) {
            return Ok(outcome);
        }
        if let Some(answer) = self.wait_blocking(&mut call) {
            return answer;
        }
        let outcome = match self.transfer_blocking(&mut call) {
            Ok(outcome) => outcome,
            Err(code) => return self.unsent(call.slot, code),
        };
        Ok(self.settle(call.slot, outcome))
    }

    /// A cached answer of `call`, if it has one (looked up once; a miss is noted in the call,
    /// for storing its answer or waiting for another call's transfer of it), with its
    /// transcript for a traced call. An answer past its freshness within its
    /// stale-while-revalidate window is one, and a background transfer fetches it again.
    pub fn cached(&mut self, call: &mut Call) -> Option<Outcome> {
        self.drive_unwatched();
        let slot = call.slot.as_mut()?;
        let key = slot.key.take()?;
        let (index, url) = (slot.index, slot.url.clone());
        let observer = self.observer;
        let cache = self.caches.get_mut(&index)?;
        // A flush asked since this process last looked: its copies go first.
        if let Some(seen) = self.flushes_seen.get_mut(index) {
            let asked = self.registry.read(index, ServiceCounter::CacheFlushes);
            if *seen != asked {
                *seen = asked;
                if let Err(e) = observed(observer, cache, ServiceCache::flush) {
                    let name = &self.registry.definitions()[index].name;
                    warn!("service {name}: flushing its cache: {e}");
                }
            }
        }
        match observed(observer, cache, |c| c.lookup(key, url)) {
            Ok(outcome) => Some(self.answered_from_cache(index, &call.request, outcome)),
            Err(pending) => self.missed(call, *pending),
        }
    }

    /// `outcome`, found in service `index`'s cache for `request`: counted, with its transcript
    /// for a traced call.
    pub(super) fn answered_from_cache(
        &self,
        index: usize,
        request: &Request,
        mut outcome: Outcome,
    ) -> Outcome {
        self.observer.cache_hit();
        self.registry.count(index, ServiceCounter::CacheHits);
        if request.trace {
            outcome.transcript = Some(Box::new(Transcript::cache_hit(
                request,
                &outcome.head,
                &outcome.body,
            )));
        }
        outcome
    }

    /// Lowers the time limit of `call`'s transfer to `limit` (zero: none), where its own is
    /// none or higher.
    pub fn limit_to(&self, call: &mut Call, limit: Duration) {
        let own = call
            .request
            .timeout
            .unwrap_or(self.client.settings().transfer_timeout);
        call.request.timeout = Some(tighter_limit(own, limit));
    }

    /// Starts `call` as async call `token` (below [`INTERNAL_TOKENS`]) without waiting for
    /// anything: its transfer, or its wait for another call's transfer of its answer.
    pub fn start(&mut self, token: Token, call: Call) -> Result<Started, ResultCode> {
        if token >= INTERNAL_TOKENS {
            return Err(invalid(&format!(
                "async call token {token} is the engine's"
            )));
        }
        match self.join_fill(token, call) {
            None => Ok(Started::Running),
            Some(call) => self.start_transfer(token, call),
        }
    }

    /// Starts `call`'s transfer as async transfer `token`: admitted by its route (a named
    /// service's), then its attempts until one runs or the call is over.
    pub(super) fn start_transfer(
        &mut self,
        token: Token,
        mut call: Call,
    ) -> Result<Started, ResultCode> {
        if let Err(code) = self.begin_route(&mut call) {
            return self.unsent(call.slot, code).map(Started::Done);
        }
        match self.launch(token, call) {
            Launched::Running => Ok(Started::Running),
            Launched::Ended(slot, outcome) => Ok(Started::Done(self.settle(slot, outcome))),
            Launched::Unsent(slot, code) => self.unsent(slot, code).map(Started::Done),
        }
    }

    /// Async transfers running (the host's calls and background refreshes).
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// The descriptor the host's reactor watches for read readiness (see `Hub`).
    pub fn fd(&self) -> RawFd {
        self.client.hub.fd()
    }

    /// Lets libcurl act on whatever is ready and hands out the async calls that ended, settled
    /// (those that waited for another call's transfer too).
    pub fn progress(&mut self) -> Vec<(Token, Outcome)> {
        self.drive_hub();
        self.check_waiting();
        std::mem::take(&mut self.fills.ended)
    }

    /// For a host that drives one call in a loop: waits up to `slice` for work, drives the
    /// transfers, and hands out call `token`'s outcome, settled, if it ended. Other calls that
    /// ended stay set aside for [`Calls::progress`] (see [`Calls::wake_for_finished`]).
    pub fn poll(&mut self, token: Token, slice: Duration) -> Option<Outcome> {
        self.client.hub.wait(slice);
        self.drive_hub();
        self.check_waiting();
        self.fills.take_ended(token)
    }

    /// Makes the descriptor readable at once if ended calls are set aside, so that the host's
    /// reactor comes back for them.
    pub fn wake_for_finished(&mut self) {
        if !self.fills.ended.is_empty() {
            self.client.hub.wake_after(Duration::ZERO);
        }
        self.client.hub.wake_for_finished();
    }

    /// `rest_cache_flush`: drops the answers of the service named `name`, in this process and
    /// in its shared store (so in every process and node that shares it).
    pub fn flush_cache(&mut self, name: &str) -> Result<(), String> {
        let cache = self
            .registry
            .find(name)
            .and_then(|(index, _)| self.caches.get_mut(&index))
            .ok_or_else(|| format!("no service named '{name}' has a cache"))?;
        observed(self.observer, cache, ServiceCache::flush)
    }

    /// Lets libcurl act on whatever is ready and records the transfers that ended.
    pub(super) fn drive_hub(&mut self) {
        self.client.hub.progress();
        let ended = self.client.hub.drain_finished();
        self.record(ended);
    }

    /// Lets the gate go for transfers that connected, and settles the transfers that ended:
    /// the host's calls and those that waited for them go to [`Fills::ended`].
    pub(super) fn record(&mut self, ended: Vec<(Token, Outcome)>) {
        if self.gate.is_some() {
            let hub = &self.client.hub;
            let connected: Vec<Option<GateTicket>> = self
                .running
                .iter_mut()
                .filter(|(token, call)| call.ticket.is_some() && hub.request_sent(**token))
                .map(|(_, call)| call.ticket.take())
                .collect();
            for ticket in connected {
                self.leave_gate(ticket, true);
            }
        }
        for (token, outcome) in ended {
            let Some(mut call) = self.running.remove(&token) else {
                continue;
            };
            self.leave_gate(call.ticket.take(), outcome.result == ResultCode::Ok);
            let Some((call, outcome)) = self.attempt_ended(token, call, outcome) else {
                continue;
            };
            self.fill_ended(token, &call, &outcome);
            let outcome = self.settle(call.slot, outcome);
            if token < INTERNAL_TOKENS {
                self.fills.ended.push((token, outcome));
            }
        }
    }

    /// `no_concurrent_connects`: takes the request's host, or fails with -4.
    pub(super) fn enter_gate(
        &mut self,
        request: &Request,
    ) -> Result<Option<GateTicket>, ResultCode> {
        let Some(gate) = self.gate.as_mut() else {
            return Ok(None);
        };
        match gate.enter(&request.url) {
            Some(ticket) => Ok(Some(ticket)),
            None => {
                debug!(
                    "{}: another call is connecting to {}",
                    request.method.name(),
                    url_for_logs(request)
                );
                self.observer.gate_refused();
                Err(ResultCode::AlreadyConnecting)
            }
        }
    }

    pub(super) fn leave_gate(&mut self, ticket: Option<GateTicket>, succeeded: bool) {
        if let (Some(gate), Some(ticket)) = (self.gate.as_mut(), ticket) {
            gate.leave(ticket, succeeded);
        }
    }

    /// Records a finished transfer: for the host, and in the service's cache (the answer of a
    /// GET that missed, the invalidations of a write, a stale answer in place of a failure).
    pub(super) fn settle(&mut self, slot: Option<CacheSlot>, outcome: Outcome) -> Outcome {
        self.observer.transfer_ended(&outcome);
        if slot.as_ref().is_some_and(|slot| slot.pending.is_some()) {
            self.observer.cache_miss();
        }
        self.settle_in_cache(slot, outcome)
    }

    /// What `outcome` does to the cache of `slot`'s service: the answer stored (and the
    /// call's part in fetching it for others released), or the URL invalidated; returns it,
    /// or the call's stale answer in its place when the backend failed.
    pub(super) fn settle_in_cache(&mut self, slot: Option<CacheSlot>, outcome: Outcome) -> Outcome {
        let Some(slot) = slot else {
            return outcome;
        };
        let Some(cache) = self.caches.get_mut(&slot.index) else {
            return outcome;
        };
        let mut stale = None;
        if let Some(mut pending) = slot.pending {
            stale = pending.take_stale();
            observed(self.observer, cache, |c| c.store(pending, &outcome));
        }
        if slot.writes {
            let service = &self.registry.definitions()[slot.index];
            observed(self.observer, cache, |c| {
                c.written(service, &slot.url, &outcome)
            });
        }
        self.stale_if_failed(stale, outcome)
    }
}

/// Runs `operation` on `cache`, and tells the observer the change in its number of entries
/// and the lookups that skipped its shared level.
pub(super) fn observed<R>(
    observer: &dyn CallObserver,
    cache: &mut ServiceCache,
    operation: impl FnOnce(&mut ServiceCache) -> R,
) -> R {
    let entries = cache.local_entries() as i64;
    let skips = cache.shared_skips();
    let result = operation(cache);
    observer.cache_entries_changed(cache.local_entries() as i64 - entries);
    if cache.shared_skips() > skips {
        observer.shared_level_skipped(cache.shared_skips() - skips);
    }
    result
}

//! A call to a named service through its upstreams (its base URLs): admitted within the
//! service's `max_in_flight`, sent to a healthy URL (the first, or the next in turn; one whose
//! ejection is over to probe it, by one call of the node), and after a failed attempt sent to
//! the next one when the method, the retry budget and the call's own time limit allow it. Each
//! attempt's outcome goes into its URL's shared health, which ejects the URL after its
//! consecutive failures and restores it after a good probe. The blocking and the async path
//! both drive a call's attempts through its [`Route`] (`failover.rs`); the host sees one
//! outcome per call, the last attempt's, with the transcripts of all its attempts.

use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};

use super::observer::{CallObserver, UpstreamChange, UpstreamState};
use crate::engine::request::Request;
use crate::engine::result_code::ResultCode;
use crate::engine::secrets::redact_url;
use crate::engine::services::{Balance, Service, ServiceRegistry, rebase};
use crate::engine::shared::{Availability, Millis, ServiceHealth};
use crate::engine::transfer::{Outcome, Transcript};

/// An attempt is not started with less time than this left of its call's limit.
const MIN_ATTEMPT: Duration = Duration::from_millis(1);

/// A probe's holder keeps it this long past its call's deadline before another process may
/// take it (its call surely ended by then, unless the process died).
const PROBE_GRACE: Duration = Duration::from_secs(1);

/// How an attempt uses its URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Use {
    /// A healthy URL.
    Plain,
    /// This process holds the probe of a URL whose ejection is over.
    Probe,
    /// Every URL is ejected and the service's `panic` sends the call to one anyway.
    Panic,
}

/// What an attempt's outcome says about its URL.
enum Verdict {
    Good,
    /// The URL failed: before the request was sent (`sent` false) or after.
    Failed {
        sent: bool,
        why: String,
    },
    /// Not the URL's doing (a refused option, a local limit): no health change, no failover.
    Neither,
}

fn verdict(outcome: &Outcome, service: &Service) -> Verdict {
    let sent = outcome.traffic.request_sent;
    match outcome.result {
        ResultCode::Ok if service.upstreams.fails_over_on(outcome.status) => Verdict::Failed {
            sent: true,
            why: format!("HTTP {}", outcome.status),
        },
        ResultCode::Ok => Verdict::Good,
        code if outcome.traffic.wire_failure => Verdict::Failed {
            sent,
            why: match code {
                ResultCode::ConnectRefused => "connect refused".into(),
                ResultCode::ConnectTimeout => "connect timeout".into(),
                ResultCode::TransferTimeout => "transfer timeout".into(),
                _ if sent => "broken or no answer".into(),
                _ => "no connection".into(),
            },
        },
        _ => Verdict::Neither,
    }
}

/// What comes after an attempt.
pub(super) enum Next {
    /// The request points at the next URL, with the time left: run it.
    Again,
    /// The call is over with this outcome.
    Done(Outcome),
}

/// One call's way through its service's upstreams.
pub(super) struct Route {
    service: usize,
    health: ServiceHealth<'static>,
    /// The call's URL on the service's first base URL (the one its cache key has).
    first_url: String,
    /// The URL of the attempt running (or about to).
    current: usize,
    tried: u32,
    current_use: Use,
    /// The call's time limit ends here (`None`: it has none).
    deadline: Option<Instant>,
    /// Counted in the service's calls in flight.
    admitted: bool,
    /// Transcripts of the attempts before the last failed one.
    earlier: Vec<Transcript>,
    /// The last failed attempt, the call's outcome if the next one cannot start.
    last_failure: Option<Outcome>,
}

impl Route {
    /// The route of a call to service `service` of `registry` whose request is `request` (made
    /// on the service's first base URL); `None` for no such service.
    pub fn new(
        registry: &'static ServiceRegistry,
        service: usize,
        request: &Request,
    ) -> Option<Self> {
        Some(Self {
            service,
            health: registry.service_health(service)?,
            first_url: request.url.clone(),
            current: 0,
            tried: 0,
            current_use: Use::Plain,
            deadline: None,
            admitted: false,
            earlier: Vec::new(),
            last_failure: None,
        })
    }

    /// Admits the call and points `request` at its first URL, starting its time limit (its
    /// request's, else `default_limit`; zero: none). `Err` with -7 when the service's
    /// `max_in_flight` calls are in flight, -6 when no URL is healthy.
    pub fn begin(
        &mut self,
        registry: &ServiceRegistry,
        request: &mut Request,
        default_limit: Duration,
        observer: &dyn CallObserver,
    ) -> Result<(), ResultCode> {
        let service = &registry.definitions()[self.service];
        let policy = &service.upstreams;
        if !self.health.admit(policy.max_in_flight) {
            debug!(
                "service {}: {} calls in flight (max_in_flight), shedding a call",
                service.name, policy.max_in_flight
            );
            observer.shed();
            return Err(ResultCode::AdmissionLimit);
        }
        self.admitted = true;
        let limit = request.timeout.unwrap_or(default_limit);
        self.deadline = (!limit.is_zero()).then(|| Instant::now() + limit);
        let now = registry.health().now();
        let urls = 1 + policy.alternates.len();
        if urls > 1 {
            self.health.count_call(now);
        }
        let start = match policy.balance {
            Balance::First => 0,
            Balance::RoundRobin => (self.health.next_turn() % urls as u64) as usize,
        };
        match self.choose(registry, service, start, now) {
            Some((index, used)) => {
                self.point(service, index, used, request);
                Ok(())
            }
            None => {
                debug!("service {}: no healthy URL, failing fast", service.name);
                self.leave();
                observer.failed_fast();
                Err(ResultCode::NoHealthyUpstream)
            }
        }
    }

    /// Records the outcome of the attempt that ran on `request`, and decides: another attempt
    /// (the request points at the next URL, within the time left) or the call's end.
    pub fn after(
        &mut self,
        registry: &ServiceRegistry,
        request: &mut Request,
        outcome: Outcome,
        observer: &dyn CallObserver,
    ) -> Next {
        let service = &registry.definitions()[self.service];
        let policy = &service.upstreams;
        let now = registry.health().now();
        let verdict = verdict(&outcome, service);
        self.record(service, now, &outcome, &verdict, observer);
        let Verdict::Failed { sent, .. } = verdict else {
            return Next::Done(self.end(outcome, observer));
        };
        if sent && !(request.method.is_idempotent() || policy.failover_all_methods) {
            return Next::Done(self.end(outcome, observer));
        }
        let left = match self.deadline {
            None => None,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if left >= MIN_ATTEMPT => Some(left),
                _ => return Next::Done(self.end(outcome, observer)),
            },
        };
        let start = (self.current + 1) % (1 + policy.alternates.len());
        let Some((next, used)) = self.choose(registry, service, start, now) else {
            return Next::Done(self.end(outcome, observer));
        };
        if sent
            && !self
                .health
                .take_retry(now, policy.retry_budget_percent, policy.retry_budget_min)
        {
            if used == Use::Probe {
                self.url_health(next).release_probe();
            }
            debug!(
                "service {}: retry budget spent, not failing over",
                service.name
            );
            observer.retry_refused();
            return Next::Done(self.end(outcome, observer));
        }
        debug!(
            "service {}: failing over from {} to {}",
            service.name,
            redact_url(self.base_url(service, self.current)),
            redact_url(self.base_url(service, next))
        );
        self.point(service, next, used, request);
        if left.is_some() {
            request.timeout = left;
        }
        self.keep_failure(outcome, observer);
        observer.failed_over();
        Next::Again
    }

    /// The next attempt could not start (`code`: the connect gate refused it): the call ends
    /// with the last failed attempt, or with `code` if there was none.
    pub fn not_started(
        &mut self,
        code: ResultCode,
        observer: &dyn CallObserver,
    ) -> Result<Outcome, ResultCode> {
        if self.current_use == Use::Probe {
            self.url_health(self.current).release_probe();
            self.current_use = Use::Plain;
        }
        match self.last_failure.take() {
            Some(outcome) => Ok(self.end(outcome, observer)),
            None => {
                self.leave();
                Err(code)
            }
        }
    }

    /// The outcome's mark on its URL's health: a `Retry-After` on 429 or 503 (capped at the
    /// longest ejection), a success (restoring a probed URL) or a failure (maybe ejecting it).
    fn record(
        &mut self,
        service: &Service,
        now: Millis,
        outcome: &Outcome,
        verdict: &Verdict,
        observer: &dyn CallObserver,
    ) {
        let policy = &service.upstreams;
        let url = self.url_health(self.current);
        if matches!(outcome.status, 429 | 503)
            && let Some(wait) = outcome.head.retry_after(SystemTime::now())
        {
            url.busy(now, wait.min(policy.eject_max));
        }
        let used = std::mem::replace(&mut self.current_use, Use::Plain);
        let state = match verdict {
            Verdict::Good if url.succeeded(used != Use::Plain) => {
                let how = match used {
                    Use::Panic => "a call made in panic mode succeeded",
                    _ => "its probe succeeded",
                };
                Some((UpstreamState::Restored, how.to_string()))
            }
            Verdict::Failed { why, .. } => url
                .failed(now, used == Use::Probe, policy.ejects_after(), |n| {
                    policy.ejection(n)
                })
                .map(|ejection| {
                    let reason = if ejection.in_row > 1 {
                        format!("its probe failed: {why}")
                    } else {
                        format!(
                            "{} consecutive failures, the last: {why}",
                            policy.ejects_after()
                        )
                    };
                    let state = UpstreamState::Ejected {
                        duration: ejection.duration,
                        in_row: ejection.in_row,
                    };
                    (state, reason)
                }),
            Verdict::Neither if used == Use::Probe => {
                url.release_probe();
                None
            }
            _ => None,
        };
        if let Some((state, reason)) = state {
            let change = UpstreamChange {
                service: &service.name,
                url: redact_url(self.base_url(service, self.current)),
                state,
                reason,
            };
            match state {
                UpstreamState::Ejected { duration, .. } => warn!(
                    "service {}: {} ejected for {} ms ({})",
                    change.service,
                    change.url,
                    duration.as_millis(),
                    change.reason
                ),
                UpstreamState::Restored => info!(
                    "service {}: {} restored ({})",
                    change.service, change.url, change.reason
                ),
            }
            observer.upstream_changed(&change);
        }
    }

    /// A healthy URL for the next attempt, looking from `start` on among those not tried yet:
    /// one whose ejection is over if this call takes its probe; in panic mode, the least
    /// recently ejected one when none is.
    fn choose(
        &self,
        registry: &ServiceRegistry,
        service: &Service,
        start: usize,
        now: Millis,
    ) -> Option<(usize, Use)> {
        let policy = &service.upstreams;
        let urls = 1 + policy.alternates.len();
        let untried = |index: &usize| self.tried & (1 << index) == 0;
        let probe_until = match self.deadline {
            Some(deadline) => registry.health().at(deadline + PROBE_GRACE),
            None => now + policy.eject_max.as_millis() as Millis,
        };
        for index in (0..urls).map(|k| (start + k) % urls).filter(untried) {
            let url = self.url_health(index);
            match url.availability(now) {
                Availability::Healthy => return Some((index, Use::Plain)),
                Availability::ProbeDue | Availability::Probing { .. }
                    if url.try_probe(now, probe_until) =>
                {
                    return Some((index, Use::Probe));
                }
                _ => {}
            }
        }
        if !policy.panic {
            return None;
        }
        (0..urls)
            .filter(untried)
            .min_by_key(|&index| self.url_health(index).ejected_at())
            .map(|index| (index, Use::Panic))
    }

    /// Points `request` at URL `index` for an attempt that uses it as `used`.
    fn point(&mut self, service: &Service, index: usize, used: Use, request: &mut Request) {
        self.current = index;
        self.current_use = used;
        self.tried |= 1 << index;
        if index > 0 {
            let to = self.base_url(service, index);
            request.url =
                rebase(&self.first_url, &service.base_url, to).unwrap_or(self.first_url.clone());
        } else {
            request.url.clone_from(&self.first_url);
        }
    }

    fn base_url<'s>(&self, service: &'s Service, index: usize) -> &'s str {
        service.base_urls().nth(index).unwrap_or(&service.base_url)
    }

    fn url_health(&self, index: usize) -> crate::engine::shared::UrlHealth<'static> {
        self.health
            .url(index)
            .expect("a route only uses its service's URLs")
    }

    /// Keeps a failed attempt that the call goes on from: the one before it is reported to
    /// the observer now (it will not be the call's outcome), its transcript kept.
    fn keep_failure(&mut self, outcome: Outcome, observer: &dyn CallObserver) {
        if let Some(mut previous) = self.last_failure.replace(outcome) {
            observer.transfer_ended(&previous);
            if let Some(transcript) = previous.transcript.take() {
                self.earlier.push(*transcript);
            }
        }
    }

    /// The call ends with `outcome`: out of the calls in flight, with the transcripts of the
    /// attempts before it.
    fn end(&mut self, mut outcome: Outcome, observer: &dyn CallObserver) -> Outcome {
        self.leave();
        if let Some(mut previous) = self.last_failure.take() {
            observer.transfer_ended(&previous);
            if let Some(transcript) = previous.transcript.take() {
                self.earlier.push(*transcript);
            }
        }
        if let Some(transcript) = outcome.transcript.as_mut() {
            transcript.earlier_attempts = std::mem::take(&mut self.earlier);
        }
        outcome
    }

    /// Out of the service's calls in flight (once).
    fn leave(&mut self) {
        if std::mem::take(&mut self.admitted) {
            self.health.leave();
        }
    }
}

impl Drop for Route {
    /// A call dropped before its end (the host gave up on it) leaves the calls in flight and
    /// gives its probe back.
    fn drop(&mut self) {
        self.leave();
        if self.current_use == Use::Probe {
            self.url_health(self.current).release_probe();
        }
    }
}

//! Every async transfer of a process in one libcurl multi handle, driven by one descriptor.
//!
//! The multi handle's sockets and its timer are mirrored into a [`Watcher`], whose single
//! descriptor the host's reactor watches for read readiness for the life of the process; on each
//! readiness the host calls [`Hub::progress`] and then collects the transfers that ended with
//! [`Hub::drain_finished`]. Transfers are named by a token the host chooses. Registering one
//! descriptor once, instead of one per transfer, spares the reactor an add and a remove per
//! transfer (OpenSIPS checks its whole descriptor table on each of them), and lets libcurl act
//! on all ready sockets of the process in one pass.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use curl::easy::Easy2;
use curl::multi::{Easy2Handle, Events, Multi};
use log::error;
use parking_lot::Mutex;

use super::watcher::{Interest, Watcher};
use crate::engine::curl_raw::{name_resolved, request_sent};
use crate::engine::request::Request;
use crate::engine::result_code::ResultCode;
use crate::engine::secrets::transfer_for_logs;
use crate::engine::settings::ClientSettings;
use crate::engine::tls::ProcessTls;
use crate::engine::transfer::{
    Collector, InflightBodies, Outcome, Target, configure, finish, retry_on_new_connection, scrub,
    transfer_limit,
};

/// The host's name for one transfer.
pub type Token = usize;

/// What libcurl's callbacks asked for since the last look (they run inside socket_action).
#[derive(Default)]
struct Requests {
    sockets: Vec<(RawFd, Option<Interest>)>,
    timer: Option<Option<Duration>>,
}

/// What one round of driving looks at.
enum Readiness {
    SocketsAndTimers,
    TimersOnly,
}

struct Running {
    handle: Easy2Handle<Collector>,
    target: Target,
    /// The whole transfer's time limit (zero: none).
    limit: Duration,
}

/// The process's async transfers. Field order is drop order: running transfers leave the
/// multi handle before it goes.
pub struct Hub {
    running: HashMap<Token, Running>,
    /// Transfers that ended and were not collected yet.
    finished: Vec<(Token, Outcome)>,
    /// Easy handles of ended transfers, scrubbed, ready for the next ones.
    idle: Vec<Easy2<Collector>>,
    max_idle: usize,
    /// The body bytes of the client's unfinished transfers, for new handles' collectors.
    inflight: Rc<InflightBodies>,
    multi: Multi,
    requests: Arc<Mutex<Requests>>,
    watcher: Watcher,
    /// When libcurl's timer is due, and the engine's own wake-up (see
    /// [`wake_after`](Self::wake_after)): the watcher's timer is armed for the earlier.
    curl_timer_at: Option<Instant>,
    wake_at: Option<Instant>,
}

impl Hub {
    pub fn new(settings: &ClientSettings, inflight: Rc<InflightBodies>) -> Result<Self, String> {
        let requests = Arc::new(Mutex::new(Requests::default()));
        let mut multi = Multi::new();
        // The cache is the process's (in the share): the limit of idle connections it keeps
        // is checked against the multi handle that returns a connection.
        multi
            .set_max_connects(settings.max_idle_connections as usize)
            .map_err(|e| e.to_string())?;
        let from_sockets = Arc::clone(&requests);
        multi
            .socket_function(move |socket, events, _| {
                let interest = (!events.remove()).then(|| Interest {
                    read: events.input() || events.input_and_output(),
                    write: events.output() || events.input_and_output(),
                });
                from_sockets.lock().sockets.push((socket, interest));
            })
            .map_err(|e| e.to_string())?;
        let from_timer = Arc::clone(&requests);
        multi
            .timer_function(move |after| {
                from_timer.lock().timer = Some(after);
                true
            })
            .map_err(|e| e.to_string())?;
        Ok(Self {
            running: HashMap::new(),
            finished: Vec::new(),
            idle: Vec::new(),
            max_idle: settings.max_idle_connections as usize,
            inflight,
            multi,
            requests,
            watcher: Watcher::new().map_err(|e| format!("epoll/timerfd: {e}"))?,
            curl_timer_at: None,
            wake_at: None,
        })
    }

    /// The descriptor the host's reactor watches for read readiness.
    pub fn fd(&self) -> RawFd {
        self.watcher.fd()
    }

    /// Adds `request` as transfer `token` and lets libcurl start it (send it, on a kept-alive
    /// connection). `Err` (with the result code) when it could not be set up; it may also have
    /// ended at once: see [`take_finished`](Self::take_finished).
    pub(crate) fn start(
        &mut self,
        token: Token,
        tls: &mut ProcessTls,
        settings: &ClientSettings,
        request: &Request,
    ) -> Result<(), ResultCode> {
        let mut easy = self
            .idle
            .pop()
            .unwrap_or_else(|| Easy2::new(Collector::new(Rc::clone(&self.inflight))));
        let cannot = |e: &dyn std::fmt::Display| {
            error!("cannot set up {}: {e}", transfer_for_logs(request));
            ResultCode::InternalError
        };
        if let Err(e) = configure(&mut easy, tls, settings, request) {
            scrub(&mut easy);
            self.idle.push(easy);
            return Err(cannot(&e));
        }
        let limit = transfer_limit(settings, request);
        self.add(token, easy, Target::of(request), limit)
            .map_err(|e| cannot(&e))?;
        // Only libcurl's timers: the new transfer is due at once; other transfers' ready
        // sockets are left to the reactor's next round.
        self.step(Readiness::TimersOnly);
        Ok(())
    }

    /// Whether transfer `token`'s request went out (connected, TLS included, or on a reused
    /// connection); false once it ended.
    pub fn request_sent(&self, token: Token) -> bool {
        self.running
            .get(&token)
            .is_some_and(|r| request_sent(r.handle.raw()))
    }

    /// Whether transfer `token` still waits for its server's address (its name lookup runs);
    /// false once it ended.
    pub(super) fn resolving(&self, token: Token) -> bool {
        self.running
            .get(&token)
            .is_some_and(|r| !name_resolved(r.handle.raw()))
    }

    /// Waits up to `timeout` for work (for a host that drives one transfer in a loop).
    pub fn wait(&self, timeout: Duration) -> bool {
        self.watcher.wait(timeout)
    }

    /// Lets libcurl act on whatever is ready (sockets, its timer) and sets aside the transfers
    /// that ended.
    pub fn progress(&mut self) {
        self.step(Readiness::SocketsAndTimers);
    }

    fn step(&mut self, readiness: Readiness) {
        if let Err(e) = self.drive(readiness) {
            // The watcher is broken: end every transfer rather than leave any hanging.
            error!("async transfers: {e}");
            let tokens: Vec<Token> = self.running.keys().copied().collect();
            for token in tokens {
                self.end(token, Err(curl::Error::new(curl_sys::CURLE_FAILED_INIT)));
            }
            return;
        }
        let mut ended = Vec::new();
        self.multi.messages(|message| {
            if let (Ok(token), Some(result)) = (message.token(), message.result()) {
                ended.push((token, result));
            }
        });
        for (token, result) in ended {
            self.end(token, result);
        }
    }

    /// The outcome of transfer `token` if it ended (after [`start`](Self::start) or
    /// [`progress`](Self::progress)). Other ended transfers stay set aside: see
    /// [`wake_for_finished`](Self::wake_for_finished).
    pub fn take_finished(&mut self, token: Token) -> Option<Outcome> {
        self.finished
            .iter()
            .position(|(t, _)| *t == token)
            .map(|index| self.finished.swap_remove(index).1)
    }

    /// Makes the descriptor readable at once (the timer fires now) if ended transfers are set
    /// aside, so the host's reactor comes back for them. Not while the host waits on the
    /// descriptor for one transfer: it would not wait.
    pub fn wake_for_finished(&self) {
        if !self.finished.is_empty() {
            self.wake();
        }
    }

    /// Every ended transfer, with its token.
    pub fn drain_finished(&mut self) -> Vec<(Token, Outcome)> {
        std::mem::take(&mut self.finished)
    }

    /// Makes the descriptor readable at once (the timer fires now).
    fn wake(&self) {
        if let Err(e) = self.watcher.arm_timer(Some(Duration::ZERO)) {
            error!("async transfers: timerfd: {e}");
        }
    }

    /// Makes the descriptor readable after `after` at the latest, whatever libcurl's timer
    /// says: for the engine's own deadlines (calls waiting for another process's transfer).
    pub fn wake_after(&mut self, after: Duration) {
        let at = Instant::now() + after;
        if self.wake_at.is_some_and(|known| known <= at) {
            return;
        }
        self.wake_at = Some(at);
        if let Err(e) = self.arm_timer() {
            error!("async transfers: {e}");
        }
    }

    /// Arms the watcher's timer for the earlier of libcurl's and the engine's.
    fn arm_timer(&self) -> Result<(), String> {
        let now = Instant::now();
        let next = [self.curl_timer_at, self.wake_at]
            .into_iter()
            .flatten()
            .min();
        self.watcher
            .arm_timer(next.map(|at| at.saturating_duration_since(now)))
            .map_err(|e| format!("timerfd: {e}"))
    }

    /// One round of curl_multi_socket_action: for each ready socket, and for the timer when
    /// it expired or nothing is ready (a start, or a host polling without an event).
    fn drive(&mut self, readiness: Readiness) -> Result<(), String> {
        let (ready, timer_expired) = match readiness {
            Readiness::SocketsAndTimers => {
                self.watcher.ready().map_err(|e| format!("epoll: {e}"))?
            }
            Readiness::TimersOnly => (Vec::new(), true),
        };
        // The watcher's timer fired (and is disarmed): what was due is done.
        let fired = timer_expired && matches!(readiness, Readiness::SocketsAndTimers);
        for (socket, interest) in &ready {
            let mut events = Events::new();
            events.input(interest.read).output(interest.write);
            self.multi
                .action(*socket, &events)
                .map_err(|e| e.to_string())?;
        }
        if timer_expired || ready.is_empty() {
            self.multi.timeout().map_err(|e| e.to_string())?;
        }
        let Requests { sockets, timer } = std::mem::take(&mut *self.requests.lock());
        for (socket, interest) in sockets {
            self.watcher
                .watch(socket, interest)
                .map_err(|e| format!("epoll: {e}"))?;
        }
        let now = Instant::now();
        if fired {
            self.curl_timer_at = self.curl_timer_at.filter(|at| *at > now);
            self.wake_at = self.wake_at.filter(|at| *at > now);
        }
        if let Some(after) = timer {
            self.curl_timer_at = after.map(|after| now + after);
        }
        if fired || timer.is_some() {
            self.arm_timer()?;
        }
        Ok(())
    }

    /// Takes transfer `token` out of the multi handle (its connection goes back to the
    /// process's cache) and sets its outcome aside, or adds it again for one attempt on a new
    /// connection (see [`retry_on_new_connection`]).
    fn end(&mut self, token: Token, result: Result<(), curl::Error>) {
        let Some(Running {
            handle,
            target,
            limit,
        }) = self.running.remove(&token)
        else {
            return;
        };
        let outcome = match self.multi.remove2(handle) {
            Ok(mut easy) => {
                if retry_on_new_connection(&mut easy, &result, limit, &target) {
                    let transfer = target.for_logs();
                    match self.add(token, easy, target, limit) {
                        Ok(()) => {
                            // The descriptor fires at once: the next round starts it.
                            self.wake();
                            return;
                        }
                        Err(e) => {
                            error!("{transfer}: {e}");
                            Outcome::failed(ResultCode::InternalError)
                        }
                    }
                } else {
                    let outcome = finish(&mut easy, result, &target);
                    scrub(&mut easy);
                    if self.idle.len() < self.max_idle {
                        self.idle.push(easy);
                    }
                    outcome
                }
            }
            Err(e) => {
                error!("{}: {e}", target.for_logs());
                Outcome::failed(ResultCode::InternalError)
            }
        };
        self.finished.push((token, outcome));
    }

    /// Adds the set-up `easy` to the multi handle as transfer `token`.
    fn add(
        &mut self,
        token: Token,
        easy: Easy2<Collector>,
        target: Target,
        limit: Duration,
    ) -> Result<(), String> {
        let mut handle = self.multi.add2(easy).map_err(|e| e.to_string())?;
        handle.set_token(token).map_err(|e| e.to_string())?;
        self.running.insert(
            token,
            Running {
                handle,
                target,
                limit,
            },
        );
        Ok(())
    }
}

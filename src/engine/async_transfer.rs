//! A transfer driven by the host's reactor. Each transfer has its own multi handle (so driving
//! it never consumes another transfer's events) and uses the process's share (so its
//! connection comes from, and returns to, the process's keep-alive cache). Its sockets and
//! libcurl's timer are mirrored into a [`Watcher`], whose single descriptor the host watches
//! for read readiness; on each readiness the host calls [`AsyncTransfer::progress`].

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use curl::easy::Easy2;
use curl::multi::{Easy2Handle, Events, Multi};
use log::error;
use parking_lot::Mutex;

use super::client::{Outcome, configure, finish};
use super::collector::Collector;
use super::curl_raw::{CurlShare, request_sent};
use super::redact_url;
use super::request::{Method, Request};
use super::result_code::ResultCode;
use super::settings::ClientSettings;
use super::watcher::{Interest, Watcher};

/// What libcurl's callbacks asked for since the last look (they run inside `perform`).
#[derive(Default)]
struct Requests {
    sockets: Vec<(RawFd, Option<Interest>)>,
    timer: Option<Option<Duration>>,
}

/// The result of starting a transfer.
pub enum Started {
    /// Running: hand [`AsyncTransfer::fd`] to the reactor.
    Running(AsyncTransfer),
    /// Already over (e.g. connection refused at once, or bad options).
    Finished(Outcome),
}

/// The reusable parts of a transfer: a multi handle with its callbacks, an easy handle and the
/// watcher. A finished transfer gives them back to its client's pool, so a transfer costs no
/// handle or descriptor creation once the pool is warm.
pub(super) struct Slot {
    easy: Easy2<Collector>,
    multi: Multi,
    requests: Arc<Mutex<Requests>>,
    watcher: Watcher,
}

impl Slot {
    pub(super) fn new(settings: &ClientSettings) -> Result<Self, String> {
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
            easy: Easy2::new(Collector::default()),
            multi,
            requests,
            watcher: Watcher::new().map_err(|e| format!("epoll/timerfd: {e}"))?,
        })
    }
}

/// A running transfer. Field order is drop order: the easy handle leaves the multi first.
pub struct AsyncTransfer {
    handle: Option<Easy2Handle<Collector>>,
    /// The easy handle once the transfer ended (out of the multi), for reuse.
    finished: Option<Easy2<Collector>>,
    multi: Multi,
    requests: Arc<Mutex<Requests>>,
    watcher: Watcher,
    method: Method,
    url: String,
}

impl AsyncTransfer {
    /// Starts `request` on `slot`; on a setup error the slot comes back with the message.
    pub(super) fn launch(
        mut slot: Slot,
        share: &CurlShare,
        settings: &ClientSettings,
        request: &Request,
    ) -> Result<Self, (Slot, String)> {
        if let Err(e) = configure(&mut slot.easy, share, settings, request) {
            return Err((slot, e.to_string()));
        }
        let Slot {
            easy,
            multi,
            requests,
            watcher,
        } = slot;
        match multi.add2(easy) {
            Ok(handle) => Ok(Self {
                handle: Some(handle),
                finished: None,
                multi,
                requests,
                watcher,
                method: request.method,
                url: request.url.clone(),
            }),
            Err(e) => {
                // add2 consumed the easy handle: the slot gets a fresh one.
                let slot = Slot {
                    easy: Easy2::new(Collector::default()),
                    multi,
                    requests,
                    watcher,
                };
                Err((slot, e.to_string()))
            }
        }
    }

    /// Whether the transfer ended (its handles can be reused).
    pub(super) fn ended(&self) -> bool {
        self.handle.is_none() && self.finished.is_some()
    }

    /// The reusable parts of an ended transfer; `None` (everything dropped) if it has not ended.
    pub(super) fn into_slot(mut self) -> Option<Slot> {
        let easy = self.finished.take().filter(|_| self.handle.is_none())?;
        self.watcher.reset();
        Some(Slot {
            easy,
            multi: self.multi,
            requests: self.requests,
            watcher: self.watcher,
        })
    }

    pub fn method(&self) -> Method {
        self.method
    }

    /// The transfer's URL (for log lines: pass it through `redact_url`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The descriptor the reactor watches for read readiness.
    pub fn fd(&self) -> RawFd {
        self.watcher.fd()
    }

    /// Waits up to `timeout` for work (for hosts that call [`progress`](Self::progress) in a
    /// loop instead of from their reactor); true if there is some.
    pub fn wait(&self, timeout: Duration) -> bool {
        self.watcher.wait(timeout)
    }

    /// Whether the request went out (connected, TLS included, or on a reused connection).
    pub fn request_sent(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| request_sent(h.raw()))
    }

    /// Lets libcurl act on whatever is ready (sockets, its timer); the outcome once the
    /// transfer is over.
    pub fn progress(&mut self) -> Option<Outcome> {
        if let Err(e) = self.drive() {
            error!("{} {}: {e}", self.method.name(), redact_url(&self.url));
            return Some(self.end(Err(curl::Error::new(curl_sys::CURLE_FAILED_INIT))));
        }
        let handle = self.handle.as_ref()?;
        let mut result = None;
        self.multi.messages(|message| {
            if let Some(r) = message.result_for2(handle) {
                result = Some(r);
            }
        });
        result.map(|r| self.end(r))
    }

    /// One round of curl_multi_socket_action: for each ready socket, and for the timer when
    /// it expired or nothing is ready (the first round, or a host polling without an event).
    fn drive(&mut self) -> Result<(), String> {
        let (ready, timer_expired) = self.watcher.ready().map_err(|e| format!("epoll: {e}"))?;
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
        if let Some(after) = timer {
            self.watcher
                .arm_timer(after)
                .map_err(|e| format!("timerfd: {e}"))?;
        }
        Ok(())
    }

    /// Ends the transfer because the host's time limit for it passed: -3 if the request went
    /// out, else -2, with whatever arrived.
    pub fn time_out(&mut self) -> Outcome {
        self.end(Err(curl::Error::new(curl_sys::CURLE_OPERATION_TIMEDOUT)))
    }

    /// Gives up the watched descriptor without closing it: the host closes it.
    pub(super) fn release_to_host(self) {
        let Self {
            handle,
            finished,
            multi,
            requests,
            watcher,
            ..
        } = self;
        drop((handle, finished, multi, requests));
        watcher.release_to_host();
    }

    /// Takes the easy handle out of the multi (its connection goes back to the process's
    /// cache) and reads the outcome.
    fn end(&mut self, result: Result<(), curl::Error>) -> Outcome {
        let Some(handle) = self.handle.take() else {
            return Outcome::failed(ResultCode::InternalError);
        };
        match self.multi.remove2(handle) {
            Ok(mut easy) => {
                let outcome = finish(&mut easy, result, self.method, &self.url);
                self.finished = Some(easy);
                outcome
            }
            Err(e) => {
                error!("{} {}: {e}", self.method.name(), redact_url(&self.url));
                Outcome::failed(ResultCode::InternalError)
            }
        }
    }
}

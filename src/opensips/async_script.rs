//! The async life cycle of the transfer functions (`async(rest_get(...), route)` and
//! `launch(...)`): the start (run at once, blocking, or suspended with ASYNC_NO_FD within
//! `max_async_transfers`), the reactor rounds that end transfers, and the resume that writes
//! the variables. Who resumes a call (tm or the core) is decided by the adaptor's caller.

use std::ffi::c_void;
use std::os::fd::RawFd;
use std::time::Duration;

use log::{error, warn};

use crate::engine::{Outcome, ResultCode, Started, Token};

use super::abi::{AsyncCaller, AsyncCtxRef, MessageId, ResumeFn};
use super::async_call::AsyncCall;
use super::call_args::{CallArgs, Outputs};
use super::module::{ModuleConfig, config};
use super::script::{conclude, prepare, show_head};
use super::stats::{self, Stat};
use super::tracing;
use super::worker::{Worker, with_worker};

/// How starting an async call went.
pub enum AsyncStart {
    /// Over already, with the script's code: not started (bad arguments, -4, -5, an unknown
    /// service; no variable written), or finished at once or ran blocking (outputs written).
    /// The resume (or report) route runs now.
    Over(i32),
    /// Running: the module resumes the call through the core when its transfer ends.
    Running,
}

/// What the host offers for async calls, from the adaptor.
pub struct AsyncHost {
    pub ctx: AsyncCtxRef,
    /// `async()` or `launch()`: who resumes the call.
    pub caller: AsyncCaller,
    /// The message is an ACK: it has no transaction to resume, so an `async()` call runs
    /// blocking (tm runs such calls synchronously too).
    pub is_ack: bool,
    /// Puts the process's transfer descriptor into the core's reactor; false on failure.
    pub register: fn(RawFd) -> bool,
    /// The function the core calls to resume a call.
    pub resume: ResumeFn,
}

enum Begun {
    Done(Box<Outcome>, Outputs),
    Running,
}

/// The async `rest_get` / `rest_post` / `rest_put`: starts the transfer without waiting.
/// The call's limit is the lower of the `async(..., seconds)` limit (if any) and the
/// transfer's own (`curl_timeout`, `rest_timeout`, the service's), either applying alone when
/// the other is none; libcurl enforces it (tm sets no timer for ASYNC_NO_FD calls).
pub fn start_async(args: CallArgs, host: AsyncHost) -> AsyncStart {
    let Some(config) = config() else {
        error!("async transfer: the module is not initialised");
        return AsyncStart::Over(ResultCode::InternalError.code());
    };
    // The core resumes a launch() job without the SIP message's context: it cannot be traced.
    let traced = host.caller != AsyncCaller::Launch && tracing::wanted();
    let msg = args.msg;
    let caller = host.caller;
    let result = with_worker(|worker| {
        begin(worker, config, args, host, traced).map(|begun| match begun {
            Begun::Done(outcome, outputs) => {
                // Its resume route, which tm runs now for the same message, reads it; or its
                // report route, which the core runs now for its dummy message.
                let outcome = show_head(&mut worker.message, *outcome);
                if caller == AsyncCaller::Launch {
                    worker.message.hand_to_report_route();
                }
                Begun::Done(Box::new(outcome), outputs)
            }
            Begun::Running => Begun::Running,
        })
    });
    match result {
        Ok(Ok(Begun::Running)) => AsyncStart::Running,
        Ok(Ok(Begun::Done(outcome, outputs))) => {
            AsyncStart::Over(conclude(Ok(Ok(*outcome)), &outputs, msg))
        }
        Ok(Err(code)) => AsyncStart::Over(code.code()),
        Err(e) => {
            error!("async transfer: {e}");
            AsyncStart::Over(ResultCode::InternalError.code())
        }
    }
}

/// Starts an async call: its transfer runs, or it is over already (cached, failed at once, or
/// run blocking).
fn begin(
    worker: &mut Worker,
    config: &ModuleConfig,
    mut args: CallArgs,
    host: AsyncHost,
    traced: bool,
) -> Result<Begun, ResultCode> {
    let mut call = prepare(worker, &mut args, traced)?;
    if let Some(outcome) = worker.calls.cached(&mut call) {
        return Ok(Begun::Done(Box::new(outcome), args.outputs));
    }
    let script_timeout = Duration::from_secs(host.ctx.script_timeout().into());
    worker.calls.limit_to(&mut call, script_timeout);
    let run_blocking_now = if worker.async_calls.len() >= config.max_async_transfers {
        if config.no_async_fallback {
            warn!(
                "max async transfers ({}) in flight, failing",
                config.max_async_transfers
            );
            stats::add(Stat::AsyncLimitReached, 1);
            return Err(ResultCode::AsyncLimitReached);
        }
        warn!(
            "max async transfers ({}) in flight, running blocking",
            config.max_async_transfers
        );
        true
    } else {
        let resumable = match host.caller {
            AsyncCaller::Tm => !host.is_ack,
            AsyncCaller::Launch => true,
            AsyncCaller::Unknown => false,
        };
        !resumable || !hub_registered(worker, host.register)
    };
    if run_blocking_now {
        stats::add(Stat::AsyncFallbacks, 1);
        let outcome = worker.calls.run_blocking(call)?;
        return Ok(Begun::Done(Box::new(outcome), args.outputs));
    }
    worker.last_token = worker.last_token.wrapping_add(1);
    let token = worker.last_token;
    if let Started::Done(outcome) = worker.calls.start(token, call)? {
        return Ok(Begun::Done(Box::new(outcome), args.outputs));
    }
    let mut ctx = host.ctx;
    ctx.set_resume(host.resume, token);
    stats::add(Stat::AsyncInFlight, 1);
    worker.async_calls.insert(
        token,
        AsyncCall {
            ctx: Some(ctx),
            caller: host.caller,
            outputs: args.outputs,
            outcome: None,
        },
    );
    Ok(Begun::Running)
}

/// Registers the process's transfer descriptor with the core's reactor, once.
fn hub_registered(worker: &mut Worker, register: fn(RawFd) -> bool) -> bool {
    if !worker.hub_registered {
        worker.hub_registered = register(worker.calls.fd());
        if worker.hub_registered {
            worker.calls.watched();
        } else {
            error!("cannot add the async transfers' descriptor to the reactor, running blocking");
        }
    }
    worker.hub_registered
}

/// Keeps the outcomes of the calls that ended in their records, until the core resumes them.
fn record_ended(worker: &mut Worker, ended: Vec<(Token, Outcome)>) {
    for (token, outcome) in ended {
        if let Some(call) = worker.async_calls.get_mut(&token) {
            stats::add(Stat::AsyncInFlight, -1);
            call.outcome = Some(outcome);
        }
    }
}

/// A call whose transfer ended: whoever launched it (`caller`) resumes it through `ctx`.
pub struct EndedCall {
    pub ctx: AsyncCtxRef,
    pub caller: AsyncCaller,
    pub token: Token,
}

/// The reactor saw the process's transfer descriptor readable: drives the transfers and
/// returns the calls whose transfer ended, for whoever launched them to resume.
pub fn progress_async() -> Vec<EndedCall> {
    #[cfg(debug_assertions)]
    test_hooks::reactor_round();
    let resumable = with_worker(|worker| {
        let ended = worker.calls.progress();
        let tokens: Vec<Token> = ended.iter().map(|(token, _)| *token).collect();
        record_ended(worker, ended);
        tokens
            .iter()
            .filter_map(|&token| {
                let call = worker.async_calls.get_mut(&token)?;
                Some(EndedCall {
                    ctx: call.ctx.take()?,
                    caller: call.caller,
                    token,
                })
            })
            .collect()
    });
    resumable.unwrap_or_else(|e| {
        error!("async transfers: {e}");
        Vec::new()
    })
}

/// After the module asked the core to resume call `token` (the core resumes at once, inside
/// that request, and runs the call's resume or report route to its end): the scope of that
/// route's message ends with it, so that no later route for the same message (the core's dummy
/// one of timer, event and report routes) reads the call's response. A call still here was
/// dropped by the core (tm does so when it cannot rebuild the request, its `fake_req`), and
/// would hold its async slot for good. It is forgotten.
pub fn after_resume(token: Token) {
    let dropped = with_worker(|worker| {
        worker.message.end();
        worker.async_calls.remove(&token).is_some()
    });
    if dropped.unwrap_or(false) {
        warn!(
            "async call {token}: the core did not resume it after its transfer ended \
             (its resume route will not run); its async slot is freed"
        );
    }
}

/// The core resumes call `token` (after its transfer ended, or in a loop when it runs the call
/// synchronously): the script result once the transfer is over, `None` while it runs.
pub fn resume_async(token: Token, msg: *mut c_void) -> Option<i32> {
    let call = with_worker(|worker| {
        let over = worker
            .async_calls
            .get(&token)
            .is_none_or(|call| call.outcome.is_some());
        if !over {
            // Synchronous mode: wait for this call's transfer a poll slice at a time.
            let slice = config().map_or(Duration::from_millis(20), |c| c.connect_poll_interval);
            let ended = worker.calls.poll(token, slice);
            record_ended(
                worker,
                ended.map(|outcome| (token, outcome)).into_iter().collect(),
            );
        }
        match worker.async_calls.get(&token) {
            Some(call) if call.outcome.is_none() => Ok(None),
            Some(_) => {
                // Transfers of other calls that ended meanwhile: the reactor resumes them.
                worker.calls.wake_for_finished();
                let mut call = worker.async_calls.remove(&token);
                let outcome = call.as_mut().and_then(|c| c.outcome.take());
                // The resume route reads this call's response, whatever ended meanwhile.
                let scope = worker.message.enter(MessageId::of(msg));
                Ok(outcome.map(|o| show_head(scope, o)).zip(call))
            }
            None => Err(format!("async resume of unknown call {token}")),
        }
    });
    let (outcome, mut call) = match call.and_then(|found| found) {
        Ok(Some(ended)) => ended,
        Ok(None) => return None,
        Err(e) => {
            error!("{e}");
            return Some(ResultCode::InternalError.code());
        }
    };
    let outputs = &mut call.outputs;
    for var in [
        &mut outputs.body,
        &mut outputs.content_type,
        &mut outputs.code,
    ]
    .into_iter()
    .flatten()
    {
        var.set_msg(msg);
    }
    Some(conclude(Ok(Ok(outcome)), &call.outputs, msg))
}

/// Debug builds only: faults injected by the C harness's tests through the environment.
#[cfg(debug_assertions)]
mod test_hooks {
    use std::sync::atomic::{AtomicI64, Ordering};

    /// Reactor rounds left to panic in (`REST_CLIENT_TEST_REACTOR_PANICS`); -1 until read.
    static REACTOR_PANICS_LEFT: AtomicI64 = AtomicI64::new(-1);

    /// Panics in the first `REST_CLIENT_TEST_REACTOR_PANICS` reactor rounds of the process.
    pub fn reactor_round() {
        if REACTOR_PANICS_LEFT.load(Ordering::Relaxed) < 0 {
            let from_env = std::env::var("REST_CLIENT_TEST_REACTOR_PANICS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            REACTOR_PANICS_LEFT.store(from_env, Ordering::Relaxed);
        }
        if REACTOR_PANICS_LEFT.load(Ordering::Relaxed) > 0 {
            REACTOR_PANICS_LEFT.fetch_sub(1, Ordering::Relaxed);
            panic!("injected reactor panic (REST_CLIENT_TEST_REACTOR_PANICS)");
        }
    }
}

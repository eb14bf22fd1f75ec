//! The script functions, in safe Rust: argument checks, the per-process pending state, the
//! transfer, and the writing of the output variables with the C module's rules.

use std::ffi::c_void;
use std::os::fd::RawFd;
use std::time::Duration;

use log::{debug, error, info, warn};

use crate::engine::{
    ClientCert, GateTicket, KeyMaterial, Method, Outcome, Pending, Request, ResponseCache,
    ResponseHead, ResultCode, Service, ServiceCache, Token, Transcript, breaks_header_line, escape,
    escape_path, escape_xml, header_name, redact_url, service_reference, trim_http_whitespace,
    unescape,
};

use super::abi::{AsyncCaller, AsyncCtxRef, MessageId, ResumeFn, ScriptVar};
use super::message::MessageScope;
use super::module::{ModuleConfig, ServiceCounter, Worker, config, with_worker};
use super::stats::{self, Stat};
use super::{trace_context, tracing};

/// Longest header line `rest_append_hf` accepts (as the C module).
const MAX_HEADER_LEN: usize = 1023;

/// The output variables of a transfer function.
pub struct Outputs {
    pub body: Option<ScriptVar>,
    pub content_type: Option<ScriptVar>,
    pub code: Option<ScriptVar>,
    /// Write the body as received instead of whitespace-trimmed (a service's `raw_body`, or
    /// `rest_raw_body()` before the call).
    pub body_as_received: bool,
}

/// Which method a transfer function uses: its own, or the one the script names
/// (`rest_request`).
#[derive(Clone, Copy)]
pub enum MethodArg<'a> {
    Fixed(Method),
    Named(Option<&'a [u8]>),
}

/// The arguments of a transfer function, as the core passed them.
pub struct CallArgs<'a> {
    pub message: MessageId,
    /// The SIP message being processed (`struct sip_msg *`), for tracing.
    pub msg: *mut c_void,
    pub method: MethodArg<'a>,
    pub url: Option<&'a [u8]>,
    pub body: Option<&'a [u8]>,
    pub content_type: Option<&'a [u8]>,
    pub outputs: Outputs,
}

fn invalid(what: &str) -> ResultCode {
    error!("{what}");
    ResultCode::InternalError
}

/// Where a call to a service with a cache meets that cache.
pub struct CacheSlot {
    service: &'static Service,
    /// The service's position in the module's list.
    index: usize,
    url: String,
    /// A GET's key, until it is looked up.
    key: Option<Vec<u8>>,
    /// A GET that missed: what storing its answer needs.
    pending: Option<Pending>,
    /// An unsafe method: its success invalidates the URL's answers.
    writes: bool,
}

/// A named service: its position in the module's list, and its definition.
type ServiceEntry = (usize, &'static Service);

/// The service named `name` (any case), if there is one.
fn find_service(name: &str) -> Option<ServiceEntry> {
    config()?
        .services
        .iter()
        .enumerate()
        .find(|(_, s)| s.name.eq_ignore_ascii_case(name))
}

/// The request of a transfer function, resolved against its service (`name://path`), if any:
/// the service's position and definition.
fn build_request(args: &CallArgs) -> Result<(Request, Option<ServiceEntry>), ResultCode> {
    let url = args
        .url
        .and_then(|u| String::from_utf8(u.to_vec()).ok())
        .filter(|u| !u.is_empty() && !u.contains('\0'))
        .ok_or_else(|| invalid("missing, empty or invalid URL"))?;
    let (service, url) = match service_reference(&url) {
        Some((name, path)) => {
            let (index, service) = find_service(name)
                .ok_or_else(|| invalid(&format!("unknown service '{name}' in URL")))?;
            let url = service
                .url(path)
                .map_err(|e| invalid(&format!("service {}: {e}", service.name)))?;
            (Some((index, service)), url)
        }
        None => (None, url),
    };
    let method = match args.method {
        MethodArg::Fixed(method) => method,
        MethodArg::Named(Some(b"")) => match service.and_then(|(_, s)| s.method) {
            Some(method) => method,
            None if args.body.is_some_and(|b| !b.is_empty()) => Method::Post,
            None => Method::Get,
        },
        MethodArg::Named(name) => name
            .and_then(Method::parse)
            .ok_or_else(|| invalid("rest_request: invalid method name"))?,
    };
    let mut request = Request::new(method, url);
    // An omitted body (rest_delete, rest_request) is an empty one.
    request.body = args.body.unwrap_or_default().to_vec();
    // A CR, LF or NUL in it makes the transfer refuse to start (-10).
    request.content_type = args
        .content_type
        .map(|c| String::from_utf8_lossy(trim_http_whitespace(c)).into_owned());
    if let Some((_, service)) = service {
        request.timeout = service.timeout;
        request.connect_timeout = service.connect_timeout;
    }
    Ok((request, service))
}

/// Builds the request of a transfer function, with the headers, certificate, limits and body
/// form the script set for it while processing this message (they belong to this transfer,
/// whatever its outcome), and where its answer may be cached. The script's headers and limits
/// win over the service's. A `traced` request records a transcript for the tracer.
fn prepare(
    worker: &mut Worker,
    args: &mut CallArgs,
    traced: bool,
) -> Result<(Request, Option<CacheSlot>), ResultCode> {
    let settings = worker.message.enter(args.message).start_call();
    let (mut request, service) = build_request(args)?;
    args.outputs.body_as_received = settings.raw_body || service.is_some_and(|(_, s)| s.raw_body);
    request.headers = settings.headers;
    if let (Some((index, definition)), Some(config)) = (service, config()) {
        ServiceCounter::Calls.count(config, index);
        // The credentials and headers as last renewed by rest_update_service.
        let current = worker
            .renewed
            .current(&config.credentials, index, definition);
        request.auth = current.auth.clone();
        let defaults: Vec<String> = current
            .headers
            .iter()
            .filter(|line| !request.has_header(header_name(line)))
            .cloned()
            .collect();
        request.headers.splice(0..0, defaults);
    }
    request.client_cert = settings.cert;
    request.trace = traced;
    if let Some((transfer, connect)) = settings.timeouts {
        request.timeout = Some(transfer);
        request.connect_timeout = connect;
    }
    let slot = service
        .filter(|(_, s)| s.cache.is_some())
        .map(|(index, service)| CacheSlot {
            service,
            index,
            url: request.url.clone(),
            key: ResponseCache::key(&request),
            pending: None,
            writes: !request.method.is_safe(),
        });
    // After the cache key: the span id of each request must not make every lookup a miss.
    if let Some(propagation) = config().and_then(|c| c.trace_context.as_ref()) {
        trace_context::add(propagation, &mut request, args.msg);
    }
    Ok((request, slot))
}

/// A fresh cached answer for a GET's `slot`, if any (looked up once; a miss is noted in the
/// slot for [`settle`]), with its transcript for a traced request.
fn cached(worker: &mut Worker, request: &Request, slot: Option<&mut CacheSlot>) -> Option<Outcome> {
    let slot = slot?;
    let key = slot.key.take()?;
    let cache = worker.caches.get_mut(&slot.service.name)?;
    // A flush asked over MI since this process last looked: its copies go first.
    if let (Some(config), Some(seen)) = (config(), worker.cache_flushes_seen.get_mut(slot.index)) {
        let asked = ServiceCounter::CacheFlushes.read(config, slot.index);
        if *seen != asked {
            *seen = asked;
            if let Err(e) = counting_entries(cache, ServiceCache::flush) {
                warn!("service {}: flushing its cache: {e}", slot.service.name);
            }
        }
    }
    let mut outcome = match counting_entries(cache, |c| c.lookup(key, slot.url.clone())) {
        Ok(outcome) => outcome,
        Err(pending) => {
            slot.pending = Some(pending);
            return None;
        }
    };
    stats::add(Stat::CacheHits, 1);
    if let Some(config) = config() {
        ServiceCounter::CacheHits.count(config, slot.index);
    }
    if request.trace {
        outcome.transcript = Some(Box::new(Transcript::cache_hit(request, &outcome)));
    }
    Some(outcome)
}

/// Runs `operation` on `cache`, and adds the change in its number of entries to the
/// `cache_entries` statistic (a gauge of every process's entries).
fn counting_entries<R>(
    cache: &mut ServiceCache,
    operation: impl FnOnce(&mut ServiceCache) -> R,
) -> R {
    let before = cache.local_entries() as i64;
    let result = operation(cache);
    stats::add(Stat::CacheEntries, cache.local_entries() as i64 - before);
    result
}

/// Records a finished transfer: in the statistics, and in the service's cache (the answer of
/// a GET that missed, the invalidations of a write).
fn settle(worker: &mut Worker, slot: Option<CacheSlot>, outcome: Outcome) -> Outcome {
    stats::transfer_ended(&outcome);
    if let Some(slot) = slot
        && let Some(cache) = worker.caches.get_mut(&slot.service.name)
    {
        if let Some(pending) = slot.pending {
            stats::add(Stat::CacheMisses, 1);
            counting_entries(cache, |c| c.store(pending, &outcome));
        }
        if slot.writes {
            counting_entries(cache, |c| c.written(slot.service, &slot.url, &outcome));
        }
    }
    outcome
}

/// `rest_cache_flush(service)`: drops the service's cached answers, in this process and in
/// its shared store (so in every process and node that shares it). 1, or -1 for a service
/// without a cache or a shared store that failed.
pub fn flush_cache(name: Option<&[u8]>) -> i32 {
    let name = String::from_utf8_lossy(name.unwrap_or_default()).into_owned();
    let flushed = with_worker(|worker| {
        let (_, cache) = worker
            .caches
            .iter_mut()
            .find(|(service, _)| service.eq_ignore_ascii_case(&name))
            .ok_or_else(|| format!("no service named '{name}' has a cache"))?;
        counting_entries(cache, ServiceCache::flush)
    });
    match flushed.and_then(|result| result) {
        Ok(()) => 1,
        Err(e) => {
            error!("rest_cache_flush: {e}");
            -1
        }
    }
}

/// MI `rest_cache_flush service=NAME`: every process drops its cached answers of the service
/// at its next call to it (and the shared store's, when it has one). `Err` for a service
/// without a cache.
pub fn ask_cache_flush(name: &str) -> Result<(), String> {
    let (index, service) = find_service(name).ok_or(format!("unknown service '{name}'"))?;
    let config = config().ok_or("the module is not initialised")?;
    if service.cache.is_none() {
        return Err(format!("service {} has no cache", service.name));
    }
    ServiceCounter::CacheFlushes.count(config, index);
    info!("service {}: cache flush asked over MI", service.name);
    Ok(())
}

/// The script now sees a call's outcome: its response head becomes the one the route reads.
fn show_head(scope: &mut MessageScope, mut outcome: Outcome) -> Outcome {
    scope.response_head = Some(std::mem::take(&mut outcome.head));
    outcome
}

/// `no_concurrent_connects`: takes the request's host, or fails with -4.
fn enter_gate(worker: &mut Worker, request: &Request) -> Result<Option<GateTicket>, ResultCode> {
    let Some(gate) = worker.gate.as_mut() else {
        return Ok(None);
    };
    match gate.enter(&request.url) {
        Some(ticket) => Ok(Some(ticket)),
        None => {
            debug!(
                "{}: another process is connecting to {}",
                request.method.name(),
                redact_url(&request.url)
            );
            stats::add(Stat::GateBlocked, 1);
            Err(ResultCode::AlreadyConnecting)
        }
    }
}

fn leave_gate(worker: &mut Worker, ticket: Option<GateTicket>, succeeded: bool) {
    if let (Some(gate), Some(ticket)) = (worker.gate.as_mut(), ticket) {
        gate.leave(ticket, succeeded);
    }
}

/// A blocking transfer, or the service's cached answer.
fn run_blocking(
    worker: &mut Worker,
    request: &Request,
    mut slot: Option<CacheSlot>,
) -> Result<Outcome, ResultCode> {
    if let Some(outcome) = cached(worker, request, slot.as_mut()) {
        return Ok(outcome);
    }
    let ticket = enter_gate(worker, request)?;
    let outcome = worker.client.perform(request);
    leave_gate(worker, ticket, outcome.result == ResultCode::Ok);
    Ok(settle(worker, slot, outcome))
}

/// The script result of a finished call of SIP message `msg`: the transfer traced (if it was
/// to be), outputs written, or the code of what stopped it.
fn conclude(
    result: Result<Result<Outcome, ResultCode>, String>,
    outputs: &Outputs,
    msg: *mut c_void,
) -> i32 {
    match result {
        Ok(Ok(outcome)) => {
            if let Some(transcript) = &outcome.transcript {
                tracing::send(msg, transcript);
            }
            write_outputs(&outcome, outputs)
        }
        Ok(Err(code)) => code.code(),
        Err(e) => {
            error!("{e}");
            ResultCode::InternalError.code()
        }
    }
}

/// A transfer function (`rest_get`, `rest_post`, ..., `rest_request`), blocking.
pub fn blocking_transfer(mut args: CallArgs) -> i32 {
    let traced = tracing::wanted();
    let result = with_worker(|worker| {
        let (request, slot) = prepare(worker, &mut args, traced)?;
        let outcome = run_blocking(worker, &request, slot)?;
        Ok(show_head(&mut worker.message, outcome))
    });
    conclude(result, &args.outputs, args.msg)
}

/// A running async call: the core's context to resume, where its results go, the gate it may
/// hold and the cache its answer may go to.
pub struct AsyncCall {
    /// Taken when the module asks the core to resume the call (once).
    ctx: Option<AsyncCtxRef>,
    caller: AsyncCaller,
    outputs: Outputs,
    ticket: Option<GateTicket>,
    slot: Option<CacheSlot>,
    /// The transfer's outcome once it ended, until the core resumes the call.
    outcome: Option<Outcome>,
}

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
    Done(Outcome, Outputs),
    Running,
}

/// The lower of two transfer limits, where zero means "no limit".
fn tighter_limit(a: Duration, b: Duration) -> Duration {
    match (a.is_zero(), b.is_zero()) {
        (true, _) => b,
        (_, true) => a,
        _ => a.min(b),
    }
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
    let result = with_worker(|worker| {
        begin(worker, config, args, host, traced).map(|begun| match begun {
            Begun::Done(outcome, outputs) => {
                // Its resume or report route reads it, whatever message that route runs for.
                let outcome = show_head(&mut worker.message, outcome);
                worker.message.hand_over();
                Begun::Done(outcome, outputs)
            }
            Begun::Running => Begun::Running,
        })
    });
    match result {
        Ok(Ok(Begun::Running)) => AsyncStart::Running,
        Ok(Ok(Begun::Done(outcome, outputs))) => {
            AsyncStart::Over(conclude(Ok(Ok(outcome)), &outputs, msg))
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
    let (mut request, mut slot) = prepare(worker, &mut args, traced)?;
    if let Some(outcome) = cached(worker, &request, slot.as_mut()) {
        return Ok(Begun::Done(outcome, args.outputs));
    }
    let transfer_timeout = request.timeout.unwrap_or(config.settings.transfer_timeout);
    let script_timeout = Duration::from_secs(host.ctx.script_timeout().into());
    request.timeout = Some(tighter_limit(transfer_timeout, script_timeout));
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
        let outcome = run_blocking(worker, &request, slot)?;
        return Ok(Begun::Done(outcome, args.outputs));
    }
    let ticket = enter_gate(worker, &request)?;
    worker.last_token = worker.last_token.wrapping_add(1);
    let token = worker.last_token;
    if let Some(outcome) = worker.client.start(token, &request) {
        leave_gate(worker, ticket, outcome.result == ResultCode::Ok);
        let outcome = settle(worker, slot, outcome);
        return Ok(Begun::Done(outcome, args.outputs));
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
            ticket,
            slot,
            outcome: None,
        },
    );
    Ok(Begun::Running)
}

/// Registers the process's transfer descriptor with the core's reactor, once.
fn hub_registered(worker: &mut Worker, register: fn(RawFd) -> bool) -> bool {
    if !worker.hub_registered {
        worker.hub_registered = register(worker.client.hub.fd());
        if !worker.hub_registered {
            error!("cannot add the async transfers' descriptor to the reactor, running blocking");
        }
    }
    worker.hub_registered
}

/// Lets the gate go for transfers that connected, and records ended transfers in their calls.
fn record_progress(worker: &mut Worker, ended: Vec<(Token, Outcome)>) {
    if worker.gate.is_some() {
        let hub = &worker.client.hub;
        let connected: Vec<Option<GateTicket>> = worker
            .async_calls
            .iter_mut()
            .filter(|(token, call)| call.ticket.is_some() && hub.request_sent(**token))
            .map(|(_, call)| call.ticket.take())
            .collect();
        for ticket in connected {
            leave_gate(worker, ticket, true);
        }
    }
    for (token, outcome) in ended {
        let Some(call) = worker.async_calls.get_mut(&token) else {
            continue;
        };
        let (ticket, slot) = (call.ticket.take(), call.slot.take());
        stats::add(Stat::AsyncInFlight, -1);
        leave_gate(worker, ticket, outcome.result == ResultCode::Ok);
        let outcome = settle(worker, slot, outcome);
        if let Some(call) = worker.async_calls.get_mut(&token) {
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
        worker.client.hub.progress();
        let ended = worker.client.hub.drain_finished();
        let tokens: Vec<Token> = ended.iter().map(|(token, _)| *token).collect();
        record_progress(worker, ended);
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
/// that request): a call still here was dropped by the core (tm does so when it cannot rebuild
/// the request, its `fake_req`), and would hold its async slot for good. It is forgotten.
pub fn forget_if_not_resumed(token: Token) {
    let dropped = with_worker(|worker| worker.async_calls.remove(&token).is_some());
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
            worker.client.hub.wait(slice);
            worker.client.hub.progress();
            let ended = worker.client.hub.take_finished(token);
            record_progress(
                worker,
                ended.map(|outcome| (token, outcome)).into_iter().collect(),
            );
        }
        match worker.async_calls.get(&token) {
            Some(call) if call.outcome.is_none() => Ok(None),
            Some(_) => {
                // Transfers of other calls that ended meanwhile: the reactor resumes them.
                worker.client.hub.wake_for_finished();
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

/// The C module's blocking output rules (used for async calls too): the code variable
/// always; body and Content-Type (trimmed; the body as received when asked for) only on
/// success or a transfer timeout.
fn write_outputs(outcome: &Outcome, outputs: &Outputs) -> i32 {
    let status = i32::try_from(outcome.status).unwrap_or(0);
    if let Some(code) = &outputs.code
        && !code.set_int(status)
    {
        error!("cannot set the code variable");
        return ResultCode::InternalError.code();
    }
    let result = outcome.result;
    if result != ResultCode::Ok && result != ResultCode::TransferTimeout {
        return result.code();
    }
    let body_text = if outputs.body_as_received {
        &outcome.body[..]
    } else {
        trim_http_whitespace(&outcome.body)
    };
    if let Some(body) = &outputs.body
        && !body.set_str(body_text)
    {
        error!("cannot set the body variable");
        return ResultCode::InternalError.code();
    }
    if let Some(ctype) = &outputs.content_type {
        let value = outcome.content_type.as_deref().unwrap_or_default();
        if !ctype.set_str(trim_http_whitespace(value)) {
            error!("cannot set the content type variable");
            return ResultCode::InternalError.code();
        }
    }
    result.code()
}

/// `rest_append_hf(header)`: queues a header line for the next transfer made while processing
/// message `msg`.
pub fn append_header(msg: MessageId, header: Option<&[u8]>) -> i32 {
    let Some(header) = header else {
        error!("rest_append_hf: missing or invalid header");
        return -1;
    };
    let header = trim_http_whitespace(header);
    if header.len() > MAX_HEADER_LEN {
        error!(
            "rest_append_hf: header of {} bytes is over the {MAX_HEADER_LEN}-byte limit",
            header.len()
        );
        return -1;
    }
    if header.is_empty() || breaks_header_line(header) {
        error!("rest_append_hf: refusing an empty header or one with CR, LF or NUL bytes");
        return -1;
    }
    let Ok(line) = String::from_utf8(header.to_vec()) else {
        error!("rest_append_hf: header is not valid UTF-8");
        return -1;
    };
    match with_worker(|w| w.message.enter(msg).append_header(line)) {
        Ok(Ok(())) => 1,
        Ok(Err(e)) | Err(e) => {
            error!("rest_append_hf: {e}");
            -1
        }
    }
}

/// `rest_raw_body()`: the next transfer made while processing message `msg` writes its body
/// variable as received.
pub fn keep_raw_body(msg: MessageId) -> i32 {
    match with_worker(|w| w.message.enter(msg).set_raw_body()) {
        Ok(()) => 1,
        Err(e) => {
            error!("rest_raw_body: {e}");
            -1
        }
    }
}

/// `rest_update_service(name, update)`: renews the credentials of service `name` for every
/// process (`auth` and `header` items, see `Service::with_update`). Values are never logged.
pub fn update_service(name: Option<&[u8]>, update: Option<&[u8]>) -> i32 {
    let (Some(name), Some(update)) = (name, update) else {
        error!("rest_update_service: missing service name or update");
        return -1;
    };
    let name = String::from_utf8_lossy(name);
    let (Some((index, definition)), Some(config)) = (find_service(&name), config()) else {
        error!("rest_update_service: unknown service '{name}'");
        return -1;
    };
    let Ok(update) = std::str::from_utf8(update) else {
        error!(
            "rest_update_service: service {}: the update is not UTF-8",
            definition.name
        );
        return -1;
    };
    match config.credentials.publish(index, definition, update) {
        Ok(count) => {
            info!(
                "service {}: credentials renewed for every process (update {count})",
                definition.name
            );
            1
        }
        Err(e) => {
            error!("rest_update_service: service {}: {e}", definition.name);
            -1
        }
    }
}

/// `rest_timeout(transfer_ms [, connect_ms])`: limits for the next transfer made while
/// processing message `msg`.
pub fn set_timeouts(msg: MessageId, transfer_ms: Option<i32>, connect_ms: Option<i32>) -> i32 {
    let positive = |ms: i32| {
        u64::try_from(ms)
            .ok()
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis)
    };
    let Some(transfer) = transfer_ms.and_then(positive) else {
        error!("rest_timeout: the transfer limit must be a positive number of milliseconds");
        return -1;
    };
    let connect = match connect_ms.map(positive) {
        None => None,
        Some(Some(connect)) => Some(connect),
        Some(None) => {
            error!("rest_timeout: the connect limit must be a positive number of milliseconds");
            return -1;
        }
    };
    match with_worker(|w| w.message.enter(msg).set_timeouts(transfer, connect)) {
        Ok(()) => 1,
        Err(e) => {
            error!("rest_timeout: {e}");
            -1
        }
    }
}

/// Reads, with `read`, the head of the response that the route processing `msg` sees (its last
/// blocking call, or the async call it resumes), into `var`; -1 when there is no such response
/// or value.
fn from_response_head(
    what: &str,
    msg: MessageId,
    var: Option<ScriptVar>,
    read: impl FnOnce(&ResponseHead) -> Option<Vec<u8>>,
) -> i32 {
    let Some(var) = var else {
        error!("{what}: missing output variable");
        return -1;
    };
    let value = with_worker(|w| w.message.enter(msg).response_head.as_ref().and_then(read))
        .ok()
        .flatten();
    match value {
        Some(value) if var.set_str(&value) => 1,
        Some(_) => {
            error!("{what}: cannot set the output variable");
            -1
        }
        None => -1,
    }
}

/// `rest_response_header(name, $var)`: a header of the call's response (case-insensitive).
pub fn response_header(msg: MessageId, name: Option<&[u8]>, var: Option<ScriptVar>) -> i32 {
    let Some(name) = name
        .and_then(|n| std::str::from_utf8(n).ok())
        .filter(|n| !n.is_empty())
    else {
        error!("rest_response_header: missing or invalid header name");
        return -1;
    };
    from_response_head("rest_response_header", msg, var, |head| {
        head.header(name.trim())
    })
}

/// `rest_response_reason($var)`: the reason phrase of the call's response.
pub fn response_reason(msg: MessageId, var: Option<ScriptVar>) -> i32 {
    from_response_head("rest_response_reason", msg, var, |head| {
        head.received().then(|| head.reason().to_vec())
    })
}

/// `rest_init_client_tls(domain)`: the next transfer made while processing message `msg`
/// presents this tls_mgm client domain's certificate and key.
pub fn init_client_tls(msg: MessageId, domain: Option<&[u8]>) -> i32 {
    let Some(domain) = domain.filter(|d| !d.is_empty()) else {
        error!("rest_init_client_tls: missing or empty TLS client domain name");
        return -1;
    };
    let Some(tls) = config().and_then(|c| c.tls) else {
        error!("rest_init_client_tls: tls_mgm is not bound (is the tls_mgm module loaded?)");
        return -1;
    };
    let Some((certificate, private_key)) = tls.client_domain_cert(domain) else {
        error!(
            "rest_init_client_tls: no TLS client domain named '{}'",
            String::from_utf8_lossy(domain)
        );
        return -1;
    };
    let cert = ClientCert {
        certificate: KeyMaterial::from_config(&certificate),
        private_key: KeyMaterial::from_config(&private_key),
    };
    match with_worker(|w| w.message.enter(msg).set_cert(cert)) {
        Ok(()) => 1,
        Err(e) => {
            error!("rest_init_client_tls: {e}");
            -1
        }
    }
}

/// The `{rest.escape}` / `{rest.unescape}` / `{rest.escape_path}` / `{rest.escape_xml}`
/// subtypes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Transform {
    Escape = 0,
    Unescape = 1,
    EscapePath = 2,
    EscapeXml = 3,
}

impl Transform {
    /// Parses the text after `rest.` (exactly `escape`, `unescape`, `escape_path` or
    /// `escape_xml`).
    pub fn parse(name: &[u8]) -> Option<Self> {
        match name {
            b"escape" => Some(Self::Escape),
            b"unescape" => Some(Self::Unescape),
            b"escape_path" => Some(Self::EscapePath),
            b"escape_xml" => Some(Self::EscapeXml),
            _ => None,
        }
    }

    pub fn from_subtype(subtype: i32) -> Option<Self> {
        [
            Self::Escape,
            Self::Unescape,
            Self::EscapePath,
            Self::EscapeXml,
        ]
        .into_iter()
        .find(|t| *t as i32 == subtype)
    }

    pub fn apply(self, input: &[u8]) -> Vec<u8> {
        match self {
            Self::Escape => escape(input),
            Self::Unescape => unescape(input),
            Self::EscapePath => escape_path(input),
            Self::EscapeXml => escape_xml(input),
        }
    }
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

//! The script functions, in safe Rust: plumbing between the script and the engine. Script
//! arguments become the engine's call (with what the script set for it while processing the
//! message), and an outcome becomes the output variables, with the C module's rules. What
//! happens to a call on its way (service, cache, gate, statistics) is the engine's pipeline;
//! the async life cycle is `async_script.rs`.

use std::ffi::c_void;
use std::time::Duration;

use log::{error, info};

use crate::engine::{
    Call, CallSpec, ClientCert, KeyMaterial, Method, MethodChoice, Outcome, ResponseHead,
    ResultCode, breaks_header_line, escape, escape_path, escape_xml, trim_http_whitespace,
    unescape,
};

use super::abi::{MessageId, ScriptVar};
use super::call_args::{CallArgs, MethodArg, Outputs};
use super::message::MessageScope;
use super::module::config;
use super::worker::{Worker, with_worker};
use super::{trace_context, tracing};

/// Longest header line `rest_append_hf` accepts (as the C module).
const MAX_HEADER_LEN: usize = 1023;

fn invalid(what: &str) -> ResultCode {
    error!("{what}");
    ResultCode::InternalError
}

/// The engine's call of a transfer function: the script's arguments, with the headers,
/// certificate, limits and body form the script set for it while processing this message
/// (they belong to this transfer, whatever its outcome). A `traced` call records a transcript
/// for the tracer.
pub fn prepare(worker: &mut Worker, args: &mut CallArgs, traced: bool) -> Result<Call, ResultCode> {
    let settings = worker.message.enter(args.message).start_call();
    let url = args
        .url
        .and_then(|u| String::from_utf8(u.to_vec()).ok())
        .filter(|u| !u.is_empty() && !u.contains('\0'))
        .ok_or_else(|| invalid("missing, empty or invalid URL"))?;
    let method = match args.method {
        MethodArg::Fixed(method) => MethodChoice::Given(method),
        MethodArg::Named(Some(b"")) => MethodChoice::Default,
        MethodArg::Named(name) => MethodChoice::Given(
            name.and_then(Method::parse)
                .ok_or_else(|| invalid("rest_request: invalid method name"))?,
        ),
    };
    let spec = CallSpec {
        method,
        url,
        // An omitted body (rest_delete, rest_request) is an empty one.
        body: args.body.unwrap_or_default().to_vec(),
        // A CR, LF or NUL in it makes the transfer refuse to start (-10).
        content_type: args
            .content_type
            .map(|c| String::from_utf8_lossy(trim_http_whitespace(c)).into_owned()),
        headers: settings.headers,
        client_cert: settings.cert,
        timeouts: settings.timeouts,
        trace: traced,
    };
    let mut call = worker.calls.prepare(spec)?;
    args.outputs.body_as_received = settings.raw_body || call.service_raw_body;
    // After the cache key: the span id of each request must not make every lookup a miss.
    if let Some(propagation) = config().and_then(|c| c.trace_context.as_ref()) {
        trace_context::add(propagation, &mut call.request, args.msg);
    }
    Ok(call)
}

/// `rest_cache_flush(service)`: drops the service's cached answers, in this process and in
/// its shared store (so in every process and node that shares it). 1, or -1 for a service
/// without a cache or a shared store that failed.
pub fn flush_cache(name: Option<&[u8]>) -> i32 {
    let name = String::from_utf8_lossy(name.unwrap_or_default()).into_owned();
    match with_worker(|worker| worker.calls.flush_cache(&name)).and_then(|result| result) {
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
    let config = config().ok_or("the module is not initialised")?;
    let service = config.services.ask_flush(name)?;
    info!("service {service}: cache flush asked over MI");
    Ok(())
}

/// The script now sees a call's outcome: its response head (and whether it is stale) becomes
/// the one the route reads.
pub fn show_head(scope: &mut MessageScope, mut outcome: Outcome) -> Outcome {
    scope.response_head = Some(std::mem::take(&mut outcome.head));
    scope.response_stale = outcome.stale;
    outcome
}

/// The script result of a finished call of SIP message `msg`: the transfer traced (if it was
/// to be), outputs written, or the code of what stopped it.
pub fn conclude(
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
        let call = prepare(worker, &mut args, traced)?;
        let outcome = worker.calls.run_blocking(call)?;
        Ok(show_head(&mut worker.message, outcome))
    });
    conclude(result, &args.outputs, args.msg)
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
    let Some((config, (index, definition))) =
        config().and_then(|c| Some((c, c.services.find(&name)?)))
    else {
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
    match config.services.publish_update(index, update) {
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

/// `rest_response_stale()`: 1 when the answer of the call the route processing `msg` sees
/// (its last blocking call, or the async call it resumes) came from the cache past its
/// freshness (stale-if-error, stale-while-revalidate), else -1.
pub fn response_stale(msg: MessageId) -> i32 {
    match with_worker(|w| w.message.enter(msg).response_stale) {
        Ok(true) => 1,
        Ok(false) => -1,
        Err(e) => {
            error!("rest_response_stale: {e}");
            -1
        }
    }
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

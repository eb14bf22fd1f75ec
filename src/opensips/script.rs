//! The script functions, in safe Rust: argument checks, the per-process pending state, the
//! transfer, and the writing of the output variables with the C module's rules.

use log::{debug, error};

use crate::engine::{
    ClientCert, KeyMaterial, Method, Outcome, Request, ResultCode, escape, trim_http_whitespace,
    unescape,
};

use super::abi::ScriptVar;
use super::module::{config, with_worker};

/// Longest header line `rest_append_hf` accepts (as the C module).
const MAX_HEADER_LEN: usize = 1023;

/// The output variables of a transfer function.
pub struct Outputs {
    pub body: Option<ScriptVar>,
    pub content_type: Option<ScriptVar>,
    pub code: Option<ScriptVar>,
}

fn text_arg(function: &str, what: &str, arg: Option<&[u8]>) -> Result<String, ResultCode> {
    let bytes = arg.ok_or_else(|| {
        error!("{function}: missing or invalid {what}");
        ResultCode::InternalError
    })?;
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        error!("{function}: {what} is not valid UTF-8");
        ResultCode::InternalError
    })
}

fn build_request(
    method: Method,
    url: Option<&[u8]>,
    body: Option<&[u8]>,
    content_type: Option<&[u8]>,
    want_content_type: bool,
) -> Result<Request, ResultCode> {
    let function = function_name(method);
    let url = text_arg(function, "URL", url)?;
    if url.is_empty() || url.contains('\0') {
        error!("{function}: empty URL, or one with a NUL byte");
        return Err(ResultCode::InternalError);
    }
    let mut request = Request::new(method, url);
    if method.has_body() {
        request.body = body
            .ok_or_else(|| {
                error!("{function}: missing or invalid body");
                ResultCode::InternalError
            })?
            .to_vec();
        request.content_type =
            content_type.map(|c| String::from_utf8_lossy(trim_http_whitespace(c)).into_owned());
    }
    request.want_content_type = want_content_type;
    Ok(request)
}

fn function_name(method: Method) -> &'static str {
    match method {
        Method::Get => "rest_get",
        Method::Post => "rest_post",
        Method::Put => "rest_put",
    }
}

/// `rest_get` / `rest_post` / `rest_put`, blocking.
pub fn blocking_transfer(
    method: Method,
    url: Option<&[u8]>,
    body: Option<&[u8]>,
    content_type: Option<&[u8]>,
    outputs: &Outputs,
) -> i32 {
    let result = with_worker(|worker| {
        // The pending headers and certificate belong to this transfer, whatever its outcome.
        let headers = std::mem::take(&mut worker.pending_headers);
        let cert = worker.pending_cert.take();
        let mut request = build_request(
            method,
            url,
            body,
            content_type,
            outputs.content_type.is_some(),
        )?;
        request.headers = headers;
        request.client_cert = cert;
        let ticket = match worker.gate.as_mut() {
            Some(gate) => Some(gate.enter(&request.url).ok_or_else(|| {
                debug!(
                    "{}: another process is connecting to {}",
                    function_name(method),
                    crate::engine::redact_url(&request.url)
                );
                ResultCode::AlreadyConnecting
            })?),
            None => None,
        };
        let outcome = worker.client.perform(&request);
        if let (Some(gate), Some(ticket)) = (worker.gate.as_mut(), ticket) {
            gate.leave(ticket, outcome.result == ResultCode::Ok);
        }
        Ok::<_, ResultCode>(outcome)
    });
    match result {
        Ok(Ok(outcome)) => write_blocking_outputs(&outcome, outputs),
        Ok(Err(code)) => code.code(),
        Err(e) => {
            error!("{}: {e}", function_name(method));
            ResultCode::InternalError.code()
        }
    }
}

/// The C module's blocking output rules: the code variable always; body and Content-Type
/// (trimmed) only on success or a transfer timeout.
fn write_blocking_outputs(outcome: &Outcome, outputs: &Outputs) -> i32 {
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
    if let Some(body) = &outputs.body
        && !body.set_str(trim_http_whitespace(&outcome.body))
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

/// `rest_append_hf(header)`: queues a header line for the next transfer of this process.
pub fn append_header(header: Option<&[u8]>) -> i32 {
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
    if header.is_empty() || header.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)) {
        error!("rest_append_hf: refusing an empty header or one with CR, LF or NUL bytes");
        return -1;
    }
    let Ok(line) = String::from_utf8(header.to_vec()) else {
        error!("rest_append_hf: header is not valid UTF-8");
        return -1;
    };
    match with_worker(|w| w.pending_headers.push(line)) {
        Ok(()) => 1,
        Err(e) => {
            error!("rest_append_hf: {e}");
            -1
        }
    }
}

/// `rest_init_client_tls(domain)`: the next transfer presents this tls_mgm client domain's
/// certificate and key.
pub fn init_client_tls(domain: Option<&[u8]>) -> i32 {
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
    match with_worker(|w| w.pending_cert = Some(cert)) {
        Ok(()) => 1,
        Err(e) => {
            error!("rest_init_client_tls: {e}");
            -1
        }
    }
}

/// The `{rest.escape}` / `{rest.unescape}` subtypes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Transform {
    Escape = 0,
    Unescape = 1,
}

impl Transform {
    /// Parses the text after `rest.` (exactly `escape` or `unescape`).
    pub fn parse(name: &[u8]) -> Option<Self> {
        match name {
            b"escape" => Some(Self::Escape),
            b"unescape" => Some(Self::Unescape),
            _ => None,
        }
    }

    pub fn from_subtype(subtype: i32) -> Option<Self> {
        [Self::Escape, Self::Unescape]
            .into_iter()
            .find(|t| *t as i32 == subtype)
    }

    pub fn apply(self, input: &[u8]) -> Vec<u8> {
        match self {
            Self::Escape => escape(input),
            Self::Unescape => unescape(input),
        }
    }
}

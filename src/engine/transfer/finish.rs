//! The end of a transfer: its outcome read out of the easy handle, one more attempt when only
//! dead kept-alive connections were tried, and the handle scrubbed for the next transfer.

use std::time::Duration;

use curl::easy::{Easy2, List};
use log::{error, info};

use super::collector::{Collector, Overflow};
use super::outcome::{Outcome, Traffic};
use super::target::Target;
use super::transcript::socket_address;
use crate::engine::curl_raw::request_sent;
use crate::engine::result_code::ResultCode;

/// libcurl (7.88) reuses a kept-alive connection the server has already closed when the close
/// does not show yet (a TLS connection whose close_notify waits unread looks alive), retries on
/// the next cached connection of that server when nothing came back, and gives up with
/// CURLE_SEND_ERROR after five such retries, which a server closing all its idle connections
/// at once (an nginx reload) reaches. When `result` failed that way (a send or receive error,
/// no response byte, only kept-alive connections tried), or the kept-alive connection was
/// refused for holding unread bytes (see `connection_check.rs`), this sets `easy` up for one
/// more attempt on a new connection within what is left of `limit` (zero: no limit), and says
/// so.
pub(crate) fn retry_on_new_connection(
    easy: &mut Easy2<Collector>,
    result: &Result<(), curl::Error>,
    limit: Duration,
    target: &Target,
) -> bool {
    let Err(e) = result else {
        return false;
    };
    let stale = (e.is_send_error() || e.is_recv_error())
        && easy.header_size().is_ok_and(|bytes| bytes == 0)
        && easy.num_connects().is_ok_and(|new| new == 0);
    let held = if e.is_aborted_by_callback() {
        easy.get_ref().connection.held_kept_alive()
    } else {
        None
    };
    if !stale && held.is_none() {
        return false;
    }
    let left = if limit.is_zero() {
        Duration::ZERO
    } else {
        match easy
            .total_time()
            .ok()
            .and_then(|spent| limit.checked_sub(spent))
        {
            Some(left) if !left.is_zero() => left,
            _ => return false,
        }
    };
    if easy.timeout(left).and(easy.fresh_connect(true)).is_err() {
        return false;
    }
    if let Some(refusal) = held {
        easy.get_ref().connection.forget_refusal();
        refusal.log_retry(&target.for_logs());
        return true;
    }
    info!(
        "{}: the server closed the kept-alive connections tried ({e}), trying a new one",
        target.for_logs()
    );
    true
}

/// Forgets the options the last transfer set on `easy` (request body, credentials, client
/// certificate and key, header list), so that a handle waiting for its next transfer holds none
/// of them.
pub(crate) fn scrub(easy: &mut Easy2<Collector>) {
    easy.reset();
    // reset() leaves the handle in its share: it leaves it here, so that caches the process
    // dropped meanwhile are freed.
    if let Err(e) = std::mem::take(&mut easy.get_mut().tls).release(easy) {
        error!("cannot detach a transfer from its connection cache: {e}");
    }
    // reset() leaves the header list with the handle: an empty one replaces it.
    if let Err(e) = easy.http_headers(List::new()) {
        error!("cannot clear a transfer's headers: {e}");
    }
}

/// Reads the outcome of a finished transfer out of `easy`.
pub(crate) fn finish(
    easy: &mut Easy2<Collector>,
    result: Result<(), curl::Error>,
    target: &Target,
) -> Outcome {
    let status = easy.response_code().unwrap_or(0);
    // The request could be sent: connected (TLS included) on a new or a reused connection.
    let connected = request_sent(easy.raw());
    let code = ResultCode::from_curl(result.as_ref().map(|_| ()), connected);
    let failure = result.as_ref().err().map(|e| {
        let url = target.url_for_logs();
        let method = target.method.name();
        let collector = easy.get_ref();
        let refused = collector
            .refusal()
            .map(|refusal| format!("{method} {url}: {refusal}"));
        let message = match code {
            _ if refused.is_some() => refused.unwrap_or_default(),
            _ if collector.overflow() == Some(Overflow::TransferLimit) => {
                format!("{method} {url}: response body larger than max_transfer_size, aborted")
            }
            _ if collector.overflow() == Some(Overflow::InflightCap) => format!(
                "{method} {url}: the response bodies of this process's unfinished transfers \
                 would exceed max_inflight_body_bytes ({} bytes), aborted",
                collector.inflight().cap().unwrap_or_default()
            ),
            ResultCode::ConnectRefused => format!("connect refused for {url}"),
            ResultCode::ConnectTimeout => format!("connect timeout on {url}"),
            ResultCode::TransferTimeout => format!("connected, but transfer timed out for {url}"),
            _ => format!("{method} {url} failed: {e}"),
        };
        error!("{message}");
        let detail = e
            .extra_description()
            .map(str::to_owned)
            .or_else(|| easy.take_error_buf())
            .unwrap_or_else(|| e.description().to_string());
        if message.contains(&detail) {
            message
        } else {
            format!("{message} ({detail})")
        }
    });
    let transcript = easy.get_mut().take_recorder().map(|recorder| {
        let local = socket_address(
            easy.local_ip().ok().flatten(),
            easy.local_port().unwrap_or(0),
        );
        let remote = socket_address(
            easy.primary_ip().ok().flatten(),
            easy.primary_port().unwrap_or(0),
        );
        Box::new(recorder.finish(easy.get_ref().body(), local, remote, failure))
    });
    let overflow = easy.get_ref().overflow().is_some();
    let traffic = Traffic {
        connections_opened: easy.num_connects().unwrap_or(0),
        request_sent: connected,
        tls: target
            .url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://")),
        bytes_sent: bytes_sent(easy),
        bytes_received: easy.header_size().unwrap_or(0)
            + easy.download_size().unwrap_or(0.0) as u64,
        wire_failure: !overflow && result.as_ref().err().is_some_and(failed_on_wire),
    };
    let (body, content_type, head) = easy.get_mut().take();
    Outcome {
        result: code,
        status,
        body,
        content_type,
        head,
        transcript,
        traffic,
        stale: false,
    }
}

/// Whether `e` is a failure of the server or of the way to it, rather than of the request's
/// options or a local limit.
fn failed_on_wire(e: &curl::Error) -> bool {
    e.is_couldnt_resolve_host()
        || e.is_couldnt_connect()
        || e.is_operation_timedout()
        || e.is_ssl_connect_error()
        || e.is_peer_failed_verification()
        || e.is_send_error()
        || e.is_recv_error()
        || e.is_got_nothing()
        || e.is_partial_file()
        || e.is_http2_error()
        || e.is_http2_stream_error()
        // CURLE_WEIRD_SERVER_REPLY, under its old name.
        || e.code() == curl_sys::CURLE_FTP_WEIRD_SERVER_REPLY
}

/// The request bytes a finished transfer sent: request line, headers and body, once.
/// CURLINFO_REQUEST_SIZE counts what went out with the headers, which includes a body small
/// enough to go in the same write (libcurl 7.88: under 64 KiB), which CURLINFO_SIZE_UPLOAD
/// counts again; a larger body is in the upload size only.
fn bytes_sent(easy: &Easy2<Collector>) -> u64 {
    let with_headers = easy.request_size().unwrap_or(0);
    let body = easy.upload_size().unwrap_or(0.0) as u64;
    if with_headers >= body {
        with_headers
    } else {
        with_headers + body
    }
}

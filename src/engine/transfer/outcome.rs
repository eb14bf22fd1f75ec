//! What a finished transfer produced: the script's result code, the response, and what it
//! cost on the wire.

use super::response_head::ResponseHead;
use super::transcript::Transcript;
use crate::engine::result_code::ResultCode;

/// What a transfer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub result: ResultCode,
    /// HTTP status of the final response, 0 if none was received.
    pub status: u32,
    pub body: Vec<u8>,
    /// Value of the final response's Content-Type header, if any.
    pub content_type: Option<Vec<u8>>,
    /// The final response's status line and headers.
    pub head: ResponseHead,
    /// What was exchanged, for a request that asked for it ([`Request::trace`]).
    pub transcript: Option<Box<Transcript>>,
    /// What the transfer cost on the wire (all zero for an answer that did not come from one).
    pub traffic: Traffic,
    /// A cached answer served past its freshness (stale-if-error, stale-while-revalidate).
    pub stale: bool,
}

/// What one transfer did on the wire, for statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Connections opened for it (0: it reused a kept-alive one, or none was made).
    pub connections_opened: u64,
    /// Whether a request was sent (on a new or a reused connection).
    pub request_sent: bool,
    /// Whether its connections are TLS (`https://`).
    pub tls: bool,
    /// Request and response bytes, headers included (as libcurl counts them).
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The server or the way to it failed the transfer: no connection, a TLS handshake that
    /// failed, nothing or a broken answer, a timeout (not a refused option or a local limit).
    pub wire_failure: bool,
}

impl Outcome {
    /// A transfer that never started.
    pub fn failed(result: ResultCode) -> Self {
        Self {
            result,
            status: 0,
            body: Vec::new(),
            content_type: None,
            head: ResponseHead::default(),
            transcript: None,
            traffic: Traffic::default(),
            stale: false,
        }
    }
}

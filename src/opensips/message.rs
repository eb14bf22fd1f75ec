//! What belongs to the SIP message a script is processing: what the script set for its next
//! transfer (`rest_append_hf`, `rest_init_client_tls`, `rest_timeout`, `rest_raw_body`) and the response head of
//! the call its route finished last (and whether that answer was a stale one). A function called for another message finds none of it:
//! nothing set while processing one message reaches the request of another, and no route reads
//! the response of another message's call, except the report route of a `launch()` job that
//! ended as it started, which the core runs at once for its dummy message.

use std::time::Duration;

use crate::engine::{ClientCert, ResponseHead};

use super::abi::MessageId;

/// Most header lines `rest_append_hf` keeps for the next transfer.
pub const MAX_PENDING_HEADERS: usize = 32;
/// Most bytes of header lines `rest_append_hf` keeps for the next transfer.
pub const MAX_PENDING_HEADER_BYTES: usize = 16 * 1024;

/// What the script set for the transfer it starts now.
pub struct CallSettings {
    pub headers: Vec<String>,
    pub cert: Option<ClientCert>,
    /// `rest_timeout`: (transfer, connect).
    pub timeouts: Option<(Duration, Option<Duration>)>,
    /// `rest_raw_body`: the body variable gets the body as received.
    pub raw_body: bool,
}

/// The state of the message being processed, in one process.
#[derive(Default)]
pub struct MessageScope {
    /// The message it belongs to (`None` in a new process).
    owner: Option<MessageId>,
    /// The response head is the one of a `launch()` job that ended as it started, for its
    /// report route: the core runs that route before the `launch()` statement returns, for its
    /// dummy message, which adopts the scope if it is the first to call a function. Any other
    /// message, the launching one included, finds a scope of its own.
    for_report_route: bool,
    headers: Vec<String>,
    header_bytes: usize,
    cert: Option<ClientCert>,
    timeouts: Option<(Duration, Option<Duration>)>,
    raw_body: bool,
    /// The status line and headers of the call the route finished last (the blocking call
    /// that returned, the async call being resumed).
    pub response_head: Option<ResponseHead>,
    /// Whether that call's answer came from the cache past its freshness.
    pub response_stale: bool,
}

impl MessageScope {
    /// The scope of `msg`: the one of another message (or of a report route that did not
    /// run) is dropped first.
    pub fn enter(&mut self, msg: MessageId) -> &mut Self {
        let kept = if std::mem::take(&mut self.for_report_route) {
            msg.is_dummy()
        } else {
            self.owner == Some(msg)
        };
        if !kept {
            *self = Self::default();
        }
        self.owner = Some(msg);
        self
    }

    /// The route that ran for the message ended: nothing of it remains for a later one.
    pub fn end(&mut self) {
        *self = Self::default();
    }

    /// Leaves the scope (with the response head of the `launch()` job that just ended as it
    /// started) to the job's report route only.
    pub fn hand_to_report_route(&mut self) {
        self.for_report_route = true;
    }

    /// Queues a header line for the next transfer; `Err` (with the reason) past the bounds.
    pub fn append_header(&mut self, line: String) -> Result<(), String> {
        if self.headers.len() >= MAX_PENDING_HEADERS {
            return Err(format!(
                "{MAX_PENDING_HEADERS} headers are already pending for the next request"
            ));
        }
        if self.header_bytes + line.len() > MAX_PENDING_HEADER_BYTES {
            return Err(format!(
                "the pending headers would exceed {MAX_PENDING_HEADER_BYTES} bytes"
            ));
        }
        self.header_bytes += line.len();
        self.headers.push(line);
        Ok(())
    }

    pub fn set_cert(&mut self, cert: ClientCert) {
        self.cert = Some(cert);
    }

    pub fn set_timeouts(&mut self, transfer: Duration, connect: Option<Duration>) {
        self.timeouts = Some((transfer, connect));
    }

    pub fn set_raw_body(&mut self) {
        self.raw_body = true;
    }

    /// Takes what the script set for the transfer it starts now (each setting applies to one
    /// transfer), and forgets the response of the previous call.
    pub fn start_call(&mut self) -> CallSettings {
        self.header_bytes = 0;
        self.response_head = None;
        self.response_stale = false;
        CallSettings {
            headers: std::mem::take(&mut self.headers),
            cert: self.cert.take(),
            timeouts: self.timeouts.take(),
            raw_body: std::mem::take(&mut self.raw_body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(address: usize, id: u32) -> MessageId {
        MessageId::for_test(address, id, false)
    }

    fn dummy() -> MessageId {
        MessageId::for_test(9, 0, true)
    }

    #[test]
    fn another_message_finds_nothing_of_the_previous_one() {
        let mut scope = MessageScope::default();
        scope.enter(msg(1, 7)).append_header("A: 1".into()).unwrap();
        scope.enter(msg(1, 7)).response_head = Some(ResponseHead::default());
        assert_eq!(scope.enter(msg(1, 7)).headers.len(), 1);
        // The same address, another id: another message.
        let scope = scope.enter(msg(1, 8));
        assert!(scope.headers.is_empty() && scope.response_head.is_none());
        assert_eq!(scope.header_bytes, 0);
    }

    #[test]
    fn a_scope_handed_to_a_report_route_is_adopted_by_the_dummy_message_only() {
        let mut scope = MessageScope::default();
        scope.enter(msg(1, 7)).response_head = Some(ResponseHead::default());
        scope.hand_to_report_route();
        assert!(scope.enter(dummy()).response_head.is_some());
        assert!(scope.enter(dummy()).response_head.is_some());
        assert!(scope.enter(msg(1, 7)).response_head.is_none());
        // The launching message, or the next one, calls first: the report route did not run.
        for first in [msg(1, 7), msg(1, 8)] {
            scope.enter(msg(1, 7)).response_head = Some(ResponseHead::default());
            scope.hand_to_report_route();
            assert!(scope.enter(first).response_head.is_none());
            assert!(scope.enter(dummy()).response_head.is_none());
        }
    }

    #[test]
    fn pending_headers_are_bounded_in_count_and_bytes() {
        let mut scope = MessageScope::default();
        for i in 0..MAX_PENDING_HEADERS {
            scope.append_header(format!("X-{i}: v")).unwrap();
        }
        assert!(scope.append_header("X-More: v".into()).is_err());
        assert_eq!(scope.start_call().headers.len(), MAX_PENDING_HEADERS);
        let line = format!("X-Big: {}", "v".repeat(1000));
        let fit = MAX_PENDING_HEADER_BYTES / line.len();
        for _ in 0..fit {
            scope.append_header(line.clone()).unwrap();
        }
        assert!(scope.append_header(line).is_err());
        scope.start_call();
        assert!(scope.append_header("A: 1".into()).is_ok());
    }
}

//! The per-transfer libcurl handler: collects the body (bounded per transfer, and with the
//! bodies of the process's other unfinished transfers), the response's Content-Type, and the
//! final response's status line and header lines (bounded) for later look-ups, and gives the
//! transfer's new TLS connections the process's TLS material; for a traced transfer, also
//! what libcurl's debug callback reports. It refuses a response whose framing is ambiguous and
//! holds the transfer's connection check (see `connection_check.rs`).

use std::cell::Cell;
use std::ffi::c_void;
use std::rc::Rc;

use curl::easy::{Handler, InfoType, WriteError};

use super::connection_check::{ConnectionCheck, Framing, Refusal};
use super::response_head::{MAX_HEAD_BYTES, ResponseHead, header_value};
use super::transcript::Recorder;
use crate::engine::tls::ConnectionTls;

/// The response body bytes that the unfinished transfers of one client hold, and their cap.
#[derive(Debug)]
pub struct InflightBodies {
    cap: Option<usize>,
    held: Cell<usize>,
}

impl InflightBodies {
    pub fn new(cap: Option<usize>) -> Rc<Self> {
        Rc::new(Self {
            cap,
            held: Cell::new(0),
        })
    }

    pub fn cap(&self) -> Option<usize> {
        self.cap
    }

    /// Counts `bytes` more, unless that goes past the cap.
    fn reserve(&self, bytes: usize) -> bool {
        let held = self.held.get() + bytes;
        if self.cap.is_some_and(|cap| held > cap) {
            return false;
        }
        self.held.set(held);
        true
    }

    fn release(&self, bytes: usize) {
        self.held.set(self.held.get() - bytes);
    }
}

/// Why a transfer's body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// The body grew past the transfer's limit (`max_transfer_size`).
    TransferLimit,
    /// The bodies of the client's unfinished transfers grew past their cap.
    InflightCap,
}

/// Receives what libcurl reads for one transfer. The body it holds counts in its client's
/// [`InflightBodies`] until it is taken or cleared.
pub struct Collector {
    /// What a new TLS connection of the transfer gets (set by `ProcessTls::apply`).
    pub(crate) tls: ConnectionTls,
    body: Vec<u8>,
    max_body_bytes: Option<usize>,
    overflow: Option<Overflow>,
    inflight: Rc<InflightBodies>,
    content_type: Option<Vec<u8>>,
    head: ResponseHead,
    /// Present for a traced transfer.
    recorder: Option<Recorder>,
    /// Shared with libcurl's pre-request callback (see `connection_check::watch`).
    pub(super) connection: Rc<ConnectionCheck>,
    framing: Framing,
    /// Why the response was refused for its framing.
    framing_refusal: Option<Refusal>,
}

impl Collector {
    pub fn new(inflight: Rc<InflightBodies>) -> Self {
        Self {
            tls: ConnectionTls::default(),
            body: Vec::new(),
            max_body_bytes: None,
            overflow: None,
            inflight,
            content_type: None,
            head: ResponseHead::default(),
            recorder: None,
            connection: ConnectionCheck::new(),
            framing: Framing::default(),
            framing_refusal: None,
        }
    }

    /// Empties the collector for a new transfer.
    pub fn start(&mut self, max_body_bytes: Option<usize>) {
        self.inflight.release(self.body.len());
        self.body.clear();
        self.max_body_bytes = max_body_bytes;
        self.overflow = None;
        self.content_type = None;
        self.head.clear();
        self.recorder = None;
        self.framing.start();
        self.framing_refusal = None;
    }

    /// Makes the transfer started last a traced one.
    pub fn record(&mut self, recorder: Recorder) {
        self.recorder = Some(recorder);
    }

    /// The body received so far.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Hands out the recorder of a traced transfer.
    pub fn take_recorder(&mut self) -> Option<Recorder> {
        self.recorder.take()
    }

    /// Why the connection or the response was refused, if it was.
    pub fn refusal(&self) -> Option<Refusal> {
        self.framing_refusal.or(self.connection.refusal())
    }

    /// Why the transfer was aborted because of its body, if it was.
    pub fn overflow(&self) -> Option<Overflow> {
        self.overflow
    }

    pub fn inflight(&self) -> &InflightBodies {
        &self.inflight
    }

    /// Hands out the body, Content-Type and response head, leaving the collector empty.
    pub fn take(&mut self) -> (Vec<u8>, Option<Vec<u8>>, ResponseHead) {
        self.inflight.release(self.body.len());
        (
            std::mem::take(&mut self.body),
            self.content_type.take(),
            std::mem::take(&mut self.head),
        )
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.inflight.release(self.body.len());
    }
}

impl Handler for Collector {
    fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        let overflow = if self
            .max_body_bytes
            .is_some_and(|limit| self.body.len() + data.len() > limit)
        {
            Some(Overflow::TransferLimit)
        } else if !self.inflight.reserve(data.len()) {
            Some(Overflow::InflightCap)
        } else {
            None
        };
        if overflow.is_some() {
            self.overflow = overflow;
            return Ok(0); // anything short of data.len() makes libcurl abort with WRITE_ERROR
        }
        self.body.extend_from_slice(data);
        Ok(data.len())
    }

    fn header(&mut self, line: &[u8]) -> bool {
        if line.starts_with(b"HTTP/") {
            // A new response (interim 1xx, or after a redirect): only the final one counts.
            self.content_type = None;
            self.head.clear();
            self.head.set_status_line(line);
            self.framing.start();
        } else {
            let framing = if let Some(value) = header_value(line, b"content-length") {
                self.framing.content_length(value)
            } else if header_value(line, b"transfer-encoding").is_some() {
                self.framing.transfer_encoding()
            } else {
                Ok(())
            };
            if let Err(refusal) = framing {
                self.framing_refusal = Some(refusal);
                return false;
            }
            if let Some(value) = header_value(line, b"content-type") {
                self.content_type = Some(value.to_vec());
            }
            self.head.add_line(line, MAX_HEAD_BYTES);
        }
        true
    }

    fn ssl_ctx(&mut self, ssl_ctx: *mut c_void) -> Result<(), curl::Error> {
        self.tls.install(ssl_ctx)
    }

    /// Runs only for traced transfers (libcurl's verbose mode is on for those alone).
    fn debug(&mut self, kind: InfoType, data: &[u8]) {
        let Some(recorder) = self.recorder.as_mut() else {
            return;
        };
        match kind {
            InfoType::HeaderOut => recorder.header_out(data),
            InfoType::DataOut => recorder.data_out(data),
            InfoType::HeaderIn => recorder.header_in(data),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_response_content_type_wins() {
        let mut c = Collector::new(InflightBodies::new(None));
        c.start(None);
        c.header(b"HTTP/1.1 301 Moved\r\n");
        c.header(b"Content-Type: text/html\r\n");
        c.header(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(c.content_type, None);
        c.header(b"Content-Type: application/json\r\n");
        let (_, ctype, head) = c.take();
        assert_eq!(ctype.as_deref(), Some(&b"application/json"[..]));
        assert_eq!(head.reason(), b"OK");
        assert_eq!(
            head.header("content-TYPE"),
            Some(b"application/json".to_vec())
        );
    }

    #[test]
    fn body_over_limit_aborts() {
        let mut c = Collector::new(InflightBodies::new(None));
        c.start(Some(4));
        assert_eq!(c.write(b"abc").ok(), Some(3));
        assert_eq!(c.write(b"de").ok(), Some(0));
        assert_eq!(c.overflow(), Some(Overflow::TransferLimit));
    }

    #[test]
    fn bodies_of_unfinished_transfers_share_the_cap() {
        let inflight = InflightBodies::new(Some(10));
        let mut a = Collector::new(Rc::clone(&inflight));
        let mut b = Collector::new(Rc::clone(&inflight));
        a.start(None);
        b.start(None);
        assert_eq!(a.write(b"123456").ok(), Some(6));
        assert_eq!(b.write(b"12345").ok(), Some(0));
        assert_eq!(b.overflow(), Some(Overflow::InflightCap));
        b.start(None);
        assert_eq!(b.write(b"1234").ok(), Some(4));
        // Taken, cleared or dropped, a body no longer counts.
        a.take();
        assert_eq!(inflight.held.get(), 4);
        b.start(None);
        assert_eq!(inflight.held.get(), 0);
        assert_eq!(b.write(b"123456789").ok(), Some(9));
        drop(b);
        assert_eq!(inflight.held.get(), 0);
    }
}

//! An answer is only ever read from a connection that held nothing before the request was
//! sent, and a response whose framing is ambiguous is refused.
//!
//! libcurl (7.88) reuses a kept-alive connection when its socket shows no close, whatever
//! waits on it: a response nobody asked for (a server that wrote one more, or the bytes past a
//! Content-Length that libcurl did not read) would be read as the answer of the next request
//! that reuses the connection, another SIP call's. So, just before each request goes out
//! (libcurl's pre-request callback, `CURLOPT_PREREQFUNCTION`, 7.80+), the connection is looked
//! at: the bytes waiting in its socket and, for TLS, in OpenSSL's buffer. A kept-alive
//! connection that holds any is refused (libcurl then closes it) and the transfer is tried
//! once more on a new connection (`finish::retry_on_new_connection`); a new connection that
//! holds bytes before its request fails the call. A new TLS connection is not judged by its
//! socket, where the server's session tickets may still wait, only by OpenSSL's buffer.
//! HTTP/2 connections are not checked: their frames name the stream they belong to, and
//! control frames may arrive at any time.
//!
//! libcurl tells the callback the connection's addresses, not its socket, so the process keeps
//! the sockets libcurl opened (`CURLOPT_SOCKOPTFUNCTION`), each with its addresses once
//! connected and how many requests it carried; an entry is checked against the descriptor
//! before it is trusted (libcurl closes some sockets without telling, and the descriptor
//! number may have been given to another socket since).
//!
//! The response side ([`Framing`]): two different Content-Length values, or a Content-Length
//! with a Transfer-Encoding (RFC 9112 §6.3: an unrecoverable error, and a request-smuggling
//! classic) make the collector abort the transfer, and libcurl closes the connection.
//! Identical repeated values (`Content-Length: 10` twice, or `10, 10`) are one length (RFC 9110
//! §8.6 allows either) and accepted.
//!
//! The raw calls (libcurl callbacks, socket and OpenSSL look-ups) are in `connection_raw.rs`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Once;

use curl::easy::Easy2;
use log::{error, info, warn};

use super::connection_raw::{self, Address, ConnectionWatcher, SocketEnds, Transport};
use crate::engine::settings::{ClientSettings, HttpVersion};

/// Why a transfer was stopped by these checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Bytes were waiting on the connection before the request was sent.
    HeldBytes {
        bytes: usize,
        /// The connection was opened for this request (else kept alive from an earlier one).
        new_connection: bool,
        /// The server had closed its side (what waits is probably its TLS close_notify).
        closed_by_server: bool,
    },
    /// The connection's socket is not among those libcurl opened in this process.
    UnknownSocket,
    /// Content-Length values that differ, or one that is not a number.
    ConflictingLength,
    /// Content-Length together with Transfer-Encoding.
    LengthWithTransferEncoding,
}

impl Refusal {
    /// Logs that `transfer` ("METHOD url") is tried again on a new connection after this
    /// refusal of a kept-alive one: a warning, unless the server had merely closed it.
    pub fn log_retry(&self, transfer: &str) {
        let message = format!("{transfer}: {self}, sending the request on a new connection");
        if matches!(
            self,
            Self::HeldBytes {
                closed_by_server: true,
                ..
            }
        ) {
            info!("{message}");
        } else {
            warn!("{message}");
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            Self::HeldBytes {
                bytes,
                new_connection: true,
                ..
            } => write!(
                f,
                "the server sent {bytes} bytes on the new connection before the request: \
                 connection closed, request not sent"
            ),
            Self::HeldBytes {
                bytes,
                closed_by_server: true,
                ..
            } => write!(
                f,
                "the server had closed the kept-alive connection ({bytes} bytes unread): \
                 connection closed"
            ),
            Self::HeldBytes { bytes, .. } => write!(
                f,
                "the kept-alive connection held {bytes} bytes nobody asked for before the \
                 request was sent: connection closed"
            ),
            Self::UnknownSocket => f.write_str(
                "cannot tell whether the connection holds unread bytes (its socket is not one \
                 libcurl opened in this process): connection closed, request not sent",
            ),
            Self::ConflictingLength => f.write_str(
                "the response has conflicting Content-Length values: refused, connection closed",
            ),
            Self::LengthWithTransferEncoding => f.write_str(
                "the response has both Transfer-Encoding and Content-Length: refused, \
                 connection closed",
            ),
        }
    }
}

/// One transfer's check, shared with libcurl's pre-request callback (which gets its address).
#[derive(Debug)]
pub struct ConnectionCheck {
    /// The easy handle of the transfer (for libcurl's TLS look-up in the callback).
    easy: Cell<*mut curl_sys::CURL>,
    /// Cleartext connections speak HTTP/2 from the first byte (`curl_http_version` 5).
    cleartext_http2: Cell<bool>,
    refusal: Cell<Option<Refusal>>,
}

impl ConnectionCheck {
    pub fn new() -> Rc<Self> {
        Rc::new(Self {
            easy: Cell::new(std::ptr::null_mut()),
            cleartext_http2: Cell::new(false),
            refusal: Cell::new(None),
        })
    }

    /// Why the connection was refused, if it was.
    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal.get()
    }

    /// The refusal of a kept-alive connection that held bytes, after which the transfer may be
    /// tried again on a new connection; `None` for any other outcome.
    pub fn held_kept_alive(&self) -> Option<Refusal> {
        self.refusal.get().filter(|refusal| {
            matches!(
                refusal,
                Refusal::HeldBytes {
                    new_connection: false,
                    ..
                }
            )
        })
    }

    /// Forgets the refusal (the transfer is tried again).
    pub fn forget_refusal(&self) {
        self.refusal.set(None);
    }
}

impl ConnectionWatcher for ConnectionCheck {
    fn socket_opened(fd: RawFd) {
        socket_opened(fd);
    }

    /// The easy handle whose transfer this checks (null before [`watch`]).
    fn easy(&self) -> *mut curl_sys::CURL {
        self.easy.get()
    }

    /// Refuses, in libcurl's pre-request callback, a connection whose addresses libcurl did
    /// not tell.
    fn unknown_connection(&self) -> bool {
        self.refusal.set(Some(Refusal::UnknownSocket));
        false
    }

    /// Decides, in libcurl's pre-request callback, whether the request may go out on the
    /// connection between `local` and `peer`; records why not.
    fn connection_chosen(&self, local: SocketAddr, peer: SocketAddr, transport: Transport) -> bool {
        let verdict = SOCKETS.with(|sockets| {
            let mut sockets = sockets.borrow_mut();
            let Some(fd) = sockets.find((local, peer)) else {
                return Err(Refusal::UnknownSocket);
            };
            let socket = sockets.by_fd.get_mut(&fd).expect("found above");
            let new_connection = socket.requests == 0;
            let held = match transport {
                Transport::Tls(tls) if tls.http2 => 0,
                Transport::Plain if self.cleartext_http2.get() => 0,
                Transport::OpaqueTls => 0,
                // New TLS connections: the socket may hold the server's session tickets.
                Transport::Tls(tls) if new_connection => tls.buffered,
                Transport::Tls(tls) => tls.buffered + connection_raw::unread_bytes(fd),
                Transport::Plain => connection_raw::unread_bytes(fd),
            };
            if held > 0 {
                return Err(Refusal::HeldBytes {
                    bytes: held,
                    new_connection,
                    closed_by_server: connection_raw::peer_closed(fd),
                });
            }
            socket.requests += 1;
            Ok(())
        });
        self.refusal.set(verdict.err());
        verdict.is_ok()
    }
}

/// Sets the transfer of `easy` up for `check`: its new sockets are kept, and each request is
/// checked before it goes out. Call after `easy.reset()`, with the check of `easy`'s handler.
/// With a libcurl older than 7.80 (no pre-request callback) requests go out unchecked, said
/// once per process.
pub(super) fn watch<H>(
    easy: &Easy2<H>,
    check: &Rc<ConnectionCheck>,
    settings: &ClientSettings,
) -> Result<(), curl::Error> {
    check.easy.set(easy.raw());
    check
        .cleartext_http2
        .set(settings.http_version == HttpVersion::Http2PriorKnowledge);
    check.refusal.set(None);
    connection_raw::keep_new_sockets::<ConnectionCheck, H>(easy)?;
    match connection_raw::check_before_requests(easy, check) {
        Err(e) if e.is_unknown_option() => {
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                error!(
                    "libcurl {} has no pre-request callback (7.80+): requests may go out on \
                     kept-alive connections that hold unread bytes",
                    curl::Version::get().version()
                )
            });
            Ok(())
        }
        other => other,
    }
}

/// Notes a socket libcurl just opened (`CURLOPT_SOCKOPTFUNCTION`); one that had the same
/// descriptor is gone.
fn socket_opened(fd: RawFd) {
    SOCKETS.with(|sockets| {
        let mut sockets = sockets.borrow_mut();
        sockets.forget(fd);
        sockets.by_fd.insert(fd, Socket::default());
    });
}

/// A socket libcurl opened in this process.
#[derive(Debug, Default)]
struct Socket {
    /// Its local address, once bound (at its connect).
    local: Option<SocketAddr>,
    /// Its local and peer addresses, once seen connected.
    ends: Option<SocketEnds>,
    /// Requests sent on it so far.
    requests: u64,
}

/// The sockets libcurl opened on one thread, by descriptor, and the connected ones by their
/// addresses. An entry outlives its socket (libcurl does not tell when it closes one): it goes
/// when libcurl opens a socket with the same descriptor, or when a look-up finds that the
/// descriptor no longer has the entry's addresses. So the entries are at most as many as the
/// descriptors the thread ever had open at once.
#[derive(Debug, Default)]
struct Sockets {
    by_fd: HashMap<RawFd, Socket>,
    by_ends: HashMap<SocketEnds, RawFd>,
}

impl Sockets {
    fn forget(&mut self, fd: RawFd) {
        let ends = self.by_fd.remove(&fd).and_then(|socket| socket.ends);
        if let Some(ends) = ends
            && self.by_ends.get(&ends) == Some(&fd)
        {
            self.by_ends.remove(&ends);
        }
    }

    /// The descriptor whose socket connects `ends`: the one known by those addresses if it
    /// still has them (the usual case: a kept-alive connection), or else one of the sockets
    /// not seen connected yet (a new connection).
    fn find(&mut self, ends: SocketEnds) -> Option<RawFd> {
        if let Some(&fd) = self.by_ends.get(&ends) {
            if connection_raw::local_address(fd) == Address::Known(ends.0)
                && connection_raw::peer_address(fd) == Address::Known(ends.1)
            {
                return Some(fd);
            }
            // That socket is gone, and the descriptor closed or given to another one.
            self.forget(fd);
        }
        let candidates: Vec<RawFd> = self
            .by_fd
            .iter()
            .filter(|(_, socket)| {
                socket.ends.is_none() && socket.local.is_none_or(|local| local == ends.0)
            })
            .map(|(&fd, _)| fd)
            .collect();
        for fd in candidates {
            let socket = self.by_fd.get_mut(&fd).expect("listed above");
            if socket.local.is_none() {
                match connection_raw::local_address(fd) {
                    Address::Known(local) if local.port() != 0 => socket.local = Some(local),
                    Address::NoSocket => {
                        self.forget(fd);
                        continue;
                    }
                    _ => continue,
                }
            }
            if socket.local != Some(ends.0) {
                continue;
            }
            match connection_raw::peer_address(fd) {
                Address::Known(peer) if peer == ends.1 => {
                    socket.ends = Some(ends);
                    self.by_ends.insert(ends, fd);
                    return Some(fd);
                }
                Address::NoSocket => self.forget(fd),
                _ => {}
            }
        }
        None
    }
}

thread_local! {
    /// The sockets libcurl opened on this thread (the process's script thread).
    static SOCKETS: RefCell<Sockets> = RefCell::new(Sockets::default());
}

/// The message framing of one response, from its header lines: refuses what RFC 9112 §6.3
/// calls unrecoverable. Reset at each status line.
#[derive(Debug, Default)]
pub struct Framing {
    length: Option<u64>,
    transfer_encoding: bool,
}

impl Framing {
    /// A new response head begins (its status line).
    pub fn start(&mut self) {
        *self = Self::default();
    }

    /// The value of a Content-Length header line (a comma-separated list allowed).
    pub fn content_length(&mut self, value: &[u8]) -> Result<(), Refusal> {
        for item in value.split(|&b| b == b',') {
            let item = item.trim_ascii();
            let length = std::str::from_utf8(item)
                .ok()
                .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or(Refusal::ConflictingLength)?;
            if self.length.is_some_and(|earlier| earlier != length) {
                return Err(Refusal::ConflictingLength);
            }
            self.length = Some(length);
        }
        self.check_both()
    }

    /// A Transfer-Encoding header line.
    pub fn transfer_encoding(&mut self) -> Result<(), Refusal> {
        self.transfer_encoding = true;
        self.check_both()
    }

    fn check_both(&self) -> Result<(), Refusal> {
        if self.transfer_encoding && self.length.is_some() {
            Err(Refusal::LengthWithTransferEncoding)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check` refuses the kept-alive connection `ends`, which holds 8 bytes.
    fn refused_holding_8_bytes(check: &ConnectionCheck, ends: SocketEnds, closed_by_server: bool) {
        assert!(!check.connection_chosen(ends.0, ends.1, Transport::Plain));
        assert_eq!(
            check.refusal(),
            Some(Refusal::HeldBytes {
                bytes: 8,
                new_connection: false,
                closed_by_server
            })
        );
    }

    #[test]
    fn one_length_repeated_is_accepted_two_are_refused() {
        let mut framing = Framing::default();
        assert_eq!(framing.content_length(b"10"), Ok(()));
        assert_eq!(framing.content_length(b"10, 10"), Ok(()));
        assert_eq!(
            framing.content_length(b"12"),
            Err(Refusal::ConflictingLength)
        );
        framing.start();
        assert_eq!(
            framing.content_length(b"10, 12"),
            Err(Refusal::ConflictingLength)
        );
        for bad in [&b""[..], b"+1", b"1 2", b"-1", b"99999999999999999999999"] {
            framing.start();
            assert_eq!(
                framing.content_length(bad),
                Err(Refusal::ConflictingLength),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn length_with_transfer_encoding_is_refused_in_either_order() {
        let mut framing = Framing::default();
        assert_eq!(framing.transfer_encoding(), Ok(()));
        assert_eq!(
            framing.content_length(b"5"),
            Err(Refusal::LengthWithTransferEncoding)
        );
        framing.start();
        assert_eq!(framing.content_length(b"5"), Ok(()));
        assert_eq!(
            framing.transfer_encoding(),
            Err(Refusal::LengthWithTransferEncoding)
        );
        // A new response head starts afresh (an interim response, then the final one).
        framing.start();
        assert_eq!(framing.transfer_encoding(), Ok(()));
    }

    #[test]
    fn sockets_are_found_by_their_addresses_while_they_have_them() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&client);
        let ends = (
            client.local_addr().expect("local"),
            client.peer_addr().expect("peer"),
        );
        socket_opened(fd);
        let check = ConnectionCheck::new();
        assert!(check.connection_chosen(ends.0, ends.1, Transport::Plain));
        std::io::Write::write_all(&mut server, b"SMUGGLED").expect("write");
        std::thread::sleep(std::time::Duration::from_millis(50));
        refused_holding_8_bytes(&check, ends, false);
        assert!(check.held_kept_alive().is_some());
        // The server closes its side too (a TLS server's close_notify, then its FIN).
        server
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        std::thread::sleep(std::time::Duration::from_millis(50));
        refused_holding_8_bytes(&check, ends, true);
        // Closed without libcurl telling: no longer taken for the connection.
        drop(client);
        assert!(!check.connection_chosen(ends.0, ends.1, Transport::Plain));
        assert_eq!(check.refusal(), Some(Refusal::UnknownSocket));
    }
}

//! The raw calls behind `connection_check.rs`: libcurl's socket-options and pre-request
//! callbacks (thin trampolines that catch panics), libcurl's look-up of a connection's TLS
//! object and what OpenSSL holds of it, and the socket calls that tell a socket's addresses
//! and the bytes waiting in it.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_uchar, c_uint, c_void};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::OnceLock;

use curl::easy::Easy2;
use log::error;

use crate::engine::tls::libcurl_uses_module_openssl;

/// What the pre-request callback sees of a TLS connection in OpenSSL.
#[derive(Clone, Copy, Debug)]
pub struct TlsView {
    /// Bytes OpenSSL has read from the socket and not handed to libcurl yet (at least 1 when
    /// it holds any, decrypted or not).
    pub buffered: usize,
    /// ALPN chose HTTP/2.
    pub http2: bool,
}

/// The kind of connection a request is about to be sent on.
#[derive(Clone, Copy, Debug)]
pub enum Transport {
    Plain,
    Tls(TlsView),
    /// TLS through a library other than this module's OpenSSL 3: its buffer cannot be seen.
    OpaqueTls,
}

/// What watches the connections of a transfer: told of each socket libcurl opens, and asked,
/// once libcurl chose the connection of a request and before it writes it, whether it may go
/// out on it.
pub trait ConnectionWatcher {
    /// libcurl opened socket `fd` (for any transfer of the process).
    fn socket_opened(fd: RawFd);
    /// The easy handle whose transfer is watched.
    fn easy(&self) -> *mut curl_sys::CURL;
    /// Whether the request may go out on a connection whose addresses libcurl did not tell.
    fn unknown_connection(&self) -> bool;
    /// Whether the request may go out on the connection between `local` and `peer`.
    fn connection_chosen(&self, local: SocketAddr, peer: SocketAddr, transport: Transport) -> bool;
}

/// A connected socket's local and peer addresses.
pub type SocketEnds = (SocketAddr, SocketAddr);

/// An address of the socket a descriptor names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Address {
    Known(SocketAddr),
    /// Not (yet) bound or connected, or not an IP socket.
    Unknown,
    /// The descriptor is closed, or not a socket (any more).
    NoSocket,
}

/// CURLOPTTYPE_FUNCTIONPOINT + 312 and CURLOPTTYPE_CBPOINT + 313 (libcurl 7.80+), not exported
/// by curl-sys.
const CURLOPT_PREREQFUNCTION: curl_sys::CURLoption = curl_sys::CURLOPTTYPE_FUNCTIONPOINT + 312;
const CURLOPT_PREREQDATA: curl_sys::CURLoption = curl_sys::CURLOPTTYPE_OBJECTPOINT + 313;
const CURL_PREREQFUNC_OK: c_int = 0;
const CURL_PREREQFUNC_ABORT: c_int = 1;
const CURL_SOCKOPT_OK: c_int = 0;
/// CURLINFO_PTR (0x400000) + 45: the connection's TLS object, `struct curl_tlssessioninfo *`.
const CURLINFO_TLS_SSL_PTR: curl_sys::CURLINFO = 0x400000 + 45;
const CURLSSLBACKEND_OPENSSL: c_int = 1;

/// libcurl's `struct curl_tlssessioninfo`.
#[repr(C)]
struct TlsSessionInfo {
    backend: c_int,
    internals: *mut c_void,
}

unsafe extern "C" {
    /// OpenSSL 1.1.0+ (libssl); not declared by openssl-sys.
    fn SSL_has_pending(ssl: *const openssl_sys::SSL) -> c_int;
}

type SockoptCallback = extern "C" fn(*mut c_void, curl_sys::curl_socket_t, c_int) -> c_int;
type PrereqCallback = extern "C" fn(*mut c_void, *mut c_char, *mut c_char, c_int, c_int) -> c_int;

/// Makes libcurl report each socket it opens for the transfers of `easy` to
/// [`ConnectionWatcher::socket_opened`] of `W`.
pub fn keep_new_sockets<W: ConnectionWatcher, H>(easy: &Easy2<H>) -> Result<(), curl::Error> {
    let callback: SockoptCallback = socket_options::<W>;
    // SAFETY: `easy` is live; CURLOPT_SOCKOPTFUNCTION takes a function of the
    // curl_sockopt_callback type, which `socket_options` has, and the callback uses no data.
    let rc = unsafe {
        curl_sys::curl_easy_setopt(easy.raw(), curl_sys::CURLOPT_SOCKOPTFUNCTION, callback)
    };
    curl_result(rc)
}

/// Makes libcurl ask `check` before each request of `easy` goes out (libcurl 7.80+; older
/// ones refuse the option, and the error says so). `check` must stay alive, at the same
/// address, as long as `easy` may run a transfer with these options: it is the check of
/// `easy`'s own handler, which holds it until the handle is dropped.
pub fn check_before_requests<W: ConnectionWatcher, H>(
    easy: &Easy2<H>,
    check: &Rc<W>,
) -> Result<(), curl::Error> {
    let callback: PrereqCallback = before_request::<W>;
    // SAFETY: `easy` is live; CURLOPT_PREREQFUNCTION takes a curl_prereq_callback, which
    // `before_request` is; CURLOPT_PREREQDATA a pointer, here to the check, which lives in its
    // Rc as long as the handler that holds it (caller's contract).
    unsafe {
        let rc = curl_sys::curl_easy_setopt(easy.raw(), CURLOPT_PREREQFUNCTION, callback);
        curl_result(rc)?;
        let data = Rc::as_ptr(check).cast::<c_void>();
        curl_result(curl_sys::curl_easy_setopt(
            easy.raw(),
            CURLOPT_PREREQDATA,
            data,
        ))
    }
}

fn curl_result(rc: curl_sys::CURLcode) -> Result<(), curl::Error> {
    if rc == curl_sys::CURLE_OK {
        Ok(())
    } else {
        Err(curl::Error::new(rc))
    }
}

/// libcurl's socket-options callback: notes the new socket, never changes it.
extern "C" fn socket_options<W: ConnectionWatcher>(
    _: *mut c_void,
    fd: curl_sys::curl_socket_t,
    _: c_int,
) -> c_int {
    if catch_unwind(|| W::socket_opened(fd)).is_err() {
        // Unknown to the check, the socket's connection will be refused before its request.
        error!("internal error (panic) noting a new socket");
    }
    CURL_SOCKOPT_OK
}

/// libcurl's pre-request callback: lets the request go out only if its connection holds no
/// unread bytes (see [`ConnectionWatcher::connection_chosen`]).
extern "C" fn before_request<W: ConnectionWatcher>(
    data: *mut c_void,
    peer_ip: *mut c_char,
    local_ip: *mut c_char,
    peer_port: c_int,
    local_port: c_int,
) -> c_int {
    let verdict = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `data` is the CURLOPT_PREREQDATA set with this callback: the address of a
        // `W` that outlives the transfer (see `check_before_requests`), only shared.
        let check = unsafe { &*data.cast::<W>() };
        let (Some(local), Some(peer)) = (
            socket_address(local_ip, local_port),
            socket_address(peer_ip, peer_port),
        ) else {
            return check.unknown_connection();
        };
        check.connection_chosen(local, peer, transport(check.easy()))
    }));
    match verdict {
        Ok(true) => CURL_PREREQFUNC_OK,
        Ok(false) => CURL_PREREQFUNC_ABORT,
        Err(_) => {
            error!("internal error (panic) checking a connection before its request");
            CURL_PREREQFUNC_ABORT
        }
    }
}

/// An address from libcurl's text form of the IP (NULL or unparsable: `None`).
fn socket_address(ip: *const c_char, port: c_int) -> Option<SocketAddr> {
    if ip.is_null() {
        return None;
    }
    // SAFETY: not NULL: libcurl passes a NUL-terminated string that lives during the callback.
    let ip: IpAddr = unsafe { CStr::from_ptr(ip) }.to_str().ok()?.parse().ok()?;
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}

/// What connection the transfer of `easy`, in its pre-request callback, is about to use.
fn transport(easy: *mut curl_sys::CURL) -> Transport {
    let mut info: *const TlsSessionInfo = std::ptr::null();
    // SAFETY: `easy` is the live handle whose callback runs (its check was set up with it);
    // CURLINFO_TLS_SSL_PTR takes a `struct curl_tlssessioninfo **` and, when it succeeds,
    // points it at a struct libcurl keeps in the handle.
    let rc = unsafe { curl_sys::curl_easy_getinfo(easy, CURLINFO_TLS_SSL_PTR, &mut info) };
    if rc != curl_sys::CURLE_OK || info.is_null() {
        return Transport::Plain;
    }
    // SAFETY: not NULL, set by libcurl just above.
    let info = unsafe { &*info };
    if info.internals.is_null() {
        // No TLS layer on this connection.
        return Transport::Plain;
    }
    static SAME_OPENSSL: OnceLock<bool> = OnceLock::new();
    if info.backend != CURLSSLBACKEND_OPENSSL
        || !*SAME_OPENSSL.get_or_init(libcurl_uses_module_openssl)
    {
        return Transport::OpaqueTls;
    }
    let ssl = info.internals.cast::<openssl_sys::SSL>();
    let mut alpn: *const c_uchar = std::ptr::null();
    let mut alpn_len: c_uint = 0;
    // SAFETY: with the OpenSSL backend, `internals` is the connection's live `SSL *`, of the
    // OpenSSL this module links (checked above); these calls only read its state.
    let (pending, has_pending) = unsafe {
        openssl_sys::SSL_get0_alpn_selected(ssl, &mut alpn, &mut alpn_len);
        (openssl_sys::SSL_pending(ssl), SSL_has_pending(ssl))
    };
    let http2 = !alpn.is_null() && {
        // SAFETY: not NULL: OpenSSL's selected protocol, `alpn_len` bytes owned by `ssl`.
        unsafe { std::slice::from_raw_parts(alpn, alpn_len as usize) == b"h2" }
    };
    Transport::Tls(TlsView {
        buffered: usize::try_from(pending)
            .unwrap_or(0)
            .max(usize::from(has_pending == 1)),
        http2,
    })
}

/// The bytes waiting in socket `fd`'s receive queue (0 if that cannot be read).
pub fn unread_bytes(fd: RawFd) -> usize {
    let mut bytes: c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer; a bad descriptor only fails.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut bytes) };
    if rc == 0 {
        usize::try_from(bytes).unwrap_or(0)
    } else {
        0
    }
}

/// Whether the peer of socket `fd` has closed its side (a FIN received, read or not).
pub fn peer_closed(fd: RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one pollfd, valid for the call; timeout 0: no wait.
    let rc = unsafe { libc::poll(&mut poll, 1, 0) };
    rc == 1 && poll.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0
}

/// The local address of socket `fd`.
pub fn local_address(fd: RawFd) -> Address {
    address_of(fd, libc::getsockname)
}

/// The address of the peer socket `fd` is connected to.
pub fn peer_address(fd: RawFd) -> Address {
    address_of(fd, libc::getpeername)
}

type NameCall = unsafe extern "C" fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> c_int;

/// getsockname or getpeername of `fd`, as an IP socket address.
fn address_of(fd: RawFd, call: NameCall) -> Address {
    // SAFETY: an all-zero sockaddr_storage is a valid value of that plain C struct.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is large enough for any address and `len` says how large; the call
    // writes at most that much, and fails on a bad descriptor.
    let rc = unsafe { call(fd, (&raw mut storage).cast(), &mut len) };
    if rc != 0 {
        return match io::Error::last_os_error().raw_os_error() {
            Some(libc::EBADF | libc::ENOTSOCK) => Address::NoSocket,
            _ => Address::Unknown,
        };
    }
    match c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(&raw const storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Address::Known(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(&raw const storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Address::Known(SocketAddr::new(
                IpAddr::V6(ip),
                u16::from_be(sin6.sin6_port),
            ))
        }
        // A Unix socket or such: no connection libcurl could name by IP addresses.
        _ => Address::Unknown,
    }
}

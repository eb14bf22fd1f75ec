//! The OpenSSL calls on the `SSL_CTX` that libcurl hands to its SSL_CTX callback for each new
//! connection, which the `openssl` crate does not offer on a context it does not own: giving the
//! context a reference to the process's trust store, and the client certificate and key.
//!
//! Only called when libcurl's TLS library is the OpenSSL 3 this module links (see
//! `tls::ProcessTls`), so the context is one of that library's.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_long, c_void};

use foreign_types::ForeignTypeRef;
use openssl::error::ErrorStack;
use openssl::pkey::{PKeyRef, Private};
use openssl::x509::store::X509StoreRef;
use openssl::x509::{X509, X509Ref};
use openssl_sys::{SSL_CTX, X509_STORE};

unsafe extern "C" {
    /// OpenSSL 1.1.0+ (libcrypto); not declared by openssl-sys.
    fn X509_STORE_up_ref(store: *mut X509_STORE) -> c_int;
}

/// Makes the new connection's context `ssl_ctx` verify servers against `store`, which it shares
/// (reference-counted) with every other connection. `ssl_ctx` must be the `SSL_CTX *` libcurl
/// passed to the SSL_CTX callback that is running.
pub fn set_trust_store(ssl_ctx: *mut c_void, store: &X509StoreRef) -> Result<(), ErrorStack> {
    let ctx = ssl_ctx.cast::<SSL_CTX>();
    if ctx.is_null() {
        return Err(ErrorStack::get());
    }
    // SAFETY: `store` is a live X509_STORE (borrowed); the new reference taken here is the one
    // SSL_CTX_set_cert_store takes over (it frees the context's previous, empty store).
    // `ctx` is the live SSL_CTX of the connection libcurl is setting up (caller's contract).
    unsafe {
        if X509_STORE_up_ref(store.as_ptr()) != 1 {
            return Err(ErrorStack::get());
        }
        openssl_sys::SSL_CTX_set_cert_store(ctx, store.as_ptr());
    }
    Ok(())
}

/// Makes the new connection's context `ssl_ctx` present `certificate` (with the intermediate
/// certificates `chain`) and prove it with `key`, as libcurl does for `CURLOPT_SSLCERT` and
/// `CURLOPT_SSLKEY`. Each object gets one more reference; none is copied or parsed again.
/// `ssl_ctx` must be the `SSL_CTX *` libcurl passed to the SSL_CTX callback that is running.
pub fn use_client_identity(
    ssl_ctx: *mut c_void,
    certificate: &X509Ref,
    chain: &[X509],
    key: &PKeyRef<Private>,
) -> Result<(), ErrorStack> {
    let ctx = ssl_ctx.cast::<SSL_CTX>();
    if ctx.is_null() {
        return Err(ErrorStack::get());
    }
    // SAFETY: `ctx` is the live SSL_CTX of the connection being set up (caller's contract); the
    // certificates and the key are live objects borrowed for the call, and each of these
    // functions takes its own reference to what it keeps (SSL_CTX_add1_chain_cert is
    // SSL_CTX_ctrl(SSL_CTRL_CHAIN_CERT, 1, cert)).
    unsafe {
        if openssl_sys::SSL_CTX_use_certificate(ctx, certificate.as_ptr()) != 1 {
            return Err(ErrorStack::get());
        }
        for intermediate in chain {
            let added = openssl_sys::SSL_CTX_ctrl(
                ctx,
                openssl_sys::SSL_CTRL_CHAIN_CERT,
                1 as c_long,
                intermediate.as_ptr().cast::<c_void>(),
            );
            if added != 1 {
                return Err(ErrorStack::get());
            }
        }
        if openssl_sys::SSL_CTX_use_PrivateKey(ctx, key.as_ptr()) != 1 {
            return Err(ErrorStack::get());
        }
    }
    Ok(())
}

//! The TLS material of one process: the trust store and the client identities, parsed once and
//! handed to each new connection in libcurl's SSL_CTX callback, with a connection cache per
//! client identity.

mod process_tls;
mod tls_raw;

pub(crate) use process_tls::{ConnectionTls, ProcessTls, libcurl_uses_module_openssl};

//! The process's TLS material, parsed once and handed to every new TLS connection, blocking or
//! async: the trust store (libcurl's default CA bundle and CA directory, or `ssl_capath` in
//! place of the directory) and the client certificates and keys of `rest_init_client_tls`.
//!
//! libcurl (7.88 with OpenSSL 3) builds a new OpenSSL context for each new connection and,
//! left alone, parses its whole default CA bundle into it (about 140 certificates, 20 ms of
//! CPU) and the client certificate and key again. Here each connection's context gets, in
//! libcurl's SSL_CTX callback, one more reference to objects parsed once per process. A CA
//! bundle, CA directory or certificate file that changes on disk (a `stat` per file and new
//! connection tells) is parsed again for the next new connection, so what is trusted and
//! presented stays what libcurl alone would have read.
//!
//! libcurl cannot tell connections apart by what the callback put into them, so each client
//! identity gets its own libcurl share (connection cache, DNS cache, TLS sessions): a
//! connection or TLS session made with one certificate is never offered to a request with
//! another certificate or none. A process keeps the [`MAX_IDENTITIES`] identities it used last
//! (each changed PEM domain, each `tls_reload` of one, is another identity): the caches of the
//! one used least recently are dropped for a new one, and freed, with their idle connections,
//! once no transfer uses them any more (each transfer's handler holds its caches from its set-up
//! until its handle is scrubbed, and the handle leaves the share then).

use std::collections::HashMap;
use std::ffi::c_void;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use curl::easy::Easy2;
use log::{error, info};
use openssl::pkey::{PKey, Private};
use openssl::ssl::SslFiletype;
use openssl::x509::X509;
use openssl::x509::store::{X509Lookup, X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use parking_lot::Mutex;

use super::tls_raw::{set_trust_store, use_client_identity};
use crate::engine::curl_raw::{CurlShare, default_ca_locations, detach_share, skip_ca_loading};
use crate::engine::request::{ClientCert, KeyMaterial};
use crate::engine::settings::ClientSettings;

/// The identity of a file's content as far as `stat` tells: a file rewritten, replaced or
/// removed, or a directory whose entries changed, gets another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

/// What a piece of TLS material is parsed from.
trait Source {
    type Parsed;
    /// The files it reads (none for PEM text held in memory).
    fn files(&self) -> Vec<&Path>;
    fn parse(&self) -> Result<Self::Parsed, String>;
}

/// Material parsed from its source at first use, and again only when one of the source's files
/// changes. A failure is logged and kept until then too.
struct Parsed<S: Source> {
    source: S,
    /// The files' stamps when `parsed` was made.
    stamps: Vec<Option<FileStamp>>,
    parsed: Option<Result<S::Parsed, String>>,
}

/// Parsed material shared by the process and its transfers.
type Shared<S> = Arc<Mutex<Parsed<S>>>;

impl<S: Source> Parsed<S> {
    fn new(source: S) -> Self {
        Self {
            source,
            stamps: Vec::new(),
            parsed: None,
        }
    }

    /// The material for a new connection, parsed first if its files changed since.
    fn get(&mut self) -> Result<&S::Parsed, &str> {
        let stamps: Vec<_> = self.source.files().into_iter().map(FileStamp::of).collect();
        if self.parsed.is_none() || stamps != self.stamps {
            // Stamps first: a change during the parse is seen at the next connection.
            self.stamps = stamps;
            let parsed = self.source.parse();
            if let Err(e) = &parsed {
                error!("{e}");
            }
            self.parsed = Some(parsed);
        }
        match self.parsed.as_ref().expect("set above") {
            Ok(parsed) => Ok(parsed),
            Err(e) => Err(e),
        }
    }
}

/// The trusted CAs: a bundle file and a hashed directory (`openssl rehash`), as libcurl loads
/// them (`CURLOPT_CAINFO`, `CURLOPT_CAPATH`).
struct TrustSource {
    bundle: Option<PathBuf>,
    directory: Option<PathBuf>,
}

impl Source for TrustSource {
    type Parsed = X509Store;

    fn files(&self) -> Vec<&Path> {
        self.bundle
            .iter()
            .chain(&self.directory)
            .map(PathBuf::as_path)
            .collect()
    }

    fn parse(&self) -> Result<X509Store, String> {
        let mut store =
            X509StoreBuilder::new().map_err(|e| format!("cannot set up the trust store: {e}"))?;
        if let Some(bundle) = &self.bundle {
            store
                .add_lookup(X509Lookup::file())
                .and_then(|lookup| lookup.load_cert_file(bundle, SslFiletype::PEM))
                .map_err(|e| format!("cannot load the CA bundle {}: {e}", bundle.display()))?;
        }
        if let Some(directory) = &self.directory {
            // Certificates are read from the directory when a verification needs them, and
            // kept in the store.
            store
                .add_lookup(X509Lookup::hash_dir())
                .and_then(|lookup| lookup.add_dir(&directory.to_string_lossy(), SslFiletype::PEM))
                .map_err(|e| format!("cannot use the CA directory {}: {e}", directory.display()))?;
        }
        // libcurl's flags when it verifies the peer: trusted certificates first, and an
        // intermediate CA in the store is a trust anchor.
        store
            .set_flags(X509VerifyFlags::TRUSTED_FIRST | X509VerifyFlags::PARTIAL_CHAIN)
            .map_err(|e| format!("cannot set up the trust store: {e}"))?;
        Ok(store.build())
    }
}

/// A parsed client certificate, its intermediates and its private key.
struct ClientIdentity {
    certificate: X509,
    chain: Vec<X509>,
    key: PKey<Private>,
}

fn pem_of(material: &KeyMaterial) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    match material {
        KeyMaterial::Pem(pem) => Ok(pem.into()),
        KeyMaterial::File(path) => std::fs::read(path)
            .map(Into::into)
            .map_err(|e| format!("cannot use the client certificate: {path}: {e}")),
    }
}

impl Source for ClientCert {
    type Parsed = ClientIdentity;

    fn files(&self) -> Vec<&Path> {
        [&self.certificate, &self.private_key]
            .into_iter()
            .filter_map(|material| match material {
                KeyMaterial::File(path) => Some(Path::new(path)),
                KeyMaterial::Pem(_) => None,
            })
            .collect()
    }

    fn parse(&self) -> Result<ClientIdentity, String> {
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            format!("cannot use the client certificate: {what}: {e}")
        };
        let mut certificates = X509::stack_from_pem(&pem_of(&self.certificate)?)
            .map_err(|e| fail("certificate", &e))?;
        if certificates.is_empty() {
            return Err(fail("certificate", &"no PEM certificate found"));
        }
        let certificate = certificates.remove(0);
        // No passphrase: an encrypted key fails instead of prompting on a terminal.
        let key = PKey::private_key_from_pem_callback(&pem_of(&self.private_key)?, |_| Ok(0))
            .map_err(|e| fail("private key", &e))?;
        let matches = certificate
            .public_key()
            .is_ok_and(|public| public.public_eq(&key));
        if !matches {
            return Err(fail("private key", &"does not match the certificate"));
        }
        Ok(ClientIdentity {
            certificate,
            chain: certificates,
            key,
        })
    }
}

/// Client identities whose caches a process keeps: enough for a script that presents several
/// certificates in turn, few enough that identities no longer used (a PEM domain changed or
/// reloaded) do not each keep up to `max_idle_connections` connections and their TLS sessions.
pub(super) const MAX_IDENTITIES: usize = 16;

/// What the new TLS connections of one transfer get from the process, in libcurl's SSL_CTX
/// callback (empty where libcurl loads its CA files and certificates itself), and the caches
/// the transfer's handle is attached to.
#[derive(Default)]
pub(crate) struct ConnectionTls {
    trust: Option<Shared<TrustSource>>,
    identity: Option<Shared<ClientCert>>,
    /// Kept alive while the handle uses them, even once the process dropped them.
    caches: Option<Rc<CurlShare>>,
}

impl ConnectionTls {
    /// Detaches `easy` from the caches its last transfer used and forgets what that transfer
    /// got (`self`, taken out of its handler): the client identity stays parsed in the
    /// process's cache only, and caches the process dropped meanwhile are freed with their last
    /// handle.
    pub(crate) fn release<H>(self, easy: &Easy2<H>) -> Result<(), curl::Error> {
        let detached = detach_share(easy);
        // Only now that the handle left them may the caches go (with their last user).
        drop(self.caches);
        detached
    }

    /// Puts the process's trust store and the transfer's client identity into `ssl_ctx`, the
    /// `SSL_CTX *` libcurl passed to the running SSL_CTX callback for a new connection. The
    /// errors are libcurl's for the same failures.
    pub(crate) fn install(&self, ssl_ctx: *mut c_void) -> Result<(), curl::Error> {
        let failure = |code, detail: &str| {
            let mut e = curl::Error::new(code);
            e.set_extra(detail.to_string());
            e
        };
        if let Some(trust) = &self.trust {
            let mut trust = trust.lock();
            let store = trust
                .get()
                .map_err(|e| failure(curl_sys::CURLE_SSL_CACERT_BADFILE, e))?;
            set_trust_store(ssl_ctx, store)
                .map_err(|e| failure(curl_sys::CURLE_SSL_CACERT_BADFILE, &e.to_string()))?;
        }
        if let Some(identity) = &self.identity {
            let mut identity = identity.lock();
            let parsed = identity
                .get()
                .map_err(|e| failure(curl_sys::CURLE_SSL_CERTPROBLEM, e))?;
            use_client_identity(ssl_ctx, &parsed.certificate, &parsed.chain, &parsed.key)
                .map_err(|e| failure(curl_sys::CURLE_SSL_CERTPROBLEM, &e.to_string()))?;
        }
        Ok(())
    }
}

/// Who loads the CA files and client certificates of a new connection.
enum Loader {
    /// libcurl, per connection: its TLS library is not the OpenSSL this module links, or it is
    /// too old to name its default CA locations.
    Libcurl,
    /// This module, once per process.
    Module {
        /// `None` when servers are not verified (`ssl_verifypeer` = 0).
        trust: Option<Shared<TrustSource>>,
        /// The client identities used last, at most [`MAX_IDENTITIES`], with their own caches
        /// (see the module doc).
        identities: HashMap<ClientCert, Identity>,
        /// Counts the set-ups that used an identity, to find the one used least recently.
        uses: u64,
    },
}

/// A client identity's caches and parsed certificate and key.
struct Identity {
    share: Rc<CurlShare>,
    parsed: Shared<ClientCert>,
    /// The value of `uses` when a transfer last used it.
    last_use: u64,
}

/// One process's TLS material and connection caches. The caches live as long as the process
/// keeps them or a transfer's handle uses them.
pub(crate) struct ProcessTls {
    /// The caches of requests without a client certificate (all requests with [`Loader::Libcurl`]).
    anonymous: Rc<CurlShare>,
    loader: Loader,
}

/// Whether libcurl's TLS library is the OpenSSL 3 this module links, so that the OpenSSL
/// objects libcurl hands out (contexts, connections) are that library's.
pub(crate) fn libcurl_uses_module_openssl() -> bool {
    let libcurl_tls = curl::Version::get().ssl_version().unwrap_or("").to_string();
    // libssl.so.3 is one library per process: a libcurl on OpenSSL 3 uses the one linked here.
    libcurl_tls.starts_with("OpenSSL/3.") && openssl::version::number() >> 28 == 3
}

impl ProcessTls {
    pub(crate) fn new(settings: &ClientSettings) -> Result<Self, String> {
        let anonymous = Rc::new(CurlShare::new()?);
        let libcurl_tls = curl::Version::get().ssl_version().unwrap_or("").to_string();
        let loader = match default_ca_locations() {
            Ok((bundle, default_directory)) if libcurl_uses_module_openssl() => Loader::Module {
                trust: settings.verify_peer.then(|| {
                    Arc::new(Mutex::new(Parsed::new(TrustSource {
                        bundle,
                        directory: settings
                            .ca_path
                            .as_ref()
                            .map(PathBuf::from)
                            .or(default_directory),
                    })))
                }),
                identities: HashMap::new(),
                uses: 0,
            },
            _ => {
                info!(
                    "libcurl's TLS library ({libcurl_tls}) is not this module's OpenSSL 3: \
                     libcurl parses the CA files and client certificates for each new HTTPS \
                     connection"
                );
                Loader::Libcurl
            }
        };
        Ok(Self { anonymous, loader })
    }

    /// Gives `easy` the caches, CA files and client certificate (`cert`) of a transfer, and
    /// returns what its handler installs into each new TLS connection.
    pub(crate) fn apply<H>(
        &mut self,
        easy: &mut Easy2<H>,
        settings: &ClientSettings,
        cert: Option<&ClientCert>,
    ) -> Result<ConnectionTls, curl::Error> {
        let Loader::Module {
            trust,
            identities,
            uses,
        } = &mut self.loader
        else {
            self.anonymous.attach(easy)?;
            if let Some(path) = &settings.ca_path {
                easy.capath(path)?;
            }
            if let Some(cert) = cert {
                match &cert.certificate {
                    KeyMaterial::File(path) => easy.ssl_cert(path)?,
                    KeyMaterial::Pem(pem) => easy.ssl_cert_blob(pem)?,
                }
                match &cert.private_key {
                    KeyMaterial::File(path) => easy.ssl_key(path)?,
                    KeyMaterial::Pem(pem) => easy.ssl_key_blob(pem)?,
                }
            }
            return Ok(ConnectionTls {
                caches: Some(Rc::clone(&self.anonymous)),
                ..ConnectionTls::default()
            });
        };
        let (share, identity) = match cert {
            None => (&self.anonymous, None),
            Some(cert) => {
                *uses += 1;
                if !identities.contains_key(cert) {
                    if identities.len() >= MAX_IDENTITIES {
                        forget_least_recent(identities);
                    }
                    let identity = Identity {
                        share: Rc::new(CurlShare::new().map_err(share_error)?),
                        parsed: Arc::new(Mutex::new(Parsed::new(cert.clone()))),
                        last_use: 0,
                    };
                    identities.insert(cert.clone(), identity);
                }
                let identity = identities.get_mut(cert).expect("inserted above");
                identity.last_use = *uses;
                (&identity.share, Some(Arc::clone(&identity.parsed)))
            }
        };
        share.attach(easy)?;
        skip_ca_loading(easy)?;
        Ok(ConnectionTls {
            trust: trust.clone(),
            identity,
            caches: Some(Rc::clone(share)),
        })
    }

    /// How many client identities the process keeps caches for.
    #[cfg(test)]
    fn identities(&self) -> usize {
        match &self.loader {
            Loader::Module { identities, .. } => identities.len(),
            Loader::Libcurl => 0,
        }
    }
}

/// Drops the identity used least recently (its caches live on while a transfer uses them).
fn forget_least_recent(identities: &mut HashMap<ClientCert, Identity>) {
    let oldest = identities
        .iter()
        .min_by_key(|(_, identity)| identity.last_use)
        .map(|(cert, _)| cert.clone());
    if let Some(cert) = oldest {
        identities.remove(&cert);
    }
}

fn share_error(e: String) -> curl::Error {
    let mut error = curl::Error::new(curl_sys::CURLE_OUT_OF_MEMORY);
    error.set_extra(e);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler that only holds what a transfer's TLS set-up gave it.
    #[derive(Default)]
    struct Held(ConnectionTls);

    impl curl::easy::Handler for Held {}

    /// Reads one file, counting its parses.
    struct Counted {
        file: PathBuf,
        parses: std::cell::Cell<usize>,
    }

    impl Source for Counted {
        type Parsed = usize;
        fn files(&self) -> Vec<&Path> {
            vec![&self.file]
        }
        fn parse(&self) -> Result<usize, String> {
            self.parses.set(self.parses.get() + 1);
            std::fs::read(&self.file)
                .map(|bytes| bytes.len())
                .map_err(|e| e.to_string())
        }
    }

    #[test]
    fn keeps_the_identities_used_last_and_an_evicted_one_while_a_handle_uses_it() {
        let settings = ClientSettings::default();
        let mut tls = ProcessTls::new(&settings).unwrap();
        assert!(
            matches!(tls.loader, Loader::Module { .. }),
            "libcurl on the OpenSSL 3 linked here"
        );
        let cert = |i: usize| ClientCert {
            certificate: KeyMaterial::Pem(format!("certificate {i}").into_bytes()),
            private_key: KeyMaterial::Pem(b"key".to_vec()),
        };
        let mut apply = |i: usize| {
            let mut easy = Easy2::new(Held::default());
            easy.get_mut().0 = tls.apply(&mut easy, &settings, Some(&cert(i))).unwrap();
            let caches = Rc::downgrade(easy.get_ref().0.caches.as_ref().unwrap());
            (easy, caches)
        };
        // Identity 0 stays with a handle; 1 to 15 fill the process's list.
        let (mut in_use, in_use_caches) = apply(0);
        let (_, second_caches) = apply(1);
        for i in 2..MAX_IDENTITIES {
            apply(i);
        }
        // 0 used again: the next new identity drops 1, the one used least recently.
        apply(0);
        apply(MAX_IDENTITIES);
        assert!(second_caches.upgrade().is_none());
        assert!(in_use_caches.upgrade().is_some());
        // 14 more drop 2 to 15, one more drops 0, whose handle still holds its caches...
        for i in MAX_IDENTITIES + 1..2 * MAX_IDENTITIES {
            apply(i);
        }
        assert_eq!(tls.identities(), MAX_IDENTITIES);
        let held = in_use.get_ref().0.caches.as_ref().map(Rc::strong_count);
        assert_eq!(held, Some(1));
        // ...until it leaves them.
        std::mem::take(&mut in_use.get_mut().0)
            .release(&in_use)
            .unwrap();
        assert!(in_use_caches.upgrade().is_none());
    }

    #[test]
    fn parses_once_then_again_only_when_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("rest_client_parsed_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("material");
        std::fs::write(&file, b"abc").unwrap();
        let mut parsed = Parsed::new(Counted {
            file: file.clone(),
            parses: Default::default(),
        });
        for _ in 0..100 {
            assert_eq!(parsed.get(), Ok(&3));
        }
        assert_eq!(parsed.source.parses.get(), 1);
        std::fs::write(&file, b"abcdef").unwrap();
        assert_eq!(parsed.get(), Ok(&6));
        std::fs::remove_file(&file).unwrap();
        assert!(parsed.get().is_err());
        assert!(parsed.get().is_err());
        assert_eq!(parsed.source.parses.get(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The libcurl calls the `curl` crate does not wrap: a share handle holding one process's
//! connection cache, DNS cache and TLS sessions (so that every transfer of the process,
//! blocking or async, reuses the same kept-alive connections), `curl_easy_getinfo` on a
//! handle that sits in a multi handle (how far its transfer got), the easy options newer than
//! the crate, the protocols a transfer may use, and the CA options that take NULL.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_long};
use std::path::PathBuf;
use std::ptr::NonNull;

use curl::easy::Easy2;

/// Owns a `CURLSH`. Must outlive (be dropped after) every easy handle attached to it, or that
/// handle's [`detach_share`]. Not `Send`: the share has no lock callbacks, so it stays on the
/// thread that created it (the worker state that holds it is a thread-local of the process's
/// script thread).
pub struct CurlShare {
    raw: NonNull<curl_sys::CURLSH>,
}

impl CurlShare {
    pub fn new() -> Result<Self, String> {
        curl::init();
        // SAFETY: curl_share_init has no preconditions once curl_global_init ran (curl::init).
        let raw =
            NonNull::new(unsafe { curl_sys::curl_share_init() }).ok_or("curl_share_init failed")?;
        let share = Self { raw };
        for data in [
            curl_sys::CURL_LOCK_DATA_CONNECT,
            curl_sys::CURL_LOCK_DATA_DNS,
            curl_sys::CURL_LOCK_DATA_SSL_SESSION,
        ] {
            // SAFETY: `raw` is a live share handle; CURLSHOPT_SHARE takes one int-sized argument.
            let rc = unsafe {
                curl_sys::curl_share_setopt(share.raw.as_ptr(), curl_sys::CURLSHOPT_SHARE, data)
            };
            if rc != curl_sys::CURLSHE_OK {
                return Err(format!("curl_share_setopt({data}) failed with {rc}"));
            }
        }
        Ok(share)
    }

    /// Makes `easy` use this share's caches for its next transfers.
    pub fn attach<H>(&self, easy: &Easy2<H>) -> Result<(), curl::Error> {
        // SAFETY: both handles are live; the share outlives its use by the easy handle (the
        // handle's handler holds it until the handle is dropped or detached: `ConnectionTls`),
        // and CURLOPT_SHARE takes a CURLSH pointer.
        let rc = unsafe {
            curl_sys::curl_easy_setopt(easy.raw(), curl_sys::CURLOPT_SHARE, self.raw.as_ptr())
        };
        if rc == curl_sys::CURLE_OK {
            Ok(())
        } else {
            Err(curl::Error::new(rc))
        }
    }
}

/// Makes `easy` use no share (its own caches) from now on: the share it used no longer counts
/// it (libcurl frees a share only when no easy handle uses it).
pub fn detach_share<H>(easy: &Easy2<H>) -> Result<(), curl::Error> {
    // SAFETY: `easy` is a live easy handle; CURLOPT_SHARE takes a CURLSH pointer, NULL for none.
    let rc = unsafe {
        curl_sys::curl_easy_setopt(
            easy.raw(),
            curl_sys::CURLOPT_SHARE,
            std::ptr::null_mut::<curl_sys::CURLSH>(),
        )
    };
    if rc == curl_sys::CURLE_OK {
        Ok(())
    } else {
        Err(curl::Error::new(rc))
    }
}

/// Sets CURLOPT_QUICK_EXIT (libcurl 7.87+) on `easy`: a transfer that ends (a timeout) while
/// its threaded-resolver lookup still runs leaves that thread behind instead of joining it, so
/// a slow DNS server never holds the caller past the transfer's limit. Older libcurl refuses
/// the option (the error is returned, and the caller may ignore it: it then waits as before).
pub fn leave_slow_lookups_behind<H>(easy: &Easy2<H>) -> Result<(), curl::Error> {
    // SAFETY: `easy` is a live easy handle; CURLOPT_QUICK_EXIT takes a long.
    let rc =
        unsafe { curl_sys::curl_easy_setopt(easy.raw(), CURLOPT_QUICK_EXIT, 1 as libc::c_long) };
    if rc == curl_sys::CURLE_OK {
        Ok(())
    } else {
        Err(curl::Error::new(rc))
    }
}

/// CURLOPTTYPE_LONG + 322 (libcurl 7.87+), not exported by curl-sys.
const CURLOPT_QUICK_EXIT: curl_sys::CURLoption = 322;

impl Drop for CurlShare {
    fn drop(&mut self) {
        // SAFETY: no easy handle uses the share any more (they are dropped or detached first);
        // if libcurl still reports it in use, it refuses and the handle is leaked rather than
        // freed.
        let rc = unsafe { curl_sys::curl_share_cleanup(self.raw.as_ptr()) };
        if rc != curl_sys::CURLSHE_OK {
            log::error!("a connection cache still in use could not be freed (error {rc})");
        }
    }
}

/// Lets the transfers of `easy`, and any redirect they follow, use HTTP and HTTPS only:
/// `CURLOPT_PROTOCOLS_STR` and `CURLOPT_REDIR_PROTOCOLS_STR` (libcurl 7.85+), or the older
/// bitmask options where libcurl does not know those.
pub fn allow_http_only<H>(easy: &Easy2<H>) -> Result<(), curl::Error> {
    const PROTOCOLS: &CStr = c"http,https";
    let mask = libc::c_long::from(curl_sys::CURLPROTO_HTTP | curl_sys::CURLPROTO_HTTPS);
    for (by_name, by_mask) in [
        (CURLOPT_PROTOCOLS_STR, curl_sys::CURLOPT_PROTOCOLS),
        (
            CURLOPT_REDIR_PROTOCOLS_STR,
            curl_sys::CURLOPT_REDIR_PROTOCOLS,
        ),
    ] {
        // SAFETY: `easy` is live; both options take a NUL-terminated string, which libcurl
        // copies.
        let mut rc = unsafe { curl_sys::curl_easy_setopt(easy.raw(), by_name, PROTOCOLS.as_ptr()) };
        if rc == curl_sys::CURLE_UNKNOWN_OPTION {
            // SAFETY: `easy` is live; the bitmask options take a long.
            rc = unsafe { curl_sys::curl_easy_setopt(easy.raw(), by_mask, mask) };
        }
        if rc != curl_sys::CURLE_OK {
            return Err(curl::Error::new(rc));
        }
    }
    Ok(())
}

/// CURLOPTTYPE_STRINGPOINT (= OBJECTPOINT) + 318 and + 319 (libcurl 7.85+), not exported by
/// curl-sys.
const CURLOPT_PROTOCOLS_STR: curl_sys::CURLoption = curl_sys::CURLOPTTYPE_OBJECTPOINT + 318;
const CURLOPT_REDIR_PROTOCOLS_STR: curl_sys::CURLoption = curl_sys::CURLOPTTYPE_OBJECTPOINT + 319;

/// Whether the transfer of `easy` got as far as sending its request (connected, TLS included,
/// on a new or a reused connection): CURLINFO_PRETRANSFER_TIME_T > 0.
pub fn request_sent(easy: *mut curl_sys::CURL) -> bool {
    reached(easy, CURLINFO_PRETRANSFER_TIME_T)
}

/// Whether the transfer of `easy` has its server's address (looked up, or from libcurl's DNS
/// cache, or a reused connection): CURLINFO_NAMELOOKUP_TIME_T > 0.
pub fn name_resolved(easy: *mut curl_sys::CURL) -> bool {
    reached(easy, CURLINFO_NAMELOOKUP_TIME_T)
}

/// Whether the transfer of `easy` reached the step whose time `info` (a `*_TIME_T`) gives.
fn reached(easy: *mut curl_sys::CURL, info: curl_sys::CURLINFO) -> bool {
    let mut micros: curl_sys::curl_off_t = 0;
    // SAFETY: `easy` is a live easy handle (the caller holds it); the `*_TIME_T` infos take a
    // curl_off_t*.
    let rc = unsafe { curl_sys::curl_easy_getinfo(easy, info, &mut micros as *mut _) };
    rc == curl_sys::CURLE_OK && micros > 0
}

/// CURLINFO_OFF_T (0x600000) + 51 and + 53 (libcurl 7.61+), not exported by curl-sys.
const CURLINFO_NAMELOOKUP_TIME_T: curl_sys::CURLINFO = 0x600000 + 51;
const CURLINFO_PRETRANSFER_TIME_T: curl_sys::CURLINFO = 0x600000 + 53;
/// CURLINFO_STRING (0x100000) + 61 and + 62 (libcurl 7.84+): the built-in CA bundle and
/// directory.
const CURLINFO_CAINFO: curl_sys::CURLINFO = 0x100000 + 61;
const CURLINFO_CAPATH: curl_sys::CURLINFO = 0x100000 + 62;
/// CURLOPTTYPE_LONG + 321 (libcurl 7.87+): how long a multi handle keeps a CA store it parsed.
const CURLOPT_CA_CACHE_TIMEOUT: curl_sys::CURLoption = 321;

/// The CA bundle file and CA directory libcurl was built to use by default (Debian's:
/// `/etc/ssl/certs/ca-certificates.crt` and `/etc/ssl/certs`). `Err` from a libcurl older than
/// 7.84, which cannot tell.
pub fn default_ca_locations() -> Result<(Option<PathBuf>, Option<PathBuf>), curl::Error> {
    let probe = curl::easy::Easy::new();
    let location = |info| {
        let mut text: *const c_char = std::ptr::null();
        // SAFETY: `probe` is a live easy handle; these infos take a char** and leave it NULL or
        // pointing at a NUL-terminated string owned by libcurl, copied before `probe` drops.
        let rc = unsafe { curl_sys::curl_easy_getinfo(probe.raw(), info, &mut text as *mut _) };
        if rc != curl_sys::CURLE_OK {
            return Err(curl::Error::new(rc));
        }
        // SAFETY: as above: NULL or a NUL-terminated string that lives as long as `probe`.
        Ok((!text.is_null())
            .then(|| PathBuf::from(unsafe { CStr::from_ptr(text) }.to_string_lossy().as_ref())))
    };
    Ok((location(CURLINFO_CAINFO)?, location(CURLINFO_CAPATH)?))
}

/// Makes `easy`'s new connections load no CA bundle and no CA directory (libcurl would parse
/// its default bundle again for each one): the SSL_CTX callback gives each the process's store.
/// Also turns off libcurl's own store cache (7.87+), which would otherwise keep the first
/// connection's store in the multi handle and swap it into later connections in place of the
/// process's current one.
pub fn skip_ca_loading<H>(easy: &Easy2<H>) -> Result<(), curl::Error> {
    for option in [curl_sys::CURLOPT_CAINFO, curl_sys::CURLOPT_CAPATH] {
        // SAFETY: `easy` is live; both options take a char*, and NULL means "none".
        let rc =
            unsafe { curl_sys::curl_easy_setopt(easy.raw(), option, std::ptr::null::<c_char>()) };
        if rc != curl_sys::CURLE_OK {
            return Err(curl::Error::new(rc));
        }
    }
    // SAFETY: `easy` is live; the option takes a long. Unknown before libcurl 7.87, which has no
    // such cache to turn off.
    let rc =
        unsafe { curl_sys::curl_easy_setopt(easy.raw(), CURLOPT_CA_CACHE_TIMEOUT, 0 as c_long) };
    match rc {
        curl_sys::CURLE_OK | curl_sys::CURLE_UNKNOWN_OPTION => Ok(()),
        _ => Err(curl::Error::new(rc)),
    }
}

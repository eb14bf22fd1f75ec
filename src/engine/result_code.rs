//! The one place that maps a libcurl outcome to a script result code.

/// Script-visible result of a call: the C module's values, and two of named services' own
/// (-6, -7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum ResultCode {
    /// A response was received (any HTTP status).
    Ok = 1,
    /// The server refused the connection.
    ConnectRefused = -1,
    /// The connection (TCP connect or TLS handshake) did not complete in time.
    ConnectTimeout = -2,
    /// Connected, but the response did not complete in time.
    TransferTimeout = -3,
    /// Another process is connecting to the same host (`no_concurrent_connects`).
    AlreadyConnecting = -4,
    /// An async call found `max_async_transfers` in flight and `no_async_fallback` is on.
    AsyncLimitReached = -5,
    /// Every base URL of the called service is ejected (or busy after a `Retry-After`): the
    /// call failed at once, nothing was sent. Not one of the C module's codes; a host may
    /// answer it with a cached answer or its own fallback.
    NoHealthyUpstream = -6,
    /// The called service's `max_in_flight` calls were in flight on the node: the call was
    /// shed at once, nothing was sent. Not one of the C module's codes.
    AdmissionLimit = -7,
    /// Anything else: bad input, DNS failure, TLS error, oversized body, broken response.
    InternalError = -10,
}

impl ResultCode {
    /// Classifies a finished transfer. `connected` says whether the request could be sent
    /// (connection established, TLS included, or a kept-alive connection reused).
    pub fn from_curl(result: Result<(), &curl::Error>, connected: bool) -> Self {
        match result {
            Ok(()) => Self::Ok,
            Err(e) if e.is_couldnt_connect() => Self::ConnectRefused,
            Err(e) if e.is_operation_timedout() => {
                if connected {
                    Self::TransferTimeout
                } else {
                    Self::ConnectTimeout
                }
            }
            Err(_) => Self::InternalError,
        }
    }

    pub fn code(self) -> i32 {
        self as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_curl_codes_like_the_c_module() {
        let refused = curl::Error::new(curl_sys::CURLE_COULDNT_CONNECT);
        let timeout = curl::Error::new(curl_sys::CURLE_OPERATION_TIMEDOUT);
        let resolve = curl::Error::new(curl_sys::CURLE_COULDNT_RESOLVE_HOST);
        assert_eq!(ResultCode::from_curl(Ok(()), true), ResultCode::Ok);
        assert_eq!(ResultCode::from_curl(Err(&refused), false).code(), -1);
        assert_eq!(ResultCode::from_curl(Err(&timeout), false).code(), -2);
        assert_eq!(ResultCode::from_curl(Err(&timeout), true).code(), -3);
        assert_eq!(ResultCode::from_curl(Err(&resolve), false).code(), -10);
    }
}

//! The per-process HTTP client: the connection caches (a libcurl share per client identity,
//! see `tls/`) used by every transfer of the process, one reusable easy handle for blocking
//! transfers, and the bound on slow name lookups (see `lookup_threads.rs`).

use std::time::Instant;

use curl::easy::Easy2;
use log::error;

use super::hub::{Hub, Token};
use super::lookup_threads::LookupThreads;
use crate::engine::curl_raw::name_resolved;
use crate::engine::request::Request;
use crate::engine::result_code::ResultCode;
use crate::engine::secrets::transfer_for_logs;
use crate::engine::settings::ClientSettings;
use crate::engine::tls::ProcessTls;
use crate::engine::transfer::{
    Collector, InflightBodies, Outcome, Target, configure, connect_limit, finish,
    retry_on_new_connection, scrub, transfer_limit,
};

/// One process's client. Field order is drop order: easy handles before the caches they use.
pub struct Client {
    blocking: Easy2<Collector>,
    /// The process's async transfers.
    pub hub: Hub,
    tls: ProcessTls,
    lookups: LookupThreads,
    settings: ClientSettings,
}

impl Client {
    pub fn new(settings: ClientSettings) -> Result<Self, String> {
        let tls = ProcessTls::new(&settings)?;
        let inflight = InflightBodies::new(settings.max_inflight_body_bytes);
        Ok(Self {
            blocking: Easy2::new(Collector::new(std::rc::Rc::clone(&inflight))),
            hub: Hub::new(&settings, inflight)?,
            tls,
            lookups: LookupThreads::new(),
            settings,
        })
    }

    /// The settings every transfer of the client gets unless its request overrides them.
    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// Starts `request` as async transfer `token` without waiting for anything: see [`Hub`].
    /// `Some` when it is already over (e.g. connection refused at once, or bad options).
    pub fn start(&mut self, token: Token, request: &Request) -> Option<Outcome> {
        if !self.lookups.admit(&request.url) {
            return Some(Outcome::failed(ResultCode::ConnectTimeout));
        }
        let started = Instant::now();
        match self
            .hub
            .start(token, &mut self.tls, &self.settings, request)
        {
            Ok(()) => {
                if self.hub.resolving(token) {
                    let limit = connect_limit(&self.settings, request);
                    self.lookups.unresolved(&request.url, started, limit);
                }
                let outcome = self.hub.take_finished(token);
                self.hub.wake_for_finished();
                outcome
            }
            Err(code) => Some(Outcome::failed(code)),
        }
    }

    /// Runs `request` to completion, blocking the calling thread.
    pub fn perform(&mut self, request: &Request) -> Outcome {
        if !self.lookups.admit(&request.url) {
            return Outcome::failed(ResultCode::ConnectTimeout);
        }
        let started = Instant::now();
        if let Err(e) = configure(&mut self.blocking, &mut self.tls, &self.settings, request) {
            error!("cannot set up {}: {e}", transfer_for_logs(request));
            return Outcome::failed(ResultCode::InternalError);
        }
        let target = Target::of(request);
        let mut result = self.blocking.perform();
        if retry_on_new_connection(
            &mut self.blocking,
            &result,
            transfer_limit(&self.settings, request),
            &target,
        ) {
            result = self.blocking.perform();
        }
        if result.is_err() && !name_resolved(self.blocking.raw()) {
            // Its lookup thread may be left behind (see `lookup_threads.rs`).
            let limit = connect_limit(&self.settings, request);
            self.lookups.unresolved(&request.url, started, limit);
        }
        let outcome = finish(&mut self.blocking, result, &target);
        scrub(&mut self.blocking);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread;

    use super::*;
    use crate::engine::request::{Auth, Method};

    /// A server on 127.0.0.1 that answers `count` requests with an empty 200, one connection
    /// each, and returns what it received.
    fn recording_server(count: usize) -> (u16, thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            (0..count)
                .map(|_| {
                    let (mut conn, _) = listener.accept().unwrap();
                    let mut received = Vec::new();
                    let mut buf = [0; 4096];
                    while !String::from_utf8_lossy(&received).contains("\r\n\r\n") {
                        let n = conn.read(&mut buf).unwrap();
                        received.extend_from_slice(&buf[..n]);
                    }
                    // The bodies of the test are small: one more read gets one still in flight.
                    conn.set_read_timeout(Some(std::time::Duration::from_millis(200)))
                        .unwrap();
                    if let Ok(n) = conn.read(&mut buf) {
                        received.extend_from_slice(&buf[..n]);
                    }
                    conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .unwrap();
                    String::from_utf8_lossy(&received).into_owned()
                })
                .collect()
        });
        (port, server)
    }

    #[test]
    fn a_handle_between_transfers_keeps_no_body_headers_or_credentials() {
        let (port, server) = recording_server(2);
        let url = format!("http://127.0.0.1:{port}/");
        let mut client = Client::new(ClientSettings::default()).unwrap();
        let mut request = Request::new(Method::Post, url.clone());
        request.body = b"secret-body".to_vec();
        request.headers = vec!["X-Secret: s1".into()];
        request.auth = Some(Auth::Basic {
            user: "u".into(),
            password: "secret-password".into(),
        });
        assert_eq!(client.perform(&request).result, ResultCode::Ok);
        // The idle handle, used as it is: nothing of the first request goes out again.
        client.blocking.url(&url).unwrap();
        client.blocking.perform().unwrap();
        let received = server.join().unwrap();
        assert!(received[0].starts_with("POST ") && received[0].contains("secret-body"));
        assert!(received[0].contains("X-Secret") && received[0].contains("Authorization"));
        let second = &received[1];
        assert!(second.starts_with("GET "), "{second}");
        for kept in ["secret-body", "X-Secret", "Authorization"] {
            assert!(!second.contains(kept), "{kept} in {second}");
        }
    }
}

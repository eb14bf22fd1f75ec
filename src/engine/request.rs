//! What one HTTP transfer asks for.

use std::time::Duration;

/// The request method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
        }
    }

    /// Whether the method sends a body (and so a Content-Type and an `Expect:` header).
    pub fn has_body(self) -> bool {
        !matches!(self, Self::Get)
    }
}

/// Where a client certificate or key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMaterial {
    /// A PEM file on disk.
    File(String),
    /// PEM text held in memory (e.g. a certificate provisioned from a database).
    Pem(Vec<u8>),
}

impl KeyMaterial {
    /// Interprets text given by a TLS configuration: PEM content if it looks like PEM, else a path.
    pub fn from_config(text: &[u8]) -> Self {
        if text.trim_ascii_start().starts_with(b"-----BEGIN") {
            Self::Pem(text.to_vec())
        } else {
            Self::File(String::from_utf8_lossy(text).into_owned())
        }
    }
}

/// A client certificate and its private key, for one transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    pub certificate: KeyMaterial,
    pub private_key: KeyMaterial,
}

/// One HTTP transfer.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    pub url: String,
    /// Request body (POST/PUT).
    pub body: Vec<u8>,
    /// Content-Type of the body; `None` sends none.
    pub content_type: Option<String>,
    /// Extra header lines (`Name: value`), without CRLF.
    pub headers: Vec<String>,
    pub client_cert: Option<ClientCert>,
    /// Capture the response's Content-Type.
    pub want_content_type: bool,
    /// Limit for this transfer, when lower than the client's (the connect limit follows it).
    pub timeout: Option<Duration>,
}

impl Request {
    pub fn new(method: Method, url: String) -> Self {
        Self {
            method,
            url,
            body: Vec::new(),
            content_type: None,
            headers: Vec::new(),
            client_cert: None,
            want_content_type: true,
            timeout: None,
        }
    }

    /// Whether an extra header of this name (case-insensitive) is present.
    pub fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|line| {
            line.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
    }
}

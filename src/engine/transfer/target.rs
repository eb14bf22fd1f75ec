//! What a running transfer keeps of its request for its end: the method and URL its log lines
//! name (masked by the secret policy) and its statistics read.

use crate::engine::request::{Method, Request};
use crate::engine::secrets::mask_url;

pub(crate) struct Target {
    pub method: Method,
    pub url: String,
    /// The request's own masked query parameters (see `Request::masked_parameters`).
    masked_parameters: Vec<String>,
}

impl Target {
    pub fn of(request: &Request) -> Self {
        Self {
            method: request.method,
            url: request.url.clone(),
            masked_parameters: request.masked_parameters.clone(),
        }
    }

    /// The URL as a log line may show it.
    pub fn url_for_logs(&self) -> String {
        mask_url(&self.url, &self.masked_parameters)
    }

    /// `METHOD url` as a log line may show it.
    pub fn for_logs(&self) -> String {
        format!("{} {}", self.method.name(), self.url_for_logs())
    }
}

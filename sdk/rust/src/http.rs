//! Outbound HTTP: [`get`] and [`send`] call another service, if the
//! function's `allowed_outbound_hosts` allow its host (and the platform's
//! own checks pass: public addresses only, at most 50 requests per
//! invocation, within the deadline).
//!
//! ```no_run
//! #[nimbus_sdk::function]
//! fn status(url: String) -> Result<u16, nimbus_sdk::http::Error> {
//!     Ok(nimbus_sdk::http::get(&url)?.status)
//! }
//! ```
//!
//! Bodies are text. Under the hood this is the platform's `nimbus_http`
//! import (request and response as JSON in the module's memory).

use serde::{Deserialize, Serialize};

/// A request to send.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    /// `GET`, `POST`...
    pub method: String,
    /// `https://host[:port]/path?query`.
    pub url: String,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body (text).
    pub body: String,
}

impl Request {
    /// A `GET` of `url`.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// A `method` request of `url`, without headers or body.
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// With a header added.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// With `body`.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }
}

/// What came back.
#[derive(Debug, Clone, Deserialize)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why no response came back: the platform's reason (`HttpRequestDenied`
/// for a host the function may not call, `DestinationIpProhibited`,
/// `ConnectionLimitReached`, `ConnectionRefused`...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP request failed: {}", self.0)
    }
}

impl std::error::Error for Error {}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, Error> {
    send(&Request::get(url))
}

/// Send `request` and wait for its response.
pub fn send(request: &Request) -> Result<Response, Error> {
    let request = serde_json::to_vec(request).expect("requests serialise");
    let outcome = host::exchange(&request)?;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Outcome {
        Response(Response),
        Error { error: String },
    }
    match serde_json::from_slice(&outcome) {
        Ok(Outcome::Response(response)) => Ok(response),
        Ok(Outcome::Error { error }) => Err(Error(error)),
        Err(e) => Err(Error(format!("unreadable answer from the platform: {e}"))),
    }
}

#[cfg(target_family = "wasm")]
#[allow(unsafe_code)]
mod host {
    #[link(wasm_import_module = "nimbus_http")]
    unsafe extern "C" {
        fn send(ptr: *const u8, len: i32) -> i32;
        fn read(ptr: *mut u8, len: i32) -> i32;
    }

    /// Send the request JSON; the outcome JSON.
    pub(super) fn exchange(request: &[u8]) -> Result<Vec<u8>, super::Error> {
        crate::host_call::exchange(send, read, request)
            .ok_or_else(|| super::Error("the request is too large".into()))
    }
}

#[cfg(not(target_family = "wasm"))]
mod host {
    pub(super) fn exchange(_request: &[u8]) -> Result<Vec<u8>, super::Error> {
        Err(super::Error(
            "outbound HTTP is available only inside Nimbus (wasm32-wasip1)".into(),
        ))
    }
}

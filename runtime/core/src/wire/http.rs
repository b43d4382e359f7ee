//! An HTTP request or response carried between an API server and a worker,
//! for functions called on their URL.
//!
//! On the wire a message's payload is the head (JSON: method, path and
//! headers, or status and headers) immediately followed by the body; the
//! head's length travels in the message's header (see [`super::call`]), so
//! the body is never escaped or re-encoded. Header values that are not UTF-8
//! (legal in HTTP, rare in practice) are carried lossily.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::EnvelopeError;

/// A request as the function's caller sent it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpRequest {
    /// Method, path, query and headers.
    pub head: RequestHead,
    /// The request body.
    pub body: Bytes,
}

/// The head of an [`HttpRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RequestHead {
    /// `GET`, `POST`...
    pub method: String,
    /// The path below the function's URL, always starting with `/`, and the
    /// query string if any: `/orders/7?full=1`.
    pub path: String,
    /// Header names (lowercase) and values, in order, repeated names kept.
    pub headers: Vec<(String, String)>,
}

/// A response as the function wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    /// Status and headers.
    pub head: ResponseHead,
    /// The response body.
    pub body: Bytes,
}

/// The head of an [`HttpResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values, in order, repeated names kept.
    pub headers: Vec<(String, String)>,
}

impl HttpRequest {
    /// The payload (head then body) and the head's length.
    pub fn encode(&self) -> (Bytes, u64) {
        frame(&self.head, &self.body)
    }

    /// Read a payload written by [`HttpRequest::encode`].
    pub fn decode(payload: Bytes, head_len: u64) -> Result<Self, EnvelopeError> {
        let (head, body) = unframe(payload, head_len, "http request head")?;
        Ok(Self { head, body })
    }
}

impl HttpResponse {
    /// The payload (head then body) and the head's length.
    pub fn encode(&self) -> (Bytes, u64) {
        frame(&self.head, &self.body)
    }

    /// Read a payload written by [`HttpResponse::encode`].
    pub fn decode(payload: Bytes, head_len: u64) -> Result<Self, EnvelopeError> {
        let (head, body) = unframe(payload, head_len, "http response head")?;
        Ok(Self { head, body })
    }
}

fn frame(head: &impl Serialize, body: &[u8]) -> (Bytes, u64) {
    let head = serde_json::to_vec(head).expect("a head serializes");
    let mut payload = BytesMut::with_capacity(head.len() + body.len());
    payload.put_slice(&head);
    payload.put_slice(body);
    (payload.freeze(), head.len() as u64)
}

fn unframe<T: DeserializeOwned>(
    payload: Bytes,
    head_len: u64,
    field: &'static str,
) -> Result<(T, Bytes), EnvelopeError> {
    let malformed = || EnvelopeError::Malformed {
        field,
        header: format!("head of {head_len} bytes in a payload of {}", payload.len()),
    };
    let head_len = usize::try_from(head_len).map_err(|_| malformed())?;
    if head_len > payload.len() {
        return Err(malformed());
    }
    let head = serde_json::from_slice(&payload[..head_len]).map_err(|_| malformed())?;
    Ok((head, payload.slice(head_len..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_read_back_as_written() {
        let request = HttpRequest {
            head: RequestHead {
                method: "PUT".into(),
                path: "/a/b?c=1".into(),
                headers: vec![("x-a".into(), "1".into()), ("x-a".into(), "2".into())],
            },
            body: Bytes::from_static(b"{\"raw\": \"body\"}\n"),
        };
        let (payload, head_len) = request.encode();
        assert_eq!(HttpRequest::decode(payload, head_len), Ok(request));
        let response = HttpResponse {
            head: ResponseHead {
                status: 418,
                headers: vec![("content-type".into(), "text/plain".into())],
            },
            body: Bytes::new(),
        };
        let (payload, head_len) = response.encode();
        assert_eq!(HttpResponse::decode(payload, head_len), Ok(response));
    }

    #[test]
    fn a_head_length_past_the_payload_is_refused() {
        let (payload, head_len) = HttpResponse::default().encode();
        assert!(HttpResponse::decode(payload.clone(), head_len + 1).is_err());
        assert!(HttpResponse::decode(payload, head_len - 1).is_err());
    }
}

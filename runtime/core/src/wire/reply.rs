//! A worker's answer to a [`super::Call`]: one [`super::headers::REPLY`] header
//! (the envelope version, the outcome and its fields) and the raw payload,
//! the function's result or the error's message (see [`super::call`]).

use bytes::Bytes;

use super::call::{ENVELOPE_VERSION, EnvelopeError};
use super::fields::Fields;
use crate::{FunctionError, FunctionErrorKind};

/// A successful run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success {
    /// The result: one JSON document, validated by the engine.
    pub result: Bytes,
    /// Fuel burned.
    pub fuel_consumed: u64,
    /// Wall time spent in the engine, microseconds.
    pub duration_us: u64,
    /// `Some(head_len)`: `result` is an HTTP response (see
    /// [`super::super::http`]) whose head is this many bytes long.
    pub http: Option<u64>,
}

/// A worker's answer to a [`super::Call`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The function ran and answered.
    Ok(Success),
    /// The function failed: its fault, reported to the caller.
    FunctionError(FunctionError),
    /// The worker could not run it (module missing, store unreachable...).
    PlatformError(String),
    /// The worker is at capacity with a full queue and did not take the
    /// request; trying again later (or another worker) may succeed.
    Overloaded(String),
}

impl Reply {
    /// The value of the [`super::headers::REPLY`] header, and the payload: the
    /// result, or the error's message.
    pub fn encode(self) -> (String, Bytes) {
        match self {
            Self::Ok(success) => {
                let mut header = format!(
                    "{ENVELOPE_VERSION} ok {} {}",
                    success.fuel_consumed, success.duration_us
                );
                if let Some(head_len) = success.http {
                    header.push_str(&format!(" http {head_len}"));
                }
                (header, success.result)
            }
            Self::FunctionError(error) => (
                format!(
                    "{ENVELOPE_VERSION} function_error {} {}",
                    error.kind.as_str(),
                    error.fuel_consumed
                ),
                Bytes::from(error.message),
            ),
            Self::PlatformError(message) => (
                format!("{ENVELOPE_VERSION} platform_error"),
                Bytes::from(message),
            ),
            Self::Overloaded(message) => (
                format!("{ENVELOPE_VERSION} overloaded"),
                Bytes::from(message),
            ),
        }
    }

    /// Read a reply from its [`super::headers::REPLY`] header and payload.
    pub fn decode(header: Option<&str>, payload: Bytes) -> Result<Self, EnvelopeError> {
        let mut fields = Fields::new(header)?;
        let text = |payload: Bytes| String::from_utf8_lossy(&payload).into_owned();
        let reply = match fields.next("outcome")? {
            "ok" => {
                let fuel_consumed = fields.number("fuel")?;
                let duration_us = fields.number("duration_us")?;
                return Ok(Self::Ok(Success {
                    fuel_consumed,
                    duration_us,
                    http: fields.http()?,
                    result: payload,
                }));
            }
            "function_error" => {
                let kind = fields.next("kind")?;
                let kind: FunctionErrorKind =
                    serde_json::from_value(serde_json::Value::String(kind.to_owned()))
                        .map_err(|_| fields.malformed("kind"))?;
                Self::FunctionError(FunctionError {
                    kind,
                    fuel_consumed: fields.number("fuel")?,
                    message: text(payload),
                })
            }
            "platform_error" => Self::PlatformError(text(payload)),
            "overloaded" => Self::Overloaded(text(payload)),
            _ => return Err(fields.malformed("outcome")),
        };
        fields.end()?;
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_read_back_as_written() {
        let replies = [
            Reply::Ok(Success {
                result: Bytes::from_static(b"{\"x\":1}"),
                fuel_consumed: 4,
                duration_us: 9,
                http: None,
            }),
            Reply::Ok(Success {
                result: Bytes::from_static(b"{}body"),
                fuel_consumed: 4,
                duration_us: 9,
                http: Some(2),
            }),
            Reply::FunctionError(FunctionError {
                kind: FunctionErrorKind::OutOfFuel,
                message: "fuel budget of 10 exhausted".into(),
                fuel_consumed: 10,
            }),
            Reply::PlatformError("module missing".into()),
            Reply::Overloaded("32 running, 256 waiting".into()),
        ];
        for reply in replies {
            let (header, payload) = reply.clone().encode();
            assert_eq!(Reply::decode(Some(&header), payload), Ok(reply));
        }
    }
}

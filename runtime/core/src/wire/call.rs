//! The synchronous call between an API server and a worker: a NATS
//! request on `functions.execute.v2.<id>` (queue group `workers`) and its
//! reply.
//!
//! Metadata travels in NATS headers and the payload is the raw bytes the
//! guest reads or wrote: the request's payload is the input JSON exactly as
//! the API parsed it out of the HTTP body, handed to the guest's stdin as is;
//! the reply's payload is the function's result (one JSON document the
//! engine validated), written into the HTTP answer as is. Neither side
//! parses or re-encodes what it only forwards: the first envelope (JSON
//! around the input and the result) cost a parse and a copy at every hop.
//!
//! The envelope is versioned ([`ENVELOPE_VERSION`], header
//! `Nimbus-Envelope`) and the version is also in the subject, so a worker of
//! the previous format, which would read the raw input as its JSON envelope,
//! never receives a request of this one. Workers still serve the previous
//! envelope on its own subject for one release (see [`super::legacy`]), so
//! API servers of the previous release keep working while workers are
//! upgraded. A request or reply in a version a side cannot read is answered,
//! or reported, as a platform error: never run on a guess.

use bytes::Bytes;

use crate::{FunctionError, FunctionErrorKind, FunctionId, Limits, Username};

/// The envelope version this code writes and reads.
pub const ENVELOPE_VERSION: &str = "2";

/// Header names of the envelope.
pub mod headers {
    /// The envelope version, on requests and replies.
    pub const ENVELOPE: &str = "Nimbus-Envelope";
    /// The function invoked (for logs and error events).
    pub const FUNCTION: &str = "Nimbus-Function";
    /// sha256 of the module to run, hex.
    pub const DIGEST: &str = "Nimbus-Digest";
    /// The limits, as six decimal numbers in [`crate::Limits`] field order,
    /// separated by spaces.
    pub const LIMITS: &str = "Nimbus-Limits";
    /// Who invoked it; also on published log lines.
    pub const CALLER: &str = "Nimbus-Caller";
    /// How long the requester waits for the reply, in milliseconds.
    pub const WAIT_MS: &str = "Nimbus-Wait-Ms";
    /// How the call ended: `ok`, `function_error`, `platform_error`, `overloaded`.
    pub const OUTCOME: &str = "Nimbus-Outcome";
    /// A function error's kind (`trap`, `out_of_fuel`...).
    pub const ERROR_KIND: &str = "Nimbus-Error-Kind";
    /// Fuel burned.
    pub const FUEL: &str = "Nimbus-Fuel";
    /// Engine time, microseconds.
    pub const DURATION_US: &str = "Nimbus-Duration-Us";
    /// On published log lines: the guest wrote more than its log cap.
    pub const LOGS_TRUNCATED: &str = "Nimbus-Logs-Truncated";
}

/// Headers as name/value pairs, for whichever client library sends them.
pub type Headers = Vec<(&'static str, String)>;

/// An envelope this side cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Another version of the envelope (or none: the previous, JSON one).
    #[error(
        "envelope version {found:?}, this side reads version {ENVELOPE_VERSION}: \
         API servers and workers of different releases are mixed"
    )]
    Version {
        /// The version found, if any.
        found: Option<String>,
    },
    /// A header the envelope needs is absent.
    #[error("header {0} is missing")]
    Missing(&'static str),
    /// A header that does not parse.
    #[error("header {name} is malformed: {value:?}")]
    Malformed {
        /// Which header.
        name: &'static str,
        /// What it held.
        value: String,
    },
}

/// What a worker needs to run one synchronous invocation, besides its input
/// (the payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The function being invoked.
    pub function_id: FunctionId,
    /// sha256 of the module in the `modules` object store.
    pub digest: String,
    /// Limits to run under.
    pub limits: Limits,
    /// Who invoked it.
    pub caller: Username,
    /// How long the requester waits for the reply, in milliseconds (0:
    /// nobody waits, as for a job). A worker that only gets to the request
    /// after this long skips it: nobody is waiting for the answer any more.
    pub wait_ms: u64,
}

impl Call {
    /// The request headers.
    pub fn headers(&self) -> Headers {
        let l = &self.limits;
        vec![
            (headers::ENVELOPE, ENVELOPE_VERSION.to_owned()),
            (headers::FUNCTION, self.function_id.to_string()),
            (headers::DIGEST, self.digest.clone()),
            (
                headers::LIMITS,
                format!(
                    "{} {} {} {} {} {}",
                    l.fuel,
                    l.memory_bytes,
                    l.timeout_ms,
                    l.max_input_bytes,
                    l.max_output_bytes,
                    l.max_log_bytes
                ),
            ),
            (headers::CALLER, self.caller.to_string()),
            (headers::WAIT_MS, self.wait_ms.to_string()),
        ]
    }

    /// Read a request's headers (`header` looks one up by name).
    pub fn from_headers<'a>(
        header: impl Fn(&'static str) -> Option<&'a str>,
    ) -> Result<Self, EnvelopeError> {
        check_version(&header)?;
        let required = |name| header(name).ok_or(EnvelopeError::Missing(name));
        let limits = parse_limits(required(headers::LIMITS)?)?;
        let caller = required(headers::CALLER)?;
        Ok(Self {
            function_id: number(headers::FUNCTION, required(headers::FUNCTION)?)?,
            digest: required(headers::DIGEST)?.to_owned(),
            limits,
            caller: Username::parse(caller).map_err(|_| malformed(headers::CALLER, caller))?,
            wait_ms: number(headers::WAIT_MS, required(headers::WAIT_MS)?)?,
        })
    }
}

/// A successful run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success {
    /// The result: one JSON document, validated by the engine.
    pub result: Bytes,
    /// Fuel burned.
    pub fuel_consumed: u64,
    /// Wall time spent in the engine, microseconds.
    pub duration_us: u64,
}

/// A worker's answer to a [`Call`].
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
    /// Headers and payload of the reply. The payload is the result, or the
    /// error's message.
    pub fn encode(self) -> (Headers, Bytes) {
        let mut out = vec![(headers::ENVELOPE, ENVELOPE_VERSION.to_owned())];
        let payload = match self {
            Self::Ok(success) => {
                out.push((headers::OUTCOME, "ok".to_owned()));
                out.push((headers::FUEL, success.fuel_consumed.to_string()));
                out.push((headers::DURATION_US, success.duration_us.to_string()));
                success.result
            }
            Self::FunctionError(error) => {
                out.push((headers::OUTCOME, "function_error".to_owned()));
                out.push((headers::ERROR_KIND, error.kind.as_str().to_owned()));
                out.push((headers::FUEL, error.fuel_consumed.to_string()));
                Bytes::from(error.message)
            }
            Self::PlatformError(message) => {
                out.push((headers::OUTCOME, "platform_error".to_owned()));
                Bytes::from(message)
            }
            Self::Overloaded(message) => {
                out.push((headers::OUTCOME, "overloaded".to_owned()));
                Bytes::from(message)
            }
        };
        (out, payload)
    }

    /// Read a reply from its headers and payload.
    pub fn decode<'a>(
        header: impl Fn(&'static str) -> Option<&'a str>,
        payload: Bytes,
    ) -> Result<Self, EnvelopeError> {
        check_version(&header)?;
        let required = |name| header(name).ok_or(EnvelopeError::Missing(name));
        let text = |payload: Bytes| String::from_utf8_lossy(&payload).into_owned();
        let outcome = required(headers::OUTCOME)?;
        Ok(match outcome {
            "ok" => Self::Ok(Success {
                result: payload,
                fuel_consumed: number(headers::FUEL, required(headers::FUEL)?)?,
                duration_us: number(headers::DURATION_US, required(headers::DURATION_US)?)?,
            }),
            "function_error" => {
                let kind = required(headers::ERROR_KIND)?;
                let kind: FunctionErrorKind =
                    serde_json::from_value(serde_json::Value::String(kind.to_owned()))
                        .map_err(|_| malformed(headers::ERROR_KIND, kind))?;
                Self::FunctionError(FunctionError {
                    kind,
                    message: text(payload),
                    fuel_consumed: number(headers::FUEL, required(headers::FUEL)?)?,
                })
            }
            "platform_error" => Self::PlatformError(text(payload)),
            "overloaded" => Self::Overloaded(text(payload)),
            other => return Err(malformed(headers::OUTCOME, other)),
        })
    }
}

fn check_version<'a>(
    header: &impl Fn(&'static str) -> Option<&'a str>,
) -> Result<(), EnvelopeError> {
    match header(headers::ENVELOPE) {
        Some(ENVELOPE_VERSION) => Ok(()),
        found => Err(EnvelopeError::Version {
            found: found.map(str::to_owned),
        }),
    }
}

fn malformed(name: &'static str, value: &str) -> EnvelopeError {
    EnvelopeError::Malformed {
        name,
        value: value.chars().take(100).collect(),
    }
}

fn number(name: &'static str, value: &str) -> Result<u64, EnvelopeError> {
    value.parse().map_err(|_| malformed(name, value))
}

fn parse_limits(value: &str) -> Result<Limits, EnvelopeError> {
    let mut fields = value.split(' ').map(|field| number(headers::LIMITS, field));
    let mut next = || {
        fields
            .next()
            .unwrap_or(Err(malformed(headers::LIMITS, value)))
    };
    let limits = Limits {
        fuel: next()?,
        memory_bytes: next()?,
        timeout_ms: next()?,
        max_input_bytes: next()?,
        max_output_bytes: next()?,
        max_log_bytes: next()?,
    };
    match next() {
        Err(_) => Ok(limits),
        Ok(_) => Err(malformed(headers::LIMITS, value)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup<'a>(headers: &'a Headers) -> impl Fn(&'static str) -> Option<&'a str> + 'a {
        let map: HashMap<&str, &str> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        move |name| map.get(name).copied()
    }

    fn call() -> Call {
        Call {
            function_id: 7,
            digest: "ab".repeat(32),
            limits: Limits {
                fuel: 1,
                memory_bytes: 2,
                timeout_ms: 3,
                max_input_bytes: 4,
                max_output_bytes: 5,
                max_log_bytes: 6,
            },
            caller: Username::parse("ada").unwrap(),
            wait_ms: 15_000,
        }
    }

    #[test]
    fn a_call_reads_back_as_written() {
        let headers = call().headers();
        assert_eq!(Call::from_headers(lookup(&headers)), Ok(call()));
    }

    #[test]
    fn replies_read_back_as_written() {
        let replies = [
            Reply::Ok(Success {
                result: Bytes::from_static(b"{\"x\":1}"),
                fuel_consumed: 4,
                duration_us: 9,
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
            let (headers, payload) = reply.clone().encode();
            assert_eq!(Reply::decode(lookup(&headers), payload), Ok(reply));
        }
    }

    #[test]
    fn another_envelope_version_is_refused_not_guessed() {
        let mut headers = call().headers();
        headers.retain(|(name, _)| *name != headers::ENVELOPE);
        assert_eq!(
            Call::from_headers(lookup(&headers)),
            Err(EnvelopeError::Version { found: None })
        );
        headers.push((headers::ENVELOPE, "3".into()));
        assert!(matches!(
            Call::from_headers(lookup(&headers)),
            Err(EnvelopeError::Version { found: Some(v) }) if v == "3"
        ));
    }

    #[test]
    fn malformed_headers_are_named() {
        for (name, value) in [
            (headers::LIMITS, "1 2 3 4 5"),
            (headers::LIMITS, "1 2 3 4 5 6 7"),
            (headers::LIMITS, "1 2 3 4 5 x"),
            (headers::CALLER, "no.dots"),
            (headers::FUNCTION, "-1"),
        ] {
            let mut headers = call().headers();
            headers.retain(|(n, _)| *n != name);
            headers.push((name, value.into()));
            assert!(
                matches!(Call::from_headers(lookup(&headers)), Err(EnvelopeError::Malformed { name: n, .. }) if n == name),
                "{name}: {value}"
            );
        }
    }
}

//! The synchronous call between an API server and a worker: a NATS
//! request on `functions.execute.v2.<id>` (queue group `workers`) and its
//! reply.
//!
//! Metadata travels in one NATS header each way (`Nimbus-Call`,
//! `Nimbus-Reply`: a version, then space-separated fields; one header
//! because each header costs a parse and an allocation at both ends, and
//! they showed in profiles) and the payload is the raw bytes the guest
//! reads or wrote: the request's payload is the input JSON exactly as
//! the API parsed it out of the HTTP body, handed to the guest's stdin as is;
//! the reply's payload is the function's result (one JSON document the
//! engine validated), written into the HTTP answer as is. Neither side
//! parses or re-encodes what it only forwards: the first envelope (JSON
//! around the input and the result) cost a parse and a copy at every hop.
//!
//! The envelope is versioned ([`ENVELOPE_VERSION`], the first field of each
//! header) and the version is also in the subject, so a worker of
//! the previous format, which would read the raw input as its JSON envelope,
//! never receives a request of this one. Workers still serve the previous
//! envelope on its own subject for one release (see [`super::legacy`]), so
//! API servers of the previous release keep working while workers are
//! upgraded. A request or reply in a version a side cannot read is answered,
//! or reported, as a platform error: never run on a guess.

use bytes::Bytes;

use crate::trace::TraceParent;
use crate::{FunctionId, Limits, Username};

use super::fields::{Fields, Trailer};

/// The envelope version this code writes and reads.
pub const ENVELOPE_VERSION: &str = "2";

/// Header names Nimbus puts on NATS messages.
pub mod headers {
    /// On a call: `<version> <function> <digest> <caller> <wait_ms>
    /// <fuel> <memory_bytes> <timeout_ms> <max_input_bytes>
    /// <max_output_bytes> <max_log_bytes>`, then ` http <head_len>` when
    /// the payload is an HTTP request (see [`super::super::http`]).
    pub const CALL: &str = "Nimbus-Call";
    /// On a reply: `<version> ok <fuel> <duration_us>` (then ` http
    /// <head_len>` when the payload is an HTTP response), `<version>
    /// function_error <kind> <fuel>`, `<version> platform_error` or
    /// `<version> overloaded`; the payload is the result or the message.
    pub const REPLY: &str = "Nimbus-Reply";
    /// On published log lines: who invoked the function.
    pub const CALLER: &str = "Nimbus-Caller";
    /// On published log lines: the guest wrote more than its log cap.
    pub const LOGS_TRUNCATED: &str = "Nimbus-Logs-Truncated";
    /// On a key-value operation a worker sends: the grant its call
    /// carried (`crate::kv::Grant`).
    pub const KV_GRANT: &str = "Nimbus-Kv-Grant";
    /// On a call and on published log lines: the invocation's id
    /// ([`super::Call::invocation`]). Also answered to HTTP clients.
    pub const INVOCATION: &str = "Nimbus-Invocation-Id";
    /// On a call and on published log lines: the W3C trace context
    /// ([`crate::trace::TraceParent`]), under its standard name.
    pub const TRACEPARENT: &str = crate::trace::TRACEPARENT;
}

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
    /// A field that is missing or does not parse.
    #[error("envelope field {field} is missing or malformed in {header:?}")]
    Malformed {
        /// Which field.
        field: &'static str,
        /// The header it was read from (its first 200 characters).
        header: String,
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
    /// `Some(head_len)`: the payload is an HTTP request (a function called on
    /// its URL), its head this many bytes long; `None`: the payload is the
    /// input JSON. A worker of the previous release reads the extra field
    /// as malformed and refuses the call rather than run it on a guess.
    pub http: Option<u64>,
    /// The function's environment (variables and secrets), sealed with the
    /// platform's environment key for this function ([`crate::EnvKey`]);
    /// `None` when it has none. It travels in front of the payload, its
    /// length in the header (` env <len>`): a worker sees the secrets of the
    /// calls it runs and no others.
    pub env: Option<Bytes>,
    /// The function's `allowed_outbound_hosts` (` out <pattern>,...` in the
    /// header; patterns hold neither spaces nor commas).
    pub outbound: Vec<String>,
    /// The key-value grant (`crate::kv::Grant`, signed) for the stores
    /// its function declared (` kv <token>` in the header); `None` when it
    /// declared none.
    pub kv: Option<String>,
    /// This invocation's id (see [`crate::trace`]). It and [`Call::trace`]
    /// travel in NATS headers of their own ([`headers::INVOCATION`],
    /// [`headers::TRACEPARENT`]), not in [`headers::CALL`]: a worker of the
    /// previous release ignores them instead of refusing the call.
    pub invocation: Option<String>,
    /// The trace the invocation belongs to, the API server's span as parent.
    pub trace: Option<TraceParent>,
}

impl Call {
    /// Take the invocation id and trace context from their headers' values
    /// (ignored when malformed).
    pub fn with_context(self, invocation: Option<&str>, traceparent: Option<&str>) -> Self {
        Self {
            invocation: invocation
                .filter(|id| super::is_invocation_id(id))
                .map(str::to_owned),
            trace: traceparent.and_then(TraceParent::parse),
            ..self
        }
    }

    /// The value of the [`headers::CALL`] header.
    pub fn header(&self) -> String {
        let l = &self.limits;
        let mut header = format!(
            "{ENVELOPE_VERSION} {} {} {} {} {} {} {} {} {} {}",
            self.function_id,
            self.digest,
            self.caller,
            self.wait_ms,
            l.fuel,
            l.memory_bytes,
            l.timeout_ms,
            l.max_input_bytes,
            l.max_output_bytes,
            l.max_log_bytes
        );
        if let Some(env) = &self.env {
            header.push_str(&format!(" env {}", env.len()));
        }
        if !self.outbound.is_empty() {
            header.push_str(" out ");
            header.push_str(&self.outbound.join(","));
        }
        if let Some(grant) = &self.kv {
            header.push_str(" kv ");
            header.push_str(grant);
        }
        if let Some(head_len) = self.http {
            header.push_str(&format!(" http {head_len}"));
        }
        header
    }

    /// The message's payload: the sealed environment, if any, then `input`
    /// (`input` itself, not a copy, when there is no environment).
    pub fn payload(&self, input: Bytes) -> Bytes {
        match &self.env {
            None => input,
            Some(env) => {
                let mut payload = Vec::with_capacity(env.len() + input.len());
                payload.extend_from_slice(env);
                payload.extend_from_slice(&input);
                payload.into()
            }
        }
    }

    /// Read a call from its [`headers::CALL`] header (`None`: the message
    /// had none) and payload: the call and its input.
    pub fn parse(header: Option<&str>, payload: Bytes) -> Result<(Self, Bytes), EnvelopeError> {
        let mut call = Self::parse_header(header)?;
        let Some(env_len) = call.env_len else {
            return Ok((call.call, payload));
        };
        let env_len = usize::try_from(env_len)
            .ok()
            .filter(|&len| len <= payload.len())
            .ok_or_else(|| EnvelopeError::Malformed {
                field: "env len",
                header: header.unwrap_or_default().chars().take(200).collect(),
            })?;
        call.call.env = Some(payload.slice(..env_len));
        Ok((call.call, payload.slice(env_len..)))
    }

    fn parse_header(header: Option<&str>) -> Result<ParsedCall, EnvelopeError> {
        let mut fields = Fields::new(header)?;
        let function_id = fields.number("function")?;
        let digest = fields.next("digest")?.to_owned();
        let caller = fields.next("caller")?;
        let caller = Username::parse(caller).map_err(|_| fields.malformed("caller"))?;
        let wait_ms = fields.number("wait_ms")?;
        let limits = Limits {
            fuel: fields.number("fuel")?,
            memory_bytes: fields.number("memory_bytes")?,
            timeout_ms: fields.number("timeout_ms")?,
            max_input_bytes: fields.number("max_input_bytes")?,
            max_output_bytes: fields.number("max_output_bytes")?,
            max_log_bytes: fields.number("max_log_bytes")?,
        };
        let Trailer {
            env_len,
            outbound,
            kv,
            http,
        } = fields.call_trailer()?;
        Ok(ParsedCall {
            call: Self {
                function_id,
                digest,
                limits,
                caller,
                wait_ms,
                http,
                env: None,
                outbound,
                kv,
                invocation: None,
                trace: None,
            },
            env_len,
        })
    }
}

/// A call read from its header, its environment still in the payload.
struct ParsedCall {
    call: Call,
    env_len: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Reply;

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
            http: None,
            env: None,
            outbound: Vec::new(),
            kv: None,
            invocation: None,
            trace: None,
        }
    }

    fn parse(header: &str) -> Result<Call, EnvelopeError> {
        Call::parse(Some(header), Bytes::new()).map(|(call, _)| call)
    }

    #[test]
    fn a_call_reads_back_as_written() {
        assert_eq!(parse(&call().header()), Ok(call()));
        let http = Call {
            http: Some(42),
            ..call()
        };
        assert_eq!(parse(&http.header()), Ok(http));
        let everything = Call {
            http: Some(42),
            env: Some(Bytes::from_static(b"sealed")),
            outbound: vec!["https://*.example.org".into(), "*://a.test:*".into()],
            kv: Some("e30.dGFn".into()),
            ..call()
        };
        let header = everything.header();
        assert!(
            header.ends_with(" env 6 out https://*.example.org,*://a.test:* kv e30.dGFn http 42"),
            "{header}"
        );
        let payload = everything.payload(Bytes::from_static(b"{}"));
        assert_eq!(
            Call::parse(Some(&header), payload),
            Ok((everything, Bytes::from_static(b"{}")))
        );
    }

    #[test]
    fn the_invocation_id_and_trace_come_from_their_own_headers() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let id = "0123456789abcdef0123456789abcdef";
        let call = call().with_context(Some(id), Some(traceparent));
        assert_eq!(call.invocation.as_deref(), Some(id));
        assert_eq!(call.trace.unwrap().to_string(), traceparent);
        assert!(!call.header().contains(id), "not in Nimbus-Call");
        let call = call.with_context(Some("not an id"), Some("00-zz"));
        assert_eq!((call.invocation, call.trace), (None, None));
    }

    #[test]
    fn the_environment_travels_in_front_of_the_input() {
        let input = Bytes::from_static(b"{\"x\":1}");
        assert_eq!(
            call().payload(input.clone()).as_ptr(),
            input.as_ptr(),
            "no environment: the input itself"
        );
        for http in [None, Some(3)] {
            let call = Call {
                env: Some(Bytes::from_static(b"sealed")),
                http,
                ..call()
            };
            let header = call.header();
            assert!(header.contains(" env 6"), "{header}");
            let payload = call.payload(input.clone());
            assert_eq!(
                Call::parse(Some(&header), payload),
                Ok((call.clone(), input.clone()))
            );
            assert!(
                matches!(
                    Call::parse(Some(&header), Bytes::from_static(b"short")),
                    Err(EnvelopeError::Malformed {
                        field: "env len",
                        ..
                    })
                ),
                "a payload shorter than its environment"
            );
        }
    }

    #[test]
    fn another_envelope_version_is_refused_not_guessed() {
        assert_eq!(
            Call::parse(None, Bytes::new()),
            Err(EnvelopeError::Version { found: None })
        );
        let header = call().header().replacen("2 ", "3 ", 1);
        assert_eq!(
            parse(&header),
            Err(EnvelopeError::Version {
                found: Some("3".into())
            })
        );
        assert!(matches!(
            Reply::decode(Some("1 ok 1 1"), Bytes::new()),
            Err(EnvelopeError::Version { .. })
        ));
    }

    #[test]
    fn malformed_fields_are_named() {
        let good = call().header();
        let fields: Vec<&str> = good.split(' ').collect();
        let with = |index: usize, value: &str| {
            let mut fields = fields.clone();
            fields[index] = value;
            fields.join(" ")
        };
        for (header, field) in [
            (with(1, "-1"), "function"),
            (with(3, "no.dots"), "caller"),
            (with(5, "x"), "fuel"),
            (fields[..10].join(" "), "max_log_bytes"),
            (format!("{good} 7"), "end"),
            (format!("{good} http x"), "http head_len"),
            (format!("{good} http 1 2"), "end"),
            (format!("{good} env x"), "env len"),
            (format!("{good} http 1 env 2"), "end"),
            (format!("{good} out"), "out hosts"),
            (format!("{good} http 1 out a"), "end"),
            (with(2, ""), "digest"),
        ] {
            assert!(
                matches!(parse(&header), Err(EnvelopeError::Malformed { field: f, .. }) if f == field),
                "{header}: {field}"
            );
        }
        assert!(matches!(
            Reply::decode(Some("2 exploded"), Bytes::new()),
            Err(EnvelopeError::Malformed {
                field: "outcome",
                ..
            })
        ));
    }
}

//! The previous synchronous envelope: one JSON document each way on
//! `functions.execute.<id>` ([`crate::subjects::EXECUTE_LEGACY_ALL`]).
//!
//! Workers keep serving it for one release, so that during a rolling
//! upgrade (nats.conf first, then workers, then API servers) an API server
//! of the previous release is served by old and new workers alike. The
//! request has the shape a job's request still has ([`JobRequest`]); the
//! reply is the previous `InvocationReply`, externally tagged. Drop this
//! module, and the legacy subject, once no API server of the previous
//! release is left.

use bytes::Bytes;
use serde_json::json;

use super::{Call, JobRequest, Reply};

/// A request in the previous envelope: the call and its input.
pub fn read_request(payload: &[u8]) -> Result<(Call, Bytes), serde_json::Error> {
    serde_json::from_slice::<JobRequest>(payload).map(JobRequest::into_call)
}

/// `reply` in the previous envelope.
pub fn encode_reply(reply: Reply) -> Bytes {
    let document = match reply {
        // The result is one JSON document already (the engine validated
        // it): written around, not parsed again.
        Reply::Ok(success) => {
            let mut body = Vec::with_capacity(success.result.len() + 80);
            body.extend_from_slice(b"{\"ok\":{\"result\":");
            body.extend_from_slice(&success.result);
            body.extend_from_slice(
                format!(
                    ",\"fuel_consumed\":{},\"duration_us\":{}}}}}",
                    success.fuel_consumed, success.duration_us
                )
                .as_bytes(),
            );
            return body.into();
        }
        Reply::FunctionError(error) => json!({ "function_error": error }),
        Reply::PlatformError(message) => json!({ "platform_error": message }),
        Reply::Overloaded(message) => json!({ "overloaded": message }),
    };
    serde_json::to_vec(&document)
        .expect("JSON serialises")
        .into()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::wire::Success;
    use crate::{FunctionError, FunctionErrorKind, Limits};

    #[test]
    fn a_request_of_the_previous_release_reads_as_a_call() {
        let request = json!({
            "function_id": 4, "digest": "ab", "limits": Limits::DEFAULT,
            "caller": "ada", "input": {"x": [1, 2]}, "wait_ms": 15000,
        });
        let (call, input) = read_request(request.to_string().as_bytes()).unwrap();
        assert_eq!((call.function_id, call.wait_ms), (4, 15000));
        assert_eq!(call.caller.as_str(), "ada");
        assert_eq!(&input[..], br#"{"x":[1,2]}"#);
        assert!(read_request(b"10").is_err(), "raw input is not a request");
    }

    #[test]
    fn replies_have_the_previous_releases_shape() {
        let ok = encode_reply(Reply::Ok(Success {
            result: Bytes::from_static(b"{\"a\":1}"),
            fuel_consumed: 4,
            duration_us: 9,
            http: None,
        }));
        assert_eq!(
            serde_json::from_slice::<Value>(&ok).unwrap(),
            json!({"ok": {"result": {"a": 1}, "fuel_consumed": 4, "duration_us": 9}})
        );
        let failed = encode_reply(Reply::FunctionError(FunctionError {
            kind: FunctionErrorKind::Trap,
            message: "unreachable".into(),
            fuel_consumed: 3,
        }));
        assert_eq!(
            serde_json::from_slice::<Value>(&failed).unwrap(),
            json!({"function_error": {"kind": "trap", "message": "unreachable", "fuel_consumed": 3}})
        );
        let shed = encode_reply(Reply::Overloaded("full".into()));
        assert_eq!(
            serde_json::from_slice::<Value>(&shed).unwrap(),
            json!({"overloaded": "full"})
        );
    }
}

//! Bodies of the public HTTP API that both ends read: the server
//! (`nimbus-api`) writes them and the client (`nimbus-cli`) parses them, so
//! the contract is typed once. Other answers are records defined elsewhere
//! ([`crate::FunctionMeta`], [`crate::wire::InvocationRecord`]) or ad-hoc
//! `{"message"}` bodies kept verbatim from the original design.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{Access, FunctionId, FunctionMeta, Limits, Runtime, World};

/// `POST /functions` answers 201 with this: the id first and, for text
/// uploads, the code echoed back as the original design did (binaries are
/// not echoed).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Created {
    /// The new function's id.
    pub id: FunctionId,
    /// The uploaded source (WAT or JavaScript), echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The name given at upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How it was uploaded.
    pub runtime: Runtime,
    /// For a component, the world it implements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<World>,
    /// Who may call it on its URL.
    #[serde(default)]
    pub access: Access,
    /// Its URL's path (`/fn/<owner>/<name>`), for a named function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// sha256 of the stored module, hex.
    pub digest: String,
    /// Size of the stored module, bytes.
    pub size: u64,
    /// Limits each invocation runs under.
    pub limits: Limits,
    /// The hosts it may call over HTTP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
    /// The key-value stores it may open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_value_stores: Vec<String>,
    /// RFC 3339 creation time.
    pub created: String,
}

/// `POST /functions/{id}/execute` answers 200 with this.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize, Deserialize)]
pub struct Executed {
    /// The function's result, a JSON document.
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub result: Box<RawValue>,
    /// Fuel the invocation burned.
    pub fuel_consumed: u64,
    /// Time spent in the engine, microseconds.
    pub duration_us: u64,
}

impl Executed {
    /// The body of a successful execution, written around `result` (one
    /// JSON document, already validated by the engine) without parsing it
    /// again: byte for byte what serialising [`Executed`] would give.
    pub fn body(result: &[u8], fuel_consumed: u64, duration_us: u64) -> Vec<u8> {
        let mut body = Vec::with_capacity(result.len() + 64);
        body.extend_from_slice(b"{\"result\":");
        body.extend_from_slice(result);
        body.extend_from_slice(
            format!(",\"fuel_consumed\":{fuel_consumed},\"duration_us\":{duration_us}}}")
                .as_bytes(),
        );
        body
    }
}

/// `GET /functions` answers 200 with this.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionList {
    /// The caller's functions, by id.
    pub functions: Vec<FunctionMeta>,
}

/// Every error answer: `{"error": {...}}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an error answer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable snake_case kind (`not_found`, `out_of_fuel`, `worker_failed`...).
    pub kind: String,
    /// Human-readable details.
    pub message: String,
    /// Whose fault a failed invocation was (absent on client errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::ErrorSource>,
    /// Fuel a failed function burned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_consumed: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hand_written_execute_body_is_what_serde_writes() {
        let result = RawValue::from_string(r#"{"a":[1,2.5,"x"]}"#.into()).unwrap();
        let written = Executed::body(result.get().as_bytes(), 42, 7);
        let serialised = serde_json::to_vec(&Executed {
            result,
            fuel_consumed: 42,
            duration_us: 7,
        })
        .unwrap();
        assert_eq!(written, serialised);
    }
}

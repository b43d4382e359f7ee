//! Per-invocation resource limits, the platform's defaults and maxima, and the
//! clamp/validate step between what a function asks for and what it gets.
//!
//! A function may ask for its own limits at upload. Missing fields take the
//! platform default; a value above the platform maximum is refused rather than
//! silently lowered, so an author never runs under limits they did not expect.

use serde::{Deserialize, Serialize};

/// The limits one invocation runs under. All sizes are in bytes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Fuel budget (wasmtime fuel units, roughly one per simple instruction).
    pub fuel: u64,
    /// Cap on linear memory, summed over all memories of the instance.
    pub memory_bytes: u64,
    /// Wall-clock deadline for the whole invocation, in milliseconds.
    pub timeout_ms: u64,
    /// Largest accepted input.
    pub max_input_bytes: u64,
    /// Largest output the guest may write to stdout.
    pub max_output_bytes: u64,
    /// Log bytes (stderr) kept per invocation; more is dropped, not fatal.
    pub max_log_bytes: u64,
}

impl Limits {
    /// Platform defaults: enough for ordinary functions, small enough that a
    /// runaway one is stopped in well under a second of CPU.
    pub const DEFAULT: Limits = Limits {
        fuel: 1_000_000_000,
        memory_bytes: 64 << 20,
        timeout_ms: 5_000,
        // A function's URL takes and answers bodies up to this by default.
        max_input_bytes: 6 << 20,
        max_output_bytes: 6 << 20,
        max_log_bytes: 64 << 10,
    };

    /// Platform maxima. Input and output stay under the 8 MiB NATS payload
    /// limit Nimbus configures, with room for the envelope.
    pub const MAXIMUM: Limits = Limits {
        fuel: 50_000_000_000,
        memory_bytes: 512 << 20,
        timeout_ms: 60_000,
        max_input_bytes: 6 << 20,
        max_output_bytes: 6 << 20,
        max_log_bytes: 1 << 20,
    };

    fn fields(&self) -> [(&'static str, u64); 6] {
        [
            ("fuel", self.fuel),
            ("memory_bytes", self.memory_bytes),
            ("timeout_ms", self.timeout_ms),
            ("max_input_bytes", self.max_input_bytes),
            ("max_output_bytes", self.max_output_bytes),
            ("max_log_bytes", self.max_log_bytes),
        ]
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Limits as requested at upload: every field optional. The same type is
/// the JSON `limits` of an upload, the query string of a raw `.wasm` upload
/// and, with the `clap` feature, the limit flags of `nimbus deploy`; so the
/// doc of each field is also its flag's help.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    /// Fuel budget per invocation.
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Memory cap per invocation, bytes.
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Deadline per invocation, milliseconds.
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Largest input, bytes.
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_input_bytes: Option<u64>,
    /// Largest output, bytes.
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// Log bytes kept per invocation.
    #[cfg_attr(feature = "clap", arg(long))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_log_bytes: Option<u64>,
}

/// A requested limit the platform will not grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Above the platform maximum.
    #[error("limit `{field}` = {requested} exceeds the platform maximum of {maximum}")]
    AboveMaximum {
        /// Field name, as in the JSON body.
        field: &'static str,
        /// What was asked.
        requested: u64,
        /// What the platform allows.
        maximum: u64,
    },
    /// Zero would make every invocation fail.
    #[error("limit `{field}` must be greater than zero")]
    Zero {
        /// Field name, as in the JSON body.
        field: &'static str,
    },
}

/// The platform's defaults and maxima; configuration, not constants, so an
/// operator can tighten or loosen them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitPolicy {
    /// Used for every field a function does not set.
    pub defaults: Limits,
    /// Nothing above these is granted.
    pub maxima: Limits,
}

impl Default for LimitPolicy {
    fn default() -> Self {
        Self {
            defaults: Limits::DEFAULT,
            maxima: Limits::MAXIMUM,
        }
    }
}

impl LimitPolicy {
    /// Fill `request`'s gaps with defaults (clamped to the maxima, in case an
    /// operator set a default above a maximum) and refuse values beyond the maxima.
    pub fn resolve(&self, request: &LimitsRequest) -> Result<Limits, LimitError> {
        let d = &self.defaults;
        let m = &self.maxima;
        let pick = |field: &'static str, asked: Option<u64>, default: u64, max: u64| match asked {
            Some(0) => Err(LimitError::Zero { field }),
            Some(v) if v > max => Err(LimitError::AboveMaximum {
                field,
                requested: v,
                maximum: max,
            }),
            Some(v) => Ok(v),
            None => Ok(default.min(max)),
        };
        Ok(Limits {
            fuel: pick("fuel", request.fuel, d.fuel, m.fuel)?,
            memory_bytes: pick(
                "memory_bytes",
                request.memory_bytes,
                d.memory_bytes,
                m.memory_bytes,
            )?,
            timeout_ms: pick("timeout_ms", request.timeout_ms, d.timeout_ms, m.timeout_ms)?,
            max_input_bytes: pick(
                "max_input_bytes",
                request.max_input_bytes,
                d.max_input_bytes,
                m.max_input_bytes,
            )?,
            max_output_bytes: pick(
                "max_output_bytes",
                request.max_output_bytes,
                d.max_output_bytes,
                m.max_output_bytes,
            )?,
            max_log_bytes: pick(
                "max_log_bytes",
                request.max_log_bytes,
                d.max_log_bytes,
                m.max_log_bytes,
            )?,
        })
    }

    /// Check limits that arrive already resolved (e.g. from the wire) against
    /// this policy's maxima, so a worker never runs beyond what it was configured for.
    pub fn check(&self, limits: &Limits) -> Result<(), LimitError> {
        for ((field, v), (_, max)) in limits.fields().into_iter().zip(self.maxima.fields()) {
            if v == 0 {
                return Err(LimitError::Zero { field });
            }
            if v > max {
                return Err(LimitError::AboveMaximum {
                    field,
                    requested: v,
                    maximum: max,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_take_defaults() {
        let policy = LimitPolicy::default();
        let limits = policy
            .resolve(&LimitsRequest {
                fuel: Some(42),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(limits.fuel, 42);
        assert_eq!(limits.memory_bytes, Limits::DEFAULT.memory_bytes);
    }

    #[test]
    fn above_maximum_is_refused_with_the_field_named() {
        let policy = LimitPolicy::default();
        let err = policy
            .resolve(&LimitsRequest {
                memory_bytes: Some(Limits::MAXIMUM.memory_bytes + 1),
                ..Default::default()
            })
            .unwrap_err();
        assert!(
            matches!(
                err,
                LimitError::AboveMaximum {
                    field: "memory_bytes",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn zero_is_refused() {
        let err = LimitPolicy::default()
            .resolve(&LimitsRequest {
                timeout_ms: Some(0),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(
            err,
            LimitError::Zero {
                field: "timeout_ms"
            }
        );
    }

    #[test]
    fn defaults_above_maxima_are_clamped() {
        let mut policy = LimitPolicy::default();
        policy.maxima.fuel = 10;
        assert_eq!(policy.resolve(&LimitsRequest::default()).unwrap().fuel, 10);
        assert!(policy.check(&Limits::DEFAULT).is_err());
    }

    #[test]
    fn unknown_limit_fields_are_rejected() {
        let parsed: Result<LimitsRequest, _> = serde_json::from_str(r#"{"fuell": 1}"#);
        assert!(parsed.is_err());
    }
}

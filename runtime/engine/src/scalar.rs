//! JSON <-> numbers for the scalar `handle` ABI.
//!
//! The input is a number for a one-parameter `handle`, an array of numbers
//! for several parameters (an empty array or `null` for none). The result is
//! a number, or an array when `handle` returns several values.

use nimbus_core::{FunctionError, FunctionErrorKind};
use serde_json::Value;
use wasmtime::Val;

use crate::module::Scalar;

fn invalid_input(message: String) -> FunctionError {
    FunctionError::new(FunctionErrorKind::InvalidInput, message)
}

/// Parse `input` into `handle`'s parameters.
pub(crate) fn params(input: &[u8], types: &[Scalar]) -> Result<Vec<Val>, FunctionError> {
    let value: Value = serde_json::from_slice(input)
        .map_err(|e| invalid_input(format!("input is not valid JSON: {e}")))?;
    let values: Vec<Value> = match (value, types.len()) {
        (Value::Array(items), _) => items,
        (Value::Null, 0) => Vec::new(),
        (single, 1) => vec![single],
        (other, n) => {
            return Err(invalid_input(format!(
                "`handle` takes {n} numbers; pass them as a JSON array, not {other}"
            )));
        }
    };
    if values.len() != types.len() {
        return Err(invalid_input(format!(
            "`handle` takes {} number(s), the input has {}",
            types.len(),
            values.len()
        )));
    }
    values
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (v, ty))| {
            to_val(v, *ty).ok_or_else(|| {
                invalid_input(format!(
                    "parameter {i} must be a JSON number that fits {ty:?}, got {v}"
                ))
            })
        })
        .collect()
}

fn to_val(value: &Value, ty: Scalar) -> Option<Val> {
    match ty {
        Scalar::I32 => {
            let n = value.as_i64()?;
            // Accept the unsigned range too: WebAssembly integers have no sign.
            let v = i32::try_from(n)
                .ok()
                .or_else(|| u32::try_from(n).ok().map(|u| u as i32))?;
            Some(Val::I32(v))
        }
        Scalar::I64 => value
            .as_i64()
            .or_else(|| value.as_u64().map(|u| u as i64))
            .map(Val::I64),
        Scalar::F32 => value.as_f64().map(|f| Val::F32((f as f32).to_bits())),
        Scalar::F64 => value.as_f64().map(|f| Val::F64(f.to_bits())),
    }
}

/// A zeroed slot for each result type, for `Func::call_async`.
pub(crate) fn result_slots(types: &[Scalar]) -> Vec<Val> {
    types
        .iter()
        .map(|ty| match ty {
            Scalar::I32 => Val::I32(0),
            Scalar::I64 => Val::I64(0),
            Scalar::F32 => Val::F32(0),
            Scalar::F64 => Val::F64(0),
        })
        .collect()
}

/// `handle`'s results as JSON text.
pub(crate) fn output(results: &[Val]) -> Result<Vec<u8>, FunctionError> {
    let numbers = results
        .iter()
        .map(|v| {
            let n = match v {
                Val::I32(i) => Some(serde_json::Number::from(*i)),
                Val::I64(i) => Some(serde_json::Number::from(*i)),
                Val::F32(bits) => serde_json::Number::from_f64(f32::from_bits(*bits) as f64),
                Val::F64(bits) => serde_json::Number::from_f64(f64::from_bits(*bits)),
                _ => None,
            };
            n.map(Value::Number).ok_or_else(|| {
                FunctionError::new(
                    FunctionErrorKind::InvalidOutput,
                    format!("`handle` returned {v:?}, which JSON cannot represent"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let value = match <[Value; 1]>::try_from(numbers) {
        Ok([single]) => single,
        Err(many) => Value::Array(many),
    };
    Ok(serde_json::to_vec(&value).expect("numbers serialise"))
}

//! What an upload may cost to compile.
//!
//! Cranelift's time grows faster than a function's size when many values
//! are live at once: a 40 KB function took 6 s, a 517 KB module was still
//! compiling after 90 s, an 800 KB one grew the process to 1.2 GB. Two
//! bounds, in order:
//! - **before Cranelift**, one pass over the module's headers (not its
//!   code) refuses what no toolchain we know produces: more functions, a
//!   bigger function body or more locals in one function than the limits
//!   below, which sit well above the largest real modules measured (the
//!   componentize-py runtime: 13,485 functions, a 427 KB body, 271 locals;
//!   the QuickJS shim: 50 KB, 43 locals);
//! - **while compiling**, a budget of time and memory
//!   ([`CompileBudget`]), enforced by compiling in a child process
//!   (`compile_process.rs`) that is killed when it runs out.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::CompileError;

/// Functions in one module, at most.
pub const MAX_FUNCTIONS: usize = 100_000;
/// Bytes of one function body, at most.
pub const MAX_FUNCTION_BODY_BYTES: usize = 1 << 20;
/// Locals of one function, at most.
pub const MAX_FUNCTION_LOCALS: u64 = 10_000;

/// Time and memory one compile may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompileBudget {
    /// Time every module gets.
    pub base: Duration,
    /// Time added per MiB of module: a 22 MB Python component compiles in
    /// ~9 s on two idle cores here; the default gives it ~54 s.
    pub per_mib: Duration,
    /// Memory the compiler may use (its data segment: heap and private
    /// writable mappings). The Python component needs ~350 MB.
    pub memory_bytes: u64,
}

impl Default for CompileBudget {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(10),
            per_mib: Duration::from_secs(2),
            memory_bytes: 1536 << 20,
        }
    }
}

impl CompileBudget {
    /// The time a module of `bytes` may take to compile.
    pub fn time_for(&self, bytes: usize) -> Duration {
        self.base + self.per_mib.mul_f64(bytes as f64 / f64::from(1 << 20))
    }
}

/// Refuse, before any code is compiled, a module (or any module inside a
/// component) over the static limits above. Reads section headers and each
/// body's locals, never the instructions; whatever does not parse is left
/// for validation to name.
pub(crate) fn check_shape(binary: &[u8]) -> Result<(), CompileError> {
    let over = |what: String| Err(CompileError::OverBudget(what));
    let mut functions = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(binary) {
        let Ok(wasmparser::Payload::CodeSectionEntry(body)) = payload else {
            if payload.is_err() {
                return Ok(());
            }
            continue;
        };
        functions += 1;
        if functions > MAX_FUNCTIONS {
            return over(format!("more than {MAX_FUNCTIONS} functions"));
        }
        let size = body.range().len();
        if size > MAX_FUNCTION_BODY_BYTES {
            return over(format!(
                "function {} is {size} bytes, the limit is {MAX_FUNCTION_BODY_BYTES}",
                functions - 1
            ));
        }
        let Ok(reader) = body.get_locals_reader() else {
            return Ok(());
        };
        let mut locals = 0u64;
        for declared in reader {
            let Ok((count, _)) = declared else {
                return Ok(());
            };
            locals += u64::from(count);
        }
        if locals > MAX_FUNCTION_LOCALS {
            return over(format!(
                "function {} declares {locals} locals, the limit is {MAX_FUNCTION_LOCALS}",
                functions - 1
            ));
        }
    }
    Ok(())
}

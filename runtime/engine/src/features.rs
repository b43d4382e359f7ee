//! The WebAssembly proposals Nimbus accepts, chosen here.
//!
//! wasmtime turns a proposal on when its cargo feature is compiled in, and
//! cargo unifies features across the whole binary: `wasmtime-wizer` (used
//! to pre-initialise the QuickJS shim) enables wasmtime's `threads` and `gc`,
//! so without this list every engine in the process would accept shared
//! memories, atomics, GC types and exceptions that nobody chose and that the
//! limits were never tested against (is a GC heap inside the memory cap?).
//!
//! So the engine starts from nothing and enables exactly [`ENABLED`]: the
//! WebAssembly 2.0 features toolchains emit by default (LLVM, wit-component,
//! componentize-py, the QuickJS shim) plus tail calls, extended constants and
//! the component model. Each one is exercised under the limits by the
//! engine's tests (`features.rs` there). Anything else is refused at upload
//! with the proposal's name (see [`refused`]).
//!
//! Off, and why:
//! - threads (shared memory, atomics): an invocation is one thread in a
//!   fresh instance; nothing could share the memory;
//! - GC, function references, exceptions, stack switching: their heaps and
//!   payloads live outside the linear memory the cap measures; untested;
//! - multi-memory, memory64, custom page sizes, wide arithmetic: untested
//!   against the memory cap and fuel, and no supported toolchain needs them.
//!
//! Relaxed SIMD stays on in its deterministic mode: the same inputs give the
//! same results on every machine, as fuel does.

use wasmtime::WasmFeatures as F;

/// Every proposal a module or component may use.
pub const ENABLED: F = F::MUTABLE_GLOBAL
    .union(F::SATURATING_FLOAT_TO_INT)
    .union(F::SIGN_EXTENSION)
    .union(F::REFERENCE_TYPES)
    .union(F::MULTI_VALUE)
    .union(F::BULK_MEMORY)
    .union(F::SIMD)
    .union(F::RELAXED_SIMD)
    .union(F::TAIL_CALL)
    .union(F::FLOATS)
    .union(F::EXTENDED_CONST)
    .union(F::COMPONENT_MODEL);

/// Proposals a module might try, by the name users know them by: the
/// upload error names the first one a module needs that is not enabled.
const NAMED: &[(F, &str)] = &[
    (F::THREADS, "threads (shared memory and atomics)"),
    (F::SHARED_EVERYTHING_THREADS, "shared-everything threads"),
    (F::GC, "garbage collection (gc)"),
    (F::GC_TYPES, "garbage collection (gc)"),
    (F::FUNCTION_REFERENCES, "typed function references"),
    (F::EXCEPTIONS, "exception handling"),
    (F::LEGACY_EXCEPTIONS, "exception handling (legacy)"),
    (F::STACK_SWITCHING, "stack switching"),
    (F::MULTI_MEMORY, "multiple memories"),
    (F::MEMORY64, "64-bit memories (memory64)"),
    (F::CUSTOM_PAGE_SIZES, "custom page sizes"),
    (F::WIDE_ARITHMETIC, "wide arithmetic"),
    (F::CM_ASYNC, "component model async"),
];

/// Apply the choice to a wasmtime configuration: everything off, then
/// exactly [`ENABLED`] on.
pub(crate) fn configure(config: &mut wasmtime::Config) {
    config
        .wasm_features(F::all(), false)
        .wasm_features(ENABLED, true)
        .relaxed_simd_deterministic(true);
}

/// If `binary` needs a proposal that is not enabled, its name.
///
/// Validation with everything on tells whether the module is valid at all;
/// then each refused proposal is added to the enabled set in turn: the first
/// one that makes the module validate is what it needs. Only called once a
/// module has already failed to compile, so its cost never touches a module
/// that is accepted.
pub fn refused(binary: &[u8]) -> Option<&'static str> {
    let validates = |features: F| {
        wasmparser::Validator::new_with_features(features)
            .validate_all(binary)
            .is_ok()
    };
    if validates(ENABLED) || !validates(F::all()) {
        return None;
    }
    NAMED
        .iter()
        .find(|(feature, _)| validates(ENABLED | *feature | implied(*feature)))
        .map(|(_, name)| *name)
        .or(Some("a WebAssembly proposal Nimbus does not enable"))
}

/// What a proposal cannot be validated without.
fn implied(feature: F) -> F {
    if feature.intersects(F::GC | F::GC_TYPES | F::EXCEPTIONS) {
        F::GC | F::GC_TYPES | F::FUNCTION_REFERENCES
    } else {
        F::empty()
    }
}

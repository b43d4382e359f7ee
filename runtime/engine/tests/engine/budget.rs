//! The compile budget's static half: what no toolchain produces is refused
//! before Cranelift sees it. (The time and memory half runs in the `nimbus`
//! binary's child process: `runtime/cli/tests/cli/compile_budget.rs`.)

use nimbus_engine::{MAX_FUNCTION_BODY_BYTES, MAX_FUNCTION_LOCALS};

use super::*;

fn with_locals(locals: u64) -> String {
    format!(
        "(module (func (export \"handle\") (param i32) (result i32) (local {}) (local.get 0)))",
        "i32 ".repeat(locals as usize)
    )
}

#[test]
fn functions_over_the_static_limits_are_refused_before_compiling() {
    let engine = engine();
    let refusal = |wat: &str| match engine.compile(wat.as_bytes()) {
        Err(CompileError::OverBudget(message)) => message,
        Err(other) => panic!("expected the compile budget, got {other}"),
        Ok(_) => panic!("expected the compile budget, the module compiled"),
    };
    assert!(
        engine
            .compile(with_locals(MAX_FUNCTION_LOCALS).as_bytes())
            .is_ok()
    );
    let message = refusal(&with_locals(MAX_FUNCTION_LOCALS + 1));
    assert!(message.contains("locals"), "{message}");

    let nops = "nop ".repeat(MAX_FUNCTION_BODY_BYTES);
    let message = refusal(&format!(
        "(module (func (export \"handle\") (param i32) (result i32) {nops} (local.get 0)))"
    ));
    assert!(message.contains("bytes"), "{message}");
    assert_eq!(
        engine.load_stats().compiled,
        1,
        "only the module within the limits"
    );
}

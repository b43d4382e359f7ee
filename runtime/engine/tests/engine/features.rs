//! WebAssembly proposals by choice: what the engine refuses names the
//! proposal, and every enabled proposal that touches memory, tables, the
//! stack or time is held by the limits.

use super::*;

fn refused(wat: &str) -> String {
    match engine().compile(wat.as_bytes()) {
        Err(CompileError::UnsupportedFeature(name)) => name.to_owned(),
        Err(other) => panic!("expected an unsupported proposal, got {other}"),
        Ok(_) => panic!("expected an unsupported proposal, the module compiled"),
    }
}

#[test]
fn proposals_that_are_not_enabled_are_refused_by_name() {
    let atomics = r#"(module (memory 1 1 shared)
      (func (export "handle") (param i32) (result i32)
        (i32.atomic.rmw.add (i32.const 0) (local.get 0))))"#;
    assert!(refused(atomics).contains("threads"));

    let gc = r#"(module (type $pair (struct (field i32) (field i32)))
      (func (export "handle") (param i32) (result i32)
        (struct.get $pair 0 (struct.new $pair (local.get 0) (local.get 0)))))"#;
    assert!(refused(gc).contains("garbage collection"));

    let exceptions = r#"(module (tag $oops (param i32))
      (func (export "handle") (param i32) (result i32)
        (block $caught (result i32)
          (try_table (catch $oops $caught) (throw $oops (local.get 0)))
          (i32.const 0))))"#;
    assert!(refused(exceptions).contains("exception handling"));

    let two_memories = r#"(module (memory 1) (memory $second 1)
      (func (export "handle") (param i32) (result i32)
        (i32.load $second (i32.const 0))))"#;
    assert!(refused(two_memories).contains("multiple memories"));

    let memory64 = r#"(module (memory i64 1)
      (func (export "handle") (param i32) (result i32)
        (i32.load (i64.const 0))))"#;
    assert!(refused(memory64).contains("memory64"));

    // Invalid whatever is enabled: an invalid module, not a proposal.
    let invalid = r#"(module (func (export "handle") (param i32) (result i32)
        (i64.const 1)))"#;
    assert!(matches!(
        engine().compile(invalid.as_bytes()),
        Err(CompileError::Invalid(_))
    ));
}

#[tokio::test]
async fn bulk_memory_fills_are_stopped_by_the_deadline() {
    // Each iteration fills the whole 64 MiB memory for a handful of fuel:
    // fuel counts instructions, not bytes, so the deadline is what stops it.
    let fill = r#"(module (memory 1024)
      (func (export "handle") (param i32) (result i32)
        (loop $again
          (memory.fill (i32.const 0) (local.get 0) (i32.const 0x4000000))
          (memory.copy (i32.const 0) (i32.const 1) (i32.const 0x3ffffff))
          (br $again))
        (i32.const 0)))"#;
    let limits = Limits {
        fuel: Limits::MAXIMUM.fuel,
        timeout_ms: 300,
        memory_bytes: 64 << 20,
        ..Limits::DEFAULT
    };
    let started = Instant::now();
    let invocation = run(&engine(), fill, "7", &limits).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(5));

    // Out of bounds is a trap, not a write past the memory.
    let past_the_end = r#"(module (memory 1)
      (func (export "handle") (param i32) (result i32)
        (memory.fill (i32.const 65000) (i32.const 1) (local.get 0))
        (i32.const 0)))"#;
    let engine = engine();
    let invocation = run(&engine, past_the_end, "1000", &Limits::DEFAULT).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::Trap);
    assert_still_serves(&engine).await;
}

#[tokio::test]
async fn tables_grow_only_within_the_cap() {
    let grow = r#"(module (table $t 1 funcref)
      (func (export "handle") (param i32) (result i32)
        (table.grow $t (ref.null func) (local.get 0))))"#;
    let engine = engine();
    let invocation = run(&engine, grow, "100", &Limits::DEFAULT).await;
    assert_eq!(ok_text(&invocation), "1", "the old size");
    let invocation = run(&engine, grow, "100000", &Limits::DEFAULT).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::MemoryLimit);
    // Far past the cap: stopped before anything is allocated (wasmtime
    // may report it as fuel spent on the growth).
    let invocation = run(&engine, grow, "2000000000", &Limits::DEFAULT).await;
    assert!(matches!(
        failure_kind(&invocation),
        FunctionErrorKind::MemoryLimit | FunctionErrorKind::OutOfFuel
    ));
    assert!(invocation.duration < Duration::from_secs(1));
    assert_still_serves(&engine).await;
}

#[tokio::test]
async fn endless_tail_calls_run_out_of_fuel_not_stack() {
    let tail = r#"(module
      (func $forever (param i32) (result i32)
        (return_call $forever (i32.add (local.get 0) (i32.const 1))))
      (func (export "handle") (param i32) (result i32)
        (call $forever (local.get 0))))"#;
    let limits = Limits {
        fuel: 2_000_000,
        ..Limits::DEFAULT
    };
    let invocation = run(&engine(), tail, "0", &limits).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::OutOfFuel);
    assert_eq!(invocation.fuel_consumed, limits.fuel);
}

#[tokio::test]
async fn relaxed_simd_is_deterministic() {
    // An out-of-range lane index gives 0 in deterministic mode (as
    // i8x16.swizzle does), on every machine.
    let swizzle = r#"(module
      (func (export "handle") (param i32) (result i32)
        (i8x16.extract_lane_u 0
          (i8x16.relaxed_swizzle (v128.const i8x16 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9)
                                 (i8x16.splat (local.get 0))))))"#;
    let engine = engine();
    assert_eq!(
        ok_text(&run(&engine, swizzle, "3", &Limits::DEFAULT).await),
        "9"
    );
    assert_eq!(
        ok_text(&run(&engine, swizzle, "200", &Limits::DEFAULT).await),
        "0"
    );
}

#[tokio::test]
async fn extended_constants_and_multiple_values_run() {
    let module = r#"(module
      (global $base i32 (i32.add (i32.const 40) (i32.mul (i32.const 1) (i32.const 1))))
      (func $pair (param i32) (result i32 i32) (local.get 0) (global.get $base))
      (func (export "handle") (param i32) (result i32)
        (i32.add (call $pair (local.get 0)))))"#;
    assert_eq!(
        ok_text(&run(&engine(), module, "1", &Limits::DEFAULT).await),
        "42"
    );
}

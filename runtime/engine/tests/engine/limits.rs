//! Hostile guests against each limit: fuel, deadline, memory, stack,
//! output, logs, randomness. The engine keeps serving after each.

use super::*;

#[tokio::test]
async fn infinite_loop_runs_out_of_fuel() {
    let engine = engine();
    let limits = Limits {
        fuel: 5_000_000,
        ..Limits::DEFAULT
    };
    let invocation = run(&engine, SPIN, "0", &limits).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::OutOfFuel);
    assert_eq!(invocation.fuel_consumed, limits.fuel);
    assert_still_serves(&engine).await;
}

#[tokio::test]
async fn huge_fuel_loop_stops_at_the_deadline() {
    let engine = engine();
    let limits = Limits {
        fuel: Limits::MAXIMUM.fuel,
        timeout_ms: 200,
        ..Limits::DEFAULT
    };
    let started = Instant::now();
    let invocation = run(&engine, SPIN, "0", &limits).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::Timeout);
    assert!(invocation.duration >= Duration::from_millis(200));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped near the deadline, not after {:?}",
        started.elapsed()
    );
    assert!(
        invocation.fuel_consumed > 0 && invocation.fuel_consumed < limits.fuel,
        "{} {:?}",
        invocation.fuel_consumed,
        invocation.result
    );
    assert_still_serves(&engine).await;
}

#[tokio::test]
async fn memory_grow_bomb_hits_the_memory_limit() {
    let engine = engine();
    let limits = Limits {
        memory_bytes: 8 << 20,
        ..Limits::DEFAULT
    };
    let invocation = run(&engine, MEMORY_BOMB, "0", &limits).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::MemoryLimit);
    assert_still_serves(&engine).await;
}

#[tokio::test]
async fn initial_memory_above_the_cap_is_a_memory_limit() {
    let engine = engine();
    let big =
        r#"(module (memory 200) (func (export "handle") (param i32) (result i32) local.get 0))"#;
    let limits = Limits {
        memory_bytes: 1 << 20,
        ..Limits::DEFAULT
    };
    let invocation = run(&engine, big, "1", &limits).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::MemoryLimit);
    assert_still_serves(&engine).await;
}

#[tokio::test]
async fn unbounded_recursion_traps_with_stack_overflow() {
    let engine = engine();
    let invocation = run(&engine, RECURSE, "0", &Limits::DEFAULT).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::Trap);
    let message = &invocation.result.as_ref().unwrap_err().message;
    assert!(message.contains("stack overflow"), "{message}");
    assert_still_serves(&engine).await;
}

#[tokio::test]
async fn stdout_flood_is_stopped_at_the_output_cap() {
    let engine = engine();
    let limits = Limits {
        max_output_bytes: 1 << 20,
        fuel: Limits::MAXIMUM.fuel,
        timeout_ms: 30_000,
        ..Limits::DEFAULT
    };
    let started = Instant::now();
    let invocation = run(&engine, STDOUT_FLOOD, "null", &limits).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::OutputTooLarge);
    // Stopped by the cap after ~17 writes, not by the 30 s deadline or the fuel.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        invocation.fuel_consumed < 10_000_000,
        "{}",
        invocation.fuel_consumed
    );
    assert_still_serves(&engine).await;
}

#[tokio::test]
async fn logs_are_capped_without_failing_the_function() {
    let engine = engine();
    let limits = Limits {
        max_log_bytes: 100_000,
        ..Limits::DEFAULT
    };
    let invocation = run(&engine, CHATTY, "null", &limits).await;
    assert_eq!(ok_text(&invocation), "7");
    assert_eq!(invocation.logs.len(), 100_000);
    assert!(invocation.logs_truncated);
}

#[tokio::test]
async fn growing_past_a_memorys_own_maximum_fails_without_counting_against_the_cap() {
    let engine = engine();
    // Declares at most 2 pages; asks for one more page a thousand times.
    let capped = r#"(module (memory 1 2)
      (func (export "handle") (param i32) (result i32)
        (local $i i32)
        (loop $again
          (drop (memory.grow (i32.const 1)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $again (i32.lt_u (local.get $i) (i32.const 1000))))
        memory.size))"#;
    let limits = Limits {
        memory_bytes: 1 << 20,
        ..Limits::DEFAULT
    };
    let invocation = run(&engine, capped, "0", &limits).await;
    assert_eq!(ok_text(&invocation), "2");
}

#[tokio::test]
async fn huge_random_requests_are_refused_not_served() {
    let engine = engine();
    let greedy = r#"(module
      (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
      (memory (export "memory") 256)
      (func (export "handle") (param i32) (result i32)
        (call $random_get (i32.const 0) (i32.const 16777216))))"#;
    let invocation = run(&engine, greedy, "0", &Limits::DEFAULT).await;
    match &invocation.result {
        Ok(errno) => assert_ne!(&errno[..], b"0", "a 16 MiB random_get must not succeed"),
        Err(e) => assert_eq!(e.kind, FunctionErrorKind::Trap, "{e}"),
    }
    let small = r#"(module
      (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "handle") (param i32) (result i32)
        (call $random_get (i32.const 0) (i32.const 32))))"#;
    assert_eq!(
        ok_text(&run(&engine, small, "0", &Limits::DEFAULT).await),
        "0"
    );
}

#[tokio::test]
async fn modules_whose_initial_memory_exceeds_the_limit_are_refused_up_front() {
    let engine = engine();
    let (module, _) = engine
        .compile(br#"(module (memory 100) (func (export "handle") (param i32) (result i32) local.get 0))"#)
        .unwrap();
    let small = Limits {
        memory_bytes: 1 << 20,
        ..Limits::DEFAULT
    };
    assert!(matches!(
        engine.check_limits(&module, &small),
        Err(CompileError::ExceedsLimits(_))
    ));
    assert!(engine.check_limits(&module, &Limits::DEFAULT).is_ok());
}

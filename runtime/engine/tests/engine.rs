//! The engine against real modules: both ABIs, every limit, and the engine
//! still serving correctly after each hostile guest.

use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_core::{FunctionErrorKind, Limits};
use nimbus_engine::{Abi, CompileError, Engine, EngineConfig, Outcome};

const ADD: &str = include_str!("../fixtures/add.wat");

const ECHO: &str = include_str!("../fixtures/echo.wat");

const SPIN: &str = include_str!("../fixtures/spin.wat");

const MEMORY_BOMB: &str = include_str!("../fixtures/memory_bomb.wat");

const RECURSE: &str = include_str!("../fixtures/recurse.wat");

const STDOUT_FLOOD: &str = include_str!("../fixtures/stdout_flood.wat");

const UNREACHABLE: &str = include_str!("../fixtures/unreachable.wat");

/// Writes "boom: bad input\n" to stderr, then exits with code 3.
const EXIT_3: &str = include_str!("../fixtures/exit_3.wat");

/// Sums 0..n the slow way: fuel grows with the input.
const SUM_LOOP: &str = include_str!("../fixtures/sum_loop.wat");

/// Writes a fixed text to stdout: not JSON.
const NOT_JSON: &str = include_str!("../fixtures/not_json.wat");

/// Logs 64 KiB to stderr per call in a loop 32 times, then answers 7.
const CHATTY: &str = include_str!("../fixtures/chatty.wat");

fn engine() -> Engine {
    Engine::new(EngineConfig {
        max_concurrency: 16,
        ..EngineConfig::default()
    })
    .expect("engine")
}

async fn run(engine: &Engine, wat: &str, input: &str, limits: &Limits) -> Outcome {
    let (module, _) = engine.compile(wat.as_bytes()).expect("compiles");
    engine
        .invoke(&module, Bytes::copy_from_slice(input.as_bytes()), limits)
        .await
}

fn ok_text(invocation: &Outcome) -> &str {
    match &invocation.result {
        Ok(bytes) => std::str::from_utf8(bytes).expect("utf-8 output"),
        Err(e) => panic!("expected success, got {e}"),
    }
}

fn failure_kind(invocation: &Outcome) -> FunctionErrorKind {
    match &invocation.result {
        Ok(bytes) => panic!("expected failure, got {}", String::from_utf8_lossy(bytes)),
        Err(e) => e.kind,
    }
}

/// The engine must keep serving correctly after a hostile guest.
async fn assert_still_serves(engine: &Engine) {
    let invocation = run(engine, ADD, "41", &Limits::DEFAULT).await;
    assert_eq!(ok_text(&invocation), "42");
}

#[tokio::test]
async fn seed_add_answers_eleven_and_reports_fuel() {
    let engine = engine();
    let invocation = run(&engine, ADD, "10", &Limits::DEFAULT).await;
    assert_eq!(ok_text(&invocation), "11");
    assert!(invocation.fuel_consumed > 0);
}

#[tokio::test]
async fn scalar_abi_takes_arrays_and_rejects_wrong_input() {
    let engine = engine();
    let sum2 = r#"(module (func (export "handle") (param i64 f64) (result f64 i64)
        (f64.add (f64.convert_i64_s (local.get 0)) (local.get 1))
        (local.get 0)))"#;
    let invocation = run(&engine, sum2, "[2, 0.5]", &Limits::DEFAULT).await;
    assert_eq!(ok_text(&invocation), "[2.5,2]");

    for bad in [r#""ten""#, "[1, 2]", "1.5", "not json", "4294967296"] {
        let invocation = run(&engine, ADD, bad, &Limits::DEFAULT).await;
        assert_eq!(
            failure_kind(&invocation),
            FunctionErrorKind::InvalidInput,
            "{bad}"
        );
        assert_eq!(invocation.fuel_consumed, 0, "refused before running");
    }
}

#[tokio::test]
async fn wasi_echo_round_trips_json() {
    let engine = engine();
    let input = r#"{"name":"nimbus","tags":["wasm","ünïcode ✓"],"n":[1,2.5,null,true]}"#;
    let invocation = run(&engine, ECHO, input, &Limits::DEFAULT).await;
    assert_eq!(ok_text(&invocation), input);
    let (module, _) = engine.compile(ECHO.as_bytes()).unwrap();
    assert_eq!(module.abi(), &Abi::Command);
}

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
async fn unreachable_traps() {
    let engine = engine();
    let invocation = run(&engine, UNREACHABLE, "0", &Limits::DEFAULT).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::Trap);
    let message = &invocation.result.as_ref().unwrap_err().message;
    assert!(message.contains("unreachable"), "{message}");
    assert_still_serves(&engine).await;
}

#[tokio::test]
async fn nonzero_exit_is_an_exit_error_carrying_stderr() {
    let engine = engine();
    let invocation = run(&engine, EXIT_3, "null", &Limits::DEFAULT).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::Exit);
    let message = &invocation.result.as_ref().unwrap_err().message;
    assert!(
        message.contains("code 3") && message.contains("boom: bad input"),
        "{message}"
    );
    assert_eq!(invocation.logs, &b"boom: bad input\n"[..]);
    assert_still_serves(&engine).await;
}

#[tokio::test]
async fn command_output_is_one_document_without_surrounding_whitespace() {
    let engine = engine();
    let invocation = run(&engine, ECHO, " \n\t[1, {\"a\": 2}] \r\n", &Limits::DEFAULT).await;
    assert_eq!(ok_text(&invocation), r#"[1, {"a": 2}]"#);
    for blank in ["", " \n\t "] {
        let invocation = run(&engine, ECHO, blank, &Limits::DEFAULT).await;
        assert_eq!(ok_text(&invocation), "null", "{blank:?}");
    }
    for bad in ["1 2", "[1,", "\"\\u12\""] {
        let invocation = run(&engine, ECHO, bad, &Limits::DEFAULT).await;
        assert_eq!(
            failure_kind(&invocation),
            FunctionErrorKind::InvalidOutput,
            "{bad}"
        );
    }
    // JSON text is UTF-8: a string holding other bytes is not a document.
    let (echo, _) = engine.compile(ECHO.as_bytes()).unwrap();
    let invocation = engine
        .invoke(&echo, Bytes::from_static(b"\"\xff\""), &Limits::DEFAULT)
        .await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::InvalidOutput);
}

#[tokio::test]
async fn output_that_is_not_json_is_invalid_output() {
    let engine = engine();
    let invocation = run(&engine, NOT_JSON, "null", &Limits::DEFAULT).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::InvalidOutput);
}

#[tokio::test]
async fn input_over_the_cap_is_refused() {
    let engine = engine();
    let limits = Limits {
        max_input_bytes: 8,
        ..Limits::DEFAULT
    };
    let invocation = run(&engine, ECHO, r#""0123456789""#, &limits).await;
    assert_eq!(failure_kind(&invocation), FunctionErrorKind::InvalidInput);
}

#[tokio::test]
async fn fuel_is_deterministic_and_grows_with_work() {
    let engine = engine();
    let first = run(&engine, SUM_LOOP, "1000", &Limits::DEFAULT).await;
    let second = run(&engine, SUM_LOOP, "1000", &Limits::DEFAULT).await;
    assert_eq!(ok_text(&first), "499500");
    assert_eq!(first.fuel_consumed, second.fuel_consumed);
    let other_engine = engine_with_fresh_cache();
    let third = run(&other_engine, SUM_LOOP, "1000", &Limits::DEFAULT).await;
    assert_eq!(first.fuel_consumed, third.fuel_consumed);
    let bigger = run(&engine, SUM_LOOP, "2000", &Limits::DEFAULT).await;
    assert!(bigger.fuel_consumed > first.fuel_consumed);
}

fn engine_with_fresh_cache() -> Engine {
    Engine::new(EngineConfig {
        pooling: false,
        ..EngineConfig::default()
    })
    .expect("engine")
}

#[tokio::test]
async fn sixty_four_concurrent_invocations_of_different_modules() {
    let engine = engine();
    let modules: Vec<_> = (0..64)
        .map(|k| {
            let wat = format!(
                r#"(module (func (export "handle") (param i32) (result i32)
                    (i32.add (local.get 0) (i32.const {k}))))"#
            );
            engine.compile(wat.as_bytes()).expect("compiles").0
        })
        .collect();
    let runs = modules.iter().enumerate().map(|(k, module)| {
        let engine = engine.clone();
        async move {
            let input = (1000 + k).to_string();
            (
                k,
                engine
                    .invoke(module, Bytes::from(input), &Limits::DEFAULT)
                    .await,
            )
        }
    });
    for (k, invocation) in futures::future::join_all(runs).await {
        assert_eq!(ok_text(&invocation), (1000 + 2 * k).to_string());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_busy_guest_does_not_starve_others() {
    let engine = engine();
    let limits = Limits {
        fuel: Limits::MAXIMUM.fuel,
        timeout_ms: 1_500,
        ..Limits::DEFAULT
    };
    let (spin, _) = engine.compile(SPIN.as_bytes()).unwrap();
    let busy = tokio::spawn({
        let engine = engine.clone();
        async move {
            engine
                .invoke(&spin, Bytes::from_static(b"0"), &limits)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // One thread: this can only finish if the spinning guest yields.
    assert_still_serves(&engine).await;
    assert!(!busy.is_finished(), "the busy guest is still running");
    assert_eq!(
        failure_kind(&busy.await.unwrap()),
        FunctionErrorKind::Timeout
    );
}

#[tokio::test]
async fn compile_rejects_with_precise_reasons() {
    let engine = engine();
    let reject = |source: &[u8]| engine.compile(source).expect_err("must be rejected");

    assert!(matches!(
        reject(&[0xff, 0xfe, 0x00, 0x01]),
        CompileError::NotWasm(_)
    ));
    let CompileError::NotWasm(message) = reject(b"(module (func (export \"handle\") bogus))")
    else {
        panic!("WAT errors are NotWasm");
    };
    assert!(
        message.contains("bogus") || message.contains("expected"),
        "{message}"
    );
    assert!(matches!(
        reject(b"\0asm\x01\0\0\0\x99garbage"),
        CompileError::Invalid(_)
    ));

    let env_import = r#"(module (import "env" "now" (func (result i64)))
        (func (export "handle") (param i32) (result i32) local.get 0))"#;
    let CompileError::ForbiddenImport(message) = reject(env_import.as_bytes()) else {
        panic!("env import must be forbidden");
    };
    assert!(message.contains("env::now"), "{message}");
    let memory_import = r#"(module (import "wasi_snapshot_preview1" "mem" (memory 1))
        (func (export "_start")))"#;
    assert!(matches!(
        reject(memory_import.as_bytes()),
        CompileError::ForbiddenImport(_)
    ));
    let unknown_wasi = r#"(module (import "wasi_snapshot_preview1" "no_such_call" (func))
        (func (export "_start")))"#;
    assert!(matches!(
        reject(unknown_wasi.as_bytes()),
        CompileError::ForbiddenImport(_)
    ));

    assert!(matches!(
        reject(b"(module (func (export \"main\")))"),
        CompileError::NoEntryPoint(_)
    ));
    assert!(matches!(
        reject(b"(module (func (export \"handle\") (param v128) (result i32) i32.const 0))"),
        CompileError::NoEntryPoint(_)
    ));

    let small = Engine::new(EngineConfig {
        max_module_bytes: 64,
        pooling: false,
        ..EngineConfig::default()
    })
    .unwrap();
    assert!(matches!(
        small.compile(ADD.as_bytes()),
        Err(CompileError::TooLarge { .. })
    ));
    assert_still_serves(&engine).await;
}

#[tokio::test]
async fn wat_and_its_binary_share_a_digest_and_a_cache_entry() {
    let engine = engine();
    let (from_text, binary) = engine.compile(ADD.as_bytes()).unwrap();
    let binary = binary.into_owned();
    let (from_binary, _) = engine.compile(&binary).unwrap();
    assert_eq!(from_text.digest(), from_binary.digest());
    assert_eq!(from_text.digest(), nimbus_engine::digest(&binary));
    assert_eq!(engine.cached_modules(), 1);
}

#[tokio::test]
async fn cache_is_bounded() {
    let engine = Engine::new(EngineConfig {
        cache_capacity: 4,
        pooling: false,
        ..EngineConfig::default()
    })
    .unwrap();
    for k in 0..10 {
        let wat =
            format!(r#"(module (func (export "handle") (param i32) (result i32) i32.const {k}))"#);
        engine.compile(wat.as_bytes()).unwrap();
    }
    assert_eq!(engine.cached_modules(), 4);
}

/// A module with a `kib` KiB data segment (distinct per `tag`).
fn module_with_data(tag: u32, kib: usize) -> String {
    format!(
        r#"(module (memory {}) (data (i32.const 0) "{}")
            (func (export "handle") (param i32) (result i32) i32.const {tag}))"#,
        kib / 64 + 1,
        "\\2a".repeat(kib << 10)
    )
}

#[tokio::test]
async fn cache_is_bounded_in_bytes_and_keeps_what_is_used() {
    let sizes = Engine::new(EngineConfig {
        pooling: false,
        ..EngineConfig::default()
    })
    .unwrap();
    let (probe, _) = sizes.compile(module_with_data(0, 64).as_bytes()).unwrap();
    let one = probe.image_bytes();
    assert!(one > 64 << 10, "the image holds the data segment: {one}");

    // Room for three such modules, not four.
    let budget = one * 3 + one / 2;
    let engine = Engine::new(EngineConfig {
        pooling: false,
        cache_bytes: budget,
        ..EngineConfig::default()
    })
    .unwrap();
    let (hot, _) = engine.compile(module_with_data(1, 64).as_bytes()).unwrap();
    for tag in 2..10 {
        engine
            .compile(module_with_data(tag, 64).as_bytes())
            .unwrap();
        // Used between compiles: it must never be the one dropped.
        assert!(engine.cached(hot.digest()).is_some(), "lost at {tag}");
        assert!(
            engine.cached_bytes() <= budget,
            "{} > {budget}",
            engine.cached_bytes()
        );
    }
    assert_eq!(engine.cached_modules(), 3);

    // Larger than the whole budget: usable, but not kept, and nothing evicted.
    let (big, _) = engine
        .compile(module_with_data(99, 1024).as_bytes())
        .unwrap();
    assert!(
        big.image_bytes() > budget,
        "{} <= {budget}",
        big.image_bytes()
    );
    assert!(engine.cached(big.digest()).is_none());
    assert_eq!(engine.cached_modules(), 3);
    let run = engine
        .invoke(&big, Bytes::from_static(b"0"), &Limits::DEFAULT)
        .await;
    assert_eq!(ok_text(&run), "99");
}

#[tokio::test]
async fn precompiled_artifacts_load_in_another_engine() {
    let compiler = engine();
    let (module, _) = compiler.compile(SUM_LOOP.as_bytes()).unwrap();
    let artifact = compiler.serialize(&module).unwrap();

    let worker = engine();
    assert_eq!(compiler.artifact_key(), worker.artifact_key());
    let loaded = worker.load_precompiled(module.digest(), &artifact).unwrap();
    let invocation = worker
        .invoke(&loaded, Bytes::from_static(b"10"), &Limits::DEFAULT)
        .await;
    assert_eq!(ok_text(&invocation), "45");

    assert!(matches!(
        worker.load_precompiled("other", b"not an artifact"),
        Err(CompileError::Artifact(_))
    ));
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

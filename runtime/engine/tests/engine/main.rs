//! The engine against real modules: both ABIs, every limit, and the engine
//! still serving correctly after each hostile guest. One test binary (one
//! link of wasmtime); the fixtures and helpers are here, the tests in:
//! - `abis`: the two ABIs, output and input rules, fuel;
//! - `budget`: the static limits checked before compiling;
//! - `limits`: hostile guests against each limit;
//! - `cache`: compiling, the module cache, concurrency, artifacts;
//! - `features`: the WebAssembly proposals refused by name, and the enabled
//!   ones under the limits.

mod abis;
mod budget;
mod cache;
mod features;
mod limits;
mod prepared;

use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_core::{FunctionErrorKind, Limits};
use nimbus_engine::{Abi, CompileError, Engine, EngineConfig, Outcome};

const ADD: &str = include_str!("../../fixtures/add.wat");

const ECHO: &str = include_str!("../../fixtures/echo.wat");

const SPIN: &str = include_str!("../../fixtures/spin.wat");

const MEMORY_BOMB: &str = include_str!("../../fixtures/memory_bomb.wat");

const RECURSE: &str = include_str!("../../fixtures/recurse.wat");

const STDOUT_FLOOD: &str = include_str!("../../fixtures/stdout_flood.wat");

const UNREACHABLE: &str = include_str!("../../fixtures/unreachable.wat");

/// Writes "boom: bad input\n" to stderr, then exits with code 3.
const EXIT_3: &str = include_str!("../../fixtures/exit_3.wat");

/// Sums 0..n the slow way: fuel grows with the input.
const SUM_LOOP: &str = include_str!("../../fixtures/sum_loop.wat");

/// Writes a fixed text to stdout: not JSON.
const NOT_JSON: &str = include_str!("../../fixtures/not_json.wat");

/// Logs 64 KiB to stderr per call in a loop 32 times, then answers 7.
const CHATTY: &str = include_str!("../../fixtures/chatty.wat");

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

fn engine_with_fresh_cache() -> Engine {
    Engine::new(EngineConfig {
        pooling: false,
        ..EngineConfig::default()
    })
    .expect("engine")
}

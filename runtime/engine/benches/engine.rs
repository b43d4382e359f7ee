//! Engine benchmarks: the cost of one invocation (instantiate + run) for the
//! two ABIs and for a pre-initialised JavaScript function, the overhead of
//! fuel metering on a compute loop, and the upload-time cost of turning a
//! small JavaScript source into a module.
//!
//! Run with `make bench`; figures are recorded in docs/benchmarks.md.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use nimbus_core::Limits;
use nimbus_engine::{Engine, EngineConfig};

const ADD: &str = include_str!("../fixtures/add.wat");
const ECHO: &str = include_str!("../fixtures/echo.wat");
const SUM_LOOP: &str = include_str!("../fixtures/sum_loop.wat");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn engine(consume_fuel: bool) -> Engine {
    Engine::new(EngineConfig {
        max_concurrency: 8,
        consume_fuel,
        ..EngineConfig::default()
    })
    .expect("engine")
}

fn invocations(c: &mut Criterion) {
    let rt = runtime();
    let engine = engine(true);
    let limits = Limits::DEFAULT;
    let mut group = c.benchmark_group("invoke");

    let (add, _) = engine.compile(ADD.as_bytes()).unwrap();
    group.bench_function("wat_add_handle", |b| {
        b.to_async(&rt).iter(|| async {
            let run = engine
                .invoke(&add, Bytes::from_static(b"10"), &limits)
                .await;
            assert_eq!(&run.result.unwrap()[..], b"11");
        })
    });

    let (echo, _) = engine.compile(ECHO.as_bytes()).unwrap();
    let input: &'static [u8] = br#"{"user":"testuser","items":[1,2,3],"note":"hello"}"#;
    group.bench_function("wasi_echo", |b| {
        b.to_async(&rt).iter(|| async {
            let run = engine
                .invoke(&echo, Bytes::from_static(input), &limits)
                .await;
            assert_eq!(run.result.unwrap().len(), input.len());
        })
    });
    group.finish();
}

fn fuel_overhead(c: &mut Criterion) {
    let rt = runtime();
    let limits = Limits::DEFAULT;
    let mut group = c.benchmark_group("compute_sum_1e6");
    for (name, metered) in [("fuel_on", true), ("fuel_off", false)] {
        let engine = engine(metered);
        let (module, _) = engine.compile(SUM_LOOP.as_bytes()).unwrap();
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let run = engine
                    .invoke(&module, Bytes::from_static(b"1000000"), &limits)
                    .await;
                assert_eq!(&run.result.unwrap()[..], b"499999500000");
            })
        });
    }
    group.finish();
}

const JS_ADD: &str = "return input + 1;";

fn javascript(c: &mut Criterion) {
    let rt = runtime();
    let engine = engine(true);
    let limits = Limits::DEFAULT;
    let compiler = nimbus_js::JsCompiler::new(nimbus_js::InitLimits::default()).expect("shim");
    let wasm = rt.block_on(compiler.compile(JS_ADD)).expect("compiles");
    let (module, _) = engine.compile(&wasm).expect("snapshot compiles");

    let mut group = c.benchmark_group("invoke");
    group.bench_function("js_add_snapshot", |b| {
        b.to_async(&rt).iter(|| async {
            let run = engine
                .invoke(&module, Bytes::from_static(b"10"), &limits)
                .await;
            assert_eq!(&run.result.unwrap()[..], b"11");
        })
    });
    group.finish();

    // Upload: evaluate + snapshot (wizer), then validate + compile (Cranelift).
    let mut group = c.benchmark_group("js_upload");
    group.sample_size(10);
    group.bench_function("snapshot", |b| {
        b.to_async(&rt)
            .iter(|| async { compiler.compile(JS_ADD).await.unwrap() })
    });
    // Compile with and without the code cache. A distinct source each time,
    // so the compiled-module cache cannot help; with the code cache on, the
    // shim's functions are reused from earlier compiles (the steady state of
    // a platform that has seen one JS function), with it off every compile
    // starts from nothing (the first JS upload after a restart).
    for (name, code_cache_bytes) in [
        ("snapshot_and_compile_cold", 0),
        (
            "snapshot_and_compile",
            EngineConfig::default().code_cache_bytes,
        ),
    ] {
        let uncached = Engine::new(EngineConfig {
            pooling: false,
            cache_capacity: 1,
            code_cache_bytes,
            ..EngineConfig::default()
        })
        .unwrap();
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let source = format!("return input + {};", next_suffix());
                let wasm = compiler.compile(&source).await.unwrap();
                uncached.compile(&wasm).unwrap();
            })
        });
    }
    group.finish();
}

fn next_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

criterion_group!(benches, invocations, fuel_overhead, javascript);
criterion_main!(benches);

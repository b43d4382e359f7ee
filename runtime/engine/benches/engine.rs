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
    let compiler = rt
        .block_on(nimbus_js::JsCompiler::start(
            nimbus_js::InitLimits::default(),
        ))
        .expect("shim");
    let (interpreter, _) = engine
        .compile(compiler.interpreter())
        .expect("the interpreter compiles");
    engine.keep(&interpreter);
    let wasm = rt.block_on(compiler.compile(JS_ADD)).expect("compiles");
    let (module, _) = engine.compile(&wasm).expect("a script for the interpreter");

    // The same function prepared, as a worker does once it is hot.
    let prepared = rt
        .block_on(engine.prepare_script(
            &module,
            Bytes::copy_from_slice(compiler.interpreter()),
            &limits,
        ))
        .expect("prepared");

    let mut group = c.benchmark_group("invoke");
    for (name, module) in [("js_add", &module), ("js_add_prepared", &prepared)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let run = engine
                    .invoke(module, Bytes::from_static(b"10"), &limits)
                    .await;
                assert_eq!(&run.result.unwrap()[..], b"11");
            })
        });
    }
    group.finish();

    // What a worker spends preparing a hot function (the code cache holds
    // the interpreter's machine code, as after the first preparation).
    let mut group = c.benchmark_group("js_prepare");
    group.sample_size(10);
    group.bench_function("snapshot_and_compile", |b| {
        b.to_async(&rt).iter(|| async {
            let source = format!("return input + {};", next_suffix());
            let wasm = compiler.compile(&source).await.unwrap();
            let (script, _) = engine.compile(&wasm).unwrap();
            let interpreter = Bytes::copy_from_slice(compiler.interpreter());
            engine
                .prepare_script(&script, interpreter, &limits)
                .await
                .unwrap();
        })
    });
    group.finish();

    // Upload: compile the source to bytecode (and evaluate it once) in a
    // fresh instance of the shim, then read the script module into an
    // engine that has the interpreter. A distinct source each time, so no
    // cache can help.
    let mut group = c.benchmark_group("js_upload");
    group.sample_size(20);
    group.bench_function("bytecode", |b| {
        b.to_async(&rt).iter(|| async {
            let source = format!("return input + {};", next_suffix());
            let wasm = compiler.compile(&source).await.unwrap();
            engine.compile(&wasm).unwrap();
        })
    });
    // The one-off cost a platform pays per process: compiling the
    // interpreter with Cranelift (with the code cache off, as on a fresh
    // start).
    let uncached = Engine::new(EngineConfig {
        pooling: false,
        cache_capacity: 1,
        code_cache_bytes: 0,
        ..EngineConfig::default()
    })
    .unwrap();
    group.sample_size(10);
    group.bench_function("interpreter_compile", |b| {
        b.iter(|| {
            // A distinct digest each time defeats the module cache.
            let mut wasm = compiler.interpreter().to_vec();
            let name = format!("bench-{}", next_suffix());
            wasm.push(0);
            wasm.push((name.len() + 1) as u8);
            wasm.push(name.len() as u8);
            wasm.extend_from_slice(name.as_bytes());
            uncached.compile(&wasm).unwrap();
        })
    });
    group.finish();
}

fn next_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

criterion_group!(benches, invocations, fuel_overhead, javascript);
criterion_main!(benches);

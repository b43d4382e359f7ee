//! Engine benchmarks: the cost of one invocation (instantiate + run) for the
//! two ABIs, and the overhead of fuel metering on a compute loop.
//!
//! Run with `make bench`; figures are recorded in docs/benchmarks.md.

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
            let run = engine.invoke(&add, b"10", &limits).await;
            assert_eq!(run.result.unwrap(), b"11");
        })
    });

    let (echo, _) = engine.compile(ECHO.as_bytes()).unwrap();
    let input = br#"{"user":"testuser","items":[1,2,3],"note":"hello"}"#;
    group.bench_function("wasi_echo", |b| {
        b.to_async(&rt).iter(|| async {
            let run = engine.invoke(&echo, input, &limits).await;
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
                let run = engine.invoke(&module, b"1000000", &limits).await;
                assert_eq!(run.result.unwrap(), b"499999500000");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, invocations, fuel_overhead);
criterion_main!(benches);

//! Prepared scripts (`tier_up.rs`): a JavaScript function snapshotted after
//! its top level answers exactly as it does unprepared (result, error, logs,
//! and fuel to the unit), refuses what a snapshot would change, and under
//! limits the preparation alone exceeds fails as the script does.

use std::sync::Arc;

use bytes::Bytes;
use nimbus_core::{Env, FunctionErrorKind, Limits};
use nimbus_engine::{Capabilities, CompiledModule, Engine, Outcome, TierUpError};
use nimbus_js::{InitLimits, JsCompiler};

use crate::engine;

struct Js {
    engine: Engine,
    compiler: JsCompiler,
}

impl Js {
    async fn start() -> Self {
        let engine = engine();
        let compiler = JsCompiler::start(InitLimits::default())
            .await
            .expect("the shim starts");
        let (interpreter, _) = engine
            .compile_trusted(compiler.interpreter())
            .expect("the interpreter compiles");
        engine.keep(&interpreter);
        Self { engine, compiler }
    }

    async fn script(&self, source: &str) -> Arc<CompiledModule> {
        let module = self
            .compiler
            .compile(source)
            .await
            .expect("the source compiles");
        self.engine.compile(&module).expect("a script module").0
    }

    async fn prepare(
        &self,
        script: &Arc<CompiledModule>,
    ) -> Result<Arc<CompiledModule>, TierUpError> {
        let interpreter = Bytes::copy_from_slice(self.compiler.interpreter());
        self.engine
            .prepare_script(script, interpreter, &Limits::DEFAULT)
            .await
    }
}

/// What an invocation answered, all of it that a caller sees.
fn answer(outcome: &Outcome) -> (Result<String, (FunctionErrorKind, String, u64)>, u64, Bytes) {
    let result = match &outcome.result {
        Ok(bytes) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        Err(e) => Err((e.kind, e.message.clone(), e.fuel_consumed)),
    };
    (result, outcome.fuel_consumed, outcome.logs.clone())
}

async fn both(
    engine: &Engine,
    script: &CompiledModule,
    prepared: &CompiledModule,
    input: &str,
    limits: &Limits,
    capabilities: &Capabilities,
) -> (Outcome, Outcome) {
    let input = Bytes::copy_from_slice(input.as_bytes());
    let unprepared = engine
        .invoke_with(script, input.clone(), limits, capabilities)
        .await;
    let prepared = engine
        .invoke_with(prepared, input, limits, capabilities)
        .await;
    (unprepared, prepared)
}

#[tokio::test]
async fn a_prepared_script_answers_as_its_script_at_the_same_fuel() {
    let js = Js::start().await;
    let sources = [
        // The seed's body form.
        "return input + 1;",
        // A script with a top level that computes.
        "const squares = []; for (let i = 0; i < 500; i++) squares.push(i * i);\n\
         function handler(x) { return { n: squares[(x && x.n) || 0], seen: JSON.stringify(x) }; }",
        // A module whose handler keeps state in a global (fresh each call).
        "globalThis.count = 0;\n\
         export default function (x) { count += 1; return [x, count]; }",
        // Clock and randomness in the handler are per call, allowed.
        "export function handler(x) { return typeof Date.now() + typeof Math.random() + x; }",
        // The environment, read by the handler.
        "export function handler() { return process.env.GREETING || 'none'; }",
        // Logs, an uncaught error and a Promise.
        "export async function handler(x) { console.log('got', x); if (x === 'boom') throw new Error('boom'); return x; }",
        // Endless recursion: QuickJS's stack check or a wasm trap, whose
        // message must not carry the interpreter's offsets.
        "export function handler(x) { const f = (n) => f(n + 1) + 1; return f(0); }",
        // A fetch handler, called with JSON.
        "export default { async fetch(request) { const body = await request.json(); \
         return new Response(JSON.stringify({ echoed: body })); } }",
    ];
    let inputs = ["10", "{\"n\": 3}", "null", "\"boom\"", "[1, 2, 3]"];
    let capabilities = Capabilities {
        env: Env(vec![("GREETING".into(), "hello".into())]),
        ..Capabilities::default()
    };
    for source in sources {
        let script = js.script(source).await;
        let prepared = js.prepare(&script).await.expect("prepared");
        assert!(prepared.is_prepared() && !script.is_prepared());
        assert_eq!(prepared.digest(), script.digest());
        for input in inputs {
            let (unprepared, prepared) = both(
                &js.engine,
                &script,
                &prepared,
                input,
                &Limits::DEFAULT,
                &capabilities,
            )
            .await;
            assert!(unprepared.fuel_consumed > 0);
            assert_eq!(
                answer(&prepared),
                answer(&unprepared),
                "{source} on {input}"
            );
        }
    }
}

#[tokio::test]
async fn a_top_level_a_snapshot_would_change_is_not_prepared() {
    let js = Js::start().await;
    for (source, refused) in [
        (
            "const started = Date.now(); function handler() { return started; }",
            "clock",
        ),
        (
            "const seed = Math.random(); function handler() { return seed; }",
            "random",
        ),
        (
            "const name = process.env.NAME; function handler() { return name; }",
            "environment",
        ),
        (
            "console.log('starting'); function handler(x) { return x; }",
            "logs",
        ),
    ] {
        let script = js.script(source).await;
        match js.prepare(&script).await {
            Err(TierUpError::Impure(what)) => assert!(what.contains(refused), "{source}: {what}"),
            other => panic!("{source}: expected a refusal, got {other:?}"),
        }
        // It still runs, unprepared.
        let outcome = js
            .engine
            .invoke(&script, Bytes::from_static(b"1"), &Limits::DEFAULT)
            .await;
        assert!(outcome.result.is_ok(), "{source}");
    }
    // Modules that are not scripts cannot be prepared.
    let (wat, _) = js.engine.compile(crate::ADD.as_bytes()).expect("compiles");
    assert!(matches!(
        js.prepare(&wat).await,
        Err(TierUpError::NotPreparable)
    ));
}

#[tokio::test]
async fn under_limits_the_preparation_exceeds_it_fails_as_its_script_does() {
    let js = Js::start().await;
    let source = "const table = []; for (let i = 0; i < 20000; i++) table.push({ i, name: 'n' + i });\n\
                  function handler(x) { let s = 0; for (let i = 0; i < x; i++) s += table[i].i; return s; }";
    let script = js.script(source).await;
    let prepared = js.prepare(&script).await.expect("prepared");
    let (prepare_fuel, snapshot_memory) = prepared.preparation().expect("prepared");
    let total = js
        .engine
        .invoke(&script, Bytes::from_static(b"1000"), &Limits::DEFAULT)
        .await
        .fuel_consumed;
    assert!(0 < prepare_fuel && prepare_fuel < total);
    // Budgets around the preparation's fuel, in the call, and enough.
    let mid = prepare_fuel + (total - prepare_fuel) / 2;
    for fuel in [
        1_000,
        prepare_fuel - 1,
        prepare_fuel,
        prepare_fuel + 1,
        mid,
        total,
    ] {
        let limits = Limits {
            fuel,
            ..Limits::DEFAULT
        };
        assert_eq!(prepared.runs_prepared(&limits), fuel >= prepare_fuel);
        let (unprepared, prepared) = both(
            &js.engine,
            &script,
            &prepared,
            "1000",
            &limits,
            &Capabilities::default(),
        )
        .await;
        assert_eq!(answer(&prepared), answer(&unprepared), "fuel {fuel}");
        let kind = unprepared.result.as_ref().map_err(|e| e.kind).err();
        let expected = (fuel < total).then_some(FunctionErrorKind::OutOfFuel);
        assert_eq!(kind, expected, "fuel {fuel} of {total}");
    }
    // Memory caps just below and at what the snapshot starts with.
    for (memory_bytes, succeeds) in [(snapshot_memory - 65536, false), (snapshot_memory, true)] {
        let limits = Limits {
            memory_bytes,
            ..Limits::DEFAULT
        };
        assert_eq!(prepared.runs_prepared(&limits), succeeds);
        let (unprepared, prepared) = both(
            &js.engine,
            &script,
            &prepared,
            "10",
            &limits,
            &Capabilities::default(),
        )
        .await;
        assert_eq!(
            answer(&prepared),
            answer(&unprepared),
            "{memory_bytes} bytes"
        );
        assert_eq!(unprepared.result.is_ok(), succeeds, "{memory_bytes} bytes");
    }
}

#[tokio::test]
async fn drawing_random_numbers_or_reading_the_clock_costs_the_same_fuel_every_call() {
    let js = Js::start().await;
    for source in [
        "export function handler(x) { return typeof Date.now() + x; }",
        // The values differ; what is done with them does not.
        "export function handler(x) { let n = 0; for (let i = 0; i < 20; i++) \
         n += Math.random(); return typeof n + x; }",
    ] {
        let script = js.script(source).await;
        let mut fuel = Vec::new();
        for _ in 0..20 {
            let outcome = js
                .engine
                .invoke(&script, Bytes::from_static(b"10"), &Limits::DEFAULT)
                .await;
            assert!(outcome.result.is_ok(), "{source}");
            fuel.push(outcome.fuel_consumed);
        }
        fuel.dedup();
        assert_eq!(fuel.len(), 1, "{source}: {fuel:?}");
    }
}

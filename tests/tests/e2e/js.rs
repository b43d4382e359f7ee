//! JavaScript functions on the engine: every source form, async handlers,
//! logs, errors and limits. (The HTTP path is covered in `seed.rs`.)

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use nimbus_core::{FunctionErrorKind, Limits};
use nimbus_engine::{CompiledModule, Engine, EngineConfig, Outcome};
use nimbus_js::{InitLimits, JsCompiler, JsError};
use tokio::sync::OnceCell;

/// One compiler and one engine for the whole module: building the compiler
/// compiles the QuickJS shim, which is the slow part.
/// The engine gets the compiler's interpreter (as the API installs it).
async fn compiler() -> &'static JsCompiler {
    static COMPILER: OnceCell<JsCompiler> = OnceCell::const_new();
    COMPILER
        .get_or_init(|| async {
            let compiler = JsCompiler::start(InitLimits::default())
                .await
                .expect("shim compiles");
            let (engine, interpreter) = (engine().clone(), compiler.interpreter().to_vec());
            tokio::task::spawn_blocking(move || {
                let (module, _) = engine.compile(&interpreter).expect("interpreter compiles");
                engine.keep(&module);
            })
            .await
            .unwrap();
            compiler
        })
        .await
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new(EngineConfig {
            max_concurrency: 8,
            ..EngineConfig::default()
        })
        .unwrap()
    })
}

async fn build(source: &str) -> Arc<CompiledModule> {
    let wasm = compiler()
        .await
        .compile(source)
        .await
        .unwrap_or_else(|e| panic!("{source}: {e}"));
    let engine = engine().clone();
    tokio::task::spawn_blocking(move || engine.compile(&wasm).map(|(m, _)| m))
        .await
        .unwrap()
        .expect("a script for the interpreter")
}

async fn call(module: &CompiledModule, input: &str) -> Outcome {
    engine()
        .invoke(
            module,
            Bytes::copy_from_slice(input.as_bytes()),
            &Limits::DEFAULT,
        )
        .await
}

fn output(invocation: &Outcome) -> String {
    match &invocation.result {
        Ok(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
        Err(e) => panic!("expected success, got {e}"),
    }
}

#[tokio::test]
async fn every_source_form_answers() {
    for source in [
        "return input + 1;",
        "function handler(input) { return input + 1; }",
        "const handler = (input) => input + 1;",
        "handler = function (input) { return input + 1; };",
        "export function handler(input) { return input + 1; }",
        "export default (input) => input + 1;",
        "async function handler(input) { await null; return input + 1; }",
        "export const handler = async (input) => { const one = await Promise.resolve(1); return input + one; };",
    ] {
        let module = build(source).await;
        assert_eq!(output(&call(&module, "10").await), "11", "{source}");
    }
}

#[tokio::test]
async fn console_output_goes_to_logs_not_the_result() {
    let module =
        build("console.log('hello', {a: 1}); console.error('oops'); return [input, 'done'];").await;
    let invocation = call(&module, "\"x\"").await;
    assert_eq!(output(&invocation), r#"["x","done"]"#);
    assert_eq!(
        String::from_utf8_lossy(&invocation.logs),
        "hello {\"a\":1}\noops\n"
    );
}

#[tokio::test]
async fn a_thrown_error_is_a_function_error_with_message_and_stack() {
    let module = build("function handler(input) {\n  if (input < 0) throw new RangeError('negative input');\n  return Math.sqrt(input);\n}").await;
    let failed = call(&module, "-1").await;
    let error = failed.result.as_ref().unwrap_err();
    assert_eq!(error.kind, FunctionErrorKind::Exit);
    assert!(
        error.message.contains("RangeError: negative input"),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("function.js:2"),
        "stack with position: {}",
        error.message
    );
    assert_eq!(output(&call(&module, "16").await), "4");
}

#[tokio::test]
async fn syntax_errors_are_rejected_at_compile_with_line_and_column() {
    let error = compile_error("function handler(input) {\n  return input +;\n}").await;
    let JsError::Source(message) = &error else {
        panic!("{error:?}")
    };
    assert!(message.contains("SyntaxError"), "{message}");
    assert!(
        message.contains("function.js:2:"),
        "line and column: {message}"
    );

    let error = compile_error("return input +* 1;").await;
    assert!(
        matches!(&error, JsError::Source(m) if m.contains("SyntaxError") && m.contains("function.js:1:")),
        "{error:?}"
    );
    let error = compile_error("throw new Error('at load time');\nfunction handler() {}").await;
    assert!(
        matches!(&error, JsError::Source(m) if m.contains("at load time")),
        "{error:?}"
    );
    let error = compile_error("export const x = 1;").await;
    assert!(
        matches!(&error, JsError::Source(m) if m.contains("handler")),
        "{error:?}"
    );
}

async fn compile_error(source: &str) -> JsError {
    match compiler().await.compile(source).await {
        Ok(_) => panic!("{source:?} should not compile"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn an_endless_top_level_loop_is_stopped_at_compile() {
    let error = compile_error("while (true) {}\nfunction handler() {}").await;
    assert!(matches!(error, JsError::Limit(_)), "{error:?}");
}

#[tokio::test]
async fn runaway_handlers_hit_fuel_and_memory_limits_and_the_engine_recovers() {
    let spin = build("while (true) {}").await;
    let limits = Limits {
        fuel: 50_000_000,
        ..Limits::DEFAULT
    };
    let failed = engine()
        .invoke(&spin, Bytes::from_static(b"null"), &limits)
        .await;
    assert_eq!(
        failed.result.unwrap_err().kind,
        FunctionErrorKind::OutOfFuel
    );

    let hog =
        build("const chunks = []; for (;;) chunks.push(new Array(1 << 20).fill(input));").await;
    let limits = Limits {
        memory_bytes: 32 << 20,
        ..Limits::DEFAULT
    };
    let failed = engine()
        .invoke(&hog, Bytes::from_static(b"1"), &limits)
        .await;
    assert_eq!(
        failed.result.unwrap_err().kind,
        FunctionErrorKind::MemoryLimit
    );

    let add = build("return input + 1;").await;
    assert_eq!(output(&call(&add, "1").await), "2");
}

#[tokio::test]
async fn fuel_is_the_same_for_the_same_input() {
    let module = build("return input.map((x) => x * 2);").await;
    let first = call(&module, "[1,2,3]").await;
    let second = call(&module, "[1,2,3]").await;
    assert_eq!(output(&first), "[2,4,6]");
    assert_eq!(first.fuel_consumed, second.fuel_consumed);
}

/// The snapshot holds one random state; `Math.random` is seeded from host
/// randomness in each invocation, so calls do not repeat each other's
/// numbers.
#[tokio::test]
async fn math_random_differs_between_invocations() {
    let random = build("return [Math.random(), Math.random()];").await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..8 {
        let pair: Vec<f64> = serde_json::from_str(&output(&call(&random, "null").await)).unwrap();
        assert!(pair.iter().all(|x| (0.0..1.0).contains(x)), "{pair:?}");
        assert_ne!(pair[0], pair[1]);
        seen.insert(pair[0].to_bits());
    }
    assert!(
        seen.len() >= 7,
        "{} distinct first numbers in 8 calls",
        seen.len()
    );
}

#[tokio::test]
async fn json_edge_cases_round_trip() {
    let echo = build("return input;").await;
    for input in [
        "null",
        "\"ünïcødé ✓ 😀 \\u0000 \\\"quoted\\\"\"",
        r#"{"a":{"b":{"c":[1,{"d":null}]}},"e":true}"#,
        "-0.5",
        "[]",
    ] {
        let got = output(&call(&echo, input).await);
        let want: serde_json::Value = serde_json::from_str(input).unwrap();
        let got: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(got, want, "{input}");
    }
    // A large array close to the default 1 MiB input cap.
    let big: Vec<u32> = (0..150_000).collect();
    let text = serde_json::to_string(&big).unwrap();
    assert!(text.len() > 900_000 && text.len() < Limits::DEFAULT.max_input_bytes as usize);
    let sum = build("return input.reduce((a, b) => a + b, 0);").await;
    let want: u64 = big.iter().map(|&x| x as u64).sum();
    assert_eq!(output(&call(&sum, &text).await), want.to_string());
    // Undefined has no JSON form: it answers null.
    let nothing = build("function handler() {}").await;
    assert_eq!(output(&call(&nothing, "1").await), "null");
}

/// A JS function is bytecode for the platform's one interpreter: a small
/// script module, nothing compiled to machine code per function, and every
/// function runs on the same compiled interpreter.
#[tokio::test]
async fn js_functions_are_scripts_for_one_interpreter_and_compile_nothing() {
    let compiler = compiler().await;
    let engine = engine();
    // The interpreter was compiled with the compiler; nothing since.
    let compiled = engine.load_stats().compiled;
    for source in [
        "return input * 2;",
        "function handler(input) { return [input, input.length]; }",
        "export default { async fetch(request) { return new Response('hi'); } }",
    ] {
        let module = compiler.compile(source).await.unwrap();
        let script = nimbus_core::script::ScriptModule::decode(&module)
            .unwrap()
            .expect("a script module");
        assert_eq!(script.interpreter, compiler.interpreter_digest());
        assert!(module.len() < 8 << 10, "{source}: {} bytes", module.len());
        engine.compile(&module).unwrap();
    }
    assert_eq!(engine.load_stats().compiled, compiled);
    assert_eq!(
        nimbus_engine::digest(compiler.interpreter()),
        compiler.interpreter_digest()
    );
    // A script module naming an interpreter the engine does not have.
    let stranger = nimbus_core::script::ScriptModule {
        interpreter: &"0".repeat(64),
        script: b"M",
    }
    .encode();
    let error = engine.compile(&stranger).unwrap_err();
    assert!(
        matches!(&error, nimbus_engine::CompileError::MissingInterpreter(d) if d == &"0".repeat(64)),
        "{error:?}"
    );
}

#[tokio::test]
async fn functions_cannot_load_modules() {
    // Dynamic import is the one way a script could ask for a module: it
    // is refused by name, whatever the specifier.
    for specifier in ["./helper.js", "/etc/passwd", "std", "os"] {
        let source = format!(
            "async function handler() {{\n  try {{ await import('{specifier}'); return 'loaded'; }}\n  catch (e) {{ return String(e); }}\n}}"
        );
        let module = build(&source).await;
        let answer = output(&call(&module, "null").await);
        assert!(
            answer.contains("module loading is not available"),
            "{specifier}: {answer}"
        );
    }
    let error =
        compile_error("import x from './y.js';\nexport function handler() { return x; }").await;
    assert!(
        matches!(&error, JsError::Source(m) if m.contains("module loading is not available")),
        "{error:?}"
    );
}

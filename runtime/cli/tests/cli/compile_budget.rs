//! Compiles in the `nimbus` binary's child process, under the compile
//! budget: a compile past its time or memory is killed and refused, the
//! compiler starts with an empty environment, `nimbus up` answers 422
//! `compile_budget_exceeded`, and one user's compiles wait for each other,
//! not other users'.

use std::path::PathBuf;
use std::time::Duration;

use nimbus_engine::{CompileBudget, CompileError, Engine, EngineConfig};
use serde_json::json;

use crate::stack::Up;

/// A function whose many locals are all live across many loops: cheap to
/// write, costly for Cranelift's register allocator (seconds, hundreds of
/// MB), like the compile bombs of the multi-tenant review.
fn compile_bomb(locals: usize, loops: usize) -> String {
    let mut wat = String::from("(module (func (export \"handle\") (param i32) (result i32)\n");
    wat.push_str(&format!(" (local {})\n", "i32 ".repeat(locals)));
    for i in 1..=locals {
        wat.push_str(&format!(
            " (local.set {i} (i32.add (local.get 0) (i32.const {i})))\n"
        ));
    }
    for l in 0..loops {
        wat.push_str(&format!(" (loop $l{l}\n"));
        for k in 0..10 {
            let (a, b) = (1 + (k * 7 + l) % locals, 1 + (k * 13 + l * 5) % locals);
            wat.push_str(&format!(
                "  (local.set {a} (i32.add (local.get {a}) (local.get {b})))\n"
            ));
        }
        wat.push_str(&format!(
            "  (br_if $l{l} (i32.lt_u (local.get 1) (i32.const 10))))\n"
        ));
    }
    wat.push_str(" (local.get 1)\n");
    for i in 2..=locals {
        wat.push_str(&format!(" (local.get {i}) i32.add\n"));
    }
    wat.push_str("))");
    wat
}

fn engine_with(budget: CompileBudget) -> Engine {
    Engine::new(EngineConfig {
        max_concurrency: 1,
        compiler: Some(PathBuf::from(env!("CARGO_BIN_EXE_nimbus"))),
        compile_budget: budget,
        ..EngineConfig::default()
    })
    .unwrap()
}

fn over_budget(engine: &Engine, wat: &str) -> String {
    match engine.compile(wat.as_bytes()) {
        Err(CompileError::OverBudget(message)) => message,
        Err(other) => panic!("expected the compile budget, got {other}"),
        Ok(_) => panic!("expected the compile budget, the module compiled"),
    }
}

#[tokio::test]
async fn a_compile_over_its_time_or_memory_is_killed_and_refused() {
    let bomb = compile_bomb(4000, 1000);
    let generous = CompileBudget {
        base: Duration::from_secs(600),
        per_mib: Duration::ZERO,
        memory_bytes: 4 << 30,
    };

    // Time: past a one-second budget the compiler is killed, however long
    // the compile would have taken.
    let engine = engine_with(CompileBudget {
        base: Duration::from_secs(1),
        ..generous
    });
    let message = over_budget(&engine, &bomb);
    assert!(
        message.contains("longer than its budget of 1 s"),
        "{message}"
    );

    // Memory: the same compile needs far more than 100 MiB.
    let engine = engine_with(CompileBudget {
        memory_bytes: 100 << 20,
        ..generous
    });
    let message = over_budget(&engine, &bomb);
    assert!(message.contains("100 MiB"), "{message}");

    // Within the budget, modules compile in the child and run here.
    let (module, _) = engine
        .compile(b"(module (func (export \"handle\") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1))))")
        .expect("a small module fits any budget");
    let outcome = engine
        .invoke(&module, "41".into(), &nimbus_core::Limits::DEFAULT)
        .await;
    assert_eq!(outcome.result.unwrap(), "42");
    assert_eq!(engine.load_stats().compiled, 1);

    // The child's refusals keep their reasons.
    let shared = "(module (memory 1 1 shared) (func (export \"handle\") (param i32) (result i32) (i32.atomic.load (i32.const 0))))";
    let Err(error) = engine.compile(shared.as_bytes()) else {
        panic!("a shared memory compiled")
    };
    assert!(error.to_string().contains("threads"), "{error}");
}

#[tokio::test]
async fn the_compiler_process_starts_with_an_empty_environment() {
    // The API's secrets (JWT secret, artifact key, NATS password) are in
    // its environment; the compiler starts with none. Checked from /proc
    // while a compile runs.
    let engine = engine_with(CompileBudget {
        base: Duration::from_secs(600),
        ..CompileBudget::default()
    });
    let bomb = compile_bomb(4000, 1000);
    let compiling = std::thread::spawn(move || engine.compile(bomb.as_bytes()).map(|_| ()));
    let mut seen = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while seen.is_none() && !compiling.is_finished() && std::time::Instant::now() < deadline {
        seen = compiler_environment();
        std::thread::sleep(Duration::from_millis(5));
    }
    compiling
        .join()
        .unwrap()
        .expect("the bomb compiles within a generous budget");
    let environment = seen.expect("saw the compiler process while it ran");
    assert!(environment.is_empty(), "{environment:?}");
}

/// The environment of a running `nimbus compile-module` child of this process.
fn compiler_environment() -> Option<Vec<u8>> {
    let child = compilers(std::process::id()).pop()?;
    std::fs::read(child.join("environ")).ok()
}

/// The `/proc` directories of the `nimbus compile-module` children of `parent`.
fn compilers(parent: u32) -> Vec<std::path::PathBuf> {
    let parent = parent.to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
                return false;
            };
            let parent_of = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().nth(1));
            let command = std::fs::read(path.join("cmdline")).unwrap_or_default();
            parent_of == Some(parent.as_str())
                && command.windows(14).any(|w| w == b"compile-module")
        })
        .collect()
}

#[tokio::test]
async fn nimbus_up_refuses_an_upload_over_the_compile_budget() {
    let data = tempfile::tempdir().unwrap();
    // A budget nothing fits in: every Cranelift compile is over it.
    let up = Up::start_with(
        data.path(),
        &["--compile-secs", "0", "--compile-secs-per-mib", "0"],
    )
    .await;
    let credentials = json!({"username": "ada", "password": "password123"});
    assert_eq!(
        up.post("/auth/register", None, credentials.clone()).await.0,
        201
    );
    let (_, login) = up.post("/auth/login", None, credentials).await;
    let token = login["token"].as_str().unwrap();

    let wat = "(module (func (export \"handle\") (param i32) (result i32) (local.get 0)))";
    let (status, body) = up
        .post("/functions", Some(token), json!({"code": wat}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["kind"], "compile_budget_exceeded", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("budget of 0 s"),
        "{body}"
    );

    // JavaScript needs no Cranelift compile: it still deploys and runs.
    let (status, body) = up
        .post(
            "/functions",
            Some(token),
            json!({"code": "return input + 1;"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let path = format!("/functions/{}/execute", body["id"]);
    let (status, body) = up.post(&path, Some(token), json!({"input": 10})).await;
    assert_eq!((status, &body["result"]), (200, &json!(11)), "{body}");
    up.terminate();
}

#[tokio::test]
async fn one_users_compiles_queue_behind_each_other_not_behind_other_users() {
    let data = tempfile::tempdir().unwrap();
    // Budget generous enough for the bombs on a loaded machine.
    let up = Up::start_with(data.path(), &["--compile-secs", "600"]).await;
    let mut tokens = Vec::new();
    for user in ["alice", "bob"] {
        let credentials = json!({"username": user, "password": "password123"});
        assert_eq!(
            up.post("/auth/register", None, credentials.clone()).await.0,
            201
        );
        let (_, login) = up.post("/auth/login", None, credentials).await;
        tokens.push(login["token"].as_str().unwrap().to_owned());
    }
    let up = std::sync::Arc::new(up);

    // Alice's two uploads could take both turns of the compile pool (its
    // default concurrency is 2); they take one, in turn.
    let alice: Vec<_> = (0..2)
        .map(|n| {
            let (up, token) = (up.clone(), tokens[0].clone());
            let bomb = compile_bomb(4000, 1000 + n);
            tokio::spawn(async move {
                up.post("/functions", Some(&token), json!({"code": bomb}))
                    .await
            })
        })
        .collect();
    // Once Alice's first compile runs, Bob's small upload takes the other
    // turn at once: it answers before either of Alice's (each takes seconds).
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while compilers(up.pid()).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "alice's compile never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wat = "(module (func (export \"handle\") (param i32) (result i32) (i32.const 7)))";
    let (status, body) = up
        .post("/functions", Some(&tokens[1]), json!({"code": wat}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(
        alice.iter().all(|upload| !upload.is_finished()),
        "bob's upload waited for alice's"
    );
    for upload in alice {
        let (status, body) = upload.await.unwrap();
        assert_eq!(status, 201, "{body}");
    }
}

//! The example functions in examples/functions, built for real by build.rs
//! and run through the whole platform.

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::Platform;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/functions");

/// A Rust example function built by the build script from examples/functions.
pub fn rust_example(name: &str) -> Vec<u8> {
    let path = format!("{}/{name}.wasm", env!("NIMBUS_EXAMPLES_WASM_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn source_example(file: &str) -> String {
    std::fs::read_to_string(format!("{EXAMPLES}/{file}")).unwrap()
}

async fn deploy_wasm(platform: &Platform, token: &str, name: &str) -> u64 {
    let (status, body) = platform
        .send(
            Method::POST,
            // A first call waits for the worker's compile: on a machine busy
            // with other tests that can take more than the default deadline.
            &format!("/functions?name={name}&timeout_ms=60000"),
            Some(token),
            Some(("application/wasm", rust_example(name))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_u64().unwrap()
}

async fn deploy_source(platform: &Platform, token: &str, file: &str) -> u64 {
    let (status, body) = platform
        .post_json(
            "/functions",
            Some(token),
            // Names are URL segments: `add.wat` is called `add-wat`.
            // Generous deadline: see `deploy_wasm`.
            &json!({
                "code": source_example(file),
                "name": file.replace('.', "-"),
                "limits": {"timeout_ms": 60000},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{file}: {body}");
    body["id"].as_u64().unwrap()
}

async fn ok(platform: &Platform, token: &str, id: u64, input: Value) -> Value {
    let (status, body) = platform.execute(token, id, input).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn rust_sdk_examples_run_through_the_platform() {
    let platform = Platform::start().await;
    let token = platform.user("ada").await;

    let hello = deploy_wasm(&platform, &token, "hello").await;
    assert_eq!(
        ok(&platform, &token, hello, json!("Ada")).await["result"],
        "Hello, Ada!"
    );
    assert_eq!(
        ok(&platform, &token, hello, json!(null)).await["result"],
        "Hello, world!"
    );

    let transform = deploy_wasm(&platform, &token, "transform").await;
    let order = json!({
        "customer": "ada",
        "discount_percent": 10,
        "items": [
            {"sku": "tea", "price_cents": 250, "quantity": 2},
            {"sku": "cake", "price_cents": 400, "quantity": 1},
        ],
    });
    let invoice = ok(&platform, &token, transform, order).await["result"].clone();
    assert_eq!(invoice["subtotal_cents"], 900);
    assert_eq!(invoice["discount_cents"], 90);
    assert_eq!(invoice["total_cents"], 810);
    assert_eq!(
        invoice["lines"][0],
        json!({"sku": "tea", "amount_cents": 500})
    );

    // The function's own error reaches the caller.
    let (status, body) = platform
        .execute(&token, transform, json!({"customer": "bob", "items": []}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "exit");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("order for bob has no items"),
        "{body}"
    );
    // Input that does not fit the type is refused by the SDK with serde's message.
    let (_, body) = platform
        .execute(&token, transform, json!({"items": 3}))
        .await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("code 2") && message.contains("invalid input"),
        "{message}"
    );

    let wordcount = deploy_wasm(&platform, &token, "wordcount").await;
    let counts = ok(
        &platform,
        &token,
        wordcount,
        json!("The cat and the hat.\nThe end"),
    )
    .await["result"]
        .clone();
    assert_eq!(counts["words"], 7);
    assert_eq!(counts["lines"], 2);
    assert_eq!(counts["top"][0], json!(["the", 3]));
}

#[tokio::test]
async fn wat_and_js_examples_run_through_the_platform() {
    let platform = Platform::start().await;
    let token = platform.user("ada").await;

    let add = deploy_source(&platform, &token, "add.wat").await;
    assert_eq!(ok(&platform, &token, add, json!(10)).await["result"], 11);

    let fuel_loop = deploy_source(&platform, &token, "fuel-loop.wat").await;
    let small = ok(&platform, &token, fuel_loop, json!(1000)).await;
    let large = ok(&platform, &token, fuel_loop, json!(100_000)).await;
    assert_eq!(small["result"], 499_500);
    assert!(
        large["fuel_consumed"].as_u64().unwrap() > 50 * small["fuel_consumed"].as_u64().unwrap(),
        "fuel grows with the input: {small} vs {large}"
    );

    let add_js = deploy_source(&platform, &token, "add.js").await;
    assert_eq!(ok(&platform, &token, add_js, json!(10)).await["result"], 11);

    let greet = deploy_source(&platform, &token, "greet.js").await;
    let greeting = ok(
        &platform,
        &token,
        greet,
        json!({"name": "Ada", "languages": ["en", "fr"]}),
    )
    .await;
    assert_eq!(greeting["result"], json!(["Hello, Ada!", "Bonjour, Ada!"]));
}

/// An example component built by the build script from examples/components.
fn example_component(name: &str) -> Vec<u8> {
    let path = format!("{}/{name}.wasm", env!("NIMBUS_EXAMPLE_COMPONENTS_WASM_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Deploy `wasm` as a public function with `query` (its name, maybe
/// limits); its URL.
async fn deploy_public(platform: &Platform, token: &str, query: &str, wasm: Vec<u8>) -> String {
    let (status, body) = platform
        .send(
            Method::POST,
            &format!("/functions?access=public&{query}"),
            Some(token),
            Some(("application/wasm", wasm)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["world"], "wasi:http/proxy", "{body}");
    body["url"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_rust_http_example_answers_on_its_public_url() {
    let platform = Platform::start().await;
    let token = platform.user("ada").await;
    let url = deploy_public(
        &platform,
        &token,
        "name=hello",
        example_component("hello_http"),
    )
    .await;
    let (status, body) = platform.post_json(&url, None, &json!({"input": 41})).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"result": 42})));
    let (status, body) = platform.get(&format!("{url}/a?b=1"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"hello": "/a?b=1", "method": "GET"}));
}

/// examples/components/python-hello built with the pinned componentize-py
/// (`make setup` installs it; NIMBUS_COMPONENTIZE_PY or .tools/bin), a
/// ~22 MB component, deployed and called on its URL.
#[tokio::test]
async fn the_python_http_example_builds_with_componentize_py_deploys_and_answers() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tool = std::env::var("NIMBUS_COMPONENTIZE_PY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo.join(".tools/bin/componentize-py"));
    assert!(
        tool.exists(),
        "componentize-py not found at {}: run `make setup` (or set NIMBUS_COMPONENTIZE_PY)",
        tool.display()
    );
    let example = repo.join("examples/components/python-hello");
    let out = tempfile::tempdir().unwrap();
    let wit = example.join("wit");
    let run = |args: &[&std::ffi::OsStr]| {
        let status = std::process::Command::new(&tool)
            .args(["-d".as_ref(), wit.as_os_str()])
            .args(["-w", "wasi:http/proxy@0.2.12"])
            .args(args)
            // Nothing is written into the example folder.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(out.path())
            .status()
            .expect("run componentize-py");
        assert!(status.success(), "componentize-py {args:?} failed");
    };
    // The generated bindings go to the temporary directory, not the example.
    run(&["bindings".as_ref(), out.path().as_os_str()]);
    let wasm_path = out.path().join("app.wasm");
    run(&[
        "componentize".as_ref(),
        "-p".as_ref(),
        out.path().as_os_str(),
        "-p".as_ref(),
        example.as_os_str(),
        "app".as_ref(),
        "-o".as_ref(),
        wasm_path.as_os_str(),
    ]);
    let wasm = std::fs::read(&wasm_path).unwrap();
    assert!(wasm.len() > 8 << 20, "{} bytes", wasm.len());

    let platform = Platform::start().await;
    let token = platform.user("ada").await;
    let url = deploy_public(&platform, &token, "name=py-hello&timeout_ms=60000", wasm).await;
    // The worker loads the upload's artifact (36 MB of native code). Should
    // it have to compile instead (~20 s, more on a loaded machine), a call
    // that waited past its deadline answers 504 while the compile goes on:
    // call again until the worker has it, within a generous bound.
    let started = std::time::Instant::now();
    let (status, body) = loop {
        let answer = platform.post_json(&url, None, &json!({"input": 41})).await;
        if answer.0 != StatusCode::GATEWAY_TIMEOUT || started.elapsed().as_secs() > 600 {
            break answer;
        }
    };
    assert_eq!((status, body), (StatusCode::OK, json!({"result": 42})));
    // Through `execute` too: the input is the body of a `POST /`.
    let (_, list) = platform.get("/functions", Some(&token)).await;
    let id = list["functions"][0]["id"].as_u64().unwrap();
    let (status, body) = platform.execute(&token, id, json!({"input": 1})).await;
    assert_eq!(
        (status, &body["result"]),
        (StatusCode::OK, &json!({"result": 2})),
        "{body}"
    );
}

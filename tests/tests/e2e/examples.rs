//! The example functions in examples/functions, built for real by build.rs
//! and run through the whole platform.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::Platform;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/functions");

fn rust_example(name: &str) -> Vec<u8> {
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
            &format!("/functions?name={name}"),
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
            &json!({"code": source_example(file), "name": file.replace('.', "-")}),
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

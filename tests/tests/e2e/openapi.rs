//! The OpenAPI document at `/openapi.json` against what the API serves: it
//! names every route of the README's table and nothing else, every path it
//! names refuses the methods it does not name, and schemathesis (`make
//! setup` installs it) fuzzes every operation of a live platform with a
//! token and finds no server error, no undocumented status or content type
//! and no answer outside its schema.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADD_WAT, Platform, assert_error};

const README: &str = include_str!("../../../README.md");
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
/// The keys of a path item that are operations.
const OPERATIONS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `(method, operation)` of a path item's operations.
fn operations(item: &Value) -> impl Iterator<Item = (&'static str, &Value)> {
    OPERATIONS
        .into_iter()
        .filter_map(move |method| item.get(method).map(|op| (method, op)))
}

/// A path with its parameters' names erased: `/functions/{}/config`.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

/// `METHOD /path` of every row of the README's HTTP API table.
fn readme_routes() -> BTreeSet<(String, String)> {
    let table = README
        .split("## HTTP API")
        .nth(1)
        .expect("the README has an HTTP API section");
    let mut routes = BTreeSet::new();
    for line in table.lines().skip_while(|l| !l.starts_with('|')) {
        let Some(row) = line.strip_prefix("| `") else {
            if line.starts_with('|') {
                continue;
            }
            break;
        };
        let route = row.split('`').next().expect("a route in backticks");
        let (method, path) = route.split_once(' ').expect("METHOD /path");
        let path = path.split('?').next().expect("a path");
        if method == "ANY" {
            // `ANY /fn/{owner}/{name}[/{path}]`: both forms, every method.
            let (base, rest) = path.split_once('[').expect("an optional tail");
            let tail = rest.trim_end_matches(']');
            for path in [base.to_owned(), format!("{base}{tail}")] {
                for method in METHODS.iter().chain(&["HEAD", "OPTIONS"]) {
                    routes.insert((method.to_string(), shape(&path)));
                }
            }
        } else {
            routes.insert((method.to_owned(), shape(path)));
        }
    }
    routes
}

/// `(METHOD, path)` of every operation of the document.
fn document_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in operations(item) {
            routes.insert((method.to_uppercase(), shape(path)));
        }
    }
    routes
}

/// A concrete path for a path template, with parameters that exist.
fn concrete(path: &str, function: u64) -> String {
    path.replace("{id}", &function.to_string())
        .replace("{name}", "X")
        .replace("{store}", "default")
        .replace("{key}", "k")
        .replace("{owner}", "someone")
        .replace("{rest}", "a/b")
        .replace("{asset}", "console.js")
}

#[tokio::test]
async fn the_document_names_every_route_and_paths_refuse_other_methods() {
    let platform = Platform::start().await;
    let response = platform
        .http
        .get(platform.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        nimbus_api::openapi_document().paths.paths.len(),
        doc["paths"].as_object().unwrap().len()
    );

    // The README's table and the document name the same routes.
    let readme = readme_routes();
    let documented = document_routes(&doc);
    let missing: Vec<_> = readme.difference(&documented).collect();
    let unlisted: Vec<_> = documented.difference(&readme).collect();
    assert!(
        missing.is_empty(),
        "in the README, not in /openapi.json: {missing:?}"
    );
    assert!(
        unlisted.is_empty(),
        "in /openapi.json, not in the README: {unlisted:?}"
    );

    // Every operation has a unique id, states its security, and answers
    // every error in the error shape.
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in operations(item) {
            let id = op["operationId"].as_str().expect("an operationId");
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
            assert!(
                op["security"].is_array(),
                "{method} {path} states its security"
            );
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("500"), "{method} {path}");
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }

    // A method a path's entry does not name is refused as such: the router
    // serves nothing the document leaves out.
    let token = platform.user("openapi").await;
    let function = platform.upload(&token, ADD_WAT, None).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method.to_lowercase()).is_some() {
                continue;
            }
            let url = platform.url(&concrete(path, function));
            let response = platform
                .http
                .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_error(
                (status, body),
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            );
        }
    }
    let (status, body) = platform.get("/no/such/route", Some(&token)).await;
    assert_error((status, body), StatusCode::NOT_FOUND, "not_found");
}

/// Where `make setup` put schemathesis.
fn schemathesis() -> String {
    std::env::var("NIMBUS_SCHEMATHESIS").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../.tools/schemathesis-4.32.5/bin/schemathesis"
        )
        .into()
    })
}

#[tokio::test]
async fn schemathesis_finds_no_fault_in_any_operation() {
    let platform = Platform::start().await;
    let token = platform.user("fuzzer").await;
    // Something real to find: a function with a name, a variable, a key.
    let (status, body) = platform
        .post_json(
            "/functions",
            Some(&token),
            &json!({"code": ADD_WAT, "name": "add", "access": "public"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_u64().unwrap();
    // A JavaScript upload first: it prepares the server's interpreter (a
    // compile of tens of seconds in a debug build, once), which the
    // generated uploads would otherwise wait for.
    let (status, body) = platform
        .post_json(
            "/functions",
            Some(&token),
            &json!({"code": "return input;", "runtime": "js"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = platform
        .send(
            Method::PUT,
            "/kv/default/greeting",
            Some(&token),
            Some(("text/plain", b"hello".to_vec())),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Real identifiers for the path parameters, so that cases get past the
    // 404s and into each operation's own logic.
    let reports = tempfile::tempdir().unwrap();
    let junit = reports.path().join("junit.xml");
    let config = reports.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[parameters]\n\"path.id\" = {id}\n\"path.owner\" = \"fuzzer\"\n\
             \"path.name\" = \"add\"\n\"path.store\" = \"default\"\n"
        ),
    )
    .unwrap();
    let cli = schemathesis();
    assert!(
        std::path::Path::new(&cli).exists(),
        "schemathesis not found at {cli}: run `make test`, which installs it"
    );
    let base = platform.url("");
    // One worker: the cases run in the seed's order, so a run is repeatable.
    let run = tokio::process::Command::new(&cli)
        // It keeps a cache of what it found in its working directory.
        .current_dir(reports.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--url", &base])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "25", "--seed", "20261202"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--workers", "1", "--request-timeout", "120"])
        .args(["--generation-database", "none", "--no-color"])
        .arg("--report-junit-path")
        .arg(&junit)
        .args(["--report", "junit"])
        .kill_on_drop(true)
        .output();
    let run = tokio::time::timeout(Duration::from_secs(900), run)
        .await
        .expect("schemathesis finishes within 15 minutes")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "schemathesis found faults:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
    // It really ran every operation, and none failed.
    let report = std::fs::read_to_string(&junit).expect("a JUnit report");
    let suite = report
        .split("<testsuite ")
        .nth(1)
        .expect("a test suite in the report");
    let attribute = |name: &str| -> u64 {
        let start = suite
            .find(&format!(" {name}=\""))
            .unwrap_or_else(|| panic!("no {name} in {suite}"));
        let rest = &suite[start + name.len() + 3..];
        rest[..rest.find('"').unwrap()].parse().unwrap()
    };
    let doc: Value = platform
        .http
        .get(platform.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let count: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| operations(item).count())
        .sum();
    // (All but `GET /openapi.json`, the document itself.)
    assert_eq!(attribute("tests"), count as u64 - 1, "{suite}");
    assert_eq!(
        (attribute("failures"), attribute("errors")),
        (0, 0),
        "{stdout}"
    );
}

//! Traces: a client's W3C `traceparent` is continued by the API server,
//! travels to the worker in NATS headers, and names the invocation in the
//! worker's own log lines, the function's log entries, the answer's
//! headers, and an asynchronous invocation's record. Without one, the API
//! server starts a trace.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADD_WAT, HELLO_LOG_WAT, Platform, eventually};

const TRACE_ID: &str = "5c1e2a7f9d3b4c6e8a0f1b2c3d4e5f60";

/// What this test binary's workers log about runs, at debug level and
/// above, as `nimbus worker` would print it (the fmt subscriber, span
/// fields included).
fn worker_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        tracing_subscriber::fmt()
            // Only what the worker logs about runs: this collects lines of
            // every test of the binary, for the whole run.
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "nimbus_worker::invoke=debug",
            ))
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        log
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The lines of the worker's log that mention `needle`.
fn logged(needle: &str) -> Vec<String> {
    let log = worker_log();
    let log = log.lock().unwrap();
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_owned)
        .collect()
}

async fn execute_traced(
    platform: &Platform,
    token: &str,
    path: &str,
    traceparent: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = platform
        .http
        .post(platform.url(path))
        .bearer_auth(token)
        .json(&json!({"input": 1}));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn a_clients_trace_reaches_the_workers_log_the_functions_logs_and_records() {
    let _ = worker_log();
    let platform = Platform::start().await;
    let token = platform.user("tracer").await;
    let id = platform.upload(&token, HELLO_LOG_WAT, None).await;
    let traceparent = format!("00-{TRACE_ID}-b7ad6b7169203331-01");

    let (status, headers, body) = execute_traced(
        &platform,
        &token,
        &format!("/functions/{id}/execute"),
        Some(&traceparent),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header(&headers, "nimbus-trace-id"), TRACE_ID);
    let invocation = header(&headers, "nimbus-invocation-id").to_owned();
    assert!(
        nimbus_core::wire::is_invocation_id(&invocation),
        "{invocation}"
    );

    // The worker logged the run inside a span naming both ids.
    let lines = eventually("the worker logs the run", Duration::from_secs(10), || {
        let lines = logged(&invocation);
        async move { (!lines.is_empty()).then_some(lines) }
    })
    .await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("trace_id={TRACE_ID}"))
                && l.contains("invocation finished")),
        "{lines:#?}"
    );

    // The function's log entry names the invocation and its trace (once
    // JetStream has stored what the worker published).
    let path = format!("/functions/{id}/logs");
    let logs = eventually(
        "the log entry is stored",
        Duration::from_secs(30),
        || async {
            let (status, logs) = platform.get(&path, Some(&token)).await;
            assert_eq!(status, StatusCode::OK, "{logs}");
            (!logs["logs"].as_array().unwrap().is_empty()).then_some(logs)
        },
    )
    .await;
    let entry = &logs["logs"][0];
    assert_eq!(entry["text"], "hello from the guest", "{logs}");
    assert_eq!(entry["invocation_id"], invocation.as_str());
    assert_eq!(entry["trace_id"], TRACE_ID);

    // Without a traceparent (or with a broken one) the API starts a trace.
    let (_, first, _) =
        execute_traced(&platform, &token, &format!("/functions/{id}/execute"), None).await;
    let (_, second, _) = execute_traced(
        &platform,
        &token,
        &format!("/functions/{id}/execute"),
        Some("00-not-a-trace"),
    )
    .await;
    let (first, second) = (
        header(&first, "nimbus-trace-id"),
        header(&second, "nimbus-trace-id"),
    );
    assert_ne!(first, second);
    assert!(nimbus_core::wire::is_invocation_id(first) && first != TRACE_ID);

    // An asynchronous invocation keeps its trace in its record, and its id
    // is the record's.
    let add = platform.upload(&token, ADD_WAT, None).await;
    let (status, headers, record) = execute_traced(
        &platform,
        &token,
        &format!("/functions/{add}/execute?async=true"),
        Some(&traceparent),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{record}");
    assert_eq!(record["trace_id"], TRACE_ID);
    let job = record["id"].as_str().unwrap().to_owned();
    assert_eq!(header(&headers, "nimbus-invocation-id"), job);
    let path = format!("/invocations/{job}");
    let done = eventually("the job succeeds", Duration::from_secs(60), || async {
        let (_, record) = platform.get(&path, Some(&token)).await;
        (record["status"] == "succeeded").then_some(record)
    })
    .await;
    assert_eq!(done["trace_id"], TRACE_ID);
    let lines = eventually("the worker logs the job", Duration::from_secs(10), || {
        let lines = logged(&job);
        async move { (!lines.is_empty()).then_some(lines) }
    })
    .await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("trace_id={TRACE_ID}"))),
        "{lines:#?}"
    );
}

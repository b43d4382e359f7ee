//! `/metrics` on the API server and on a worker's `--metrics-listen`,
//! parsed by the Prometheus project's own OpenMetrics parser (its Python
//! client, `make setup` installs it): invocations by outcome, fuel to the
//! unit, HTTP requests by route, jobs, module loads, capacity, and the bound
//! on per-function series.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use nimbus_api::ApiConfig;
use nimbus_worker::{MetricsListener, WorkerConfig};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::harness::{ADD_WAT, Platform, Setup, eventually};

const SPIN_WAT: &str = include_str!("../../../runtime/engine/fixtures/spin.wat");

/// One sample, as the parser read it.
#[derive(Debug, Deserialize)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of an OpenMetrics text, through prometheus_client's strict
/// parser (which refuses anything Prometheus would not scrape).
fn parse(text: &str) -> Vec<Sample> {
    let path = std::env::var("NIMBUS_PROMETHEUS_CLIENT").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../.tools/prometheus-client-0.26.0"
        )
        .into()
    });
    assert!(
        std::path::Path::new(&path).exists(),
        "prometheus_client not found at {path}: run `make setup` (or set NIMBUS_PROMETHEUS_CLIENT)"
    );
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append({"name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(samples))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .env("PYTHONPATH", &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

/// The value of the sample `name` whose labels include `labels`; 0 if none.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(http: &reqwest::Client, url: &str) -> Vec<Sample> {
    let response = http.get(url).send().await.expect("scrape");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    parse(&response.text().await.unwrap())
}

#[tokio::test]
async fn api_and_worker_count_invocations_fuel_requests_and_jobs() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let worker_metrics = format!("http://{}/metrics", listener.local_addr().unwrap());
    let setup = Setup::default();
    let platform = Platform::start_with(Setup {
        api: ApiConfig {
            // Two functions get series of their own; the third is `other`.
            metrics_function_series: 2,
            ..setup.api
        },
        worker: WorkerConfig {
            metrics_listener: Some(MetricsListener::new(listener)),
            // Modules load on their first calls (counted below), not as
            // their artifacts are stored.
            warm_modules: 0,
            ..setup.worker
        },
        ..setup
    })
    .await;
    let token = platform.user("meter").await;
    let add = platform.upload(&token, ADD_WAT, None).await;
    let spin = platform
        .upload(&token, SPIN_WAT, Some(json!({"fuel": 100_000})))
        .await;
    let third = platform.upload(&token, ADD_WAT, None).await;

    let mut fuel = 0;
    for input in [1, 2, 3] {
        let (status, body) = platform.execute(&token, add, json!(input)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        fuel += body["fuel_consumed"].as_u64().unwrap();
    }
    let (status, body) = platform.execute(&token, spin, json!(0)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["kind"], "out_of_fuel");
    let spin_fuel = body["error"]["fuel_consumed"].as_u64().unwrap();
    let (status, body) = platform.execute(&token, third, json!(9)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // An asynchronous invocation, run to the end.
    let (status, queued) = platform
        .post_json(
            &format!("/functions/{add}/execute?async=true"),
            Some(&token),
            &json!({"input": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let record = format!("/invocations/{}", queued["id"].as_str().unwrap());
    let job_fuel = eventually("the job succeeds", Duration::from_secs(60), || async {
        let (_, record) = platform.get(&record, Some(&token)).await;
        (record["status"] == "succeeded").then(|| record["fuel_consumed"].as_u64().unwrap())
    })
    .await;

    let api = scrape(&platform.http, &platform.url("/metrics")).await;
    let add_label = add.to_string();
    let calls = |function: &str, outcome: &str, kind: &str| {
        value(
            &api,
            "faas_invocations_total",
            &[
                ("function", function),
                ("trigger", "execute"),
                ("outcome", outcome),
                ("error_kind", kind),
            ],
        )
    };
    assert_eq!(calls(&add_label, "ok", "none"), 3.0);
    assert_eq!(
        calls(&spin.to_string(), "function_error", "out_of_fuel"),
        1.0
    );
    assert_eq!(calls("other", "ok", "none"), 1.0, "past the cap: `other`");
    assert_eq!(calls(&third.to_string(), "ok", "none"), 0.0);
    // Fuel to the unit: what the answers reported.
    let fuel_of = |samples: &[Sample], name: &str, function: u64| {
        value(samples, name, &[("function", &function.to_string())])
    };
    assert_eq!(
        fuel_of(&api, "nimbus_fuel_consumed_total", add),
        fuel as f64
    );
    assert_eq!(
        fuel_of(&api, "nimbus_fuel_consumed_total", spin),
        spin_fuel as f64
    );
    assert_eq!(fuel_of(&api, "nimbus_invocation_fuel_count", add), 3.0);
    assert_eq!(
        value(
            &api,
            "faas_invoke_duration_seconds_count",
            &[("function", &add_label), ("trigger", "execute")]
        ),
        3.0
    );
    assert_eq!(value(&api, "nimbus_jobs_queued_total", &[]), 1.0);
    let route = |route: &str, status: &str| {
        value(
            &api,
            "http_server_request_duration_seconds_count",
            &[("route", route), ("status", status)],
        )
    };
    assert_eq!(route("/functions/{id}/execute", "200"), 4.0);
    assert_eq!(route("/functions/{id}/execute", "422"), 1.0);
    assert_eq!(route("/functions/{id}/execute", "202"), 1.0);
    assert_eq!(route("/functions", "201"), 3.0);
    assert_eq!(value(&api, "nimbus_nats_reconnects_total", &[]), 0.0);
    assert!(value(&api, "nimbus_nats_messages_sent_total", &[]) > 0.0);

    // The job's slot is given back just after its record is written.
    let worker = eventually("the worker is idle", Duration::from_secs(30), || async {
        let worker = scrape(&platform.http, &worker_metrics).await;
        let idle = value(&worker, "nimbus_worker_slots_busy", &[]) == 0.0
            && value(&worker, "nimbus_worker_jobs_running", &[]) == 0.0;
        idle.then_some(worker)
    })
    .await;
    let runs = |trigger: &str, outcome: &str| {
        value(
            &worker,
            "nimbus_worker_runs_total",
            &[
                ("function", &add_label),
                ("trigger", trigger),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(runs("execute", "ok"), 3.0);
    assert_eq!(runs("job", "ok"), 1.0);
    assert_eq!(
        fuel_of(&worker, "nimbus_worker_fuel_consumed_total", add),
        (fuel + job_fuel) as f64,
        "the worker's fuel counts the job's too"
    );
    assert_eq!(
        value(
            &worker,
            "nimbus_worker_job_attempts_total",
            &[("result", "succeeded")]
        ),
        1.0
    );
    let loads = |source: &str| {
        value(
            &worker,
            "nimbus_worker_module_loads_total",
            &[("source", source)],
        )
    };
    // The two modules (`third` is `add` again) loaded once each, from
    // their signed artifacts; every other run found its module in memory.
    assert_eq!(loads("artifact"), 2.0);
    assert_eq!(loads("compile"), 0.0);
    assert_eq!(loads("cache"), 4.0);
    assert_eq!(
        value(&worker, "nimbus_worker_slots", &[]),
        platform.setup.worker.concurrency as f64
    );
    assert_eq!(value(&worker, "nimbus_worker_queue_depth", &[]), 0.0);

    // Every metric the Grafana dashboard (deploy/grafana) queries is one
    // that API servers or workers export.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/dashboards/nimbus.json"
    ))
    .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let exported: std::collections::HashSet<&str> =
        api.iter().chain(&worker).map(|s| s.name.as_str()).collect();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in metric_names(expr) {
                queried += 1;
                assert!(
                    exported.contains(name),
                    "the dashboard queries {name}, which nothing exports"
                );
            }
        }
    }
    assert!(queried >= 10, "{queried}");
}

/// The metric names in a PromQL expression: identifiers of ours followed
/// by a selector or a range.
fn metric_names(expr: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = ["faas_", "nimbus_", "http_server_"]
        .iter()
        .filter_map(|prefix| rest.find(prefix))
        .min()
    {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(&tail[..end]);
        rest = &tail[end..];
    }
    names
}

//! A worker process killed (SIGKILL) in the middle of an asynchronous
//! invocation: the job is not lost, and once its attempts are spent its
//! record says so instead of staying `running`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nimbus_cli::nats_server::{self, NatsServer};
use serde_json::{Value, json};

/// Spins until its deadline: a run long enough to kill its worker mid-way.
const SPIN: &str = include_str!("../../../engine/fixtures/spin.wat");

struct Process(Child);

impl Process {
    fn start(args: &[&str]) -> Self {
        Self(
            Command::new(env!("CARGO_BIN_EXE_nimbus"))
                .args(args)
                .env_remove("NIMBUS_JWT_SECRET")
                .env_remove("NIMBUS_NATS_URL")
                .stdin(Stdio::null())
                .spawn()
                .expect("nimbus starts"),
        )
    }

    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn call(method: reqwest::Method, url: &str, token: Option<&str>, body: Value) -> Value {
    let mut request = reqwest::Client::new().request(method, url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// Poll `path` until `done(record)` holds.
async fn until(url: &str, token: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let record = call(reqwest::Method::GET, url, Some(token), Value::Null).await;
        if done(&record) {
            return record;
        }
        assert!(started.elapsed() < within, "gave up waiting: {record}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_job_whose_worker_is_killed_is_taken_over_and_recorded() {
    let binary = nats_server::locate_from_env().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&binary, &dir.path().join("nats"), None)
        .await
        .unwrap();
    let nats_url = nats.url();
    let port = nats_server::free_port().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let _api = Process::start(&[
        "api",
        "--nats-url",
        &nats_url,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--bcrypt-cost",
        "4",
        "--jwt-secret",
        "0123456789abcdef0123456789abcdef",
    ]);
    // Two attempts, and a job unacknowledged for 1 s is taken over.
    let worker_args = [
        "worker",
        "--nats-url",
        &nats_url,
        "--job-attempts",
        "2",
        "--job-ack-wait-secs",
        "1",
    ];
    let worker = Process::start(&worker_args);
    let started = Instant::now();
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "api never up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let credentials = json!({"username": "ada", "password": "password123"});
    call(
        reqwest::Method::POST,
        &format!("{base}/auth/register"),
        None,
        credentials.clone(),
    )
    .await;
    let login = call(
        reqwest::Method::POST,
        &format!("{base}/auth/login"),
        None,
        credentials,
    )
    .await;
    let token = login["token"].as_str().unwrap();
    let created = call(
        reqwest::Method::POST,
        &format!("{base}/functions"),
        Some(token),
        json!({"code": SPIN, "limits": {"fuel": 50_000_000_000u64, "timeout_ms": 10_000}}),
    )
    .await;
    let id = created["id"].as_u64().unwrap();
    let queued = call(
        reqwest::Method::POST,
        &format!("{base}/functions/{id}/execute?async=true"),
        Some(token),
        json!({"input": 0}),
    )
    .await;
    let record_url = format!("{base}/invocations/{}", queued["id"].as_str().unwrap());

    // Attempt 1 runs; its worker dies. A new worker takes the job over
    // (attempt 2) once the ack wait passes; it dies too.
    let running =
        |attempt: u64| move |r: &Value| r["status"] == "running" && r["attempts"] == attempt;
    until(&record_url, token, Duration::from_secs(30), running(1)).await;
    worker.kill();
    let worker = Process::start(&worker_args);
    until(&record_url, token, Duration::from_secs(30), running(2)).await;
    worker.kill();
    let _worker = Process::start(&worker_args);

    // The delivery after the last attempt only records that it failed: the
    // function does not run a third time (it would end in a 10 s timeout).
    let record = until(&record_url, token, Duration::from_secs(30), |r| {
        r["status"] != "running"
    })
    .await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"]["source"], "platform", "{record}");
    assert_eq!(record["error"]["kind"], "worker_failed", "{record}");
    assert_eq!(record["attempts"], 2, "{record}");
    assert!(
        record["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stopped before finishing"),
        "{record}"
    );
    drop(nats);
}

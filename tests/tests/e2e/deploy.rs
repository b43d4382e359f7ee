//! deploy/nats/nats.conf for real: the config validates, and Nimbus runs
//! against a nats-server started from it, the API and the worker each with
//! their own least-privilege user. Only the ports and the store directory
//! are rewritten for the test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nimbus_api::ApiConfig;
use nimbus_cli::nats_server::{self, NatsServer};
use nimbus_cli::platform;
use nimbus_store::StoreConfig;
use nimbus_worker::WorkerConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::harness::{ADD_WAT, JWT_SECRET};

const NATS_CONF: &str = include_str!("../../../deploy/nats/nats.conf");
const API_PASSWORD: &str = "api-test-password";
const WORKER_PASSWORD: &str = "worker-test-password";

fn rewrite(config: &str, port: u16, monitor: u16, store: &Path) -> String {
    let mut rewritten = Vec::new();
    for line in config.lines() {
        let line = match line.trim_start() {
            l if l.starts_with("listen:") => format!("listen: 127.0.0.1:{port}"),
            l if l.starts_with("http:") => format!("http: 127.0.0.1:{monitor}"),
            l if l.starts_with("store_dir:") => {
                format!("  store_dir: {:?}", store.display().to_string())
            }
            _ => line.to_owned(),
        };
        rewritten.push(line);
    }
    rewritten.join("\n")
}

fn url(user: &str, password: &str, port: u16) -> String {
    format!("nats://{user}:{password}@127.0.0.1:{port}")
}

#[tokio::test]
async fn nimbus_runs_with_the_deploy_nats_config_and_its_permissions() {
    let binary = nats_server::locate(
        std::env::var_os("NIMBUS_NATS_SERVER")
            .map(PathBuf::from)
            .as_deref(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = nats_server::free_port().unwrap();
    let monitor = nats_server::free_port().unwrap();
    let config = dir.path().join("nats.conf");
    std::fs::write(
        &config,
        rewrite(NATS_CONF, port, monitor, &dir.path().join("js")),
    )
    .unwrap();
    let env = [
        ("NIMBUS_API_NATS_PASSWORD", API_PASSWORD),
        ("NIMBUS_WORKER_NATS_PASSWORD", WORKER_PASSWORD),
    ];

    let check = std::process::Command::new(&binary)
        .args(["-t", "-c"])
        .arg(&config)
        .envs(env)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let mut nats =
        NatsServer::spawn_with_config(&binary, &config, port, &dir.path().join("nats.log"), &env)
            .unwrap();
    nats.wait_ready_as(Some(("api", API_PASSWORD)), Duration::from_secs(15))
        .await
        .unwrap();

    let (api_client, api_store) = platform::open_store(
        &url("api", API_PASSWORD, port),
        "api",
        &StoreConfig::default(),
    )
    .await
    .expect("the api user can bootstrap and open the buckets");
    let (worker_client, worker_store) = platform::open_store(
        &url("worker", WORKER_PASSWORD, port),
        "worker",
        &StoreConfig::default(),
    )
    .await
    .expect("the worker user can open the buckets");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = watch::channel(false);
    let shutdown = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let api = tokio::spawn(platform::run_api(
        api_client,
        api_store,
        listener,
        ApiConfig {
            bcrypt_cost: 4,
            ..ApiConfig::default()
        },
        JWT_SECRET.as_bytes().to_vec(),
        shutdown(stopped.clone()),
    ));
    let worker = tokio::spawn(platform::run_worker(
        worker_client,
        worker_store,
        WorkerConfig {
            share_compiled: true,
            ..WorkerConfig::default()
        },
        shutdown(stopped),
    ));

    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut request = http.request(method, format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    use reqwest::Method;
    let credentials = json!({"username": "ada", "password": "password123"});
    let (status, _) = call(
        Method::POST,
        "/auth/register",
        None,
        Some(credentials.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, login) = call(Method::POST, "/auth/login", None, Some(credentials)).await;
    let token = login["token"].as_str().unwrap();
    let (status, created) = call(
        Method::POST,
        "/functions",
        Some(token),
        Some(json!({"code": ADD_WAT})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();
    // Twice: the second run uses the artifact the worker shared.
    for _ in 0..2 {
        let (status, body) = call(
            Method::POST,
            &format!("/functions/{id}/execute"),
            Some(token),
            Some(json!({"input": 1})),
        )
        .await;
        assert_eq!(
            (status, &body["result"]),
            (StatusCode::OK, &json!(2)),
            "{body}"
        );
    }
    let (status, listing) = call(Method::GET, "/functions", Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    assert_eq!(listing["functions"][0]["id"], id);
    let (status, logs) = call(
        Method::GET,
        &format!("/functions/{id}/logs"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{logs}");
    let (status, _) = call(
        Method::DELETE,
        &format!("/functions/{id}"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // The permissions hold: the worker user cannot read users, no one gets in
    // without credentials, and the API user cannot take invocations.
    let as_worker = platform::connect(&url("worker", WORKER_PASSWORD, port), "probe")
        .await
        .unwrap();
    let users = async_nats::jetstream::new(as_worker)
        .get_key_value("users")
        .await;
    let read = match users {
        Ok(users) => tokio::time::timeout(Duration::from_secs(2), users.get("ada")).await,
        Err(_) => Ok(Ok(None)),
    };
    assert!(
        !matches!(read, Ok(Ok(Some(_)))),
        "the worker user must not read password hashes"
    );
    assert!(
        async_nats::connect(format!("nats://127.0.0.1:{port}"))
            .await
            .is_err(),
        "anonymous clients are refused"
    );
    let as_api = platform::connect(&url("api", API_PASSWORD, port), "probe")
        .await
        .unwrap();
    let mut stolen = as_api.subscribe("functions.execute.*").await.unwrap();
    as_api.flush().await.unwrap();
    let (status, _) = call(
        Method::POST,
        "/functions",
        Some(token),
        Some(json!({"code": ADD_WAT})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = call(
        Method::POST,
        &format!("/functions/{}/execute", id + 1),
        Some(token),
        Some(json!({"input": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let intercepted = tokio::time::timeout(
        Duration::from_millis(500),
        futures::StreamExt::next(&mut stolen),
    )
    .await;
    assert!(
        !matches!(intercepted, Ok(Some(_))),
        "the api user must not receive invocations"
    );

    stop.send(true).unwrap();
    api.await.unwrap().unwrap();
    worker.await.unwrap().unwrap();
    let log = std::fs::read_to_string(dir.path().join("nats.log")).unwrap();
    let unexpected: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("Violation")
                && !l.contains("functions.execute")
                && !l.contains("$KV.users")
                && !l.contains("KV_users")
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "Nimbus itself hit permission violations:\n{}",
        unexpected.join("\n")
    );
}

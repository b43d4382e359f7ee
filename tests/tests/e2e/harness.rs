//! A whole Nimbus on loopback for one test: a real nats-server on a free port
//! with a temporary store, an API server on a free port, and workers, each
//! with its own NATS connection (so stopping one really removes it from the
//! queue group). Each runs as a [`Component`], as in `nimbus up`.
//! Everything is torn down on drop.

mod http;

use std::path::PathBuf;
use std::time::Duration;

use nimbus_api::ApiConfig;
use nimbus_cli::component::Component;
use nimbus_cli::nats_server::{self, NatsServer};
use nimbus_cli::platform::{self, Role};
use nimbus_core::subjects;
use nimbus_store::StoreConfig;
use nimbus_worker::WorkerConfig;
use reqwest::StatusCode;
use serde_json::Value;

/// The secret test servers sign with, so tests can forge tokens.
pub const JWT_SECRET: &str = "nimbus-test-secret-0123456789abcdef0123456789";

/// The seed's function, as WAT.
pub const ADD_WAT: &str = include_str!("../../../runtime/engine/fixtures/add.wat");

/// Writes "hello from the guest" to stderr, answers 1.
pub const HELLO_LOG_WAT: &str = include_str!("../../../runtime/engine/fixtures/hello_log.wat");

/// A running worker and its NATS connection, kept to read how many
/// messages it has received and to close it in a simulated crash.
struct Worker {
    component: Component,
    client: async_nats::Client,
    /// The worker's engine (shared with it), to read what it compiled.
    engine: nimbus_engine::Engine,
}

/// How a test platform is set up.
#[derive(Clone)]
pub struct Setup {
    pub workers: usize,
    pub worker: WorkerConfig,
    pub api: ApiConfig,
    /// For API servers and workers alike.
    pub store: StoreConfig,
}

/// The artifact key test platforms share between API and workers, as
/// `nimbus up` does with the one it generates.
pub const ARTIFACT_SECRET: &str = "test-artifact-key-0123456789abcdef0123456789";

pub fn artifact_key() -> nimbus_store::ArtifactKey {
    nimbus_store::ArtifactKey::from_secret(ARTIFACT_SECRET).expect("long enough")
}

/// The secrets key test platforms share between API and workers, as
/// `nimbus up` does with the one it generates.
pub const SECRETS_SECRET: &str = "test-secrets-key-0123456789abcdef0123456789";

pub fn secrets_key() -> nimbus_core::SecretsKey {
    nimbus_core::SecretsKey::from_secret(SECRETS_SECRET).expect("long enough")
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            workers: 1,
            worker: WorkerConfig {
                concurrency: 8,
                artifact_verifier: Some(artifact_key().verifier()),
                env_key: Some(secrets_key().env_key().clone()),
                ..WorkerConfig::default()
            },
            api: ApiConfig {
                artifact_key: Some(artifact_key()),
                secrets_key: Some(secrets_key()),
                // The minimum cost: tests hash many passwords in debug builds.
                bcrypt_cost: 4,
                max_body_bytes: 2 << 20,
                dispatch_grace: Duration::from_secs(5),
                // Most tests upload no JavaScript: prepare it on first use.
                warm_js: false,
                // Tests log in and register from one address far more
                // often than a person would; `auth_limits.rs` tests set
                // their own limits.
                auth_limits: nimbus_api::config::AuthLimitConfig {
                    logins_per_minute: 100_000,
                    registrations_per_hour: 100_000,
                    ..Default::default()
                },
                ..ApiConfig::default()
            },
            store: StoreConfig::default(),
        }
    }
}

pub struct Platform {
    pub setup: Setup,
    nats: Option<NatsServer>,
    nats_binary: PathBuf,
    store_dir: tempfile::TempDir,
    api: Option<Component>,
    api_url: String,
    api_client: Option<async_nats::Client>,
    extra_apis: Vec<Component>,
    workers: Vec<Option<Worker>>,
    pub http: reqwest::Client,
}

impl Platform {
    pub async fn start() -> Self {
        Self::start_with(Setup::default()).await
    }

    pub async fn start_with(setup: Setup) -> Self {
        let nats_binary = nats_server::locate_from_env()
            .expect("a nats-server (run `make test`, which installs one)");
        let store_dir = tempfile::tempdir().expect("temp dir");
        let nats = NatsServer::start(&nats_binary, &store_dir.path().join("nats"), None)
            .await
            .expect("nats-server starts");
        let mut platform = Self {
            setup: setup.clone(),
            nats: Some(nats),
            nats_binary,
            store_dir,
            api: None,
            api_url: String::new(),
            api_client: None,
            extra_apis: Vec::new(),
            workers: Vec::new(),
            http: reqwest::Client::new(),
        };
        platform.start_api().await;
        for _ in 0..setup.workers {
            platform.add_worker().await;
        }
        platform
    }

    /// Where nats-server keeps its data: everything the platform stored.
    pub fn store_path(&self) -> &std::path::Path {
        self.store_dir.path()
    }

    pub fn nats_url(&self) -> String {
        self.nats.as_ref().expect("nats running").url()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_url)
    }

    pub async fn nats_client(&self) -> async_nats::Client {
        async_nats::connect(self.nats_url()).await.expect("connect")
    }

    async fn start_api(&mut self) {
        let (component, url, client) = self.spawn_api().await;
        self.api = Some(component);
        self.api_url = url;
        self.api_client = Some(client);
    }

    /// Start one more API server on the same NATS; returns its base URL
    /// (for [`Platform::send_to`]).
    pub async fn add_api(&mut self) -> String {
        let (component, url, _) = self.spawn_api().await;
        self.extra_apis.push(component);
        url
    }

    /// An API server as a component: it, its base URL and its NATS client.
    async fn spawn_api(&self) -> (Component, String, async_nats::Client) {
        let (client, store) =
            platform::open_store(&self.nats_url(), "test-api", &self.setup.store, Role::Api)
                .await
                .expect("store opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let config = self.setup.api.clone();
        let api_client = client.clone();
        let component = Component::spawn("API server", move |shutdown| {
            platform::run_api(
                client,
                store,
                listener,
                config,
                JWT_SECRET.as_bytes().to_vec(),
                shutdown.requested(),
            )
        });
        (component, url, api_client)
    }

    /// Messages the (first) API server has sent to NATS so far.
    pub fn api_messages_sent(&self) -> u64 {
        self.api_client
            .as_ref()
            .expect("API running")
            .statistics()
            .out_messages
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Start one more worker; returns its index.
    pub async fn add_worker(&mut self) -> usize {
        let (client, store) = platform::open_store(
            &self.nats_url(),
            "test-worker",
            &self.setup.store,
            Role::Worker,
        )
        .await
        .expect("store opens");
        let config = self.setup.worker.clone();
        let engine = platform::worker_engine(&config).expect("worker engine built");
        let (worker_client, worker_engine) = (client.clone(), engine.clone());
        let component = Component::spawn("worker", move |shutdown| {
            nimbus_worker::run(
                worker_client,
                store,
                worker_engine,
                config,
                shutdown.requested(),
            )
        });
        self.workers.push(Some(Worker {
            component,
            client,
            engine,
        }));
        let index = self.workers.len() - 1;
        self.wait_until_serving(index).await;
        index
    }

    /// Probe the queue group until worker `i` has taken a message: then NATS
    /// routes to it. (Probes are malformed requests; workers answer them with
    /// a platform error.)
    async fn wait_until_serving(&self, i: usize) {
        let client = self.nats_client().await;
        let before = self.worker_messages(i);
        for _ in 0..500 {
            let _ = client.request(subjects::execute(0), "{}".into()).await;
            if self.worker_messages(i) > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("worker {i} never received a message");
    }

    /// How worker `i`'s engine got its modules (compiled or loaded).
    pub fn worker_loads(&self, i: usize) -> nimbus_engine::LoadStats {
        self.workers[i]
            .as_ref()
            .expect("worker running")
            .engine
            .load_stats()
    }

    /// Guests worker `i` has run.
    pub fn worker_runs(&self, i: usize) -> u64 {
        self.workers[i]
            .as_ref()
            .expect("worker running")
            .engine
            .runs()
    }

    /// Messages worker `i` has received from NATS so far.
    pub fn worker_messages(&self, i: usize) -> u64 {
        let worker = self.workers[i].as_ref().expect("worker running");
        worker
            .client
            .statistics()
            .in_messages
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stop worker `i` gracefully (what SIGTERM does to `nimbus worker`).
    pub async fn stop_worker(&mut self, i: usize) {
        let worker = self.workers[i].take().expect("worker running");
        worker
            .component
            .stop()
            .await
            .expect("worker stopped cleanly");
    }

    /// Stop worker `i` the way a crash would look to NATS: its task is gone
    /// and its connection closed, with no goodbye.
    pub async fn kill_worker(&mut self, i: usize) {
        let Worker {
            mut component,
            client,
            ..
        } = self.workers[i].take().expect("worker running");
        component.abort();
        component.ended().await;
        drop(client);
        self.wait_until_gone().await;
    }

    /// After a kill, the server drops the dead connection's subscription as
    /// soon as it sees the socket close; until then a request routed to it
    /// would go unanswered. Probe until ten in a row are answered (or meet
    /// no responders at all).
    async fn wait_until_gone(&self) {
        let client = self.nats_client().await;
        let mut answered_in_a_row = 0;
        for _ in 0..200 {
            let probe = client.send_request(
                subjects::execute(0),
                async_nats::Request::new()
                    .payload("{}".into())
                    .timeout(Some(Duration::from_millis(200))),
            );
            match probe.await {
                Err(e) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
                    answered_in_a_row = 0
                }
                _ => answered_in_a_row += 1,
            }
            if answered_in_a_row == 10 {
                return;
            }
        }
        panic!("the killed worker's subscription never went away");
    }

    /// Stop every component, then nats-server, gracefully; the store stays.
    pub async fn stop_all(&mut self) {
        for worker in self.workers.drain(..).flatten() {
            worker
                .component
                .stop()
                .await
                .expect("worker stopped cleanly");
        }
        for api in self.extra_apis.drain(..).chain(self.api.take()) {
            api.stop().await.expect("API server stopped cleanly");
        }
        if let Some(nats) = self.nats.take() {
            nats.stop();
        }
    }

    /// Start nats-server again on the same store, then the API and workers.
    pub async fn restart_all(&mut self) {
        assert!(self.nats.is_none(), "stop_all first");
        let nats = NatsServer::start(&self.nats_binary, &self.store_dir.path().join("nats"), None)
            .await
            .expect("nats-server restarts");
        self.nats = Some(nats);
        self.start_api().await;
        for _ in 0..self.setup.workers {
            self.add_worker().await;
        }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        for worker in self.workers.drain(..).flatten() {
            worker.component.abort();
        }
        for api in self.extra_apis.drain(..).chain(self.api.take()) {
            api.abort();
        }
    }
}

/// Assert a JSON error body of `kind` with status `status`.
#[track_caller]
pub fn assert_error(actual: (StatusCode, Value), status: StatusCode, kind: &str) {
    let (actual_status, body) = actual;
    assert_eq!(actual_status, status, "{body}");
    assert_eq!(body["error"]["kind"], kind, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error has a message: {body}"
    );
}

/// Poll `check` every 50 ms until it gives `Some`, for at most `within`;
/// panics naming `what` if it never does.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

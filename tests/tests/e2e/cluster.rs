//! Nimbus on a 3-node JetStream cluster on loopback, with buckets at three
//! replicas: one node is killed outright, and once the cluster has recovered
//! every user and function is still there and invocations, listings and
//! uploads keep working. The killed node then rejoins and catches up.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nimbus_api::ApiConfig;
use nimbus_cli::nats_server::{self, ClusterNode, NatsServer};
use nimbus_cli::platform::{ComponentSettings, Components};
use nimbus_store::StoreConfig;
use nimbus_worker::WorkerConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADD_WAT, JWT_SECRET};

struct Cluster {
    binary: PathBuf,
    dir: tempfile::TempDir,
    nodes: Vec<Option<NatsServer>>,
    ports: Vec<u16>,
    members: Vec<ClusterNode>,
}

impl Cluster {
    async fn start() -> Self {
        let binary = nats_server::locate_from_env().expect("a nats-server");
        let dir = tempfile::tempdir().unwrap();
        let [p1, p2, p3, r1, r2, r3] = nats_server::free_ports().unwrap();
        let (ports, routes) = (vec![p1, p2, p3], vec![r1, r2, r3]);
        let members: Vec<ClusterNode> = (0..3)
            .map(|i| ClusterNode {
                cluster: "nimbus-test".into(),
                server_name: format!("n{}", i + 1),
                route_port: routes[i],
                routes: routes.clone(),
            })
            .collect();
        let mut cluster = Self {
            binary,
            dir,
            nodes: Vec::new(),
            ports,
            members,
        };
        for i in 0..3 {
            let node = cluster.spawn(i);
            cluster.nodes.push(Some(node));
        }
        for node in cluster.nodes.iter_mut().flatten() {
            node.wait_ready(Duration::from_secs(60))
                .await
                .expect("cluster node ready");
        }
        cluster
    }

    fn spawn(&self, i: usize) -> NatsServer {
        let store = self.dir.path().join(format!("n{}", i + 1));
        NatsServer::spawn(&self.binary, &store, self.ports[i], Some(&self.members[i]))
            .expect("node starts")
    }

    fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Retry `attempt` until it yields `Some` or the deadline passes.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_three_node_cluster_survives_losing_a_node() {
    let mut cluster = Cluster::start().await;
    let urls = cluster.urls();
    let components = Components::start(ComponentSettings {
        api_nats_url: urls.clone(),
        worker_nats_url: urls.clone(),
        // The default failover wait: what a deployment gets.
        store: StoreConfig {
            replicas: 3,
            ..StoreConfig::default()
        },
        listener: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        api: ApiConfig {
            bcrypt_cost: 4,
            ..ApiConfig::default()
        },
        jwt_secret: JWT_SECRET.as_bytes().to_vec(),
        worker: WorkerConfig::default(),
    })
    .await
    .unwrap();
    let base = format!("http://{}", components.api_addr);

    let http = reqwest::Client::new();
    let post = |path: String, token: Option<String>, body: Value| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let mut request = http.post(url).json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.ok()?;
            let status = response.status();
            Some((status, response.json::<Value>().await.ok()?))
        }
    };
    let credentials = json!({"username": "ada", "password": "password123"});
    let (status, _) = post("/auth/register".into(), None, credentials.clone())
        .await
        .unwrap();
    assert_eq!(status, StatusCode::CREATED);
    let (_, login) = post("/auth/login".into(), None, credentials.clone())
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, body) = post(
            "/functions".into(),
            Some(token.clone()),
            json!({"code": ADD_WAT}),
        )
        .await
        .unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["id"].as_u64().unwrap());
    }

    // Crash the first node: the one every client connected to first. Some
    // streams lose their leader and refuse requests until the remaining
    // nodes elect another; the store rides that out, so reads made at once
    // succeed (slower), and the caller never sees the failover.
    cluster.nodes[0].take().unwrap().kill();
    let (status, body) = post("/auth/login".into(), None, credentials.clone())
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "users survived: {body}");
    let response = http
        .get(format!("{base}/functions"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let listing: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "listing after the crash: {listing}");
    let listed: Vec<u64> = listing["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_u64().unwrap())
        .collect();
    assert_eq!(listed, ids, "nothing lost");

    // An invocation also needs the worker to have reconnected to a live
    // node, so the first ones may fail (503 no_worker) before it has.
    let invoke_ok = |id: u64| {
        let token = token.clone();
        async move {
            let (status, body) = post(
                format!("/functions/{id}/execute"),
                Some(token),
                json!({"input": 41}),
            )
            .await?;
            (status == StatusCode::OK && body["result"] == 42).then_some(())
        }
    };
    for &id in &ids {
        eventually(
            "invocation after the crash",
            Duration::from_secs(60),
            || invoke_ok(id),
        )
        .await;
    }
    let new_id = eventually("an upload after the crash", Duration::from_secs(60), || {
        let token = token.clone();
        async move {
            let (status, body) =
                post("/functions".into(), Some(token), json!({"code": ADD_WAT})).await?;
            (status == StatusCode::CREATED).then(|| body["id"].as_u64().unwrap())
        }
    })
    .await;
    assert!(new_id > *ids.last().unwrap(), "the id counter survived");

    // The node comes back and catches up with what happened without it.
    let mut node = cluster.spawn(0);
    node.wait_ready(Duration::from_secs(30))
        .await
        .expect("node rejoins");
    cluster.nodes[0] = Some(node);
    let rejoined = async_nats::connect(format!("nats://127.0.0.1:{}", cluster.ports[0]))
        .await
        .unwrap();
    let kv = async_nats::jetstream::new(rejoined)
        .get_key_value("functions")
        .await
        .unwrap();
    eventually(
        "the rejoined node serves the new function",
        Duration::from_secs(30),
        || {
            let kv = kv.clone();
            async move {
                kv.get(format!("ada.{new_id}"))
                    .await
                    .ok()
                    .flatten()
                    .map(|_| ())
            }
        },
    )
    .await;

    components.stop().await.unwrap();
}

//! deploy/nats/nats.conf for real: the config validates, and Nimbus runs
//! against a nats-server started from it, the API and the worker each with
//! their own least-privilege user. Only the ports and the store directory
//! are rewritten for the test.

use std::path::Path;
use std::time::Duration;

use nimbus_api::ApiConfig;
use nimbus_cli::nats_server::{self, NatsServer};
use nimbus_cli::platform::{ComponentSettings, Components};
use nimbus_store::StoreConfig;
use nimbus_worker::WorkerConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADD_WAT, JWT_SECRET};
use crate::nats_permissions::Probes;

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
    let binary = nats_server::locate_from_env().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let [port, monitor] = nats_server::free_ports().unwrap();
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

    let components = Components::start(ComponentSettings {
        api_nats_url: url("api", API_PASSWORD, port),
        worker_nats_url: url("worker", WORKER_PASSWORD, port),
        store: StoreConfig::default(),
        listener: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        api: ApiConfig {
            bcrypt_cost: 4,
            artifact_key: Some(crate::harness::artifact_key()),
            secrets_key: Some(crate::harness::secrets_key()),
            // Sweeps run here too: reclaiming needs a purge of the modules
            // stream, which the API's user may do.
            module_gc_interval: Duration::from_millis(100),
            module_gc_grace: Duration::from_secs(3),
            ..ApiConfig::default()
        },
        jwt_secret: JWT_SECRET.as_bytes().to_vec(),
        worker: WorkerConfig {
            artifact_verifier: Some(crate::harness::artifact_key().verifier()),
            env_key: Some(crate::harness::secrets_key().env_key().clone()),
            ..WorkerConfig::default()
        },
    })
    .await
    .expect("the api and worker users can open what they need");
    let base = format!("http://{}", components.api_addr);

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
    // An asynchronous invocation: the API queues a job and records it, the
    // worker pulls it, runs it and records the result.
    let (status, queued) = call(
        Method::POST,
        &format!("/functions/{id}/execute?async=true"),
        Some(token),
        Some(json!({"input": 2})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let record_path = format!("/invocations/{}", queued["id"].as_str().unwrap());
    let started = std::time::Instant::now();
    loop {
        let (status, record) = call(Method::GET, &record_path, Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{record}");
        if record["status"] == "succeeded" {
            assert_eq!(record["result"], 3);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "async invocation stuck: {record}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
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
    let (_, store) = nimbus_cli::platform::open_store(
        &url("api", API_PASSWORD, port),
        "test-sweep-check",
        &StoreConfig::default(),
        nimbus_cli::platform::Role::Api,
    )
    .await
    .unwrap();
    let digest = created["digest"].as_str().unwrap();
    crate::harness::eventually(
        "the deleted function's module reclaimed",
        Duration::from_secs(30),
        || async { store.module(digest).await.unwrap().is_none().then_some(()) },
    )
    .await;

    // Nimbus itself stays within its permissions.
    let violations = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("Violation"))
            .map(str::to_owned)
            .collect()
    };
    let log = std::fs::read_to_string(dir.path().join("nats.log")).unwrap();
    assert!(
        violations(&log).is_empty(),
        "Nimbus itself hit permission violations:\n{}",
        violations(&log).join("\n")
    );

    // Every forbidden action is refused, credential by credential.
    let probes = Probes {
        worker: url("worker", WORKER_PASSWORD, port),
        api: url("api", API_PASSWORD, port),
        base: base.clone(),
        log: dir.path().join("nats.log"),
    };
    probes.run().await;
    assert!(
        async_nats::connect(format!("nats://127.0.0.1:{port}"))
            .await
            .is_err(),
        "anonymous clients are refused"
    );
    components.stop().await.unwrap();
}

/// The deployment files hang together: every YAML parses, compose and the
/// Kubernetes manifests only set variables `nimbus` reads and only mount
/// files that exist, APISIX loads the plugin from where it is mounted, and
/// the Helm values grant exactly the permissions nats.conf does (the test
/// above runs Nimbus under those).
#[test]
fn deployment_files_are_consistent() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let read = |path: &str| std::fs::read_to_string(deploy.join(path)).unwrap();
    let yaml = |path: &str| -> Vec<serde_yaml::Value> {
        let text = read(path);
        serde_yaml::Deserializer::from_str(&text)
            .map(|doc| {
                serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}"))
            })
            .collect()
    };
    // The flags live next to their commands (runtime/cli/src/commands/).
    let cli_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime/cli/src");
    let cli_source: String = [cli_dir.join("main.rs")]
        .into_iter()
        .chain(
            std::fs::read_dir(cli_dir.join("commands"))
                .unwrap()
                .map(|entry| entry.unwrap().path()),
        )
        .map(|file| std::fs::read_to_string(file).unwrap())
        .collect();
    let known_env =
        |name: &str| name == "RUST_LOG" || cli_source.contains(&format!("env = \"{name}\""));

    // docker-compose.yaml
    let compose = &yaml("docker-compose.yaml")[0];
    let services = compose["services"].as_mapping().unwrap();
    for name in ["nats", "api-1", "api-2", "worker-1", "worker-2", "apisix"] {
        assert!(services.contains_key(name), "compose service {name}");
    }
    for name in ["api-1", "worker-1"] {
        let service = &services[name];
        assert!(["api", "worker"].contains(&service["command"][0].as_str().unwrap()));
        for (key, _) in service["environment"].as_mapping().unwrap() {
            let key = key.as_str().unwrap();
            assert!(
                known_env(key),
                "compose sets {key}, which nimbus does not read"
            );
        }
    }
    for (_, service) in services {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with('.') {
                assert!(
                    deploy.join(source).exists(),
                    "compose mounts {source}, which does not exist"
                );
            }
        }
    }
    assert!(deploy.join("../Dockerfile").exists());

    // Prometheus scrapes every API server on its port and every worker on
    // its metrics address, as compose runs them.
    let prometheus = &yaml("prometheus/prometheus.yml")[0];
    let targets = |job: &str| -> Vec<String> {
        let config = prometheus["scrape_configs"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|c| c["job_name"] == job)
            .unwrap_or_else(|| panic!("no scrape job {job}"));
        config["static_configs"][0]["targets"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    };
    let port_of = |service: &str, var: &str| {
        let address = services[service]["environment"][var].as_str().unwrap();
        address.rsplit_once(':').unwrap().1.to_owned()
    };
    let api_port = port_of("api-1", "NIMBUS_LISTEN");
    let worker_port = port_of("worker-1", "NIMBUS_WORKER_METRICS_LISTEN");
    assert_eq!(
        targets("nimbus-api"),
        [format!("api-1:{api_port}"), format!("api-2:{api_port}")]
    );
    assert_eq!(
        targets("nimbus-worker"),
        [
            format!("worker-1:{worker_port}"),
            format!("worker-2:{worker_port}")
        ]
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("grafana/dashboards/nimbus.json")).unwrap();
    assert!(!dashboard["panels"].as_array().unwrap().is_empty());

    // APISIX: the plugin is enabled and found under extra_lua_path as mounted.
    let apisix = &yaml("apisix/config.yaml")[0];
    let plugins: Vec<&str> = apisix["plugins"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(plugins.contains(&"nimbus-auth"));
    let lua_path = apisix["apisix"]["extra_lua_path"].as_str().unwrap();
    let mount = services["apisix"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .find(|v| v.contains("gateway-plugin"))
        .unwrap();
    let (source, target) = mount.split_once(':').unwrap();
    let target = target.trim_end_matches(":ro");
    assert_eq!(lua_path, format!("{target}/?.lua"));
    assert!(
        deploy
            .join(source)
            .join("apisix/plugins/nimbus-auth.lua")
            .exists()
    );
    let routes = read("apisix/apisix.yaml");
    assert!(
        routes.trim_end().ends_with("#END"),
        "APISIX only loads apisix.yaml ending with #END"
    );
    let routes = &yaml("apisix/apisix.yaml")[0];
    let route_plugins = &routes["routes"][1]["plugins"];
    assert!(
        route_plugins.get("nimbus-auth").is_some(),
        "/functions routes use nimbus-auth"
    );

    // Kubernetes manifests.
    for doc in yaml("k8s/nimbus.yaml") {
        assert!(
            doc["apiVersion"].is_string()
                && doc["kind"].is_string()
                && doc["metadata"]["name"].is_string()
        );
        if doc["kind"] == "Deployment" {
            let container = &doc["spec"]["template"]["spec"]["containers"][0];
            assert!(["api", "worker"].contains(&container["args"][0].as_str().unwrap()));
            for var in container["env"].as_sequence().unwrap() {
                let name = var["name"].as_str().unwrap();
                assert!(
                    known_env(name),
                    "k8s sets {name}, which nimbus does not read"
                );
            }
        }
    }

    // The Helm values grant what nats.conf grants, user by user.
    let values = &yaml("k8s/nats-values.yaml")[0];
    let users = values["config"]["merge"]["authorization"]["users"]
        .as_sequence()
        .unwrap();
    for user in users {
        let name = user["user"].as_str().unwrap();
        let mut helm: Vec<String> = ["publish", "subscribe"]
            .iter()
            .flat_map(|dir| {
                user["permissions"][*dir]["allow"]
                    .as_sequence()
                    .unwrap()
                    .iter()
            })
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        helm.sort();
        let mut conf = subjects_of_user(NATS_CONF, name);
        conf.sort();
        assert_eq!(
            helm, conf,
            "permissions of `{name}` differ between nats.conf and nats-values.yaml"
        );
    }
}

/// The quoted subjects in `user`'s block of nats.conf.
fn subjects_of_user(config: &str, user: &str) -> Vec<String> {
    let start = config.find(&format!("user: {user}")).unwrap();
    let rest = &config[start + 1..];
    let end = rest.find("user: ").unwrap_or(rest.len());
    rest[..end]
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

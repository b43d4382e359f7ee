//! `nimbus up` as a user runs it: a real process that starts its own
//! nats-server, serves the seed's session, keeps its data and JWT secret across
//! a restart, and shuts everything down on SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Up {
    child: Child,
    url: String,
}

impl Up {
    async fn start(data_dir: &Path) -> Self {
        let port = nimbus_cli::nats_server::free_port().unwrap();
        let nats_port = nimbus_cli::nats_server::free_port().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(["up", "--bcrypt-cost", "4", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--nats-port", &nats_port.to_string()])
            .env_remove("NIMBUS_JWT_SECRET")
            .env_remove("NIMBUS_NATS_URL")
            .stdin(Stdio::null())
            .spawn()
            .expect("nimbus up starts");
        let up = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = reqwest::get(format!("{}/healthz", up.url)).await
                && response.status().is_success()
            {
                return up;
            }
            assert!(Instant::now() < deadline, "nimbus up never became healthy");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// SIGTERM, then the process must exit cleanly and promptly.
    fn terminate(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "nimbus up exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nimbus up did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats_port(data_dir: &Path) -> u16 {
    let config = std::fs::read_to_string(data_dir.join("nats.conf")).unwrap();
    let listen = config.lines().find(|l| l.starts_with("listen")).unwrap();
    listen
        .rsplit(':')
        .next()
        .unwrap()
        .trim_matches(|c| c == '"' || c == ' ')
        .parse()
        .unwrap()
}

#[tokio::test]
async fn nimbus_up_serves_the_seed_session_and_stops_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path()).await;

    let credentials = json!({"username": "testuser", "password": "password123"});
    assert_eq!(
        up.post("/auth/register", None, credentials.clone()).await.0,
        201
    );
    let (_, login) = up.post("/auth/login", None, credentials).await;
    let token = login["token"].as_str().unwrap().to_owned();
    let wat = "(module (func (export \"handle\") (param i32) (result i32) local.get 0 i32.const 1 i32.add))";
    let (status, created) = up
        .post(
            "/functions",
            Some(&token),
            json!({"user": "testuser", "code": wat}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, result) = up
        .post("/functions/1/execute", Some(&token), json!({"input": 10}))
        .await;
    assert_eq!((status, &result["result"]), (200, &json!(11)));

    let secret = data.path().join("jwt-secret");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the generated secret is private");
    let port = nats_port(data.path());
    up.terminate();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the nats-server child stopped with nimbus"
    );

    // Same data dir: the same secret (old tokens still valid) and the same data.
    let up = Up::start(data.path()).await;
    let (status, result) = up
        .post("/functions/1/execute", Some(&token), json!({"input": 41}))
        .await;
    assert_eq!((status, &result["result"]), (200, &json!(42)), "{result}");
    up.terminate();
}

//! A real `nimbus up` process for the CLI tests.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Up {
    child: Child,
    pub url: String,
}

impl Up {
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[]).await
    }

    /// `nimbus up` with `flags` added.
    pub async fn start_with(data_dir: &Path, flags: &[&str]) -> Self {
        Self::spawn(data_dir, flags, None).await
    }

    /// `nimbus up` logging at debug level into `log` (stdout and stderr).
    pub async fn start_logged(data_dir: &Path, log: &Path) -> Self {
        Self::spawn(data_dir, &[], Some(log)).await
    }

    async fn spawn(data_dir: &Path, flags: &[&str], log: Option<&Path>) -> Self {
        let [port, nats_port] = nimbus_cli::nats_server::free_ports().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_nimbus"));
        if let Some(log) = log {
            let file = std::fs::File::create(log).unwrap();
            command
                .env("RUST_LOG", "debug")
                .stdout(file.try_clone().unwrap())
                .stderr(file);
        }
        let child = command
            .args(["up", "--bcrypt-cost", "4", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--nats-port", &nats_port.to_string()])
            .args(flags)
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

    /// The `nimbus up` process's id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
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
    pub fn terminate(mut self) {
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
    /// After a failed assertion: SIGTERM first, so `nimbus up` stops its
    /// nats-server child too, and SIGKILL only if it does not exit.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

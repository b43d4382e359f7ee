//! A nats-server child process: JetStream on, loopback only, its store in a
//! directory we choose, a config file rather than flags (`max_payload` can only
//! be raised there), and killed when dropped.
//!
//! `nimbus up` uses it to run the platform locally and the tests use it to get
//! a real server on a free port.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Oldest nats-server Nimbus works with: 2.11 brought per-message TTLs, and
/// older servers' account info breaks async-nats 0.51's KV bucket creation;
/// 2.12 keeps an idle pull consumer while a delivered message waits for its
/// ack (nats-server #7052 and #7107, mid-2025; before, a tenant's jobs
/// consumer could expire under a running job, and the job's attempts would
/// count again from one).
pub const MIN_VERSION: (u32, u32, u32) = (2, 12, 0);

/// [`locate`] with `NIMBUS_NATS_SERVER` as the explicit choice, if set (what
/// tests and `make test` use).
pub fn locate_from_env() -> anyhow::Result<PathBuf> {
    locate(
        std::env::var_os("NIMBUS_NATS_SERVER")
            .map(PathBuf::from)
            .as_deref(),
    )
}

/// Find a suitable nats-server: `explicit` (flag or `NIMBUS_NATS_SERVER`), then
/// PATH, then the project's `.tools/bin` (where `make` installs one).
pub fn locate(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        check_version(path)?;
        return Ok(path.to_owned());
    }
    let mut candidates = Vec::new();
    if let Some(paths) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&paths).map(|dir| dir.join("nats-server")));
    }
    candidates.push(PathBuf::from(".tools/bin/nats-server"));
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/nats-server"));
    let mut rejected = Vec::new();
    for candidate in candidates.into_iter().filter(|c| c.is_file()) {
        match check_version(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) => rejected.push(format!("{}: {e:#}", candidate.display())),
        }
    }
    bail!(
        "no nats-server >= {}.{}.{} found{}. Install one with `make setup` (or \
         scripts/install-nats-server.sh), or point --nats-server / NIMBUS_NATS_SERVER at it",
        MIN_VERSION.0,
        MIN_VERSION.1,
        MIN_VERSION.2,
        if rejected.is_empty() {
            String::new()
        } else {
            format!(" (rejected: {})", rejected.join("; "))
        }
    )
}

fn check_version(path: &Path) -> anyhow::Result<()> {
    let output = Command::new(path)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", path.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|part| part.matches('.').count() >= 1 && !part.starts_with('.'))
        .with_context(|| format!("unrecognised version output {text:?}"))?;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    if found < MIN_VERSION {
        bail!(
            "version {version} is older than {}.{}.{}",
            MIN_VERSION.0,
            MIN_VERSION.1,
            MIN_VERSION.2
        );
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1 (free when asked; another process may take it
/// before we bind it, which `NatsServer::start` survives by retrying).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `N` distinct free ports on 127.0.0.1 (each is held until all are
/// chosen, so none is handed out twice).
pub fn free_ports<const N: usize>() -> std::io::Result<[u16; N]> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0; N];
    for port in &mut ports {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        *port = listener.local_addr()?.port();
        held.push(listener);
    }
    Ok(ports)
}

/// A running nats-server.
pub struct NatsServer {
    child: Child,
    port: u16,
    log_path: PathBuf,
}

/// One node's place in a JetStream cluster on loopback.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    /// Cluster name, the same on every node.
    pub cluster: String,
    /// This node's unique server name.
    pub server_name: String,
    /// This node's route port.
    pub route_port: u16,
    /// Route ports of all nodes (this one included is fine).
    pub routes: Vec<u16>,
}

impl NatsServer {
    /// Start `binary` with JetStream storing under `store_dir`, on `port` or a
    /// free one, and wait until it accepts clients with JetStream enabled.
    pub async fn start(binary: &Path, store_dir: &Path, port: Option<u16>) -> anyhow::Result<Self> {
        let attempts = if port.is_some() { 1 } else { 5 };
        let mut last_error = None;
        for _ in 0..attempts {
            let port = match port {
                Some(p) => p,
                None => free_port()?,
            };
            let started = match Self::spawn(binary, store_dir, port, None) {
                Ok(mut server) => server
                    .wait_ready(Duration::from_secs(15))
                    .await
                    .map(|()| server),
                Err(e) => Err(e),
            };
            match started {
                Ok(server) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    /// Write the config for a node (standalone, or `cluster` member) next to
    /// `store_dir` and start it, without waiting for it to be ready: cluster
    /// nodes only become ready once a quorum of them runs.
    pub fn spawn(
        binary: &Path,
        store_dir: &Path,
        port: u16,
        cluster: Option<&ClusterNode>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(store_dir)
            .with_context(|| format!("cannot create {}", store_dir.display()))?;
        let mut config = format!(
            "# Written by nimbus; rewritten at every start.\n\
             listen: \"127.0.0.1:{port}\"\n\
             max_payload: 8MB\n\
             jetstream {{\n  store_dir: {store:?}\n  max_memory_store: 256MB\n  max_file_store: 8GB\n}}\n",
            store = store_dir.display().to_string(),
        );
        if let Some(node) = cluster {
            let routes: Vec<String> = node
                .routes
                .iter()
                .map(|p| format!("nats-route://127.0.0.1:{p}"))
                .collect();
            config.push_str(&format!(
                "server_name: {:?}\ncluster {{\n  name: {:?}\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
                node.server_name,
                node.cluster,
                node.route_port,
                routes.join(", ")
            ));
        }
        let config_path = store_dir.with_extension("conf");
        std::fs::write(&config_path, config)?;
        Self::spawn_with_config(
            binary,
            &config_path,
            port,
            &store_dir.with_extension("log"),
            &[],
        )
    }

    /// Start `binary -c config_path`, whose config must listen on `port`, with
    /// `env` set (nats-server substitutes `$VARIABLES` in its config).
    pub fn spawn_with_config(
        binary: &Path,
        config_path: &Path,
        port: u16,
        log_path: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(log_path)?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(config_path)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Self {
            child,
            port,
            log_path: log_path.to_owned(),
        })
    }

    /// Wait until the server accepts clients and answers JetStream requests
    /// (for a cluster node: until the cluster has a meta leader).
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_ready_as(None, timeout).await
    }

    /// [`Self::wait_ready`], connecting with `user:password` credentials.
    pub async fn wait_ready_as(
        &mut self,
        credentials: Option<(&str, &str)>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
                bail!("nats-server exited with {status} during start-up:\n{log}");
            }
            // As an API server would connect: under a credentialed config
            // its user may receive replies only in its own inbox prefix.
            let mut options = async_nats::ConnectOptions::new()
                .custom_inbox_prefix(nimbus_core::subjects::API_INBOX_PREFIX);
            if let Some((user, password)) = credentials {
                options = options.user_and_password(user.into(), password.into());
            }
            if let Ok(client) = options.connect(self.url()).await
                && async_nats::jetstream::new(client)
                    .query_account()
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "nats-server on port {} did not become ready in {timeout:?}; its log ends:\n{}",
                    self.port,
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kill it outright (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stop gracefully (SIGTERM, so JetStream flushes its store), waiting up
    /// to five seconds before killing it.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

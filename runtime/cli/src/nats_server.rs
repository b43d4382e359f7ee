//! A nats-server child process: JetStream on, loopback only, its store in a
//! directory we choose, a config file rather than flags (`max_payload` can only
//! be raised there), and killed when dropped.
//!
//! `nimbus up` uses it to run the platform locally and the tests use it to get
//! a real server on a free port.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Oldest nats-server Nimbus works with: 2.11 brought per-message TTLs, and
/// older servers' account info breaks async-nats 0.51's KV bucket creation.
pub const MIN_VERSION: (u32, u32) = (2, 11);

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
        "no nats-server >= {}.{} found{}. Install one with `make setup` (or \
         scripts/install-nats-server.sh), or point --nats-server / NIMBUS_NATS_SERVER at it",
        MIN_VERSION.0,
        MIN_VERSION.1,
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
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_VERSION {
        bail!(
            "version {version} is older than {}.{}",
            MIN_VERSION.0,
            MIN_VERSION.1
        );
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1 (free when asked; another process may take it
/// before we bind it, which `NatsServer::start` survives by retrying).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running nats-server.
pub struct NatsServer {
    child: Child,
    port: u16,
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
            match Self::start_on(binary, store_dir, port).await {
                Ok(server) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    async fn start_on(binary: &Path, store_dir: &Path, port: u16) -> anyhow::Result<Self> {
        std::fs::create_dir_all(store_dir)
            .with_context(|| format!("cannot create {}", store_dir.display()))?;
        let config_path = store_dir.with_extension("conf");
        let log_path = store_dir.with_extension("log");
        let mut config = std::fs::File::create(&config_path)?;
        write!(
            config,
            "# Written by nimbus; rewritten at every start.\n\
             listen: \"127.0.0.1:{port}\"\n\
             max_payload: 8MB\n\
             jetstream {{\n  store_dir: {store:?}\n  max_memory_store: 256MB\n  max_file_store: 8GB\n}}\n",
            store = store_dir.display().to_string(),
        )?;
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = server.child.try_wait()? {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("nats-server exited with {status} during start-up:\n{log}");
            }
            if let Ok(client) = async_nats::connect(server.url()).await
                && async_nats::jetstream::new(client)
                    .query_account()
                    .await
                    .is_ok()
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("nats-server on port {port} did not become ready in time");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
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

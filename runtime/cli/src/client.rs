//! The HTTP client behind `nimbus register | login | deploy | invoke | ls |
//! rm | logs | bench`, and the small config file `login` writes.
//!
//! The config (`config.json`: API URL and token, mode 0600) lives in
//! `$NIMBUS_CONFIG_DIR`, else `$XDG_CONFIG_HOME/nimbus`, else
//! `~/.config/nimbus`. `--url`/`NIMBUS_URL` and `--token`/`NIMBUS_TOKEN`
//! override what it holds.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Where the API is when nothing says otherwise (`nimbus up`'s default).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// What `login` remembers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Config {
    /// API base URL.
    pub url: Option<String>,
    /// Bearer token.
    pub token: Option<String>,
}

/// The directory of the config file.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("NIMBUS_CONFIG_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(dir).join("nimbus"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config/nimbus"))
}

impl Config {
    /// The saved config, or an empty one.
    pub fn load() -> Self {
        config_dir()
            .and_then(|dir| std::fs::read(dir.join("config.json")).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Save it, readable by the user only.
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let dir = config_dir().context("no config directory: set NIMBUS_CONFIG_DIR or HOME")?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("config.json");
        write_private(&path, &serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// Write `contents` to `path`, readable by its owner only (0600), whether
/// the file is new or not: tokens and secrets go through here.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` only applies to a new file; tighten an existing one too.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(contents.as_bytes())
}

/// An API error as the server described it.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message} (HTTP {status})")]
pub struct ServerError {
    /// HTTP status.
    pub status: u16,
    /// The error kind (`not_found`, `out_of_fuel`, ...).
    pub kind: String,
    /// The server's message.
    pub message: String,
}

/// A client for one API URL, with or without a token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
}

/// Limits a deploy may ask for; `None` takes the platform default.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeployLimits {
    /// Fuel budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Memory cap, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Deadline, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Input cap, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_input_bytes: Option<u64>,
    /// Output cap, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// Log cap, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_log_bytes: Option<u64>,
}

impl Client {
    /// A client for `url`, authenticating with `token` when given.
    pub fn new(url: &str, token: Option<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// The API base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn token(&self) -> anyhow::Result<&str> {
        self.token
            .as_deref()
            .context("not logged in: run `nimbus login <user>` or pass --token / NIMBUS_TOKEN")
    }

    /// Send `request` and return the JSON body of a success, or the
    /// server's error.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the Nimbus API at {}", self.url))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        Err(ServerError {
            status: status.as_u16(),
            kind: body["error"]["kind"]
                .as_str()
                .unwrap_or("unknown")
                .to_owned(),
            message: body["error"]["message"]
                .as_str()
                .unwrap_or("(no message)")
                .to_owned(),
        }
        .into())
    }

    fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        Ok(self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(self.token()?))
    }

    /// `POST /auth/register`
    pub async fn register(&self, username: &str, password: &str) -> anyhow::Result<Value> {
        let request = self
            .http
            .post(format!("{}/auth/register", self.url))
            .json(&json!({"username": username, "password": password}));
        self.send(request).await
    }

    /// `POST /auth/login`; the token.
    pub async fn login(&self, username: &str, password: &str) -> anyhow::Result<String> {
        let request = self
            .http
            .post(format!("{}/auth/login", self.url))
            .json(&json!({"username": username, "password": password}));
        let body = self.send(request).await?;
        body["token"]
            .as_str()
            .map(str::to_owned)
            .context("the login answer has no token")
    }

    /// Upload `file`: `.wasm` as a binary, `.wat` and `.js` as source.
    pub async fn deploy(
        &self,
        file: &Path,
        name: Option<&str>,
        limits: &DeployLimits,
    ) -> anyhow::Result<Value> {
        let extension = file
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let request = match extension {
            "wasm" => {
                let mut query = serde_json::to_value(limits)?;
                if let Some(name) = name {
                    query["name"] = json!(name);
                }
                self.authed(reqwest::Method::POST, "/functions")?
                    .query(&query)
                    .header("content-type", "application/wasm")
                    .body(bytes)
            }
            "wat" | "js" => {
                let code = String::from_utf8(bytes)
                    .with_context(|| format!("{} is not UTF-8 text", file.display()))?;
                let mut body = json!({"code": code, "runtime": extension, "limits": limits});
                if let Some(name) = name {
                    body["name"] = json!(name);
                }
                self.authed(reqwest::Method::POST, "/functions")?
                    .json(&body)
            }
            other => bail!(
                "cannot tell the runtime of {} (extension `{other}`): use .wasm, .wat or .js",
                file.display()
            ),
        };
        self.send(request).await
    }

    /// `POST /functions/{id}/execute`; the whole answer (result, fuel, duration).
    pub async fn invoke(&self, id: u64, input: &Value) -> anyhow::Result<Value> {
        let request = self
            .authed(reqwest::Method::POST, &format!("/functions/{id}/execute"))?
            .json(&json!({ "input": input }));
        self.send(request).await
    }

    /// `POST /functions/{id}/execute?async=true`; the queued invocation's record.
    pub async fn invoke_async(&self, id: u64, input: &Value) -> anyhow::Result<Value> {
        let request = self
            .authed(reqwest::Method::POST, &format!("/functions/{id}/execute"))?
            .query(&[("async", "true")])
            .json(&json!({ "input": input }));
        self.send(request).await
    }

    /// `GET /invocations/{id}`
    pub async fn invocation(&self, id: &str) -> anyhow::Result<Value> {
        self.send(self.authed(reqwest::Method::GET, &format!("/invocations/{id}"))?)
            .await
    }

    /// `GET /functions`
    pub async fn list(&self) -> anyhow::Result<Vec<Value>> {
        let body = self
            .send(self.authed(reqwest::Method::GET, "/functions")?)
            .await?;
        Ok(body["functions"].as_array().cloned().unwrap_or_default())
    }

    /// `DELETE /functions/{id}`
    pub async fn remove(&self, id: u64) -> anyhow::Result<Value> {
        self.send(self.authed(reqwest::Method::DELETE, &format!("/functions/{id}"))?)
            .await
    }

    /// `GET /functions/{id}/logs`
    pub async fn logs(&self, id: u64, limit: usize) -> anyhow::Result<Vec<Value>> {
        let request = self
            .authed(reqwest::Method::GET, &format!("/functions/{id}/logs"))?
            .query(&[("limit", limit)]);
        let body = self.send(request).await?;
        Ok(body["logs"].as_array().cloned().unwrap_or_default())
    }

    /// A request for `bench`: the execute call, ready to clone.
    pub(crate) fn execute_request(
        &self,
        id: u64,
        body: &[u8],
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        Ok(self
            .authed(reqwest::Method::POST, &format!("/functions/{id}/execute"))?
            .header("content-type", "application/json")
            .body(body.to_vec()))
    }
}

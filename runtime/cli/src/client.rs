//! The HTTP client behind `nimbus register | login | deploy | invoke | ls |
//! rm | logs | bench`, and the small config file `login` writes.
//!
//! Answers are parsed into the API's own boundary types
//! ([`nimbus_core::http`], [`FunctionMeta`], [`InvocationRecord`],
//! [`nimbus_store::LogEntry`]), so a change of the contract breaks the build here rather
//! than a command's output.
//!
//! The config (`config.json`: API URL and token, mode 0600) lives in
//! `$NIMBUS_CONFIG_DIR`, else `$XDG_CONFIG_HOME/nimbus`, else
//! `~/.config/nimbus`. `--url`/`NIMBUS_URL` and `--token`/`NIMBUS_TOKEN`
//! override what it holds.

use std::path::{Path, PathBuf};

mod function_config;
mod kv;
mod logs;
mod upload_progress;

pub use function_config::SecretInfo;
pub use logs::FOLLOW_RETRIES;
use upload_progress::UploadProgress;

use anyhow::{Context, bail};
use nimbus_core::http::{Created, ErrorBody, Executed, FunctionList};
use nimbus_core::wire::InvocationRecord;
use nimbus_core::{Access, FunctionId, FunctionMeta, LimitsRequest, Runtime};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The address `nimbus up` and `nimbus api` listen on unless told, written
/// once for both constants below.
macro_rules! default_addr {
    () => {
        "127.0.0.1:8080"
    };
}

/// Where `nimbus up` and `nimbus api` listen unless told otherwise.
pub const DEFAULT_LISTEN: &str = default_addr!();

/// Where the API is when nothing says otherwise (`nimbus up`'s default).
pub const DEFAULT_URL: &str = concat!("http://", default_addr!());

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

/// The body of `/auth/register` and `/auth/login`.
#[derive(Serialize)]
struct Credentials<'a> {
    username: &'a str,
    password: &'a str,
}

/// What `/auth/register` answers.
#[derive(Deserialize)]
struct Registered {
    message: Option<String>,
}

/// What `/auth/login` answers.
#[derive(Deserialize)]
struct LoggedIn {
    token: String,
}

/// The JSON body of a text (`.wat`, `.js`) upload.
#[derive(Serialize)]
struct SourceUpload<'a> {
    code: &'a str,
    runtime: Runtime,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    access: Access,
    limits: &'a LimitsRequest,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    allowed_outbound_hosts: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    key_value_stores: &'a [String],
}

/// What goes with an upload besides its file.
#[derive(Clone, Copy, Default)]
pub struct DeployOptions<'a> {
    /// Its name (its URL is `/fn/<owner>/<name>`).
    pub name: Option<&'a str>,
    /// Who may call it on its URL.
    pub access: Access,
    /// Limits it asks for.
    pub limits: LimitsRequest,
    /// Hosts it may call over HTTP.
    pub allowed_outbound_hosts: &'a [String],
    /// Key-value stores it may open.
    pub key_value_stores: &'a [String],
}

/// What a function answered on its URL.
#[derive(Debug)]
pub struct UrlAnswer {
    /// The response's status.
    pub status: u16,
    /// Fuel the call burned (the `Nimbus-Fuel-Consumed` header).
    pub fuel_consumed: Option<u64>,
    /// Time spent in the engine (the `Nimbus-Duration-Us` header).
    pub duration_us: Option<u64>,
    /// The response body.
    pub body: Vec<u8>,
}

/// The body of an execute call.
#[derive(Serialize)]
struct ExecuteRequest<'a> {
    input: &'a Value,
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

    /// Send `request`: the answer if it is a success, else the server's
    /// error.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the Nimbus API at {}", self.url))?;
        self.send_answered(response).await
    }

    /// `response` if it is a success, else the server's error.
    async fn send_answered(
        &self,
        response: reqwest::Response,
    ) -> anyhow::Result<reqwest::Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        // Not every error body is the API's (a proxy in front of it, a
        // connection cut short): still report the status.
        let (kind, message) = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(ErrorBody { error }) => (error.kind, error.message),
            Err(_) => ("unknown".to_owned(), "(no message)".to_owned()),
        };
        Err(ServerError {
            status: status.as_u16(),
            kind,
            message,
        }
        .into())
    }

    /// Send `request` and parse the JSON body of its success as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        self.send(request)
            .await?
            .json()
            .await
            .with_context(|| format!("unexpected answer from the Nimbus API at {}", self.url))
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

    /// `POST /auth/register`; the server's message.
    pub async fn register(&self, username: &str, password: &str) -> anyhow::Result<String> {
        let request = self
            .http
            .post(format!("{}/auth/register", self.url))
            .json(&Credentials { username, password });
        let registered: Registered = self.call(request).await?;
        Ok(registered
            .message
            .unwrap_or_else(|| "registered".to_owned()))
    }

    /// `POST /auth/login`; the token.
    pub async fn login(&self, username: &str, password: &str) -> anyhow::Result<String> {
        let request = self
            .http
            .post(format!("{}/auth/login", self.url))
            .json(&Credentials { username, password });
        let logged_in: LoggedIn = self.call(request).await?;
        Ok(logged_in.token)
    }

    /// Upload `file`: `.wasm` as a binary (name and limits in the query
    /// string), `.wat` and `.js` as source (in the JSON body).
    pub async fn deploy(
        &self,
        file: &Path,
        options: &DeployOptions<'_>,
    ) -> anyhow::Result<Created> {
        let DeployOptions {
            name,
            access,
            limits,
            allowed_outbound_hosts,
            key_value_stores,
        } = *options;
        let extension = file
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        let runtime = match extension {
            "wasm" => Runtime::Wasm,
            "wat" => Runtime::Wat,
            "js" => Runtime::Js,
            other => bail!(
                "cannot tell the runtime of {} (extension `{other}`): use .wasm, .wat or .js",
                file.display()
            ),
        };
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let request = self.authed(reqwest::Method::POST, "/functions")?;
        let (request, body, content_type) = if runtime == Runtime::Wasm {
            let mut request = request.query(&limits).query(&[("access", access.as_str())]);
            if let Some(name) = name {
                request = request.query(&[("name", name)]);
            }
            if !allowed_outbound_hosts.is_empty() {
                let hosts = allowed_outbound_hosts.join(",");
                request = request.query(&[("allowed_outbound_hosts", hosts)]);
            }
            if !key_value_stores.is_empty() {
                let stores = key_value_stores.join(",");
                request = request.query(&[("key_value_stores", stores)]);
            }
            (request, bytes, "application/wasm")
        } else {
            let code = String::from_utf8(bytes)
                .with_context(|| format!("{} is not UTF-8 text", file.display()))?;
            let body = serde_json::to_vec(&SourceUpload {
                code: &code,
                runtime,
                name,
                access,
                limits: &limits,
                allowed_outbound_hosts,
                key_value_stores,
            })?;
            (request, body, "application/json")
        };
        let progress = UploadProgress::new(body.len());
        let request = request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::CONTENT_LENGTH, body.len())
            .body(progress.body(body));
        let created = self.call(request).await;
        progress.finish();
        created
    }

    /// `POST /functions/{id}/execute`; the whole answer (result, fuel, duration).
    pub async fn invoke(&self, id: FunctionId, input: &Value) -> anyhow::Result<Executed> {
        let request = self
            .authed(reqwest::Method::POST, &format!("/functions/{id}/execute"))?
            .json(&ExecuteRequest { input });
        self.call(request).await
    }

    /// `POST <path>` (a function URL, `/fn/<owner>/<name>[/...]`) with
    /// `input` as the body, with the token when there is one (a private
    /// function needs its owner's). Any status the function answers is
    /// returned; only a platform failure (no such function, 401...) is an
    /// error.
    pub async fn invoke_url(&self, path: &str, input: &Value) -> anyhow::Result<UrlAnswer> {
        let response = self
            .url_request(path, serde_json::to_vec(input)?)
            .send()
            .await
            .with_context(|| format!("cannot reach the Nimbus API at {}", self.url))?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        };
        let (fuel_consumed, duration_us) =
            (header("nimbus-fuel-consumed"), header("nimbus-duration-us"));
        // Without the fuel header, not the function's answer: the platform's.
        let response = if fuel_consumed.is_none() {
            self.send_answered(response).await?
        } else {
            response
        };
        Ok(UrlAnswer {
            status: response.status().as_u16(),
            fuel_consumed,
            duration_us,
            body: response.bytes().await?.to_vec(),
        })
    }

    /// `POST /functions/{id}/execute?async=true`; the queued invocation's record.
    pub async fn invoke_async(
        &self,
        id: FunctionId,
        input: &Value,
    ) -> anyhow::Result<InvocationRecord> {
        let request = self
            .authed(reqwest::Method::POST, &format!("/functions/{id}/execute"))?
            .query(&[("async", "true")])
            .json(&ExecuteRequest { input });
        self.call(request).await
    }

    /// `GET /invocations/{id}`
    pub async fn invocation(&self, id: &str) -> anyhow::Result<InvocationRecord> {
        self.call(self.authed(reqwest::Method::GET, &format!("/invocations/{id}"))?)
            .await
    }

    /// `GET /functions`
    pub async fn list(&self) -> anyhow::Result<Vec<FunctionMeta>> {
        let list: FunctionList = self
            .call(self.authed(reqwest::Method::GET, "/functions")?)
            .await?;
        Ok(list.functions)
    }

    /// `GET /account`: usage against the quotas, as the API answers it.
    pub async fn account(&self) -> anyhow::Result<serde_json::Value> {
        self.call(self.authed(reqwest::Method::GET, "/account")?)
            .await
    }

    /// `DELETE /functions/{id}`
    pub async fn remove(&self, id: FunctionId) -> anyhow::Result<()> {
        self.send(self.authed(reqwest::Method::DELETE, &format!("/functions/{id}"))?)
            .await?;
        Ok(())
    }

    /// A request for `bench`: the execute call, ready to clone.
    /// `POST <url>` with `body` (JSON): `url` absolute, or a path on this
    /// client's API; with the token when there is one.
    pub(crate) fn url_request(&self, url: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        let url = if url.starts_with("http://") || url.starts_with("https://") {
            url.to_owned()
        } else {
            format!("{}{url}", self.url)
        };
        let mut request = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    pub(crate) fn execute_request(
        &self,
        id: FunctionId,
        body: &[u8],
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        Ok(self
            .authed(reqwest::Method::POST, &format!("/functions/{id}/execute"))?
            .header("content-type", "application/json")
            .body(body.to_vec()))
    }
}

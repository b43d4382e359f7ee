//! The APISIX plugin (gateway-plugin/apisix/plugins/nimbus-auth.lua),
//! unchanged, under Debian's nginx + lua-nginx-module with a stand-in for the
//! parts of APISIX it calls, routing by the same deploy/apisix/apisix.yaml a
//! real deployment uses, in front of a real Nimbus.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADD_WAT, JWT_SECRET, Platform};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

struct Nginx {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(api: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = nimbus_cli::nats_server::free_port().unwrap();
        let root = Path::new(REPO).canonicalize().unwrap();
        let plugin_dir = root.join("gateway-plugin");
        let modules = PathBuf::from("/usr/lib/nginx/modules");
        let config = format!(
            r#"daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
load_module {modules}/ndk_http_module.so;
load_module {modules}/ngx_http_lua_module.so;
env NIMBUS_API_1;
env NIMBUS_API_2;
env NIMBUS_JWT_SECRET;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    lua_package_path "{plugin}/?.lua;{plugin}/standin/?.lua;/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua;;";
    lua_package_cpath "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";
    init_by_lua_block {{ require("standin").init("{routes}") }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            set $upstream "";
            rewrite_by_lua_block {{ require("standin").rewrite() }}
            proxy_pass http://$upstream;
        }}
    }}
}}
"#,
            dir = dir.path().display(),
            modules = modules.display(),
            plugin = plugin_dir.display(),
            routes = root.join("deploy/apisix/apisix.yaml").display(),
        );
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config_path)
            .args(["-e", "stderr"])
            .env("NIMBUS_API_1", api)
            .env("NIMBUS_API_2", api)
            .env("NIMBUS_JWT_SECRET", JWT_SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx (make test installs it)");
        let mut nginx = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                let log = std::fs::read_to_string(nginx._dir.path().join("error.log"))
                    .unwrap_or_default();
                panic!("nginx exited with {status}:\n{log}");
            }
            assert!(Instant::now() < deadline, "nginx did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(alg: Algorithm, secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Option<String>, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        challenge,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_gateway_plugin_checks_tokens_at_the_edge() {
    let platform = Platform::start().await;
    let api = platform.url("").trim_start_matches("http://").to_owned();
    let gateway = Nginx::start(&api).await;
    let http = reqwest::Client::new();
    let at = |path: &str| format!("{}{path}", gateway.url);

    // /auth/* is public through the gateway.
    let credentials = json!({"username": "alice", "password": "password123"});
    let (status, _, _) = send(http.post(at("/auth/register")).json(&credentials)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, login) = send(http.post(at("/auth/login")).json(&credentials)).await;
    assert_eq!(status, StatusCode::OK);
    let good = login["token"].as_str().unwrap().to_owned();

    let claims =
        |sub: &str, exp: u64| json!({"sub": sub, "iat": now(), "exp": exp, "iss": "nimbus"});
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let expired = token(Algorithm::HS256, JWT_SECRET, claims("alice", now() - 600));
    let wrong_secret = token(
        Algorithm::HS256,
        "another-secret-that-is-long-enough-1234",
        claims("alice", now() + 600),
    );
    let hs512 = token(Algorithm::HS512, JWT_SECRET, claims("alice", now() + 600));
    let not_yet = token(
        Algorithm::HS256,
        JWT_SECRET,
        json!({"sub": "alice", "exp": now() + 600, "nbf": now() + 300, "iss": "nimbus"}),
    );
    let wrong_issuer = token(
        Algorithm::HS256,
        JWT_SECRET,
        json!({"sub": "alice", "exp": now() + 600, "iss": "evil"}),
    );
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&claims("alice", now() + 600).to_string())
    );
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = b64(&claims("mallory", now() + 600).to_string());
    let tampered = parts.join(".");

    for (name, header, reason) in [
        ("no token", None, "missing token"),
        ("expired", Some(expired), "expired"),
        ("wrong secret", Some(wrong_secret), "signature"),
        ("HS512", Some(hs512), "HS256"),
        ("alg none", Some(alg_none), "HS256"),
        ("tampered", Some(tampered), "signature"),
        ("not yet valid", Some(not_yet), "not valid yet"),
        ("wrong issuer", Some(wrong_issuer), "issuer"),
        ("garbage", Some("abc".into()), "malformed"),
    ] {
        let mut request = http.get(at("/functions"));
        if let Some(token) = header {
            request = request.bearer_auth(token);
        }
        let (status, challenge, body) = send(request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
        assert!(
            challenge.is_some_and(|c| c.starts_with("Bearer")),
            "{name}: WWW-Authenticate"
        );
        assert_eq!(body["error"]["kind"], "unauthorized", "{name}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{name}: {message}");
    }

    // A valid token: through to Nimbus, end to end, including an invocation.
    let (status, _, created) = send(
        http.post(at("/functions"))
            .bearer_auth(&good)
            .json(&json!({"code": ADD_WAT})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_u64().unwrap();
    let (status, _, result) = send(
        http.post(at(&format!("/functions/{id}/execute")))
            .bearer_auth(&good)
            .json(&json!({"input": 10})),
    )
    .await;
    assert_eq!(
        (status, &result["result"]),
        (StatusCode::OK, &json!(11)),
        "{result}"
    );

    // Asynchronous: queued through the gateway, followed through it too, and
    // the record is refused at the edge without a token.
    let (status, _, queued) = send(
        http.post(at(&format!("/functions/{id}/execute?async=true")))
            .bearer_auth(&good)
            .json(&json!({"input": 20})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let record = format!("/invocations/{}", queued["id"].as_str().unwrap());
    let started = Instant::now();
    loop {
        let (status, _, body) = send(http.get(at(&record)).bearer_auth(&good)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] == "succeeded" {
            assert_eq!(body["result"], 21);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, www_authenticate, _) = send(http.get(at(&record))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(www_authenticate.is_some());

    // The token in the query string works too (forwarded to Nimbus in the header).
    let (status, _, listing) = send(http.get(at(&format!("/functions?jwt={good}")))).await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    assert_eq!(listing["functions"][0]["id"], id);

    // A spoofed identity header is replaced by the verified user: Nimbus,
    // which rejects a forwarded identity that disagrees with the token
    // (shown directly below), accepts the request through the gateway.
    let (status, _, _) = send(
        http.get(at("/functions"))
            .bearer_auth(&good)
            .header("X-Nimbus-User", "bob"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = send(
        http.get(platform.url("/functions"))
            .bearer_auth(&good)
            .header("X-Nimbus-User", "bob"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // The console and the contract are public.
    for path in ["/ui", "/ui/console.js", "/openapi.json"] {
        let (status, _, _) = send(http.get(at(path))).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }

    // Routes outside apisix.yaml do not exist at the gateway.
    let (status, _, _) = send(http.get(at("/admin"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn function_urls_pass_the_gateway_public_anonymously_private_with_a_token() {
    let platform = Platform::start().await;
    let api = platform.url("").trim_start_matches("http://").to_owned();
    let gateway = Nginx::start(&api).await;
    let http = reqwest::Client::new();
    let at = |path: &str| format!("{}{path}", gateway.url);
    let ada = platform.user("ada").await;
    for (name, access) in [("open", "public"), ("closed", "private")] {
        let (status, _, created) = send(
            http.post(at(&format!("/functions?name={name}&access={access}")))
                .bearer_auth(&ada)
                .header("content-type", "application/wasm")
                .body(crate::components::component("http_probe")),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
    }

    // Public: anybody, any method; a spoofed identity is dropped at the edge.
    let (status, _, echo) = send(
        http.delete(at("/fn/ada/open/x?y=1"))
            .header("X-Nimbus-User", "ada"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(
        (echo["method"].as_str(), echo["path"].as_str()),
        (Some("DELETE"), Some("/x?y=1"))
    );
    assert!(
        !echo["headers"].to_string().contains("x-nimbus-user"),
        "{echo}"
    );
    // A bearer token that is not Nimbus's passes as anonymous (the
    // function's own business).
    let (status, _, _) = send(http.get(at("/fn/ada/open")).bearer_auth("not-a-jwt")).await;
    assert_eq!(status, StatusCode::OK);

    // Private: the API refuses the anonymous call, answers the owner's token.
    let (status, _, body) = send(http.get(at("/fn/ada/closed"))).await;
    assert_eq!(
        (status, &body["error"]["kind"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthorized"))
    );
    let (status, _, echo) = send(http.get(at("/fn/ada/closed")).bearer_auth(&ada)).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert!(
        !echo["headers"].to_string().contains("authorization"),
        "{echo}"
    );
    let (status, _, _) = send(http.get(at(&format!("/fn/ada/closed?jwt={ada}")))).await;
    assert_eq!(status, StatusCode::OK);
}

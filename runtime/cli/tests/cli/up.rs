//! `nimbus up` as a user runs it: a real process that starts its own
//! nats-server, serves the seed's session, keeps its data and JWT secret across
//! a restart, and shuts everything down on SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;

use crate::stack::Up;

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

//! Auth abuse costs the abuser: logins and registrations are rate limited
//! per client address, failed logins lock a username for a growing while,
//! and a flood of logins from one address does not hold up another
//! client's login. Clients at other addresses are other loopback addresses
//! (127.0.0.2, ...), which the API tells apart like any peers.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use nimbus_api::ApiConfig;
use nimbus_api::config::AuthLimitConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Platform, Setup};

async fn platform_with(api: ApiConfig) -> Platform {
    Platform::start_with(Setup {
        api,
        ..Setup::default()
    })
    .await
}

/// An HTTP client whose connections come from `address`.
fn client_at(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// POST `/auth/<what>`: status, Retry-After (seconds) and body.
async fn auth(
    client: &reqwest::Client,
    platform: &Platform,
    what: &str,
    username: &str,
    password: &str,
) -> (StatusCode, Option<u64>, Value) {
    let response = client
        .post(platform.url(&format!("/auth/{what}")))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (status, retry_after, response.json().await.unwrap())
}

#[tokio::test]
async fn logins_and_registrations_are_rate_limited_per_address() {
    let platform = platform_with(ApiConfig {
        auth_limits: AuthLimitConfig {
            logins_per_minute: 5,
            registrations_per_hour: 3,
            ..AuthLimitConfig::default()
        },
        ..Setup::default().api
    })
    .await;
    let (busy, other) = (client_at("127.0.0.3"), client_at("127.0.0.1"));

    for n in 0..3 {
        let (status, _, body) = auth(
            &busy,
            &platform,
            "register",
            &format!("user{n}"),
            "password123",
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, retry_after, body) =
        auth(&busy, &platform, "register", "user3", "password123").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["kind"], "too_many_requests");
    assert!(
        retry_after.unwrap() > 60,
        "one registration per 20 minutes: {retry_after:?}"
    );
    let (status, _, body) = auth(&other, &platform, "register", "user3", "password123").await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "another address is not limited: {body}"
    );

    for _ in 0..5 {
        let (status, _, body) = auth(&busy, &platform, "login", "user0", "password123").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, retry_after, body) = auth(&busy, &platform, "login", "user0", "password123").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!((1..=12).contains(&retry_after.unwrap()), "{retry_after:?}");
    let (status, _, body) = auth(&other, &platform, "login", "user0", "password123").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn failed_logins_lock_a_username_for_a_growing_while_not_for_good() {
    let platform = platform_with(ApiConfig {
        auth_limits: AuthLimitConfig {
            first_lockout: Duration::from_secs(3),
            ..Setup::default().api.auth_limits
        },
        ..Setup::default().api
    })
    .await;
    platform.user("victim").await;
    let client = reqwest::Client::new();
    let login = |password: &'static str| auth(&client, &platform, "login", "victim", password);

    // Five free failures; the sixth locks the name for 3 s.
    for _ in 0..6 {
        assert_eq!(login("wrong-password").await.0, StatusCode::UNAUTHORIZED);
    }
    let (status, retry_after, body) = login("password123").await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "locked even for the right password: {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("failed logins")
    );
    assert!((1..=3).contains(&retry_after.unwrap()), "{retry_after:?}");

    // Once the lock ends, another failure locks it for twice as long.
    let unlocked = wait_until_unlocked(&login, "wrong-password").await;
    assert_eq!(unlocked, StatusCode::UNAUTHORIZED);
    let (status, retry_after, _) = login("password123").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        (4..=6).contains(&retry_after.unwrap()),
        "doubled: {retry_after:?}"
    );

    // Never for good: the right password works once it ends, and clears
    // the failures (one more wrong one is a plain 401).
    assert_eq!(
        wait_until_unlocked(&login, "password123").await,
        StatusCode::OK
    );
    assert_eq!(login("wrong-password").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login("password123").await.0, StatusCode::OK);
}

/// Try `password` until the answer is not 429, waiting what Retry-After says.
async fn wait_until_unlocked<F, Fut>(login: &F, password: &'static str) -> StatusCode
where
    F: Fn(&'static str) -> Fut,
    Fut: std::future::Future<Output = (StatusCode, Option<u64>, Value)>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, retry_after, _) = login(password).await;
        if status != StatusCode::TOO_MANY_REQUESTS {
            return status;
        }
        assert!(Instant::now() < deadline, "still locked after a minute");
        tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1))).await;
    }
}

#[tokio::test]
async fn a_real_login_answers_within_a_second_during_a_flood_from_another_address() {
    // bcrypt at cost 10 (tens of ms each, optimised even in test builds):
    // 60 of them back to back on two cores would hold a login up for
    // seconds.
    let platform = platform_with(ApiConfig {
        bcrypt_cost: 10,
        auth_limits: AuthLimitConfig::default(),
        ..Setup::default().api
    })
    .await;
    platform.user("realuser").await;

    let attacker = client_at("127.0.0.2");
    let (answered, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..60 {
        let (attacker, answered) = (attacker.clone(), answered.clone());
        let url = platform.url("/auth/login");
        tokio::spawn(async move {
            let response = attacker
                .post(url)
                .json(&json!({"username": format!("bogus{n}"), "password": "wrong-password"}))
                .send()
                .await
                .unwrap();
            let retry_after = response.headers().contains_key("retry-after");
            let _ = answered.send((response.status(), retry_after));
        });
    }
    drop(answered);
    // Once a bogus password has been checked, the flood holds the bcrypt
    // slots and has more queued behind them.
    let mut statuses = Vec::new();
    while statuses.last().map(|(status, _)| *status) != Some(StatusCode::UNAUTHORIZED) {
        statuses.push(answers.recv().await.expect("the flood answers"));
    }
    let started = Instant::now();
    let (status, _, body) = auth(
        &reqwest::Client::new(),
        &platform,
        "login",
        "realuser",
        "password123",
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{body}");
    while let Some(answer) = answers.recv().await {
        statuses.push(answer);
    }
    let limited = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    eprintln!(
        "the real login took {took:?} during the flood; {limited} of 60 flood logins refused at the rate limit"
    );
    assert!(
        took < Duration::from_secs(1),
        "the real login took {took:?}"
    );
    assert!(
        limited >= 20,
        "30 per minute from one address: {limited} refused"
    );
    assert!(statuses.iter().all(|(status, retry_after)| {
        *status == StatusCode::UNAUTHORIZED
            || (*status == StatusCode::TOO_MANY_REQUESTS && *retry_after)
    }));
}

//! Live logs: `GET /functions/{id}/logs?follow=true` as Server-Sent
//! Events, read by real SSE clients (the CLI's `nimbus logs -f`, and
//! `eventsource-stream` over a raw request) while the function logs;
//! resuming with `Last-Event-ID`; the per-user bound on follows.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{HELLO_LOG_WAT, Platform, assert_error};

/// Up to `n` events of a follow request, with their ids, within 30 s.
async fn events(response: reqwest::Response, n: usize) -> Vec<(String, Value)> {
    let stream = response
        .bytes_stream()
        .eventsource()
        .filter_map(|event| async move {
            let event = event.expect("a well-formed event stream");
            (event.event == "log").then(|| (event.id, serde_json::from_str(&event.data).unwrap()))
        })
        .take(n)
        .collect::<Vec<_>>();
    tokio::time::timeout(Duration::from_secs(30), stream)
        .await
        .expect("events within 30 s")
}

async fn follow(
    platform: &Platform,
    token: &str,
    id: u64,
    last_event: Option<&str>,
) -> reqwest::Response {
    let mut request = platform
        .http
        .get(platform.url(&format!("/functions/{id}/logs?follow=true")))
        .bearer_auth(token);
    if let Some(last) = last_event {
        request = request.header("last-event-id", last);
    }
    request.send().await.unwrap()
}

/// Invoke `id` once; its invocation id.
async fn invoke(platform: &Platform, token: &str, id: u64) -> String {
    let response = platform
        .http
        .post(platform.url(&format!("/functions/{id}/execute")))
        .bearer_auth(token)
        .json(&json!({"input": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.headers()["nimbus-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_follower_gets_kept_entries_then_new_ones_as_they_are_written() {
    let platform = Platform::start().await;
    let token = platform.user("follower").await;
    let id = platform.upload(&token, HELLO_LOG_WAT, None).await;
    let before = invoke(&platform, &token, id).await;

    // The CLI's follower (what `nimbus logs -f` runs), in the background.
    let client = nimbus_cli::client::Client::new(&platform.url(""), Some(token.clone()));
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    let following = tokio::spawn(async move {
        client
            .follow_logs(id, 10, move |entry| {
                sender.send(entry).ok();
            })
            .await
    });
    let next = async |received: &mut tokio::sync::mpsc::UnboundedReceiver<_>| {
        tokio::time::timeout(Duration::from_secs(30), received.recv())
            .await
            .expect("an entry within 30 s")
            .expect("the follower runs")
    };
    let kept: nimbus_store::LogEntry = next(&mut received).await;
    assert_eq!(kept.invocation_id.as_deref(), Some(before.as_str()));
    assert_eq!(kept.text, "hello from the guest");
    // Written while following: they arrive as they are written.
    for _ in 0..3 {
        let invocation = invoke(&platform, &token, id).await;
        let entry = next(&mut received).await;
        assert_eq!(entry.invocation_id.as_deref(), Some(invocation.as_str()));
    }
    following.abort();

    // Resuming after the second entry gets the third and fourth, and no
    // kept entry again.
    let all = events(follow(&platform, &token, id, None).await, 4).await;
    assert_eq!(all.len(), 4);
    let resumed = events(follow(&platform, &token, id, Some(&all[1].0)).await, 2).await;
    assert_eq!(resumed, all[2..].to_vec());
}

#[tokio::test]
async fn follows_are_bounded_per_user_and_only_for_the_owner() {
    let mut platform = Platform::start().await;
    let token = platform.user("watcher").await;
    let other = platform.user("other").await;
    let id = platform.upload(&token, HELLO_LOG_WAT, None).await;

    let response = follow(&platform, &other, id, None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = follow(&platform, &token, id, Some("not a number")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let mut open = Vec::new();
    for _ in 0..8 {
        let response = follow(&platform, &token, id, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream"
        );
        open.push(response);
    }
    let refused = follow(&platform, &token, id, None).await;
    let status = refused.status();
    let body: Value = refused.json().await.unwrap();
    assert_error(
        (status, body),
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
    );
    // Another user is not held up by this one's follows.
    let theirs = platform.upload(&other, HELLO_LOG_WAT, None).await;
    assert_eq!(
        follow(&platform, &other, theirs, None).await.status(),
        StatusCode::OK
    );
    // A closed follow gives its turn back (once the server notices).
    drop(open.pop());
    let reopened = crate::harness::eventually(
        "a follow's turn comes back",
        Duration::from_secs(30),
        || async {
            let response = follow(&platform, &token, id, None).await;
            (response.status() == StatusCode::OK).then_some(response)
        },
    )
    .await;
    open.push(reopened);

    // Open follows do not hold up a shutdown: the server ends them.
    tokio::time::timeout(Duration::from_secs(60), platform.stop_all())
        .await
        .expect("the API server stops with follows open");
    for response in open {
        let ended = tokio::time::timeout(Duration::from_secs(30), response.bytes()).await;
        assert!(ended.is_ok(), "a follow still open after the shutdown");
    }
}

//! The API's function metadata cache: a warm call makes no JetStream
//! request, and a delete is seen at once by the server that made it and by
//! every other server once the watch delivers it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{ADD_WAT, Platform};

#[tokio::test]
async fn a_warm_call_sends_nothing_to_nats_but_the_call_itself() {
    let platform = Platform::start().await;
    let token = platform.user("ada").await;
    let id = platform.upload(&token, ADD_WAT, None).await;
    let (status, body) = platform.execute(&token, id, json!(1)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let before = platform.api_messages_sent();
    for n in 0..5 {
        let (status, body) = platform.execute(&token, id, json!(n)).await;
        assert_eq!((status, &body["result"]), (StatusCode::OK, &json!(n + 1)));
    }
    // One message per call: the request to the worker. (The KV read each
    // call made before the cache was one more.)
    assert_eq!(platform.api_messages_sent() - before, 5);
}

#[tokio::test]
async fn a_delete_is_seen_at_once_by_its_server_and_soon_by_the_others() {
    let mut platform = Platform::start().await;
    let second = platform.add_api().await;
    let token = platform.user("ada").await;
    let id = platform.upload(&token, ADD_WAT, None).await;
    let execute = format!("/functions/{id}/execute");

    // Both servers have it cached after a call (the second learnt of it
    // from the watch, or from its first read).
    let (status, _) = platform.execute(&token, id, json!(1)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = platform
        .post_json_to(&second, &execute, Some(&token), &json!({"input": 1}))
        .await;
    assert_eq!((status, &body["result"]), (StatusCode::OK, &json!(2)));

    let (status, _) = platform
        .delete(&format!("/functions/{id}"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    // The server that deleted it: at once.
    let (status, body) = platform.execute(&token, id, json!(1)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // The other: once its watch delivers the delete (a message's latency;
    // the bound is generous for loaded machines).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = platform
            .post_json_to(&second, &execute, Some(&token), &json!({"input": 1}))
            .await;
        match status {
            StatusCode::NOT_FOUND => break,
            StatusCode::OK => {}
            other => panic!("{other}: {body}"),
        }
        assert!(
            Instant::now() < deadline,
            "the second API server still runs a deleted function after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = platform
        .get_from(&second, &format!("/functions/{id}"), Some(&token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_function_created_on_one_server_runs_at_once_on_another() {
    let mut platform = Platform::start().await;
    let second = platform.add_api().await;
    let token = platform.user("ada").await;
    for n in 0..3 {
        let id = platform.upload(&token, ADD_WAT, None).await;
        let (status, body) = platform
            .post_json_to(
                &second,
                &format!("/functions/{id}/execute"),
                Some(&token),
                &json!({"input": n}),
            )
            .await;
        assert_eq!((status, &body["result"]), (StatusCode::OK, &json!(n + 1)));
    }
}

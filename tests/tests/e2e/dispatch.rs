//! Invocations through NATS: hostile guests, the queue group, missing
//! workers, logs and error events.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{ADD_WAT, Platform, Setup, assert_error};

const SPIN: &str = include_str!("../../../runtime/engine/fixtures/spin.wat");

const MEMORY_BOMB: &str = include_str!("../../../runtime/engine/fixtures/memory_bomb.wat");

const FAILS_LOUDLY: &str = include_str!("../../../runtime/engine/fixtures/exit_3.wat");

/// Limits under which SPIN is stopped by its 300 ms deadline, not its fuel.
fn stopped_by_deadline() -> serde_json::Value {
    json!({"fuel": 50_000_000_000u64, "timeout_ms": 300})
}

#[tokio::test]
async fn hostile_functions_fail_with_their_kind_and_the_worker_keeps_serving() {
    let platform = Platform::start().await;
    let token = platform.user("alice").await;
    let add = platform.upload(&token, ADD_WAT, None).await;
    let spin = platform
        .upload(&token, SPIN, Some(json!({"fuel": 10_000_000})))
        .await;
    let slow = platform
        .upload(&token, SPIN, Some(stopped_by_deadline()))
        .await;
    let bomb = platform
        .upload(&token, MEMORY_BOMB, Some(json!({"memory_bytes": 4 << 20})))
        .await;
    let loud = platform.upload(&token, FAILS_LOUDLY, None).await;

    for (id, kind) in [
        (spin, "out_of_fuel"),
        (slow, "timeout"),
        (bomb, "memory_limit"),
        (loud, "exit"),
    ] {
        let (status, body) = platform.execute(&token, id, json!(0)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["kind"], kind, "{body}");
        assert_eq!(body["error"]["source"], "function", "{body}");
        // The same, single worker answers the next call correctly.
        let (status, body) = platform.execute(&token, add, json!(10)).await;
        assert_eq!(
            (status, &body["result"]),
            (StatusCode::OK, &json!(11)),
            "after {kind}"
        );
    }
    let (_, body) = platform.execute(&token, spin, json!(0)).await;
    assert_eq!(
        body["error"]["fuel_consumed"], 10_000_000,
        "a failed call still reports its fuel"
    );
    let (_, body) = platform.execute(&token, loud, json!(0)).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("boom: bad input"),
        "the guest's error text reaches the caller: {body}"
    );
}

#[tokio::test]
async fn two_workers_share_invocations_and_one_dying_leaves_the_other_serving() {
    let mut platform = Platform::start_with(Setup {
        workers: 2,
        ..Setup::default()
    })
    .await;
    let token = platform.user("alice").await;
    let id = platform.upload(&token, ADD_WAT, None).await;
    let before = [platform.worker_runs(0), platform.worker_runs(1)];
    for i in 0..40 {
        let (status, body) = platform.execute(&token, id, json!(i)).await;
        assert_eq!((status, &body["result"]), (StatusCode::OK, &json!(i + 1)));
    }
    // Guests run, not messages received: workers also receive JetStream
    // replies and the object store's news of artifacts.
    let served = [
        platform.worker_runs(0) - before[0],
        platform.worker_runs(1) - before[1],
    ];
    assert_eq!(served[0] + served[1], 40, "{served:?}");
    assert!(
        served[0] > 0 && served[1] > 0,
        "both workers took invocations: {served:?}"
    );

    platform.kill_worker(0).await;
    for i in 0..20 {
        let (status, body) = platform.execute(&token, id, json!(i)).await;
        assert_eq!(
            (status, &body["result"]),
            (StatusCode::OK, &json!(i + 1)),
            "{body}"
        );
    }
}

#[tokio::test]
async fn no_worker_answers_503_promptly() {
    let mut platform = Platform::start().await;
    let token = platform.user("alice").await;
    let id = platform.upload(&token, ADD_WAT, None).await;
    platform.kill_worker(0).await;
    let started = Instant::now();
    let answer = platform.execute(&token, id, json!(1)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered in {:?}, not after the dispatch timeout",
        started.elapsed()
    );
    assert_eq!(answer.1["error"]["source"], "platform");
    assert_error(answer, StatusCode::SERVICE_UNAVAILABLE, "no_worker");
}

#[tokio::test]
async fn stderr_goes_to_the_log_stream_and_failures_to_functions_error() {
    let platform = Platform::start().await;
    let token = platform.user("alice").await;
    let id = platform.upload(&token, FAILS_LOUDLY, None).await;
    let client = platform.nats_client().await;
    let mut errors = client.subscribe("functions.error").await.unwrap();
    client.flush().await.unwrap();

    let (status, _) = platform.execute(&token, id, json!(null)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let event = tokio::time::timeout(Duration::from_secs(5), errors.next())
        .await
        .expect("an error event")
        .unwrap();
    let event: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(event["function_id"], id);
    assert_eq!(event["kind"], "exit");
    assert_eq!(event["caller"], "alice");

    // The log line was kept by the FUNCTION_LOGS stream.
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("FUNCTION_LOGS").await.unwrap();
    let message = stream
        .get_last_raw_message_by_subject(&format!("functions.logs.{id}"))
        .await
        .expect("a stored log message");
    assert_eq!(&message.payload[..], b"boom: bad input\n");
}

#[tokio::test]
async fn the_benchmark_floor_answers_without_running_the_function() {
    let mut setup = Setup::default();
    setup.worker.benchmark_floor = true;
    let platform = Platform::start_with(setup).await;
    let token = platform.user("alice").await;
    let spin = platform
        .upload(&token, SPIN, Some(json!({"fuel": 1000})))
        .await;
    let (status, body) = platform
        .execute(&token, spin, json!({"echo": [1, 2]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"], json!({"echo": [1, 2]}));
    assert_eq!(body["fuel_consumed"], 0);
}

#[tokio::test]
async fn a_stopping_worker_answers_the_invocations_it_already_received() {
    let mut setup = Setup::default();
    setup.worker.concurrency = 1;
    let mut platform = Platform::start_with(setup).await;
    let token = platform.user("alice").await;
    // Each call spins until its 300 ms deadline; with one slot, the worker
    // runs one and holds the others in its subscription.
    let slow = platform
        .upload(&token, SPIN, Some(stopped_by_deadline()))
        .await;
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let http = platform.http.clone();
            let url = platform.url(&format!("/functions/{slow}/execute"));
            let token = token.clone();
            tokio::spawn(async move {
                let response = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"input": 0}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                (status, response.json::<serde_json::Value>().await.unwrap())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    platform.stop_worker(0).await;
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(
            body["error"]["kind"], "timeout",
            "answered by the function, not the platform: {body}"
        );
    }
}

/// `n` concurrent calls of function `id`; each answers (status, Retry-After, body, elapsed).
async fn concurrent_calls(
    platform: &Platform,
    token: &str,
    id: u64,
    n: usize,
) -> Vec<(StatusCode, Option<String>, serde_json::Value, Duration)> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let request = platform
                .http
                .post(platform.url(&format!("/functions/{id}/execute")))
                .bearer_auth(token)
                .json(&json!({"input": 0}));
            tokio::spawn(async move {
                let started = Instant::now();
                let response = request.send().await.unwrap();
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                let body = response.json::<serde_json::Value>().await.unwrap();
                (status, retry_after, body, started.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    answers
}

#[tokio::test]
async fn a_worker_with_a_full_queue_sheds_requests_at_once() {
    let mut setup = Setup::default();
    setup.worker.concurrency = 1;
    setup.worker.queue_capacity = 1;
    let platform = Platform::start_with(setup).await;
    let token = platform.user("alice").await;
    let slow = platform
        .upload(&token, SPIN, Some(stopped_by_deadline()))
        .await;

    let answers = concurrent_calls(&platform, &token, slow, 6).await;
    let (ran, shed): (Vec<_>, Vec<_>) = answers
        .iter()
        .partition(|(status, ..)| *status == StatusCode::UNPROCESSABLE_ENTITY);
    for (_, _, body, _) in &ran {
        assert_eq!(body["error"]["kind"], "timeout", "{body}");
    }
    // One runs and one waits; a request can also sit between the two for a
    // moment, so at most three run. The rest are refused, not left waiting.
    assert!((1..=3).contains(&ran.len()), "{answers:?}");
    for (status, retry_after, body, elapsed) in &shed {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"]["kind"], "overloaded", "{body}");
        assert_eq!(body["error"]["source"], "platform", "{body}");
        assert_eq!(retry_after.as_deref(), Some("1"));
        // Answered while the first call still spins (300 ms), not after it.
        assert!(*elapsed < Duration::from_millis(1000), "{elapsed:?}");
    }
    assert!(shed.len() >= 3, "{answers:?}");

    // Once the burst is over, the worker serves again.
    let add = platform.upload(&token, ADD_WAT, None).await;
    let (status, body) = platform.execute(&token, add, json!(41)).await;
    assert_eq!((status, &body["result"]), (StatusCode::OK, &json!(42)));
}

#[tokio::test]
async fn requests_nobody_waits_for_any_more_are_skipped() {
    let mut setup = Setup::default();
    setup.worker.concurrency = 1;
    // The API waits 300 ms (the deadline) + 250 ms for an answer.
    setup.api.dispatch_grace = Duration::from_millis(250);
    let platform = Platform::start_with(setup).await;
    let token = platform.user("alice").await;
    let slow = platform
        .upload(&token, SPIN, Some(stopped_by_deadline()))
        .await;
    let client = platform.nats_client().await;
    let mut errors = client.subscribe("functions.error").await.unwrap();
    client.flush().await.unwrap();

    // Six calls, one slot, at least 300 ms each: the first runs at once, the
    // second after ~300 ms of waiting. The others could start only after
    // 600 ms or more, when the API has stopped waiting (550 ms): they are
    // skipped.
    let started = Instant::now();
    let answers = concurrent_calls(&platform, &token, slow, 6).await;
    let statuses: Vec<_> = answers.iter().map(|(status, ..)| *status).collect();
    assert!(
        statuses.contains(&StatusCode::UNPROCESSABLE_ENTITY),
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::GATEWAY_TIMEOUT)
            .count()
            >= 4,
        "{statuses:?}"
    );

    // Every invocation that ran ended in a timeout, which publishes an error
    // event. Run one by one, all six would take 1.8 s: count the events
    // until well past that. Two run when the six calls reach the API at
    // once; under load they arrive spread over up to ~250 ms, and a third
    // may still start inside its own caller's wait (a 4th could not: it
    // would start 900 ms after the first). Without skipping, all six run.
    let mut ran = 0;
    let until = started + Duration::from_millis(3000);
    while let Ok(Some(_)) = tokio::time::timeout_at(until.into(), errors.next()).await {
        ran += 1;
    }
    assert!((1..=3).contains(&ran), "{ran} of 6 invocations ran");

    // And the worker is free at once for the next request.
    let add = platform.upload(&token, ADD_WAT, None).await;
    let (status, body) = platform.execute(&token, add, json!(1)).await;
    assert_eq!((status, &body["result"]), (StatusCode::OK, &json!(2)));
}

#[tokio::test]
async fn a_log_read_keeps_the_newest_entries_within_both_caps() {
    let platform = Platform::start().await;
    let client = platform.nats_client().await;
    let store = nimbus_store::Storage::open(client.clone(), &Default::default())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    for i in 1..=5 {
        js.publish("functions.logs.77", format!("{i}").repeat(100).into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Two entries fit both caps (2 entries, 250 bytes): the newest two.
    let entries = store.logs(77, 2, 250).await.unwrap();
    let texts: Vec<&str> = entries.iter().map(|e| &e.text[..1]).collect();
    assert_eq!(texts, ["4", "5"]);
    // The byte cap alone: 250 bytes hold two of them.
    assert_eq!(store.logs(77, 10, 250).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_bad_nats_url_is_reported_without_its_password() {
    let error = nimbus_cli::platform::connect(
        "nats://worker:s3cret@bad host:4222",
        "probe",
        nimbus_cli::platform::Role::Worker,
    )
    .await
    .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("invalid NATS URL"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
}

#[tokio::test]
async fn an_api_server_of_the_previous_release_is_still_served_and_no_envelope_is_guessed() {
    use nimbus_core::wire::Reply;

    let platform = Platform::start().await;
    let token = platform.user("alice").await;
    let add = platform.upload(&token, ADD_WAT, None).await;
    let (_, meta) = platform
        .get(&format!("/functions/{add}"), Some(&token))
        .await;
    let client = platform.nats_client().await;

    // An API server of the previous release: one JSON document on the
    // previous subject, answered in kind (a rolling upgrade loses no call).
    let previous = json!({
        "function_id": add, "digest": meta["digest"], "caller": "alice", "input": 41,
        "limits": meta["limits"], "wait_ms": 10_000,
    });
    let reply = client
        .request(
            format!("functions.execute.{add}"),
            serde_json::to_vec(&previous).unwrap().into(),
        )
        .await
        .expect("a worker serves the previous subject");
    let answer: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(answer["ok"]["result"], 42, "{answer}");
    assert_eq!(answer["ok"]["fuel_consumed"], 4, "{answer}");
    // Unreadable there: a platform error in that envelope, nothing run.
    let reply = client
        .request(format!("functions.execute.{add}"), "41".into())
        .await
        .expect("answered");
    let answer: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert!(answer["platform_error"].is_string(), "{answer}");

    // The current subject without the envelope's version: refused, not run.
    let reply = client
        .request(nimbus_core::subjects::execute(add), "1".into())
        .await
        .expect("answered");
    let header = reply
        .headers
        .as_ref()
        .and_then(|h| h.get(nimbus_core::wire::headers::REPLY))
        .map(|v| v.as_str());
    let reply =
        Reply::decode(header, reply.payload.clone()).expect("a reply in the current envelope");
    assert!(
        matches!(&reply, Reply::PlatformError(m) if m.contains("envelope version")),
        "{reply:?}"
    );

    // The platform still serves the current envelope.
    let (status, body) = platform.execute(&token, add, json!(1)).await;
    assert_eq!((status, &body["result"]), (StatusCode::OK, &json!(2)));
}

//! Asynchronous invocations: queued in the FUNCTION_JOBS work queue, pulled
//! by workers with a free slot, followed through `GET /invocations/{id}`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{ADD_WAT, Platform, Setup, assert_error};

const FAILS_LOUDLY: &str = include_str!("../../../runtime/engine/fixtures/exit_3.wat");

/// Queue an invocation with `?async=true`; returns the 202 body.
pub(crate) async fn submit(platform: &Platform, token: &str, id: u64, input: Value) -> Value {
    let response = platform
        .http
        .post(platform.url(&format!("/functions/{id}/execute?async=true")))
        .bearer_auth(token)
        .json(&json!({"input": input}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let record: Value = response.json().await.unwrap();
    assert_eq!(record["status"], "queued", "{record}");
    assert_eq!(record["function_id"], id);
    let invocation = record["id"].as_str().unwrap();
    assert_eq!(location, format!("/invocations/{invocation}"));
    record
}

/// Poll the record until it is final (or `within` passes).
async fn settled(platform: &Platform, token: &str, invocation: &str, within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (status, record) = platform
            .get(&format!("/invocations/{invocation}"), Some(token))
            .await;
        assert_eq!(status, StatusCode::OK, "{record}");
        if record["status"] == "succeeded" || record["status"] == "failed" {
            return record;
        }
        assert!(
            started.elapsed() < within,
            "still {} after {within:?}",
            record["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn async_invocations_run_and_are_recorded_for_their_owner_only() {
    let platform = Platform::start().await;
    let alice = platform.user("alice").await;
    let add = platform.upload(&alice, ADD_WAT, None).await;
    let client = platform.nats_client().await;
    let mut results = client.subscribe("functions.result.*").await.unwrap();
    client.flush().await.unwrap();

    let queued = submit(&platform, &alice, add, json!(41)).await;
    let invocation = queued["id"].as_str().unwrap();
    assert_eq!(invocation.len(), 32);
    let record = settled(&platform, &alice, invocation, Duration::from_secs(10)).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    assert_eq!(record["result"], 42);
    assert_eq!(record["attempts"], 1);
    assert!(record["fuel_consumed"].as_u64().unwrap() > 0, "{record}");
    assert!(record.get("error").is_none(), "{record}");

    // The final record is also published for whoever listens.
    let published = tokio::time::timeout(Duration::from_secs(5), results.next())
        .await
        .expect("a result message")
        .unwrap();
    assert_eq!(
        published.subject.as_str(),
        format!("functions.result.{invocation}")
    );
    let published: Value = serde_json::from_slice(&published.payload).unwrap();
    assert_eq!(published["result"], 42);

    // `Prefer: respond-async` does the same; a function failure is a final
    // result carrying its kind, not retried.
    let fails = platform.upload(&alice, FAILS_LOUDLY, None).await;
    let response = platform
        .http
        .post(platform.url(&format!("/functions/{fails}/execute")))
        .bearer_auth(&alice)
        .header("prefer", "respond-async; foo=bar, wait=10")
        .json(&json!({"input": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let queued: Value = response.json().await.unwrap();
    let record = settled(
        &platform,
        &alice,
        queued["id"].as_str().unwrap(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"]["kind"], "exit");
    assert_eq!(record["error"]["source"], "function");
    assert_eq!(record["attempts"], 1);

    // Only the owner sees a record; malformed ids and bad flags are refused.
    let bob = platform.user("bob").await;
    let path = format!("/invocations/{invocation}");
    assert_error(
        platform.get(&path, Some(&bob)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        platform.get(&path, None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        platform.get("/invocations/not-an-id", Some(&alice)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        platform
            .post_json(
                &format!("/functions/{add}/execute?async=maybe"),
                Some(&alice),
                &json!({"input": 1}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    // Bob cannot queue work on Alice's function either.
    assert_error(
        platform
            .post_json(
                &format!("/functions/{add}/execute?async=true"),
                Some(&bob),
                &json!({"input": 1}),
            )
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn jobs_wait_for_a_worker_instead_of_failing_even_across_a_restart() {
    // No worker at all: a synchronous call is refused at once, an
    // asynchronous one is kept until a worker comes, on disk: a restart of
    // nats-server and the API in between loses nothing.
    let mut platform = Platform::start_with(Setup {
        workers: 0,
        ..Setup::default()
    })
    .await;
    let token = platform.user("alice").await;
    let add = platform.upload(&token, ADD_WAT, None).await;
    assert_error(
        platform.execute(&token, add, json!(1)).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "no_worker",
    );
    let queued: Vec<Value> =
        futures::future::join_all((0..5).map(|i| submit(&platform, &token, add, json!(i)))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for job in &queued {
        let (_, record) = platform
            .get(
                &format!("/invocations/{}", job["id"].as_str().unwrap()),
                Some(&token),
            )
            .await;
        assert_eq!(record["status"], "queued", "{record}");
    }
    platform.stop_all().await;
    platform.restart_all().await;

    // Upgraded from a release whose workers took every job through one
    // consumer: the new worker narrows it to the legacy subjects, or no
    // tenant's consumer could be made beside it.
    let js = async_nats::jetstream::new(platform.nats_client().await);
    js.create_consumer_on_stream(
        async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("workers".into()),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        },
        "FUNCTION_JOBS",
    )
    .await
    .unwrap();

    platform.add_worker().await;
    for (i, job) in queued.iter().enumerate() {
        let record = settled(
            &platform,
            &token,
            job["id"].as_str().unwrap(),
            Duration::from_secs(15),
        )
        .await;
        assert_eq!(record["status"], "succeeded", "{record}");
        assert_eq!(record["result"], i + 1);
    }
}

#[tokio::test]
async fn each_user_may_have_only_so_many_jobs_queued_or_running() {
    let mut setup = Setup {
        workers: 0,
        ..Setup::default()
    };
    setup.api.max_jobs_per_user = 3;
    let mut platform = Platform::start_with(setup).await;
    let alice = platform.user("alice").await;
    let bob = platform.user("bob").await;
    let add = platform.upload(&alice, ADD_WAT, None).await;
    let bobs = platform.upload(&bob, ADD_WAT, None).await;

    // No worker: alice's jobs stay queued, and the fourth is refused
    // without being recorded or queued.
    let queued: Vec<Value> =
        futures::future::join_all((0..3).map(|i| submit(&platform, &alice, add, json!(i)))).await;
    let response = platform
        .http
        .post(platform.url(&format!("/functions/{add}/execute?async=true")))
        .bearer_auth(&alice)
        .json(&json!({"input": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "too_many_jobs", "{body}");
    let js = async_nats::jetstream::new(platform.nats_client().await);
    let mut jobs = js.get_stream("FUNCTION_JOBS").await.unwrap();
    assert_eq!(jobs.info().await.unwrap().state.messages, 3);
    let records = js.get_key_value("invocations").await.unwrap();
    let keys: Vec<String> = records
        .keys()
        .await
        .unwrap()
        .map(|k| k.unwrap())
        .collect()
        .await;
    assert_eq!(keys.len(), 3, "{keys:?}");
    // The quota is per user.
    submit(&platform, &bob, bobs, json!(1)).await;

    // Once a worker has run them, alice may queue again.
    platform.add_worker().await;
    for job in &queued {
        let record = settled(
            &platform,
            &alice,
            job["id"].as_str().unwrap(),
            Duration::from_secs(15),
        )
        .await;
        assert_eq!(record["status"], "succeeded", "{record}");
    }
    let again = submit(&platform, &alice, add, json!(41)).await;
    let record = settled(
        &platform,
        &alice,
        again["id"].as_str().unwrap(),
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(record["result"], 42, "{record}");
}

#[tokio::test]
async fn platform_failures_are_retried_then_recorded() {
    // Nothing loaded ahead of the job (warming off): the worker meets the
    // missing module when it runs it.
    let mut setup = Setup::default();
    setup.worker.warm_modules = 0;
    let platform = Platform::start_with(setup).await;
    let token = platform.user("alice").await;
    let add = platform.upload(&token, ADD_WAT, None).await;
    let (_, meta) = platform
        .get(&format!("/functions/{add}"), Some(&token))
        .await;
    // Remove the module and its artifact behind the function's back: every
    // attempt to run it is now a platform failure (the module is missing),
    // not the function's.
    let js = async_nats::jetstream::new(platform.nats_client().await);
    let modules = js.get_object_store("modules").await.unwrap();
    let digest = meta["digest"].as_str().unwrap();
    let engine = nimbus_cli::platform::worker_engine(&Default::default()).unwrap();
    for name in [
        digest.to_owned(),
        nimbus_store::artifact_name(digest, &engine.artifact_key()),
    ] {
        modules.delete(&name).await.unwrap();
    }

    let queued = submit(&platform, &token, add, json!(1)).await;
    let record = settled(
        &platform,
        &token,
        queued["id"].as_str().unwrap(),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["error"]["source"], "platform", "{record}");
    assert_eq!(record["error"]["kind"], "worker_failed", "{record}");
    assert_eq!(record["attempts"], 3, "{record}");
}

#[tokio::test]
async fn a_one_slot_worker_serves_both_jobs_and_calls() {
    let mut setup = Setup::default();
    setup.worker.concurrency = 1;
    let platform = Platform::start_with(setup).await;
    let token = platform.user("alice").await;
    let add = platform.upload(&token, ADD_WAT, None).await;
    // Jobs and synchronous calls interleaved on the single slot.
    let mut jobs = Vec::new();
    for i in 0..3 {
        jobs.push(submit(&platform, &token, add, json!(i)).await);
        let (status, body) = platform.execute(&token, add, json!(10 + i)).await;
        assert_eq!((status, &body["result"]), (StatusCode::OK, &json!(11 + i)));
    }
    for (i, job) in jobs.iter().enumerate() {
        let record = settled(
            &platform,
            &token,
            job["id"].as_str().unwrap(),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(record["status"], "succeeded", "{record}");
        assert_eq!(record["result"], i + 1);
    }
}

#[tokio::test]
async fn a_job_delivered_again_after_its_result_is_recorded_is_not_run_again() {
    let platform = Platform::start().await;
    let token = platform.user("alice").await;
    let add = platform.upload(&token, ADD_WAT, None).await;
    let queued = submit(&platform, &token, add, json!(1)).await;
    let invocation = queued["id"].as_str().unwrap().to_owned();
    let done = settled(&platform, &token, &invocation, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "succeeded");

    // What a redelivery looks like to a worker: the same job again (as when
    // a worker records the result and dies before acking).
    let (_, meta) = platform
        .get(&format!("/functions/{add}"), Some(&token))
        .await;
    let job = nimbus_core::wire::Job {
        record: serde_json::from_value(queued.clone()).unwrap(),
        request: nimbus_core::wire::JobRequest {
            function_id: add,
            digest: meta["digest"].as_str().unwrap().to_owned(),
            limits: serde_json::from_value(meta["limits"].clone()).unwrap(),
            caller: nimbus_core::Username::parse("alice").unwrap(),
            input: serde_json::value::RawValue::from_string("1".into()).unwrap(),
            wait_ms: 0,
            env: None,
            outbound: Vec::new(),
            kv: None,
            trace: None,
        },
    };
    let client = platform.nats_client().await;
    let mut results = client.subscribe("functions.result.*").await.unwrap();
    client.flush().await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    // Published on the subject older API servers queue jobs on
    // (JOBS_LEGACY), as in a rolling upgrade: the stream still takes it, and
    // a worker handles it like any other.
    js.publish(
        format!("functions.jobs.{add}"),
        serde_json::to_vec(&job).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();

    // The worker takes it (the queue empties) but neither runs nor records it.
    let jobs = js.get_stream("FUNCTION_JOBS").await.unwrap();
    let started = Instant::now();
    loop {
        let mut stream = jobs.clone();
        if stream.info().await.unwrap().state.messages == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "job never taken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = tokio::time::timeout(Duration::from_millis(500), results.next()).await;
    assert!(again.is_err(), "the job ran again: {again:?}");
    let (_, record) = platform
        .get(&format!("/invocations/{invocation}"), Some(&token))
        .await;
    assert_eq!(record, done, "the recorded outcome is untouched");
}

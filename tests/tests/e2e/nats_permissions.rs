//! The shipped NATS permissions (`deploy/nats/nats.conf`), probed with each
//! credential while Nimbus runs under them (`deploy.rs` starts it): every
//! forbidden action is refused by the server (its log names the violation)
//! and has no effect.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt;
use nimbus_cli::platform::{self, Role};
use nimbus_core::subjects;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Credentials (as URLs), the running API, and the server's log.
pub struct Probes {
    pub worker: String,
    pub api: String,
    pub base: String,
    pub log: PathBuf,
}

impl Probes {
    pub async fn run(&self) {
        let as_worker = platform::connect(&self.worker, "probe", Role::Worker)
            .await
            .unwrap();
        let as_api = platform::connect(&self.api, "probe", Role::Api)
            .await
            .unwrap();

        // Sniffing: neither may read the other's replies, and the API may
        // not take invocations.
        let mut sniffers = [
            as_worker.subscribe("_INBOX_api.>").await.unwrap(),
            as_worker.subscribe("_INBOX.>").await.unwrap(),
            // Every call, outside the queue group: each carries its
            // function's sealed environment.
            as_worker.subscribe(subjects::EXECUTE_ALL).await.unwrap(),
            as_api.subscribe("_INBOX_worker.>").await.unwrap(),
            as_api.subscribe(subjects::EXECUTE_ALL).await.unwrap(),
            // Key-value operations (each with its grant): only API servers
            // take them, in their queue group.
            as_worker.subscribe(subjects::KV_REQUESTS).await.unwrap(),
            as_api.subscribe(subjects::KV_REQUESTS).await.unwrap(),
        ];
        // Forging: a worker may not publish invocations, nor answer what
        // it was not asked (a fake reply in the API's inbox).
        let witness = platform::connect(&self.worker, "witness", Role::Worker)
            .await
            .unwrap();
        let mut forged_call = witness.subscribe("functions.execute.999999").await.unwrap();
        let mut forged_reply = as_api.subscribe("_INBOX_api.probe").await.unwrap();
        for client in [&as_worker, &as_api, &witness] {
            client.flush().await.unwrap();
        }
        as_worker
            .publish("functions.execute.999999", "{}".into())
            .await
            .unwrap();
        as_worker
            .publish("_INBOX_api.probe", "forged".into())
            .await
            .unwrap();
        // Nor write to the modules store (an artifact is native code).
        as_worker
            .publish("$O.modules.M.probe", "{}".into())
            .await
            .unwrap();
        as_worker.flush().await.unwrap();

        // Traffic for the sniffers: a login (the API reads the users
        // bucket), a new module's first call (the worker fetches it).
        let token = self.login().await;
        let wat = "(module (func (export \"handle\") (param i32) (result i32) (i32.add (local.get 0) (i32.const 5))))";
        let (status, created) = self
            .call("/functions", Some(&token), json!({"code": wat}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        // With a secret, which only API servers may read from the store
        // (a worker gets it sealed, with the calls it runs).
        let id = created["id"].as_u64().unwrap();
        let (status, body) = self
            .send(
                reqwest::Method::PUT,
                &format!("/functions/{id}/secrets/TOKEN"),
                &token,
                "probe-secret".into(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let path = format!("/functions/{id}/execute");
        let (status, body) = self.call(&path, Some(&token), json!({"input": 1})).await;
        assert_eq!(
            (status, &body["result"]),
            (StatusCode::OK, &json!(6)),
            "{body}"
        );

        // An asynchronous call: the worker takes it through its tenant's
        // jobs consumer, which it creates.
        let (status, queued) = self
            .call(
                &format!("{path}?async=true"),
                Some(&token),
                json!({"input": 2}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
        let record = self
            .settled(
                &format!("/invocations/{}", queued["id"].as_str().unwrap()),
                &token,
            )
            .await;
        assert_eq!(record["result"], 7, "{record}");

        // A worker may not make an API server answer where it says: the
        // API writes to buckets, and answers only workers' inboxes (checked
        // below, once a later operation has been served).
        as_worker
            .publish_with_reply(
                subjects::KV_REQUESTS,
                "$KV.kv_data.ada.default.injected",
                "{\"store\":\"default\",\"op\":\"get\",\"key\":\"probe\"}".into(),
            )
            .await
            .unwrap();
        // A function with state: its worker reaches the store through an
        // API server, with the grant its call carries.
        let (status, created) = self
            .call(
                "/functions",
                Some(&token),
                json!({"code": KV_WAT, "key_value_stores": ["default"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let path = format!("/functions/{}/execute", created["id"]);
        let (status, body) = self.call(&path, Some(&token), json!({"input": 0})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let counted = reqwest::Client::new()
            .get(format!("{}/kv/default/probe", self.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(counted.text().await.unwrap(), "1");

        // But may neither read nor write the state itself.
        as_worker
            .publish("$KV.kv_data.ada.default.probe", "forged".into())
            .await
            .unwrap();
        as_worker
            .publish(
                "$JS.API.DIRECT.GET.KV_kv_data.$KV.kv_data.ada.default.probe",
                "".into(),
            )
            .await
            .unwrap();
        as_worker.flush().await.unwrap();
        let injected = reqwest::Client::new()
            .get(format!("{}/kv/default/injected", self.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(injected.status(), StatusCode::NOT_FOUND);

        for (n, sniffer) in sniffers.iter_mut().enumerate() {
            assert_nothing(sniffer, &format!("sniffer {n}")).await;
        }
        assert_nothing(&mut forged_call, "an invocation published by a worker").await;
        assert_nothing(&mut forged_reply, "a reply forged by a worker").await;

        // The worker can neither read users nor administer streams.
        // Refused requests time out: not the default 10 s each.
        let context = |client: &async_nats::Client| {
            jetstream::ContextBuilder::new()
                .timeout(Duration::from_secs(2))
                .build(client.clone())
        };
        let worker_js = context(&as_worker);
        if let Ok(users) = worker_js.get_key_value(subjects::USERS_BUCKET).await {
            let read = tokio::time::timeout(Duration::from_secs(2), users.get("ada")).await;
            assert!(
                !matches!(read, Ok(Ok(Some(_)))),
                "the worker user must not read password hashes"
            );
        }
        if let Ok(config) = worker_js
            .get_key_value(subjects::FUNCTION_CONFIG_BUCKET)
            .await
        {
            let read =
                tokio::time::timeout(Duration::from_secs(2), config.get(id.to_string())).await;
            assert!(
                !matches!(read, Ok(Ok(Some(_)))),
                "the worker user must not read functions' configuration"
            );
        }
        let mut users_stream = worker_js.get_stream("KV_users").await.unwrap();
        let before = users_stream.info().await.unwrap().config.clone();
        let shortened = jetstream::stream::Config {
            max_age: Duration::from_secs(1),
            ..before.clone()
        };
        assert!(worker_js.update_stream(shortened).await.is_err());
        assert!(worker_js.delete_stream("KV_users").await.is_err());
        assert!(worker_js.delete_stream("OBJ_modules").await.is_err());
        let modules = worker_js.get_stream("OBJ_modules").await.unwrap();
        assert!(modules.purge().await.is_err());
        // Jobs are taken through consumers of one tenant each (or the
        // legacy subjects'), never one over every job.
        let every_job = jetstream::consumer::pull::Config {
            durable_name: Some("every-job".into()),
            ..Default::default()
        };
        assert!(
            worker_js
                .create_consumer_on_stream(every_job, subjects::JOBS_STREAM)
                .await
                .is_err()
        );
        // The API provisions, but deletes nothing; it purges the chunks of
        // unused modules (module GC), and nothing else.
        let api_js = context(&as_api);
        assert!(api_js.delete_stream("KV_users").await.is_err());
        assert!(api_js.delete_stream("FUNCTION_JOBS").await.is_err());
        let users = api_js.get_stream("KV_users").await.unwrap();
        assert!(users.purge().await.is_err());

        // Every refusal is the server's, and nothing changed: the users
        // stream keeps its configuration, logins still work.
        for (kind, user, subject) in [
            ("Subscription", "worker", "_INBOX_api.>"),
            ("Subscription", "worker", "_INBOX.>"),
            ("Subscription", "worker", subjects::EXECUTE_ALL),
            ("Subscription", "api", "_INBOX_worker.>"),
            ("Subscription", "api", subjects::EXECUTE_ALL),
            ("Subscription", "worker", subjects::KV_REQUESTS),
            ("Subscription", "api", subjects::KV_REQUESTS),
            ("Publish", "worker", "$KV.kv_data.ada.default.probe"),
            (
                "Publish",
                "worker",
                "$JS.API.DIRECT.GET.KV_kv_data.$KV.kv_data.ada.default.probe",
            ),
            ("Publish", "worker", "functions.execute.999999"),
            ("Publish", "worker", "_INBOX_api.probe"),
            ("Publish", "worker", "$JS.API.STREAM.UPDATE.KV_users"),
            ("Publish", "worker", "$JS.API.STREAM.DELETE.KV_users"),
            ("Publish", "worker", "$JS.API.STREAM.PURGE.OBJ_modules"),
            ("Publish", "worker", "$O.modules.M.probe"),
            (
                "Publish",
                "worker",
                "$JS.API.CONSUMER.CREATE.FUNCTION_JOBS.every-job",
            ),
            (
                "Publish",
                "worker",
                &format!("$JS.API.DIRECT.GET.KV_function_config.$KV.function_config.{id}"),
            ),
            ("Publish", "api", "$JS.API.STREAM.DELETE.KV_users"),
            ("Publish", "api", "$JS.API.STREAM.PURGE.KV_users"),
        ] {
            self.refused(kind, user, subject).await;
        }
        let after = users_stream.info().await.unwrap().config.clone();
        assert_eq!(after.max_age, before.max_age);
        self.login().await;
    }

    async fn login(&self) -> String {
        let credentials = json!({"username": "ada", "password": "password123"});
        let (status, body) = self.call("/auth/login", None, credentials).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let response = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn call(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// Poll an invocation record at `path` until it is final.
    async fn settled(&self, path: &str, token: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let response = reqwest::Client::new()
                .get(format!("{}{path}", self.base))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let record: Value = response.json().await.unwrap();
            if record["status"] == "succeeded" || record["status"] == "failed" {
                return record;
            }
            assert!(Instant::now() < deadline, "never final: {record}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait for the server's log to name `kind` violation by `user` on
    /// `subject`.
    async fn refused(&self, kind: &str, user: &str, subject: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.lines().any(|line| {
                line.contains(&format!("user:{user}\" - {kind} Violation"))
                    && line.contains(&format!("Subject \"{subject}\""))
            }) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {kind} violation logged for {user} on {subject}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A function that adds 1 to `probe` in its owner's `default` store
/// through `nimbus_kv`.
const KV_WAT: &str = r#"(module
  (import "nimbus_kv" "call" (func $call (param i32 i32) (result i32)))
  (import "nimbus_kv" "read" (func $read (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{\"store\":\"default\",\"op\":\"increment\",\"key\":\"probe\",\"delta\":1}")
  (func (export "handle") (param i32) (result i32)
    (drop (call $call (i32.const 0) (i32.const 60)))
    (call $read (i32.const 1024) (i32.const 512))))"#;

async fn assert_nothing(subscriber: &mut async_nats::Subscriber, what: &str) {
    let received = tokio::time::timeout(Duration::from_millis(500), subscriber.next()).await;
    assert!(
        !matches!(received, Ok(Some(_))),
        "{what} got through: {received:?}"
    );
}

//! One run on the engine: check the limits against this worker's policy,
//! get the compiled module, run it, publish the guest's log output on
//! `functions.logs.<id>` and, when the function failed, an event on
//! `functions.error`.
//!
//! A call may carry the function's environment (variables and secrets),
//! sealed by the API server: it is opened here, with the platform's
//! environment key, for this run only.
//!
//! The input is the request's own payload buffer and the result the
//! engine's own output buffer: nothing is parsed or copied on the way. A
//! call on a function's URL carries an HTTP request instead, served by the
//! engine and answered with the response (head and body, one copy).

use async_nats::HeaderMap;
use bytes::Bytes;
use nimbus_core::outbound::check_allowed_hosts;
use nimbus_core::wire::{Call, HttpRequest, Reply, Success, headers};
use nimbus_core::{Env, subjects};
use std::sync::Arc;
use std::time::Instant;

use nimbus_core::metrics::Trigger;
use tracing::Instrument;

use nimbus_core::kv::Grant;
use nimbus_engine::{Capabilities, KvAccess, Outbound, Outcome};

use crate::Worker;
use crate::kv_client::NatsKv;

impl Worker {
    /// Run `call` on `input`, invoked by `trigger`, say how it went, and
    /// count it.
    ///
    /// The run is a log span naming the function, the invocation and its
    /// trace, so every line logged about it carries them. At debug level
    /// only: a span costs an allocation and its fields' formatting on every
    /// call (measured: a few percent of throughput at info); the error
    /// lines below name the invocation themselves.
    pub(crate) async fn invoke(&self, call: &Call, input: Bytes, trigger: Trigger) -> Reply {
        let span = tracing::debug_span!(
            "invocation",
            function = call.function_id,
            invocation = %call.invocation.as_deref().unwrap_or_default(),
            trace_id = %call.trace.map(|t| t.trace_id_hex()).unwrap_or_default(),
        );
        async {
            let started = Instant::now();
            let exported = self
                .config
                .export_spans
                .then(|| crate::run_span::RunSpan::start(call, trigger));
            let reply = self.run(call, input).await;
            let elapsed = started.elapsed();
            self.metrics.run(call.function_id, trigger, &reply, elapsed);
            let (outcome, fuel) = nimbus_core::metrics::outcome_of(&reply);
            if let Some(span) = exported {
                span.end(outcome, fuel);
            }
            tracing::debug!(
                trigger = trigger.as_str(),
                outcome = outcome.map_or("ok", |kind| kind.as_str()),
                fuel = fuel.unwrap_or_default(),
                micros = elapsed.as_micros() as u64,
                "invocation finished"
            );
            reply
        }
        .instrument(span)
        .await
    }

    async fn run(&self, call: &Call, input: Bytes) -> Reply {
        if let Err(e) = self.config.policy.check(&call.limits) {
            return Reply::PlatformError(format!("limits refused by this worker: {e}"));
        }
        if self.config.benchmark_floor {
            return Reply::Ok(Success {
                result: input,
                fuel_consumed: 0,
                duration_us: 0,
                http: call.http,
            });
        }
        let module = match self.module(&call.digest).await {
            Ok(module) => module,
            Err(error) => {
                let message = nimbus_core::error::describe(&error);
                tracing::error!(
                    function = call.function_id,
                    invocation = %call.invocation.as_deref().unwrap_or_default(),
                    digest = %call.digest,
                    %message
                );
                return Reply::PlatformError(message);
            }
        };
        let capabilities = match self.capabilities(call) {
            Ok(capabilities) => capabilities,
            Err(message) => {
                tracing::error!(
                    function = call.function_id,
                    invocation = %call.invocation.as_deref().unwrap_or_default(),
                    %message
                );
                return Reply::PlatformError(message);
            }
        };
        let (outcome, http) = match call.http {
            None => (
                self.engine
                    .invoke_with(&module, input, &call.limits, &capabilities)
                    .await,
                None,
            ),
            Some(head_len) => {
                let request = match HttpRequest::decode(input, head_len) {
                    Ok(request) => request,
                    Err(e) => return Reply::PlatformError(format!("unreadable call: {e}")),
                };
                let outcome = self
                    .engine
                    .serve_with(&module, request, &call.limits, &capabilities)
                    .await;
                let mut head_len = None;
                let outcome = Outcome {
                    result: outcome.result.map(|response| {
                        let (payload, len) = response.encode();
                        head_len = Some(len);
                        payload
                    }),
                    fuel_consumed: outcome.fuel_consumed,
                    duration: outcome.duration,
                    logs: outcome.logs,
                    logs_truncated: outcome.logs_truncated,
                };
                (outcome, head_len)
            }
        };
        // Calls that fail do not make a function hot: one whose every call
        // fails would be prepared for nothing.
        if outcome.result.is_ok() {
            self.count_call(&module, &call.limits);
        }
        if !outcome.logs.is_empty() {
            self.publish_logs(call, outcome.logs, outcome.logs_truncated)
                .await;
        }
        match outcome.result {
            // The engine validated the output: one JSON document, or the
            // HTTP response a handler wrote.
            Ok(result) => Reply::Ok(Success {
                result,
                fuel_consumed: outcome.fuel_consumed,
                duration_us: outcome.duration.as_micros() as u64,
                http,
            }),
            Err(error) => {
                let event = serde_json::json!({
                    "function_id": call.function_id,
                    "caller": call.caller,
                    "kind": error.kind,
                    "message": error.message,
                    "fuel_consumed": error.fuel_consumed,
                });
                self.client
                    .publish(subjects::ERRORS, event.to_string().into())
                    .await
                    .ok();
                Reply::FunctionError(error)
            }
        }
    }

    /// What `call` may use: the environment it carries, opened, and the
    /// hosts its function may call, under this worker's outbound policy.
    fn capabilities(&self, call: &Call) -> Result<Capabilities, String> {
        let allowed = check_allowed_hosts(&call.outbound)
            .map_err(|e| format!("the call's allowed_outbound_hosts are unreadable: {e}"))?;
        Ok(Capabilities {
            env: self.open_env(call)?,
            outbound: Outbound {
                allowed,
                reach: self.reach.clone(),
                max_requests: self.config.max_outbound_requests,
            },
            kv: self.kv_access(call)?,
        })
    }

    /// The stores `call`'s grant names, reached through the API servers.
    fn kv_access(&self, call: &Call) -> Result<KvAccess, String> {
        let Some(grant) = &call.kv else {
            return Ok(KvAccess::default());
        };
        let stores = Grant::read_unverified(grant)
            .ok_or("the call's key-value grant is unreadable")?
            .stores;
        Ok(KvAccess {
            backend: Some(Arc::new(NatsKv {
                client: self.client.clone(),
                grant: grant.clone(),
            })),
            stores,
            max_operations: self.config.max_kv_operations,
        })
    }

    /// The environment `call` carries, opened (empty when it carries none).
    fn open_env(&self, call: &Call) -> Result<Env, String> {
        let Some(sealed) = &call.env else {
            return Ok(Env::default());
        };
        let key = self.config.env_key.as_ref().ok_or(
            "the function has variables or secrets and this worker has no environment key \
             (NIMBUS_ENV_KEY)",
        )?;
        let plain = key
            .open(call.function_id, sealed)
            .map_err(|e| format!("the function's environment is unreadable: {e}"))?;
        Env::decode(&plain).map_err(|e| format!("the function's environment is unreadable: {e}"))
    }

    async fn publish_logs(&self, call: &Call, logs: Bytes, truncated: bool) {
        let mut log_headers = HeaderMap::new();
        log_headers.insert(headers::CALLER, call.caller.as_str());
        if let Some(id) = &call.invocation {
            log_headers.insert(headers::INVOCATION, id.as_str());
        }
        if let Some(trace) = &call.trace {
            log_headers.insert(headers::TRACEPARENT, trace.to_string().as_str());
        }
        if truncated {
            log_headers.insert(headers::LOGS_TRUNCATED, "true");
        }
        let subject = subjects::logs(call.function_id);
        if let Err(e) = self
            .client
            .publish_with_headers(subject, log_headers, logs)
            .await
        {
            tracing::warn!(
                function = call.function_id,
                invocation = %call.invocation.as_deref().unwrap_or_default(),
                error = %e,
                "could not publish logs"
            );
        }
    }
}

//! `Client`'s log commands: the kept entries (`nimbus logs`) and following
//! them live (`nimbus logs -f`, Server-Sent Events).

use std::time::Duration;

use anyhow::Context;
use nimbus_core::FunctionId;
use nimbus_store::LogEntry;
use serde::Deserialize;

use super::Client;

/// Reconnections in a row `follow_logs` tries before it gives up.
pub const FOLLOW_RETRIES: u32 = 8;

/// What `/functions/{id}/logs` answers.
#[derive(Deserialize)]
struct Logs {
    logs: Vec<LogEntry>,
}

impl Client {
    /// `GET /functions/{id}/logs`; the most recent `limit` entries.
    pub async fn logs(&self, id: FunctionId, limit: usize) -> anyhow::Result<Vec<LogEntry>> {
        let request = self
            .authed(reqwest::Method::GET, &format!("/functions/{id}/logs"))?
            .query(&[("limit", limit)]);
        let logs: Logs = self.call(request).await?;
        Ok(logs.logs)
    }

    /// `GET /functions/{id}/logs?follow=true`: the most recent `limit`
    /// entries, then each new one as it is written, handed to `each`; the
    /// server's Server-Sent Events read with `eventsource-stream`. When a
    /// stream ends (the server ends them after an hour, or on shutdown) or
    /// breaks off (the server restarts), this reconnects, with a growing
    /// pause, and resumes after the last entry (`Last-Event-ID`). Returns on
    /// an error answer, or after [`FOLLOW_RETRIES`] failed reconnections.
    pub async fn follow_logs(
        &self,
        id: FunctionId,
        limit: usize,
        mut each: impl FnMut(LogEntry),
    ) -> anyhow::Result<()> {
        use eventsource_stream::Eventsource;
        use futures::StreamExt;
        let mut last_event: Option<String> = None;
        let mut failures = 0u32;
        loop {
            let mut request = self
                .authed(reqwest::Method::GET, &format!("/functions/{id}/logs"))?
                .query(&[("follow", "true")])
                .query(&[("limit", limit)]);
            if let Some(last) = &last_event {
                request = request.header("last-event-id", last);
            }
            let broke = match request.send().await {
                // An answer that is an error (401, 404...) is final.
                Ok(response) => {
                    let response = self.send_answered(response).await?;
                    let mut events = response.bytes_stream().eventsource();
                    let mut broke = None;
                    while let Some(event) = events.next().await {
                        match event {
                            Ok(event) if event.event == "log" => {
                                each(
                                    serde_json::from_str(&event.data)
                                        .context("an unreadable log event")?,
                                );
                                last_event = Some(event.id);
                                failures = 0;
                            }
                            Ok(_) => {}
                            Err(e) => {
                                broke = Some(anyhow::anyhow!("the log stream broke off: {e}"));
                                break;
                            }
                        }
                    }
                    broke
                }
                Err(e) => Some(
                    anyhow::Error::new(e)
                        .context(format!("cannot reach the Nimbus API at {}", self.url)),
                ),
            };
            failures += 1;
            if let Some(error) = broke
                && failures > FOLLOW_RETRIES
            {
                return Err(error);
            }
            let pause = Duration::from_millis(250 << failures.min(5));
            tokio::time::sleep(pause).await;
        }
    }
}

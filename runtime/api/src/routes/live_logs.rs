//! `GET /functions/{id}/logs?follow=true`: a function's logs as
//! Server-Sent Events, the kept entries first (the newest `limit`), then
//! each new one as the worker publishes it. Every event is
//! `event: log`, `id: <stream sequence>`, `data: <entry JSON>` (as in the
//! listing); a client that reconnects with `Last-Event-ID` resumes right
//! after the last entry it got, and `EventSource` does that by itself.
//!
//! Bounds: one user follows at most [`FOLLOWS_PER_USER`] functions at once
//! per API server (429 beyond); a connection lasts at most [`MAX_FOLLOW`]
//! (the client reconnects and resumes); a comment every 15 s keeps idle
//! connections open through proxies. Entries are read from NATS only as
//! fast as the client takes them (`nimbus_store::LogFollow`): a slow reader
//! holds no backlog here.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use nimbus_core::{FunctionId, Username};
use nimbus_store::FollowFrom;

use crate::{ApiError, AppState};

/// Functions one user may follow at once, per API server.
pub(crate) const FOLLOWS_PER_USER: usize = 8;
/// How long one connection follows before the server ends it.
const MAX_FOLLOW: Duration = Duration::from_secs(3600);

/// Follow `caller`'s function `id` (its existence checked by the caller of
/// this), starting with its newest `limit` entries unless `headers` resume.
pub(crate) async fn follow(
    state: &AppState,
    caller: &Username,
    id: FunctionId,
    limit: usize,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let turn =
        state
            .log_follows
            .try_take(caller.as_str())
            .ok_or_else(|| ApiError::TooManyRequests {
                message: format!(
                    "you follow {FOLLOWS_PER_USER} functions' logs already; close one first"
                ),
                retry_after: Duration::from_secs(5),
            })?;
    let from = match headers.get("last-event-id") {
        None => FollowFrom::Newest(limit),
        Some(value) => FollowFrom::After(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "Last-Event-ID must be an event id this stream sent".into(),
                    )
                })?,
        ),
    };
    let entries = state.storage()?.follow_logs(id, from).await?;
    let events = entries
        .take_while(move |entry| {
            if let Err(e) = entry {
                let error = nimbus_core::error::describe(e);
                tracing::warn!(function = id, %error, "stopped following logs");
            }
            std::future::ready(entry.is_ok())
        })
        .filter_map(|entry| std::future::ready(entry.ok()))
        .map(move |(sequence, entry)| {
            // The turn lasts as long as the stream.
            let _held = &turn;
            let event = Event::default()
                .event("log")
                .id(sequence.to_string())
                .json_data(&entry)
                .expect("a log entry serialises");
            Ok::<_, Infallible>(event)
        })
        .take_until(tokio::time::sleep(MAX_FOLLOW));
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

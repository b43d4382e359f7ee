//! `GET /functions/{id}/logs?follow=true`: a function's logs as
//! Server-Sent Events, the kept entries first (the newest `limit`), then
//! each new one as the worker publishes it. Every event is
//! `event: log`, `id: <stream sequence>`, `data: <entry JSON>` (as in the
//! listing); a client that reconnects with `Last-Event-ID` resumes right
//! after the last entry it got, and `EventSource` does that by itself.
//!
//! Bounds: one user has at most [`FOLLOWS_PER_USER`] follows open at once
//! per API server, and the server [`FOLLOWS_PER_SERVER`] (429 beyond); a
//! connection lasts at most [`MAX_FOLLOW`], and ends when the server shuts
//! down (the client reconnects and resumes); a comment every 15 s keeps idle
//! connections open through proxies, and `X-Accel-Buffering: no` asks
//! nginx-based gateways (APISIX) not to hold events back. Entries are read
//! from NATS only as fast as the client takes them
//! (`nimbus_store::LogFollow`): a slow reader holds no backlog here. Errors
//! the consumer recovers from (a missed heartbeat) are skipped; ten in a
//! row end the stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use nimbus_core::{FunctionId, Username};
use nimbus_store::FollowFrom;

use crate::{ApiError, AppState};

/// Follows one user may have open at once, per API server.
pub(crate) const FOLLOWS_PER_USER: usize = 8;
/// Follows one API server serves at once (each holds a NATS consumer).
pub(crate) const FOLLOWS_PER_SERVER: usize = 1024;
/// Consumer errors in a row that end a follow.
const MAX_ERRORS_IN_A_ROW: u32 = 10;
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
    let busy = |message: String| ApiError::TooManyRequests {
        message,
        retry_after: Duration::from_secs(5),
    };
    let turn = state.log_follows.try_take(caller.as_str()).ok_or_else(|| {
        busy(format!(
            "you have {FOLLOWS_PER_USER} log follows open already; close one first"
        ))
    })?;
    let server_turn = state
        .all_log_follows
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            busy(format!(
                "this server serves {FOLLOWS_PER_SERVER} log follows already"
            ))
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
    let mut stopping = state.stopping.subscribe();
    let ended = async move {
        tokio::select! {
            () = tokio::time::sleep(MAX_FOLLOW) => {}
            _ = stopping.wait_for(|stopping| *stopping) => {}
        }
    };
    let events = entries
        .scan(0u32, move |errors, entry| {
            let next = match entry {
                Ok(entry) => {
                    *errors = 0;
                    Some(Some(entry))
                }
                Err(e) => {
                    *errors += 1;
                    let error = nimbus_core::error::describe(&e);
                    tracing::debug!(function = id, %error, "a log follow's consumer failed");
                    (*errors < MAX_ERRORS_IN_A_ROW).then_some(None)
                }
            };
            std::future::ready(next)
        })
        .filter_map(std::future::ready)
        .map(move |(sequence, entry)| {
            // The turns last as long as the stream.
            let _held = (&turn, &server_turn);
            let event = Event::default()
                .event("log")
                .id(sequence.to_string())
                .json_data(&entry)
                .expect("a log entry serialises");
            Ok::<_, Infallible>(event)
        })
        .take_until(ended);
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

//! Following a function's logs as they are written: the entries the log
//! stream keeps, then every new one, each with its stream sequence (which a
//! client resumes after). Behind `GET /functions/{id}/logs?follow=true`.
//!
//! An ordered push consumer delivers them. JetStream's flow control bounds
//! what it sends ahead of what has been read, and this stream is read only
//! as fast as the follower takes it: a slow reader slows its own delivery,
//! it does not make the server buffer its backlog.

use async_nats::jetstream::consumer::{DeliverPolicy, push::OrderedConfig};
use futures::StreamExt;
use futures::stream::BoxStream;
use nimbus_core::{FunctionId, subjects};

use crate::error::unavailable;
use crate::failover::{NatsError, Retry};
use crate::logs::LogEntry;
use crate::{Storage, StoreError};

/// Where following starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowFrom {
    /// The newest this many of the entries kept, then new ones.
    Newest(usize),
    /// The entries after this stream sequence (a client resuming).
    After(u64),
}

/// Log entries as they come, with their stream sequences.
pub type LogFollow = BoxStream<'static, Result<(u64, LogEntry), StoreError>>;

impl Storage {
    /// Follow function `id`'s logs from `from` on; the stream ends only on
    /// an error (or when dropped).
    pub async fn follow_logs(
        &self,
        id: FunctionId,
        from: FollowFrom,
    ) -> Result<LogFollow, StoreError> {
        let deliver_policy = match from {
            FollowFrom::Newest(_) => DeliverPolicy::All,
            FollowFrom::After(sequence) => DeliverPolicy::ByStartSequence {
                start_sequence: sequence.saturating_add(1),
            },
        };
        let consumer = self
            .ride_out(Retry::Idempotent, "follow logs", || async {
                self.logs
                    .create_consumer(OrderedConfig {
                        deliver_subject: self.client.new_inbox(),
                        filter_subject: subjects::logs(id),
                        deliver_policy,
                        ..Default::default()
                    })
                    .await
                    .map_err(NatsError::new)
            })
            .await?;
        // The stream keeps a bounded number of entries per function: skip
        // the older ones rather than look up where the newest start.
        let skip = match from {
            FollowFrom::Newest(newest) => consumer
                .cached_info()
                .num_pending
                .saturating_sub(newest as u64),
            FollowFrom::After(_) => 0,
        };
        let messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable("follow logs", e))?;
        let entries = messages.skip(skip as usize).map(|message| {
            let message = message.map_err(|e| unavailable("follow logs", e))?;
            let info = message
                .info()
                .map_err(|e| unavailable("follow logs", NatsError::boxed(e)))?;
            Ok((info.stream_sequence, LogEntry::of(&message, info.published)))
        });
        Ok(entries.boxed())
    }
}

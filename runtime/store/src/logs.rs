//! Function logs: what guests wrote to stderr, one message per invocation
//! in the log stream, one subject per function.

use std::collections::VecDeque;

use async_nats::jetstream::consumer::{DeliverPolicy, push::OrderedConfig};
use futures::StreamExt;
use nimbus_core::wire::headers;
use nimbus_core::{FunctionId, subjects};
use serde::{Deserialize, Serialize};

use crate::codec::rfc3339;
use crate::failover::{NatsError, Retry};
use crate::{Storage, StoreError};

/// One invocation's log output, as kept by the log stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// RFC 3339 time the worker published it.
    pub time: String,
    /// Who invoked the function.
    pub caller: String,
    /// The text the guest wrote to stderr (lossily decoded as UTF-8).
    pub text: String,
    /// Whether the guest wrote more than its log cap.
    pub truncated: bool,
}

impl Storage {
    /// The newest log entries of function `id`, oldest first: at most
    /// `limit` of them and `max_bytes` of text.
    ///
    /// Reads the function's subject of the log stream from the start of its
    /// retention, which the stream bounds to `log_max_per_function` messages.
    pub async fn logs(
        &self,
        id: FunctionId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.ride_out(Retry::Idempotent, "read logs", || {
            self.read_logs(id, limit, max_bytes)
        })
        .await
    }

    async fn read_logs(
        &self,
        id: FunctionId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, NatsError> {
        let consumer = self
            .logs
            .create_consumer(OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: subjects::logs(id),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(NatsError::new)?;
        let mut entries: VecDeque<LogEntry> = VecDeque::with_capacity(limit.min(1024));
        let mut entry_bytes = 0usize;
        if consumer.cached_info().num_pending == 0 {
            return Ok(Vec::new());
        }
        let mut messages = consumer.messages().await.map_err(NatsError::new)?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(NatsError::new)?;
            let info = message.info().map_err(NatsError::boxed)?;
            let pending = info.pending;
            let header = |name: &str| {
                message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_owned())
            };
            if entries.len() == limit
                && let Some(oldest) = entries.pop_front()
            {
                entry_bytes -= oldest.text.len();
            }
            let text = String::from_utf8_lossy(&message.payload).into_owned();
            entry_bytes += text.len();
            entries.push_back(LogEntry {
                time: rfc3339(info.published),
                caller: header(headers::CALLER).unwrap_or_default(),
                text,
                truncated: header(headers::LOGS_TRUNCATED).is_some(),
            });
            while entry_bytes > max_bytes
                && let Some(oldest) = entries.pop_front()
            {
                entry_bytes -= oldest.text.len();
            }
            if pending == 0 {
                break;
            }
        }
        Ok(entries.into())
    }
}

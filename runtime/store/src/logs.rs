//! Function logs: what guests wrote to stderr, one message per invocation
//! in the log stream, one subject per function.

use std::collections::VecDeque;

use async_nats::jetstream::consumer::{DeliverPolicy, push::OrderedConfig};
use futures::StreamExt;
use nimbus_core::trace::TraceParent;
use nimbus_core::wire::headers;
use nimbus_core::{FunctionId, subjects};
use serde::{Deserialize, Serialize};

use crate::codec::rfc3339;
use crate::failover::{NatsError, Retry};
use crate::{Storage, StoreError};

/// One invocation's log output, as kept by the log stream.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The invocation that wrote it (absent from entries of releases that
    /// did not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// The trace that invocation belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl LogEntry {
    /// The entry a message of the log stream holds, published at
    /// `published`.
    pub(crate) fn of(message: &async_nats::Message, published: time::OffsetDateTime) -> Self {
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        Self {
            time: rfc3339(published),
            caller: header(headers::CALLER).unwrap_or_default(),
            text: String::from_utf8_lossy(&message.payload).into_owned(),
            truncated: header(headers::LOGS_TRUNCATED).is_some(),
            invocation_id: header(headers::INVOCATION),
            trace_id: header(headers::TRACEPARENT)
                .and_then(|t| TraceParent::parse(&t))
                .map(|t| t.trace_id_hex()),
        }
    }
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
            if entries.len() == limit
                && let Some(oldest) = entries.pop_front()
            {
                entry_bytes -= oldest.text.len();
            }
            let entry = LogEntry::of(&message, info.published);
            entry_bytes += entry.text.len();
            entries.push_back(entry);
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

/// What a function's kept logs take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LogUsage {
    /// Entries kept (one per invocation that wrote any).
    pub entries: u64,
    /// Their text, in bytes.
    pub bytes: u64,
}

impl Storage {
    /// Delete every log entry of function `id` (the function is deleted).
    pub async fn purge_logs(&self, id: FunctionId) -> Result<(), StoreError> {
        let subject = subjects::logs(id);
        self.ride_out(Retry::Idempotent, "purge logs", || async {
            self.logs.purge().filter(&subject).await.map(|_| ())
        })
        .await
    }

    /// Log entries kept per function (older ones make way for newer ones of
    /// the same function only).
    pub fn log_entries_per_function(&self) -> u64 {
        u64::try_from(self.log_max_per_function).unwrap_or(u64::MAX)
    }

    /// The log usage of each function of `ids`: one pass over their
    /// entries alone, headers only (the server sends each entry's size, not
    /// its text).
    pub async fn log_usage(
        &self,
        ids: &[FunctionId],
    ) -> Result<std::collections::HashMap<FunctionId, LogUsage>, StoreError> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        self.ride_out(Retry::Idempotent, "read log usage", || {
            self.read_log_usage(ids)
        })
        .await
    }

    async fn read_log_usage(
        &self,
        ids: &[FunctionId],
    ) -> Result<std::collections::HashMap<FunctionId, LogUsage>, NatsError> {
        let mut usage: std::collections::HashMap<FunctionId, LogUsage> =
            ids.iter().map(|&id| (id, LogUsage::default())).collect();
        let consumer = self
            .logs
            .create_consumer(OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subjects: ids.iter().map(|&id| subjects::logs(id)).collect(),
                deliver_policy: DeliverPolicy::All,
                headers_only: true,
                ..Default::default()
            })
            .await
            .map_err(NatsError::new)?;
        if consumer.cached_info().num_pending == 0 {
            return Ok(usage);
        }
        let mut messages = consumer.messages().await.map_err(NatsError::new)?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(NatsError::new)?;
            let pending = message.info().map_err(NatsError::boxed)?.pending;
            let id = message
                .subject
                .rsplit_once('.')
                .and_then(|(_, id)| id.parse::<FunctionId>().ok());
            let size = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Size"))
                .and_then(|v| v.as_str().parse::<u64>().ok())
                .unwrap_or(0);
            if let Some(entry) = id.and_then(|id| usage.get_mut(&id)) {
                entry.entries += 1;
                entry.bytes += size;
            }
            if pending == 0 {
                break;
            }
        }
        Ok(usage)
    }
}

//! The NATS connection's own counters, as metrics read at each scrape:
//! reconnects (connections made after the first) and messages in and out.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_nats::{Client, Statistics};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;

/// A [`Collector`] of a client's connection counters.
pub struct NatsMetrics(Arc<Statistics>);

impl NatsMetrics {
    /// The counters of `client`'s connection.
    pub fn new(client: &Client) -> Self {
        Self(client.statistics())
    }
}

impl std::fmt::Debug for NatsMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsMetrics").finish_non_exhaustive()
    }
}

impl Collector for NatsMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.0;
        let counters = [
            (
                "nimbus_nats_reconnects",
                "Connections to NATS made after the first",
                stats.connects.load(Ordering::Relaxed).saturating_sub(1),
            ),
            (
                "nimbus_nats_messages_received",
                "Messages received from NATS",
                stats.in_messages.load(Ordering::Relaxed),
            ),
            (
                "nimbus_nats_messages_sent",
                "Messages sent to NATS",
                stats.out_messages.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

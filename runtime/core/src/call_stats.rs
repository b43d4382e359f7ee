//! A small aggregate of the last hour of synchronous calls per function,
//! by minute: calls, errors, fuel and a latency histogram, for the web
//! console's charts (`GET /functions/{id}/stats` on API servers).
//!
//! Prometheus is the platform's record (`/metrics`, the Grafana dashboard
//! in `deploy/`); this aggregate is what a console can draw without one.
//! It is this API server's own: with several API servers behind the
//! gateway, each one's charts show the calls it answered (the README says
//! so). Memory is bounded: at most [`FUNCTIONS`] functions (those not
//! called for an hour are dropped first, then the one called longest ago),
//! each with at most the 60 minutes that had calls. Recording a call (on
//! every invocation) takes one of 16 locks, by function, for a few
//! additions.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::FunctionId;

/// Functions whose minutes are kept at once.
const FUNCTIONS: usize = 2048;
/// Locks the functions are spread over, by id.
const SHARDS: usize = 16;
/// Minutes kept per function: the last hour.
pub(crate) const MINUTES: u64 = 60;
/// Latency buckets: bucket `i` holds calls that took under
/// `FIRST_BOUND_US * 2^(i/2)` microseconds (the last holds the rest), so a
/// percentile is known within a factor of √2.
const LATENCY_BUCKETS: usize = 48;
const FIRST_BOUND_US: f64 = 25.0;

/// One minute of one function's calls.
#[derive(Clone)]
struct Minute {
    /// Minutes since the Unix epoch.
    minute: u64,
    calls: u64,
    errors: u64,
    fuel: u64,
    latency: [u32; LATENCY_BUCKETS],
}

impl Minute {
    fn new(minute: u64) -> Self {
        Self {
            minute,
            calls: 0,
            errors: 0,
            fuel: 0,
            latency: [0; LATENCY_BUCKETS],
        }
    }

    /// The latency under which `q` of the calls answered, milliseconds (a
    /// bucket's upper bound); `None` without calls.
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency.iter().map(|&n| u64::from(n)).sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.latency.iter().enumerate() {
            seen += u64::from(n);
            if seen >= rank {
                return Some(upper_bound_us(i) / 1000.0);
            }
        }
        Some(upper_bound_us(LATENCY_BUCKETS - 1) / 1000.0)
    }
}

fn upper_bound_us(bucket: usize) -> f64 {
    FIRST_BOUND_US * 2f64.powf(bucket as f64 / 2.0)
}

fn bucket_of(latency: Duration) -> usize {
    let us = latency.as_secs_f64() * 1e6;
    (0..LATENCY_BUCKETS)
        .find(|&i| us < upper_bound_us(i))
        .unwrap_or(LATENCY_BUCKETS - 1)
}

/// A function's recent minutes, oldest first.
struct Recent {
    minutes: VecDeque<Minute>,
    /// When it was last recorded (minute), to pick whom to drop.
    touched: u64,
}

/// The last hour of calls of recently called functions.
pub struct CallStats {
    shards: [Mutex<HashMap<FunctionId, Recent>>; SHARDS],
}

/// One minute as `GET /functions/{id}/stats` answers it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinuteStats {
    /// RFC 3339 start of the minute.
    pub start: String,
    /// Calls that ended in it.
    pub calls: u64,
    /// Of those, calls that failed (the function's fault or the platform's).
    pub errors: u64,
    /// Median latency, milliseconds, end to end at the API (within a
    /// factor of √2); `null` without calls.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, milliseconds; `null` without calls.
    pub p99_ms: Option<f64>,
    /// Fuel the calls burned.
    pub fuel: u64,
}

/// `GET /functions/{id}/stats` answers this.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct FunctionStats {
    /// The function.
    pub function_id: FunctionId,
    /// Seconds per bucket.
    pub bucket_seconds: u64,
    /// The last hour, a bucket per minute, oldest first; the last is the
    /// minute now running.
    pub buckets: Vec<MinuteStats>,
}

fn now_minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 60
}

impl Default for CallStats {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }
}

impl CallStats {
    /// Count a call of `function` that ended now.
    pub fn record(&self, function: FunctionId, failed: bool, latency: Duration, fuel: Option<u64>) {
        self.record_at(now_minute(), function, failed, latency, fuel);
    }

    fn shard(&self, function: FunctionId) -> &Mutex<HashMap<FunctionId, Recent>> {
        &self.shards[(function % SHARDS as u64) as usize]
    }

    fn record_at(
        &self,
        minute: u64,
        function: FunctionId,
        failed: bool,
        latency: Duration,
        fuel: Option<u64>,
    ) {
        let bucket = bucket_of(latency);
        let mut functions = self.shard(function).lock().expect("call stats lock");
        if !functions.contains_key(&function) && functions.len() >= FUNCTIONS / SHARDS {
            // Room for one more: the functions not called for an hour go,
            // else the one called longest ago.
            functions.retain(|_, recent| recent.touched + MINUTES > minute);
            if functions.len() >= FUNCTIONS / SHARDS {
                let oldest = functions
                    .iter()
                    .min_by_key(|(_, recent)| recent.touched)
                    .map(|(id, _)| *id);
                if let Some(oldest) = oldest {
                    functions.remove(&oldest);
                }
            }
        }
        let recent = functions.entry(function).or_insert_with(|| Recent {
            minutes: VecDeque::new(),
            touched: minute,
        });
        recent.touched = minute;
        if recent.minutes.back().is_none_or(|m| m.minute < minute) {
            recent.minutes.push_back(Minute::new(minute));
        }
        while recent
            .minutes
            .front()
            .is_some_and(|m| m.minute + MINUTES <= minute)
        {
            recent.minutes.pop_front();
        }
        // A call that ended in an earlier minute than one already open (a
        // clock step back) counts in the newest.
        let current = recent.minutes.back_mut().expect("a minute was pushed");
        current.calls += 1;
        current.errors += u64::from(failed);
        current.fuel = current.fuel.saturating_add(fuel.unwrap_or(0));
        current.latency[bucket] += 1;
    }

    /// `function`'s last hour, a bucket per minute.
    pub fn of(&self, function: FunctionId) -> FunctionStats {
        self.of_at(now_minute(), function)
    }

    fn of_at(&self, now: u64, function: FunctionId) -> FunctionStats {
        // Copied out, so that the lock is not held while the answer is made.
        let kept: Vec<Minute> = self
            .shard(function)
            .lock()
            .expect("call stats lock")
            .get(&function)
            .map(|recent| recent.minutes.iter().cloned().collect())
            .unwrap_or_default();
        let buckets = (now + 1 - MINUTES..=now)
            .map(|minute| {
                let empty = Minute::new(minute);
                let m = kept.iter().find(|m| m.minute == minute).unwrap_or(&empty);
                MinuteStats {
                    start: minute_start(minute),
                    calls: m.calls,
                    errors: m.errors,
                    p50_ms: m.quantile_ms(0.5),
                    p99_ms: m.quantile_ms(0.99),
                    fuel: m.fuel,
                }
            })
            .collect();
        FunctionStats {
            function_id: function,
            bucket_seconds: 60,
            buckets,
        }
    }

    /// Forget a deleted function.
    pub fn forget(&self, function: FunctionId) {
        self.shard(function)
            .lock()
            .expect("call stats lock")
            .remove(&function);
    }
}

fn minute_start(minute: u64) -> String {
    let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(minute as i64);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 29_400_000; // 2025-11-24T16:00:00Z, in minutes

    #[test]
    fn a_minute_counts_calls_errors_fuel_and_latency() {
        let stats = CallStats::default();
        for ms in 1..=100 {
            stats.record_at(NOW, 7, ms > 98, Duration::from_millis(ms), Some(10));
        }
        let hour = stats.of_at(NOW, 7);
        assert_eq!(hour.buckets.len(), 60);
        let last = hour.buckets.last().unwrap();
        assert_eq!((last.calls, last.errors, last.fuel), (100, 2, 1000));
        // Within a factor of √2 above the true 50 ms and 99 ms.
        let p50 = last.p50_ms.unwrap();
        let p99 = last.p99_ms.unwrap();
        assert!((50.0..=50.0 * 1.42).contains(&p50), "p50 {p50}");
        assert!((99.0..=99.0 * 1.42).contains(&p99), "p99 {p99}");
        assert_eq!(last.start, "2025-11-24T16:00:00Z");
        let first = &hour.buckets[0];
        assert_eq!((first.calls, first.p50_ms), (0, None));
        assert_eq!(first.start, "2025-11-24T15:01:00Z");
    }

    #[test]
    fn minutes_older_than_an_hour_are_dropped() {
        let stats = CallStats::default();
        stats.record_at(NOW - 60, 1, false, Duration::from_millis(1), None);
        stats.record_at(NOW - 59, 1, true, Duration::from_millis(1), None);
        stats.record_at(NOW, 1, false, Duration::from_millis(1), None);
        let hour = stats.of_at(NOW, 1);
        let calls: u64 = hour.buckets.iter().map(|b| b.calls).sum();
        assert_eq!(calls, 2);
        assert_eq!(hour.buckets[0].errors, 1);
        assert_eq!(stats.shard(1).lock().unwrap()[&1].minutes.len(), 2);
    }

    fn kept(stats: &CallStats) -> Vec<FunctionId> {
        let mut ids: Vec<_> = stats
            .shards
            .iter()
            .flat_map(|s| s.lock().unwrap().keys().copied().collect::<Vec<_>>())
            .collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn memory_is_bounded_by_dropping_the_least_recent_function() {
        let stats = CallStats::default();
        for id in 0..FUNCTIONS as u64 {
            let minute = if id == 1 { NOW - 2 } else { NOW - 1 };
            stats.record_at(minute, id, false, Duration::from_millis(1), None);
        }
        // A newcomer takes the place of the least recent of its shard.
        let newcomer = 1 + SHARDS as u64 * 1000;
        stats.record_at(NOW, newcomer, false, Duration::from_millis(1), None);
        let ids = kept(&stats);
        assert_eq!(ids.len(), FUNCTIONS);
        assert!(ids.contains(&newcomer) && !ids.contains(&1));
    }

    #[test]
    fn functions_idle_for_an_hour_make_room_first() {
        let stats = CallStats::default();
        for id in 0..FUNCTIONS as u64 {
            let minute = if id % 2 == 0 { NOW - 61 } else { NOW - 1 };
            stats.record_at(minute, id, false, Duration::from_millis(1), None);
        }
        stats.record_at(NOW, 100_000, false, Duration::from_millis(1), None);
        let ids = kept(&stats);
        // The idle ones of that shard went at once; nobody recent did.
        assert!(ids.iter().filter(|id| *id % 2 == 1).count() == FUNCTIONS / 2);
        assert!(ids.contains(&100_000));
    }

    #[test]
    fn a_forgotten_function_has_an_empty_hour() {
        let stats = CallStats::default();
        stats.record_at(NOW, 3, false, Duration::from_secs(1000), Some(5));
        assert_eq!(
            stats.of_at(NOW, 3).buckets[59].p99_ms,
            Some(upper_bound_us(47) / 1000.0)
        );
        stats.forget(3);
        assert!(stats.of_at(NOW, 3).buckets.iter().all(|b| b.calls == 0));
    }
}

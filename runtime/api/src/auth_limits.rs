//! Limits on logins and registrations, so guessing passwords or creating
//! accounts in bulk costs the one doing it, not everybody else:
//! - per client address, a rate (GCRA, `governor`) for logins and one for
//!   registrations; past it, 429 with `Retry-After`, before any bcrypt;
//! - per username, consecutive failed logins: after a few free ones, each
//!   further failure locks the name for twice as long as the last (1 s,
//!   2 s, 4 s ... up to 5 minutes), never for good; a success clears it. A
//!   locked name answers 429 without checking the password, so a flood
//!   against one account spends no bcrypt either.
//!
//! The bcrypt work that does run is shared fairly between clients
//! (`fair_slots.rs`). Limits are per API server: N servers allow N times
//! the rate, which bounds the work on each.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::ApiError;

/// Settings of [`AuthLimits`].
#[derive(Debug, Clone)]
pub struct AuthLimitConfig {
    /// Login attempts per minute from one client address (all at once, or
    /// spread out).
    pub logins_per_minute: u32,
    /// Registrations per hour from one client address.
    pub registrations_per_hour: u32,
    /// Failed logins in a row a username may have before it is locked.
    pub free_failures: u32,
    /// How long the first failure past the free ones locks the username;
    /// each further one doubles it.
    pub first_lockout: Duration,
    /// The longest a username is locked for.
    pub max_lockout: Duration,
}

impl Default for AuthLimitConfig {
    fn default() -> Self {
        Self {
            logins_per_minute: 30,
            registrations_per_hour: 20,
            free_failures: 5,
            first_lockout: Duration::from_secs(1),
            max_lockout: Duration::from_secs(300),
        }
    }
}

/// Failures are forgotten after this long without another.
const FAILURES_KEPT: Duration = Duration::from_secs(3600);
/// Usernames tracked before forgotten failures are swept.
const SWEEP_AT: usize = 10_000;

pub(crate) struct AuthLimits {
    config: AuthLimitConfig,
    logins: DefaultKeyedRateLimiter<IpAddr>,
    registrations: DefaultKeyedRateLimiter<IpAddr>,
    failures: Mutex<HashMap<String, Failures>>,
}

struct Failures {
    count: u32,
    last: Instant,
    locked_until: Instant,
}

impl AuthLimits {
    pub(crate) fn new(config: AuthLimitConfig) -> Self {
        let at_least_one = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self {
            logins: DefaultKeyedRateLimiter::keyed(Quota::per_minute(at_least_one(
                config.logins_per_minute,
            ))),
            registrations: DefaultKeyedRateLimiter::keyed(Quota::per_hour(at_least_one(
                config.registrations_per_hour,
            ))),
            failures: Mutex::default(),
            config,
        }
    }

    /// May `client` try to log in now?
    pub(crate) fn login(&self, client: IpAddr) -> Result<(), ApiError> {
        check(&self.logins, client, "login attempts")
    }

    /// May `client` register now?
    pub(crate) fn registration(&self, client: IpAddr) -> Result<(), ApiError> {
        check(&self.registrations, client, "registrations")
    }

    /// Is `username` locked by failed logins?
    pub(crate) fn unlocked(&self, username: &str) -> Result<(), ApiError> {
        let failures = self.failures.lock().expect("failures lock");
        match failures.get(username) {
            Some(f) if f.locked_until > Instant::now() => Err(ApiError::TooManyRequests {
                message: format!("too many failed logins for `{username}`; try again later"),
                retry_after: f.locked_until - Instant::now(),
            }),
            _ => Ok(()),
        }
    }

    /// A failed login for `username`: past the free ones, lock it for
    /// twice as long as the previous lock.
    pub(crate) fn failed(&self, username: &str) {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("failures lock");
        if failures.len() >= SWEEP_AT {
            failures.retain(|_, f| now.duration_since(f.last) < FAILURES_KEPT);
            if failures.len() >= SWEEP_AT {
                // Flooded with names: keep only the locked ones.
                failures.retain(|_, f| f.locked_until > now);
            }
        }
        let entry = failures.entry(username.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: now,
        });
        if now.duration_since(entry.last) >= FAILURES_KEPT {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
        if let Some(past_free) = entry.count.checked_sub(self.config.free_failures + 1) {
            let lock = (self.config.first_lockout * (1u32 << past_free.min(20)))
                .min(self.config.max_lockout);
            entry.locked_until = now + lock;
        }
    }

    /// A successful login clears `username`'s failures.
    pub(crate) fn succeeded(&self, username: &str) {
        self.failures
            .lock()
            .expect("failures lock")
            .remove(username);
    }
}

fn check(
    limiter: &DefaultKeyedRateLimiter<IpAddr>,
    client: IpAddr,
    what: &str,
) -> Result<(), ApiError> {
    limiter.check_key(&client).map_err(|not_until| {
        // Forget clients whose buckets are full again, now and then.
        if limiter.len() >= SWEEP_AT {
            limiter.retain_recent();
        }
        ApiError::TooManyRequests {
            message: format!("too many {what} from this address; try again later"),
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        }
    })
}

//! Invocations per second per tenant (`ApiConfig::calls_per_second`): past
//! the rate, 429 `too_many_requests` with `Retry-After`, before anything is
//! dispatched. The tenant is whoever a call is charged to, as on workers
//! (`Call::caller`: the function's owner for an anonymous URL call). Per
//! API server, like the auth limits.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::ApiError;

/// Tenants tracked before those whose rate has recovered are forgotten.
const SWEEP_AT: usize = 10_000;

pub(crate) struct TenantRate(DefaultKeyedRateLimiter<String>);

impl TenantRate {
    pub(crate) fn new(per_second: u32) -> Self {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        Self(DefaultKeyedRateLimiter::keyed(Quota::per_second(rate)))
    }

    /// May `tenant` start another invocation now?
    pub(crate) fn check(&self, tenant: &str) -> Result<(), ApiError> {
        self.0.check_key(&tenant.to_owned()).map_err(|not_until| {
            if self.0.len() >= SWEEP_AT {
                self.0.retain_recent();
            }
            ApiError::TooManyRequests {
                message: format!("`{tenant}` is calling faster than its rate allows"),
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            }
        })
    }
}

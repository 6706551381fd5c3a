//! The limits that span sessions, as the sessions ask for them: counted by this process
//! (`throttle`) and, with `cluster.redis`, across every replica (`crate::cluster`). The local
//! counters always count too, so that when Redis cannot decide, `on_redis_down: local` goes on
//! from this process's own history rather than from zero; `defer` refuses for now instead.
//! The per-connection AUTH failure count (421 at the 10th) is not here: it stays per connection.

use super::throttle::{delay_for, FAILURE_MEMORY};
use super::Shared;
use crate::config::OnRedisDown;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The answer to "may this client send one more message now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateVerdict {
    Allowed,
    /// Over `messages_per_minute_per_client` (`451 4.7.1`).
    OverRate,
    /// Redis cannot decide and `on_redis_down: defer` (`451 4.7.1`, another text).
    Deferred,
}

/// Redis cannot decide and `on_redis_down: defer`: this AUTH is answered `454 4.7.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuthDeferred;

impl Shared {
    /// Count one message of `client` against its rate.
    pub(crate) async fn message_rate(&self, client: &str, per_minute: u32) -> RateVerdict {
        if per_minute == 0 {
            return RateVerdict::Allowed;
        }
        let local = self.rate_limiter.allow(client, per_minute, Instant::now());
        let shared = match &self.cluster {
            Some(c) => match c.take_message(client, per_minute).await {
                Some(allowed) => Some(allowed),
                None if c.on_redis_down() == OnRedisDown::Defer => {
                    return RateVerdict::Deferred;
                }
                None => None,
            },
            None => None,
        };
        if shared.unwrap_or(local) {
            RateVerdict::Allowed
        } else {
            RateVerdict::OverRate
        }
    }

    /// How long an AUTH from `ip` waits before its password is checked: the delay its
    /// failure would earn, from the address's failures across every replica.
    pub(crate) async fn auth_delay(&self, ip: Option<IpAddr>) -> Result<Duration, AuthDeferred> {
        let local = self.auth_throttle.delay_before_check(ip, Instant::now());
        let (Some(c), Some(ip)) = (&self.cluster, ip) else {
            return Ok(local);
        };
        match c.auth_failures(ip).await {
            Some(n) => Ok(delay_for(n.saturating_add(1))),
            None if c.on_redis_down() == OnRedisDown::Defer => Err(AuthDeferred),
            None => Ok(local),
        }
    }

    /// Count a failed AUTH from `ip`, here and across the replicas.
    pub(crate) async fn auth_failed(&self, ip: Option<IpAddr>) {
        self.auth_throttle.failure(ip, Instant::now());
        if let (Some(c), Some(ip)) = (&self.cluster, ip) {
            // Not counted in Redis when it is down: the local count has it.
            let _ = c.auth_failure(ip, FAILURE_MEMORY).await;
        }
    }
}

//! Abuse brakes that span connections: the AUTH failure counter per source address, and the
//! per-client message rate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an address's failures are remembered after its last one.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);

/// Failed AUTH attempts per source address.
#[derive(Default)]
pub struct AuthThrottle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl AuthThrottle {
    /// Count a failure from `ip` and return how long to wait before replying: nothing for the
    /// first three, then 1 s, 2 s, … at most 5 s.
    pub fn failure(&self, ip: Option<IpAddr>, now: Instant) -> Duration {
        let Some(ip) = ip else { return Duration::ZERO };
        let Ok(mut map) = self.failures.lock() else {
            return Duration::from_secs(5);
        };
        if map.len() > 100_000 {
            map.retain(|_, (_, last)| now.duration_since(*last) < FAILURE_MEMORY);
        }
        let entry = map.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= FAILURE_MEMORY {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now;
        delay_for(entry.0)
    }
}

impl AuthThrottle {
    /// How long the next attempt from `ip` waits before its password is even checked: the
    /// delay its failure would earn (the same as after it, so an attempt that fails is not
    /// delayed twice, and one that succeeds costs the attacker's pace, not a hash slot).
    pub fn delay_before_check(&self, ip: Option<IpAddr>, now: Instant) -> Duration {
        let Some(ip) = ip else { return Duration::ZERO };
        let Ok(map) = self.failures.lock() else {
            return Duration::from_secs(5);
        };
        match map.get(&ip) {
            Some((n, last)) if now.duration_since(*last) < FAILURE_MEMORY => delay_for(n + 1),
            _ => Duration::ZERO,
        }
    }
}

/// The reply delay after the `n`th failure.
pub fn delay_for(n: u32) -> Duration {
    if n <= 3 {
        Duration::ZERO
    } else {
        Duration::from_secs(u64::from((n - 3).min(5)))
    }
}

/// Token bucket per client identity: `per_minute` messages, with a burst of the same size.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Take one message's token for `client`; false when the client is over its rate.
    pub fn allow(&self, client: &str, per_minute: u32, now: Instant) -> bool {
        if per_minute == 0 {
            return true;
        }
        let Ok(mut map) = self.buckets.lock() else {
            return true;
        };
        let cap = f64::from(per_minute);
        let (tokens, last) = map.entry(client.to_string()).or_insert((cap, now));
        let refill = now.duration_since(*last).as_secs_f64() * cap / 60.0;
        *tokens = (*tokens + refill).min(cap);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_delays_grow_and_decay() {
        let t = AuthThrottle::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        let delays: Vec<u64> = (0..10)
            .map(|_| t.failure(Some(ip), now).as_secs())
            .collect();
        assert_eq!(delays, vec![0, 0, 0, 1, 2, 3, 4, 5, 5, 5]);
        assert_eq!(t.failure(Some(ip), now + FAILURE_MEMORY), Duration::ZERO);
    }

    #[test]
    fn the_delay_is_known_before_the_check() {
        let t = AuthThrottle::default();
        let ip: IpAddr = "192.0.2.2".parse().unwrap();
        let now = Instant::now();
        let before: Vec<u64> = (0..6)
            .map(|_| {
                let d = t.delay_before_check(Some(ip), now).as_secs();
                t.failure(Some(ip), now);
                d
            })
            .collect();
        assert_eq!(before, vec![0, 0, 0, 1, 2, 3]);
        assert_eq!(
            t.delay_before_check(Some(ip), now + FAILURE_MEMORY),
            Duration::ZERO
        );
        assert_eq!(t.delay_before_check(None, now), Duration::ZERO);
    }

    #[test]
    fn rate_limit_refills() {
        let r = RateLimiter::default();
        let now = Instant::now();
        assert!((0..3).all(|_| r.allow("c", 3, now)));
        assert!(!r.allow("c", 3, now));
        assert!(r.allow("other", 3, now));
        assert!(r.allow("c", 3, now + Duration::from_secs(20)));
    }
}

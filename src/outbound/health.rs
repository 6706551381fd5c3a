//! Per-address failure memory: an address that refused the connection, gave no greeting or
//! failed the TLS handshake is skipped by every delivery until its back-off ends, so a dead MX
//! costs one failed connection per back-off period instead of one per queued message.
//!
//! The first back-off is the first retry interval (a message that met the dead host waits that
//! long anyway), doubling with each consecutive failure up to `MAX_BACKOFF`; one success
//! forgets the address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest an address is skipped after repeated failures (unless the first retry interval is
/// longer still).
const MAX_BACKOFF: Duration = Duration::from_secs(600);

struct Down {
    failures: u32,
    until: Instant,
    reason: String,
}

/// What the relay remembers about addresses that failed.
#[derive(Default)]
pub struct HostHealth {
    down: Mutex<HashMap<SocketAddr, Down>>,
}

impl HostHealth {
    /// Why `addr` is to be skipped right now, if it is.
    pub fn skip_reason(&self, addr: &SocketAddr) -> Option<String> {
        let map = self.down.lock().ok()?;
        let d = map.get(addr)?;
        let left = d.until.checked_duration_since(Instant::now())?;
        Some(format!(
            "{} (remembered; not tried again for {}s)",
            d.reason,
            left.as_secs().max(1)
        ))
    }

    /// `addr` failed: skip it for `base`, doubled for each failure in a row.
    pub fn failed(&self, addr: SocketAddr, reason: &str, base: Duration) {
        let Ok(mut map) = self.down.lock() else {
            return;
        };
        let entry = map.entry(addr).or_insert(Down {
            failures: 0,
            until: Instant::now(),
            reason: String::new(),
        });
        entry.failures = entry.failures.saturating_add(1);
        let factor = 1u32 << (entry.failures - 1).min(16);
        let backoff = base
            .saturating_mul(factor)
            .min(MAX_BACKOFF.max(base))
            .max(Duration::from_secs(1));
        entry.until = Instant::now() + backoff;
        entry.reason = reason.to_string();
    }

    /// `addr` took a connection: forget its failures.
    pub fn succeeded(&self, addr: &SocketAddr) {
        if let Ok(mut map) = self.down.lock() {
            map.remove(addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_remembered_then_doubled_then_forgotten() {
        let h = HostHealth::default();
        let a: SocketAddr = "192.0.2.1:25".parse().unwrap();
        assert_eq!(h.skip_reason(&a), None);
        h.failed(a, "connection refused", Duration::from_secs(60));
        let r = h.skip_reason(&a).unwrap();
        assert!(r.starts_with("connection refused (remembered"), "{r}");
        h.failed(a, "connection refused", Duration::from_secs(60));
        let until = h.down.lock().unwrap().get(&a).unwrap().until;
        let left = until.duration_since(Instant::now()).as_secs();
        assert!((115..=120).contains(&left), "{left}");
        h.succeeded(&a);
        assert_eq!(h.skip_reason(&a), None);
    }

    #[test]
    fn back_off_is_capped() {
        let h = HostHealth::default();
        let a: SocketAddr = "192.0.2.1:25".parse().unwrap();
        for _ in 0..40 {
            h.failed(a, "x", Duration::from_secs(60));
        }
        let until = h.down.lock().unwrap().get(&a).unwrap().until;
        assert!(until.duration_since(Instant::now()) <= MAX_BACKOFF);
    }
}

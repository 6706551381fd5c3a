//! The last hour's counts: a ring of per-minute snapshots of the relay's running totals
//! ([`Totals`], read from the Prometheus counters), so "the last hour" is now minus the
//! snapshot of an hour ago — exact to the minute, with nothing to feed at the places that count.

use crate::metrics::Totals;
use std::collections::VecDeque;

/// The window the status page reports on.
pub const WINDOW_SECS: i64 = 3600;

/// Snapshots `(unix time, totals)`, oldest first, covering a little more than the window.
#[derive(Debug, Default)]
pub struct MinuteRing {
    samples: VecDeque<(i64, Totals)>,
}

/// What happened in the window, and how long the window really is (shorter than an hour
/// while the relay has run for less).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    pub seconds: i64,
    #[serde(flatten)]
    pub counts: Totals,
}

impl MinuteRing {
    /// Keep a snapshot taken at `now`. At most one per minute is kept; snapshots older than
    /// the window are dropped, except the newest of them (the window's start).
    pub fn record(&mut self, now: i64, totals: Totals) {
        if self.samples.back().is_some_and(|(t, _)| now - t < 60) {
            return;
        }
        self.samples.push_back((now, totals));
        while self.samples.len() > 1 && self.samples[1].0 <= now - WINDOW_SECS {
            self.samples.pop_front();
        }
    }

    /// The counts between the window's start (the oldest snapshot no older than an hour, else
    /// the first one) and `now_totals`.
    pub fn window(&self, now: i64, now_totals: Totals) -> Window {
        let start = self
            .samples
            .iter()
            .find(|(t, _)| *t >= now - WINDOW_SECS)
            .or(self.samples.back());
        match start {
            Some((t, base)) => Window {
                seconds: (now - t).clamp(0, WINDOW_SECS),
                counts: now_totals.since(base),
            },
            None => Window {
                seconds: 0,
                counts: Totals::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(n: u64) -> Totals {
        Totals {
            accepted: n,
            ..Totals::default()
        }
    }

    #[test]
    fn counts_the_last_hour_to_the_minute() {
        let mut ring = MinuteRing::default();
        let t0 = 1_000_000;
        ring.record(t0, accepted(0));
        // Younger than an hour: everything since the start.
        let w = ring.window(t0 + 600, accepted(7));
        assert_eq!((w.seconds, w.counts.accepted), (600, 7));
        // One snapshot a minute, 10 messages a minute, for two hours.
        for m in 1..=120 {
            ring.record(t0 + m * 60, accepted(10 * m as u64));
            // A second snapshot within the same minute is ignored.
            ring.record(t0 + m * 60 + 30, accepted(10 * m as u64 + 5));
        }
        let now = t0 + 120 * 60 + 20;
        let w = ring.window(now, accepted(1205));
        assert_eq!(w.counts.accepted, 1205 - 10 * 61);
        assert!(w.seconds <= WINDOW_SECS && w.seconds > WINDOW_SECS - 60);
        // Bounded: about an hour of minutes.
        assert!(ring.samples.len() <= 62, "{}", ring.samples.len());
    }

    #[test]
    fn empty_ring_counts_nothing() {
        let w = MinuteRing::default().window(5, accepted(3));
        assert_eq!(w.counts, Totals::default());
    }
}

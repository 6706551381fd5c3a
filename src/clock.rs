//! Wall-clock time in Unix seconds, behind one seam. The queue's due times and the spool's
//! timestamps are Unix seconds; the daemon reads the system clock, and the scheduler's tests
//! read tokio's clock (which they pause and advance) through the same type, so a retry
//! schedule of hours runs in milliseconds. Imports nothing else of ours.

/// Where "now" comes from.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The system clock.
    System,
    /// Tokio's clock, counted from `base` (Unix seconds) at `start`: paused time in tests.
    #[cfg(test)]
    Tokio {
        base: i64,
        start: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that follows tokio's time from now on, starting at the current Unix time.
    #[cfg(test)]
    pub fn tokio() -> Clock {
        Clock::Tokio {
            base: unix_now(),
            start: tokio::time::Instant::now(),
        }
    }

    /// Unix seconds now.
    pub fn now(&self) -> i64 {
        match self {
            Clock::System => unix_now(),
            #[cfg(test)]
            Clock::Tokio { base, start } => base + start.elapsed().as_secs() as i64,
        }
    }
}

/// Unix seconds by the system clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

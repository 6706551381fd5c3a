//! Waiting in end-to-end tests: check a condition until it holds or a deadline passes, never
//! a fixed sleep. Deadlines are generous (the machine may be loaded); a condition that holds
//! early returns early.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// How often the condition is checked.
const STEP: Duration = Duration::from_millis(50);

/// Check `condition` until it holds (true) or `timeout` passed (false), from async code.
pub async fn eventually(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(STEP).await;
    }
}

/// The same from blocking code.
pub fn eventually_blocking(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(STEP);
    }
}

//! The retry schedule: after the n-th failed attempt wait `retry[n-1]` (the last interval
//! repeats), with ±10% jitter so that a burst of deferrals does not come back as a burst.

use std::time::Duration;

pub fn delay(schedule: &[Duration], attempts: u32) -> Duration {
    let base =
        crate::outbound::breaker::step(schedule, attempts).unwrap_or(Duration::from_secs(300));
    let jitter = 0.9 + rand::random::<f64>() * 0.2;
    base.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_schedule_and_repeats_the_last() {
        let s = [Duration::from_secs(60), Duration::from_secs(300)];
        let d1 = delay(&s, 1).as_secs_f64();
        assert!((54.0..=66.0).contains(&d1), "{d1}");
        let d9 = delay(&s, 9).as_secs_f64();
        assert!((270.0..=330.0).contains(&d9), "{d9}");
    }
}

//! The buffer-memory budget: what clients may make the relay hold in memory before their data
//! reaches the spool (a header section being buffered, and its fixed-up copy until the message
//! is sealed), bounded by `limits.buffer_memory` for the whole process.
//!
//! The budget is split so that a flood of large header sections cannot starve ordinary mail:
//! every session may hold a small *floor* (64 KiB, less on a small budget) that was set aside
//! for it in advance — `max_connections` floors take at most half the budget — and only what a
//! session holds beyond its floor is drawn from the shared rest, first come, first served. A
//! normal message (a header section of a few KiB) therefore always fits, whatever other
//! sessions hold; a session whose growth does not fit is refused (`451 4.3.2`) and keeps no
//! more than it had.
//!
//! Imports nothing of ours but the gauge it keeps current.

use prometheus::IntGauge;
use std::sync::atomic::{AtomicU64, Ordering};

/// The most a session may hold without drawing from the shared part of the budget.
pub const SESSION_FLOOR: u64 = 64 * 1024;

/// The process-wide budget.
#[derive(Debug)]
pub struct BufferBudget {
    /// What each holder may hold without drawing from `shared_limit`.
    floor: u64,
    shared_limit: u64,
    shared_used: AtomicU64,
    gauge: IntGauge,
}

/// Holding more would exceed `limits.buffer_memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget;

impl BufferBudget {
    /// A budget of `total` bytes for at most `holders` sessions at once.
    pub fn new(total: u64, holders: usize, gauge: IntGauge) -> BufferBudget {
        let holders = holders.max(1) as u64;
        let floor = SESSION_FLOOR.min(total / 2 / holders);
        BufferBudget {
            floor,
            shared_limit: total - floor * holders,
            shared_used: AtomicU64::new(0),
            gauge,
        }
    }

    /// A new holder, holding nothing yet.
    pub fn reservation(&self) -> Reservation<'_> {
        Reservation {
            budget: self,
            held: 0,
        }
    }

    /// The part of `held` bytes that comes out of the shared pool.
    fn shared_part(&self, held: u64) -> u64 {
        held.saturating_sub(self.floor)
    }

    /// Take `bytes` from the shared pool, unless that would go over its limit.
    fn draw(&self, bytes: u64) -> Result<(), OverBudget> {
        if bytes == 0 {
            return Ok(());
        }
        let mut used = self.shared_used.load(Ordering::Relaxed);
        loop {
            let want = used.checked_add(bytes).ok_or(OverBudget)?;
            if want > self.shared_limit {
                return Err(OverBudget);
            }
            match self.shared_used.compare_exchange_weak(
                used,
                want,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    fn give_back(&self, bytes: u64) {
        if bytes > 0 {
            self.shared_used.fetch_sub(bytes, Ordering::AcqRel);
        }
    }
}

/// What one holder (a message being received) has taken from the budget; given back on drop.
#[derive(Debug)]
pub struct Reservation<'b> {
    budget: &'b BufferBudget,
    held: u64,
}

impl Reservation<'_> {
    /// Hold `bytes` from now on (more or less than before). On `OverBudget` nothing changes.
    pub fn resize(&mut self, bytes: u64) -> Result<(), OverBudget> {
        let b = self.budget;
        let (before, after) = (b.shared_part(self.held), b.shared_part(bytes));
        if after > before {
            b.draw(after - before)?;
        } else {
            b.give_back(before - after);
        }
        let delta =
            i64::try_from(bytes).unwrap_or(i64::MAX) - i64::try_from(self.held).unwrap_or(i64::MAX);
        b.gauge.add(delta);
        self.held = bytes;
        Ok(())
    }

    /// Bytes held now.
    #[cfg(test)]
    fn held(&self) -> u64 {
        self.held
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        // Shrinking never fails.
        let _ = self.resize(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(total: u64, holders: usize) -> BufferBudget {
        BufferBudget::new(total, holders, IntGauge::new("g", "g").unwrap())
    }

    #[test]
    fn floors_are_set_aside_and_the_rest_is_shared() {
        // 4 MiB for 16 sessions: 16 floors of 64 KiB (1 MiB), 3 MiB shared.
        let b = budget(4 << 20, 16);
        let mut big = b.reservation();
        assert_eq!(big.resize(3 << 20), Ok(()));
        let mut big2 = b.reservation();
        // 64 KiB of floor and 1 MiB more: the shared pool has 64 KiB left.
        assert_eq!(big2.resize((1 << 20) + SESSION_FLOOR), Err(OverBudget));
        assert_eq!(big2.held(), 0);
        assert_eq!(big2.resize(2 * SESSION_FLOOR), Ok(()));
        // The pool is empty, yet an ordinary message still fits in its floor.
        let mut small = b.reservation();
        assert_eq!(small.resize(8 * 1024), Ok(()));
        assert_eq!(small.resize(SESSION_FLOOR + 1), Err(OverBudget));
        assert_eq!(
            b.gauge.get(),
            (3 << 20) + 2 * SESSION_FLOOR as i64 + 8 * 1024
        );
        // Giving back makes room for others.
        drop(big);
        assert_eq!(small.resize(1 << 20), Ok(()));
        drop(small);
        drop(big2);
        assert_eq!(b.shared_used.load(Ordering::Relaxed), 0);
        assert_eq!(b.gauge.get(), 0);
    }

    #[test]
    fn a_small_budget_keeps_half_for_sharing() {
        // 16 MiB for 1024 sessions: 8 KiB floors, 8 MiB shared.
        let b = budget(16 << 20, 1024);
        assert_eq!(b.floor, 8 * 1024);
        assert_eq!(b.shared_limit, 8 << 20);
        let mut r = b.reservation();
        assert_eq!(r.resize(8 << 20), Ok(()));
        assert_eq!(r.resize((8 << 20) + 8 * 1024), Ok(()));
        assert_eq!(r.resize((8 << 20) + 8 * 1024 + 1), Err(OverBudget));
    }
}

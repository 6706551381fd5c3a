//! Free space on the spool's file system, asked of the kernel (statvfs) at most once per
//! [`CACHE_FOR`] however many sessions ask, and compared with the configured minimum: the
//! relay refuses new mail with `452 4.3.1` before the disk is full (as Postfix does below
//! `queue_minfree`), and `/readyz` sends load balancers elsewhere meanwhile. Both recover by
//! themselves once space is freed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a reading is reused: a busy relay asks once per second, not once per MAIL.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// The spool has less free space than it must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("spool free space {free} bytes is below the {needed} bytes it must keep (limits.spool_min_free)")]
pub struct Shortage {
    pub free: u64,
    pub needed: u64,
}

/// The free-space reading of one spool directory.
#[derive(Debug)]
pub struct FreeSpace {
    dir: PathBuf,
    last: Mutex<Option<(Instant, u64)>>,
    /// Whether the last comparison with the minimum fell short: the log says so once per
    /// change, not once per client.
    short: AtomicBool,
}

impl FreeSpace {
    pub fn new(dir: &Path) -> FreeSpace {
        FreeSpace {
            dir: dir.to_path_buf(),
            last: Mutex::new(None),
            short: AtomicBool::new(false),
        }
    }

    /// Bytes available to the relay (not root's reserve) on the spool's file system, at most
    /// [`CACHE_FOR`] old.
    pub fn available(&self) -> std::io::Result<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, bytes)) = *last {
            if at.elapsed() < CACHE_FOR {
                return Ok(bytes);
            }
        }
        let bytes = crate::sys::available_space(&self.dir)?;
        *last = Some((Instant::now(), bytes));
        Ok(bytes)
    }

    /// Whether a message of `size` bytes (0 when unknown) still leaves `min_free` bytes free.
    /// A file system that cannot be asked passes: the write itself will tell (ENOSPC is a
    /// 452 too), and a failing statvfs must not stop mail.
    pub fn check(&self, min_free: u64, size: u64) -> Result<(), Shortage> {
        if min_free == 0 {
            self.note(false, 0, 0);
            return Ok(());
        }
        let free = match self.available() {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "statvfs failed");
                return Ok(());
            }
        };
        self.note(free < min_free, free, min_free);
        let needed = min_free.saturating_add(size);
        if free < needed {
            Err(Shortage { free, needed })
        } else {
            Ok(())
        }
    }

    fn note(&self, short: bool, free: u64, min_free: u64) {
        if self.short.swap(short, Ordering::Relaxed) == short {
            return;
        }
        if short {
            tracing::warn!(
                dir = %self.dir.display(),
                free,
                min_free,
                "spool free space below limits.spool_min_free: new mail gets 452 4.3.1 and /readyz 503 until space is freed"
            );
        } else {
            tracing::info!(dir = %self.dir.display(), free, min_free, "spool free space is back above limits.spool_min_free");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_with_the_minimum_and_the_declared_size() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FreeSpace::new(dir.path());
        let free = fs.available().unwrap();
        assert!(free > 0);
        assert_eq!(fs.check(0, u64::MAX), Ok(()));
        assert_eq!(fs.check(1, 0), Ok(()));
        // Cached: the same reading within CACHE_FOR.
        let e = fs.check(free + 1, 0).unwrap_err();
        assert_eq!(
            e,
            Shortage {
                free,
                needed: free + 1
            }
        );
        let e = fs.check(1, free).unwrap_err();
        assert_eq!(e.needed, free + 1);
        assert!(e.to_string().contains("spool_min_free"));
    }

    #[test]
    fn an_unreadable_spool_does_not_stop_mail() {
        let fs = FreeSpace::new(Path::new("/nonexistent/spool"));
        assert!(fs.available().is_err());
        assert_eq!(fs.check(u64::MAX, 0), Ok(()));
    }
}

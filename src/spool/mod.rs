//! The spool: the durable queue on disk, and the source of truth for what is to be delivered.
//!
//! Layout under `spool_dir`: `tmp/` holds messages being received; `queue/<id>.msg` is a
//! queued message: the bytes as they will be sent after its signatures (Received + header
//! section + body, `size` bytes, never changed once written), then its envelope as committed
//! (sender, recipients and their state, the DKIM-Signature fields) and a 16-byte trailer that
//! finds it. A message exists once its `.msg` is in `queue/`: commit fsyncs the file, renames it
//! into place and fsyncs the directory, and only then may the client hear 250. When the
//! envelope changes later (a deferral, `queue retry`), the new one is `queue/<id>.env`, written
//! aside and renamed over, and wins over the committed one. The daemon's spool recycles the
//! files of delivered messages: emptied, they wait in `tmp/` as `<id>.spare` and hold the next
//! drafts (`Spares`). A commit hands the delivery side the envelope as written and, for a
//! message received whole in memory, its bytes (`handoff.rs`). `space` watches the file system's free space against the configured
//! minimum. Imports only `sys` of ours (statvfs).

mod draft;
mod envelope;
mod handoff;
pub(crate) mod space;
mod store;

pub use draft::Draft;
pub use envelope::{Envelope, RecipientState, RecipientStatus};
pub use handoff::{Committed, InHand, InMemory};
pub use space::FreeSpace;
pub use store::{Spool, SpoolError, StoredMessage};

use std::fmt;

/// A queue id: time-ordered and unique, safe as a file name and in logs.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct QueueId(String);

impl QueueId {
    pub fn new() -> QueueId {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let r: u32 = rand::random();
        QueueId(format!("{micros:013X}{:05X}", r & 0xF_FFFF))
    }

    /// Accept an id typed by an operator only if it could be one of ours (no path tricks).
    pub fn parse(s: &str) -> Option<QueueId> {
        (s.len() == 18
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()))
        .then(|| QueueId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the message was accepted (Unix seconds): the id begins with the time in
    /// microseconds.
    pub fn created_unix(&self) -> Option<i64> {
        let micros = u64::from_str_radix(self.0.get(..13)?, 16).ok()?;
        i64::try_from(micros / 1_000_000).ok()
    }
}

impl Default for QueueId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_back_and_refuse_paths() {
        let id = QueueId::new();
        assert_eq!(QueueId::parse(id.as_str()), Some(id));
        assert_eq!(QueueId::parse("../../etc/passwd1"), None);
        assert_eq!(QueueId::parse("abc"), None);
        let now = crate::clock::unix_now();
        assert!((QueueId::new().created_unix().unwrap() - now).abs() <= 1);
    }

    #[test]
    fn a_draft_reads_back_the_same_from_memory_and_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        // 10 KiB stays in the draft's buffer; 600 KiB goes to the file on the way.
        for size in [10 * 1024, 600 * 1024] {
            let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut draft = spool.draft(QueueId::new()).unwrap();
            for piece in bytes.chunks(7000) {
                draft.write(piece).unwrap();
            }
            for offset in [0, 1, 5000, size as u64 - 1, size as u64, size as u64 + 9] {
                let mut back = Vec::new();
                draft
                    .read_from(offset, |p| {
                        back.extend_from_slice(p);
                        true
                    })
                    .unwrap();
                let want = bytes.get(offset as usize..).unwrap_or_default();
                assert_eq!(back, want, "size {size}, offset {offset}");
            }
            // Stopping early stops.
            let mut pieces = 0;
            draft
                .read_from(0, |_| {
                    pieces += 1;
                    false
                })
                .unwrap();
            assert_eq!(pieces, 1);
        }
    }
}

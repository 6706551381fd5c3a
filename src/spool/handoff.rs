//! A committed message as the delivery side first gets it: the envelope as written and, when the
//! message was received whole in memory, its bytes, so that its first delivery attempt reads
//! nothing back from the spool (no envelope to open and parse, no file to read through the
//! blocking pool). The files stay the truth: what is handed over is exactly what was fsynced,
//! and everything after the first attempt (a retry, a restart, `queue` commands) reads them.
//!
//! The bytes handed over at once are bounded (`MAX_HANDED`): past it, a commit hands over the
//! envelope only, and the courier reads the file as it does for any later attempt.

use super::{Envelope, QueueId};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// At most this many bytes of committed messages are in memory for their first attempt at once
/// (a receiver down and a queue of thousands does not keep thousands of messages in memory).
pub const MAX_HANDED: usize = 32 * 1024 * 1024;

/// A committed message for its first delivery attempt.
#[derive(Debug)]
pub struct Committed {
    pub id: QueueId,
    /// What the delivery side need not read back; `None`: read everything from the spool.
    pub in_hand: Option<InHand>,
}

/// A queued message's envelope as written, and its bytes when they fit in memory.
#[derive(Debug)]
pub struct InHand {
    pub envelope: Envelope,
    /// The bytes as committed (what is sent after the signatures); `None`: read the file.
    pub bytes: Option<InMemory>,
}

impl Committed {
    /// Only the id: the scheduler reads the rest from the spool.
    pub fn id_only(id: QueueId) -> Committed {
        Committed { id, in_hand: None }
    }
}

/// A committed message's bytes held in memory; their share of `MAX_HANDED` is given back when
/// dropped.
#[derive(Debug)]
pub struct InMemory {
    bytes: Vec<u8>,
    budget: Arc<HandedBytes>,
}

impl std::ops::Deref for InMemory {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for InMemory {
    fn drop(&mut self) {
        self.budget.0.fetch_sub(self.bytes.len(), Ordering::Relaxed);
    }
}

/// The bytes handed over and not yet dropped, shared by a spool's clones.
#[derive(Debug, Default)]
pub(super) struct HandedBytes(AtomicUsize);

impl HandedBytes {
    /// Keep `bytes` in memory if there is room under `MAX_HANDED`.
    pub(super) fn keep(self: &Arc<Self>, bytes: Vec<u8>) -> Option<InMemory> {
        let len = bytes.len();
        let room = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                n.checked_add(len).filter(|&m| m <= MAX_HANDED)
            })
            .is_ok();
        room.then(|| InMemory {
            bytes,
            budget: self.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_in_memory_are_bounded_and_given_back() {
        let budget = Arc::new(HandedBytes::default());
        let first = budget.keep(vec![b'a'; MAX_HANDED - 10]).expect("room");
        assert!(budget.keep(vec![b'b'; 11]).is_none(), "over the bound");
        let small = budget.keep(vec![b'c'; 10]).expect("exactly fits");
        assert_eq!(&small[..], &[b'c'; 10][..]);
        drop(first);
        assert!(
            budget.keep(vec![b'd'; 1024]).is_some(),
            "given back on drop"
        );
    }
}

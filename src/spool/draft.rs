//! Messages being received: a draft is a file in `tmp/` written as the bytes arrive, removed
//! (or kept empty for the next draft) unless committed; commit appends the envelope, fsyncs,
//! renames the file into `queue/` and fsyncs the directory.

use super::handoff::InMemory;
use super::store::{io_err, sync_dir, Spares, TRAILER_MAGIC};
use super::{Envelope, QueueId, Spool, SpoolError};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// A message being received: a file in `tmp/` that disappears unless committed.
pub struct Draft {
    pub id: QueueId,
    path: PathBuf,
    file: Option<File>,
    buf: Vec<u8>,
    pub size: u64,
    spares: Option<Arc<Spares>>,
    /// Some of it went to the file already: `buf` is not the whole message.
    flushed: bool,
}

const DRAFT_BUFFER: usize = 256 * 1024;

/// How much of a draft `read_from` hands over at a time.
const PIECE: usize = 64 * 1024;

impl Draft {
    /// Append message bytes. Small writes are gathered; the disk is written in large pieces.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
        self.size += bytes.len() as u64;
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= DRAFT_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// Everything written so far when it is all still in memory: a message smaller than the
    /// draft's buffer reaches the file only at commit.
    pub fn contents(&self) -> Option<&[u8]> {
        (!self.flushed).then_some(&self.buf[..])
    }

    /// Everything written so far from byte `offset` on, piece by piece, until `f` says stop:
    /// for a second pass over a message as received (re-encoding) and for verifying it as it
    /// will be sent. From memory while it is all there, else from the file.
    pub fn read_from(
        &mut self,
        offset: u64,
        mut f: impl FnMut(&[u8]) -> bool,
    ) -> Result<(), SpoolError> {
        if let Some(all) = self.contents() {
            let rest = all.get(offset as usize..).unwrap_or_default();
            for piece in rest.chunks(PIECE) {
                if !f(piece) {
                    break;
                }
            }
            return Ok(());
        }
        self.flush()?;
        let mut file = File::open(&self.path).map_err(|e| io_err(&self.path, e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| io_err(&self.path, e))?;
        // Only what was written: a recycled file is emptied, but the count is the truth.
        let mut left = self.size.saturating_sub(offset);
        let mut buf = vec![0u8; PIECE];
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = file
                .read(&mut buf[..want])
                .map_err(|e| io_err(&self.path, e))?;
            left -= n as u64;
            if n == 0 || !f(&buf[..n]) {
                break;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SpoolError> {
        self.write_out()?;
        self.buf.clear();
        Ok(())
    }

    /// Write what is buffered to the file, leaving the buffer as it is.
    fn write_out(&mut self) -> Result<(), SpoolError> {
        if let Some(f) = self.file.as_mut() {
            f.write_all(&self.buf).map_err(|e| io_err(&self.path, e))?;
        }
        self.flushed = true;
        Ok(())
    }
}

impl Drop for Draft {
    fn drop(&mut self) {
        // Not committed (refused, connection lost, error): leave nothing half-written.
        let Some(file) = self.file.take() else {
            return;
        };
        let path = std::mem::take(&mut self.path);
        let unwanted = match &self.spares {
            Some(spares) if file.set_len(0).is_ok() => spares.keep(path).err(),
            _ => Some(path),
        };
        if let Some(path) = unwanted {
            let _ = fs::remove_file(path);
        }
    }
}

impl Spool {
    /// Start receiving a message.
    pub fn draft(&self, id: QueueId) -> Result<Draft, SpoolError> {
        if let Some(spare) = self.spares.as_ref().and_then(|s| s.take()) {
            // Emptied at removal; truncate anyway in case a crash came first.
            match OpenOptions::new().write(true).truncate(true).open(&spare) {
                Ok(file) => return Ok(self.draft_in(id, spare, file, 16 * 1024)),
                Err(_) => {
                    let _ = fs::remove_file(&spare);
                }
            }
        }
        let path = self.tmp.join(format!("{id}.msg"));
        self.new_draft(id, path, 16 * 1024)
    }

    /// A second draft for the same message, written while the first is read back (a body
    /// re-encoded before signing). Only one of the two is ever committed; the other goes when
    /// dropped, like any draft.
    pub fn rewrite_draft(&self, id: QueueId) -> Result<Draft, SpoolError> {
        let path = self
            .tmp
            .join(format!("{id}.{:08x}.rewrite", rand::random::<u32>()));
        self.new_draft(id, path, 64 * 1024)
    }

    /// A draft in a file created for it at `path`.
    fn new_draft(&self, id: QueueId, path: PathBuf, buffer: usize) -> Result<Draft, SpoolError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        Ok(self.draft_in(id, path, file, buffer))
    }

    fn draft_in(&self, id: QueueId, path: PathBuf, file: File, buffer: usize) -> Draft {
        Draft {
            id,
            path,
            file: Some(file),
            buf: Vec::with_capacity(buffer),
            size: 0,
            spares: self.spares.clone(),
            flushed: false,
        }
    }

    /// Make a received message durable: after this returns Ok, it survives a crash.
    /// Blocking (fsync): call from a blocking context.
    ///
    /// The envelope is appended to the message's own file, behind its bytes, with a trailer
    /// that finds it: one file, one fsync and one rename per message. Files are the expensive
    /// part of a spool on a busy ext4 (every new inode is searched for past the recently
    /// deleted ones), so a message costs one inode, not two.
    pub fn commit(&self, draft: Draft, envelope: &Envelope) -> Result<(), SpoolError> {
        self.commit_keeping(draft, envelope).map(drop)
    }

    /// `commit`, keeping the message's bytes in memory for its first delivery attempt when
    /// they were all in memory and the hand-over bound has room (`handoff.rs`).
    pub fn commit_keeping(
        &self,
        mut draft: Draft,
        envelope: &Envelope,
    ) -> Result<Option<InMemory>, SpoolError> {
        let json = serde_json::to_vec(envelope).map_err(|e| SpoolError::Corrupt {
            path: draft.path.display().to_string(),
            detail: e.to_string(),
        })?;
        let whole = !draft.flushed;
        let message_len = draft.buf.len();
        draft.buf.extend_from_slice(&json);
        draft
            .buf
            .extend_from_slice(&(json.len() as u64).to_le_bytes());
        draft.buf.extend_from_slice(TRAILER_MAGIC);
        draft.write_out()?;
        let mut buf = std::mem::take(&mut draft.buf);
        buf.truncate(message_len);
        let Some(file) = draft.file.as_ref() else {
            return Err(SpoolError::NotFound);
        };
        file.sync_data().map_err(|e| io_err(&draft.path, e))?;
        let msg_final = self.message_path(&draft.id);
        let result = fs::rename(&draft.path, &msg_final)
            .map_err(|e| io_err(&msg_final, e))
            .and_then(|()| sync_dir(&self.queue));
        match result {
            Ok(()) => {
                // Committed: the draft's file now lives in queue/, nothing to clean up.
                draft.file = None;
                Ok(if whole { self.handed.keep(buf) } else { None })
            }
            Err(e) => {
                let _ = fs::remove_file(&msg_final);
                Err(e)
            }
        }
    }
}

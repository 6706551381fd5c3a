//! Files of the spool: drafts being received, atomic commit, envelope updates, scans.

use super::{Envelope, QueueId};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why the spool could not do what was asked. `Full` is a temporary condition the client
/// should hear as 452 4.3.1; the rest are local errors (451 4.3.0).
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool disk is full")]
    Full,
    #[error("spool I/O error on {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("envelope {path} is unreadable: {detail}")]
    Corrupt { path: String, detail: String },
    #[error("no such message in the queue")]
    NotFound,
}

fn io_err(path: &Path, e: io::Error) -> SpoolError {
    // ENOSPC and EDQUOT: the disk (or our quota) is full.
    if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == io::ErrorKind::StorageFull
    {
        SpoolError::Full
    } else {
        SpoolError::Io {
            path: path.display().to_string(),
            source: e,
        }
    }
}

/// The spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    queue: PathBuf,
    tmp: PathBuf,
}

/// A message being received: a file in `tmp/` that disappears unless committed.
pub struct Draft {
    pub id: QueueId,
    path: PathBuf,
    file: Option<File>,
    buf: Vec<u8>,
    pub size: u64,
}

const DRAFT_BUFFER: usize = 256 * 1024;

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

    fn flush(&mut self) -> Result<(), SpoolError> {
        if let Some(f) = self.file.as_mut() {
            f.write_all(&self.buf).map_err(|e| io_err(&self.path, e))?;
        }
        self.buf.clear();
        Ok(())
    }
}

impl Drop for Draft {
    fn drop(&mut self) {
        // Not committed (refused, connection lost, error): leave nothing half-written.
        if self.file.is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Spool {
    /// Open (creating if needed) the spool and clear what a crash left half-written.
    pub fn open(root: &Path) -> Result<Spool, SpoolError> {
        let spool = Spool {
            root: root.to_path_buf(),
            queue: root.join("queue"),
            tmp: root.join("tmp"),
        };
        for dir in [&spool.root, &spool.queue, &spool.tmp] {
            fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        }
        Ok(spool)
    }

    /// Remove drafts and orphaned message files left by a crash. Only safe while no session is
    /// receiving (at start-up).
    pub fn recover(&self) -> Result<usize, SpoolError> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.tmp)
            .map_err(|e| io_err(&self.tmp, e))?
            .flatten()
        {
            if fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        for entry in fs::read_dir(&self.queue)
            .map_err(|e| io_err(&self.queue, e))?
            .flatten()
        {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "msg")
                && !p.with_extension("env").exists()
                && fs::remove_file(&p).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Start receiving a message.
    pub fn draft(&self, id: QueueId) -> Result<Draft, SpoolError> {
        let path = self.tmp.join(format!("{id}.msg"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        Ok(Draft {
            id,
            path,
            file: Some(file),
            buf: Vec::with_capacity(16 * 1024),
            size: 0,
        })
    }

    /// Make a received message durable: after this returns Ok, it survives a crash.
    /// Blocking (fsync): call from a blocking context.
    pub fn commit(&self, mut draft: Draft, envelope: &Envelope) -> Result<(), SpoolError> {
        draft.flush()?;
        let Some(file) = draft.file.as_ref() else {
            return Err(SpoolError::NotFound);
        };
        file.sync_data().map_err(|e| io_err(&draft.path, e))?;
        let env_tmp = self.tmp.join(format!("{}.env", draft.id));
        let result = (|| {
            write_synced(&env_tmp, envelope)?;
            let msg_final = self.message_path(&draft.id);
            fs::rename(&draft.path, &msg_final).map_err(|e| io_err(&msg_final, e))?;
            let env_final = self.envelope_path(&draft.id);
            fs::rename(&env_tmp, &env_final).map_err(|e| io_err(&env_final, e))?;
            sync_dir(&self.queue)
        })();
        match result {
            Ok(()) => {
                // Committed: the draft's file now lives in queue/, nothing to clean up.
                draft.file = None;
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&env_tmp);
                let _ = fs::remove_file(self.message_path(&draft.id));
                Err(e)
            }
        }
    }

    pub fn message_path(&self, id: &QueueId) -> PathBuf {
        self.queue.join(format!("{id}.msg"))
    }

    fn envelope_path(&self, id: &QueueId) -> PathBuf {
        self.queue.join(format!("{id}.env"))
    }

    /// Read one envelope.
    pub fn load(&self, id: &QueueId) -> Result<Envelope, SpoolError> {
        let path = self.envelope_path(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SpoolError::NotFound),
            Err(e) => return Err(io_err(&path, e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| SpoolError::Corrupt {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }

    /// Hold the spool's envelope lock (an advisory `flock` on `queue/.lock`) while `f` runs:
    /// envelope rewrites by the daemon and read-modify-writes by `queue` commands never
    /// interleave, so a delivery recorded meanwhile is never overwritten with a stale
    /// "pending" (which would send the message twice).
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, SpoolError>) -> Result<T, SpoolError> {
        use std::os::unix::io::AsRawFd;
        let path = self.queue.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        // SAFETY: flock on a descriptor we own; released when `file` is closed below.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_err(&path, io::Error::last_os_error()));
        }
        let result = f();
        drop(file);
        result
    }

    /// Read an envelope, change it, and write it back, under the envelope lock.
    pub fn modify(
        &self,
        id: &QueueId,
        f: impl FnOnce(&mut Envelope) -> bool,
    ) -> Result<Envelope, SpoolError> {
        self.locked(|| {
            let mut env = self.load(id)?;
            if f(&mut env) {
                self.write_envelope(id, &env)?;
            }
            Ok(env)
        })
    }

    /// Replace an envelope atomically (write, fsync, rename, fsync the directory). A message
    /// deleted meanwhile (`queue delete`) stays deleted.
    pub fn update(&self, id: &QueueId, envelope: &Envelope) -> Result<(), SpoolError> {
        self.locked(|| self.write_envelope(id, envelope))
    }

    fn write_envelope(&self, id: &QueueId, envelope: &Envelope) -> Result<(), SpoolError> {
        let target = self.envelope_path(id);
        if !target.exists() {
            return Err(SpoolError::NotFound);
        }
        let tmp = self
            .tmp
            .join(format!("{id}.env.{:08x}", rand::random::<u32>()));
        write_synced(&tmp, envelope)?;
        fs::rename(&tmp, &target).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(&target, e)
        })?;
        sync_dir(&self.queue)
    }

    /// Remove a message: its envelope first (so a crash in between leaves only an orphan
    /// message file, which `recover` removes).
    pub fn remove(&self, id: &QueueId) -> Result<(), SpoolError> {
        self.locked(|| self.remove_unlocked(id))
    }

    fn remove_unlocked(&self, id: &QueueId) -> Result<(), SpoolError> {
        let env = self.envelope_path(id);
        match fs::remove_file(&env) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SpoolError::NotFound),
            Err(e) => return Err(io_err(&env, e)),
        }
        let msg = self.message_path(id);
        let _ = fs::remove_file(&msg);
        sync_dir(&self.queue)
    }

    /// Every queued message's id, oldest first.
    pub fn list(&self) -> Result<Vec<QueueId>, SpoolError> {
        let mut ids: Vec<QueueId> = fs::read_dir(&self.queue)
            .map_err(|e| io_err(&self.queue, e))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                QueueId::parse(name.strip_suffix(".env")?)
            })
            .collect();
        ids.sort();
        Ok(ids)
    }
}

fn write_synced(path: &Path, envelope: &Envelope) -> Result<(), SpoolError> {
    let bytes = serde_json::to_vec(envelope).map_err(|e| SpoolError::Corrupt {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.write_all(&bytes).map_err(|e| io_err(path, e))?;
    f.sync_data().map_err(|e| io_err(path, e))
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

#[cfg(test)]
mod tests {
    use super::super::{RecipientState, RecipientStatus};
    use super::*;

    fn env() -> Envelope {
        Envelope {
            version: 1,
            sender: "a@example.com".into(),
            recipients: vec![RecipientStatus {
                address: "b@example.net".into(),
                state: RecipientState::Pending,
                attempts: 0,
                next_attempt: 0,
                last_reply: None,
                dsn_sent: false,
            }],
            received_at: 0,
            client: "test".into(),
            signatures: vec![],
            size: 5,
            eight_bit: false,
            smtputf8: false,
            is_dsn: false,
            delay_warned: false,
        }
    }

    #[test]
    fn commit_scan_update_remove() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let id = QueueId::new();
        let mut d = spool.draft(id.clone()).unwrap();
        d.write(b"hello").unwrap();
        spool.commit(d, &env()).unwrap();
        assert_eq!(spool.list().unwrap(), vec![id.clone()]);
        assert_eq!(fs::read(spool.message_path(&id)).unwrap(), b"hello");
        let mut e = spool.load(&id).unwrap();
        e.recipients[0].state = RecipientState::Delivered;
        spool.update(&id, &e).unwrap();
        assert!(spool.load(&id).unwrap().is_done());
        spool.remove(&id).unwrap();
        assert!(spool.list().unwrap().is_empty());
        assert!(matches!(spool.update(&id, &e), Err(SpoolError::NotFound)));
    }

    #[test]
    fn abandoned_drafts_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let mut d = spool.draft(QueueId::new()).unwrap();
        d.write(b"partial").unwrap();
        drop(d);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn recover_removes_half_written_files() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        fs::write(dir.path().join("tmp/X.msg"), b"x").unwrap();
        fs::write(dir.path().join("queue/00000000000000000A.msg"), b"x").unwrap();
        assert_eq!(spool.recover().unwrap(), 2);
    }
}

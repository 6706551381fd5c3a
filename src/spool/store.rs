//! Files of the queue: opening and recovering the spool, envelope reads and atomic updates
//! under a per-message lock, removal, listing, and the on-disk envelope format. Drafts being
//! received and their commit are `draft.rs`.

use super::{Envelope, QueueId};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

pub(super) fn io_err(path: &Path, e: io::Error) -> SpoolError {
    // ENOSPC and EDQUOT: the disk (or our quota) is full.
    if matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) {
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
    pub(super) queue: PathBuf,
    pub(super) tmp: PathBuf,
    /// Emptied message files kept for the next drafts (`with_recycling`); `None`: files are
    /// created and unlinked.
    pub(super) spares: Option<Arc<Spares>>,
    /// Free space on the spool's file system (shared by clones: one reading per second).
    space: Arc<super::space::FreeSpace>,
    /// Bytes of committed messages handed to the delivery side in memory (`handoff.rs`).
    pub(super) handed: Arc<super::handoff::HandedBytes>,
}

/// Files of delivered messages, emptied, waiting in `tmp/` to hold the next drafts.
///
/// Like PostgreSQL recycling its WAL segments: a new inode per message is the costliest thing
/// a busy spool does on some filesystems (ext4 without a journal searches past every inode
/// deleted in the last minutes for each one it allocates), and an emptied file renamed back
/// and forth costs no allocation at all.
#[derive(Debug)]
pub(super) struct Spares {
    files: Mutex<Vec<PathBuf>>,
    max: usize,
}

impl Spares {
    pub(super) fn take(&self) -> Option<PathBuf> {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    pub(super) fn has_room(&self) -> bool {
        self.files.lock().unwrap_or_else(|p| p.into_inner()).len() < self.max
    }

    /// Keep an emptied file; gives it back when there are enough already (to be unlinked).
    pub(super) fn keep(&self, path: PathBuf) -> Result<(), PathBuf> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if files.len() < self.max {
            files.push(path);
            Ok(())
        } else {
            Err(path)
        }
    }
}

/// How many emptied files a recycling spool keeps.
const MAX_SPARES: usize = 1024;

/// The bytes of a queued message as they go out (after its signatures): the first `len`
/// bytes of its file, which holds the envelope behind them.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub path: PathBuf,
    pub len: u64,
}

impl StoredMessage {
    pub fn open(&self) -> io::Result<io::Take<File>> {
        use std::io::Read;
        Ok(File::open(&self.path)?.take(self.len))
    }
}

impl Spool {
    /// Open (creating if needed) the spool and clear what a crash left half-written.
    pub fn open(root: &Path) -> Result<Spool, SpoolError> {
        let spool = Spool {
            root: root.to_path_buf(),
            queue: root.join("queue"),
            tmp: root.join("tmp"),
            spares: None,
            space: Arc::new(super::space::FreeSpace::new(root)),
            handed: Arc::default(),
        };
        for dir in [&spool.root, &spool.queue, &spool.tmp] {
            fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        }
        Ok(spool)
    }

    /// Free space on the spool's file system, against `limits.spool_min_free`.
    pub fn free_space(&self) -> &super::space::FreeSpace {
        &self.space
    }

    /// Keep the files of delivered messages, emptied, for the next drafts instead of
    /// unlinking them (see `Spares`). For the daemon: a `queue` command's spool unlinks.
    pub fn with_recycling(mut self) -> Spool {
        self.spares = Some(Arc::new(Spares {
            files: Mutex::new(Vec::new()),
            max: MAX_SPARES,
        }));
        self
    }

    /// Clear drafts and orphaned files left by a crash (recycling spools keep the emptied files
    /// as spares); returns how many held something half-written. Only safe while no session
    /// is receiving (at start-up).
    pub fn recover(&self) -> Result<usize, SpoolError> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.tmp)
            .map_err(|e| io_err(&self.tmp, e))?
            .flatten()
        {
            let path = entry.path();
            // Emptied files are spares; anything else was being received, or emptied.
            if !entry.metadata().is_ok_and(|m| m.is_file() && m.len() == 0) {
                removed += 1;
            }
            let unwanted = match &self.spares {
                Some(spares)
                    if spares.has_room()
                        && entry.file_type().is_ok_and(|t| t.is_file())
                        && OpenOptions::new()
                            .write(true)
                            .truncate(true)
                            .open(&path)
                            .is_ok() =>
                {
                    spares.keep(path).err()
                }
                _ => Some(path),
            };
            if let Some(path) = unwanted {
                let _ = fs::remove_file(path);
            }
        }
        for entry in fs::read_dir(&self.queue)
            .map_err(|e| io_err(&self.queue, e))?
            .flatten()
        {
            let p = entry.path();
            // An envelope update whose message was removed. (Every committed message is one
            // `.msg` that carries its envelope: nothing else to check, and no file to open
            // per queued message at start-up.)
            let orphan =
                p.extension().is_some_and(|e| e == "env") && !p.with_extension("msg").exists();
            if orphan && fs::remove_file(&p).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The bytes to send of a queued message (its file holds the envelope behind them).
    pub fn message(&self, id: &QueueId, envelope: &Envelope) -> StoredMessage {
        StoredMessage {
            path: self.message_path(id),
            len: envelope.size,
        }
    }

    /// Whether the message is still queued (`queue delete` removes its file first).
    pub fn contains(&self, id: &QueueId) -> bool {
        self.message_path(id).exists()
    }

    pub(super) fn message_path(&self, id: &QueueId) -> PathBuf {
        self.queue.join(format!("{id}.msg"))
    }

    /// Where an envelope lives once it has changed since the message was committed.
    fn envelope_path(&self, id: &QueueId) -> PathBuf {
        self.queue.join(format!("{id}.env"))
    }

    /// Read one envelope: the latest update if there is one, else the one committed with the
    /// message.
    pub fn load(&self, id: &QueueId) -> Result<Envelope, SpoolError> {
        let path = self.envelope_path(id);
        match fs::read(&path) {
            Ok(bytes) => parse_envelope(&path, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let path = self.message_path(id);
                match File::open(&path) {
                    Ok(file) => match committed_envelope(&path, &file)? {
                        Some(bytes) => parse_envelope(&path, &bytes),
                        None => Err(SpoolError::Corrupt {
                            path: path.display().to_string(),
                            detail: "no envelope".into(),
                        }),
                    },
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SpoolError::NotFound),
                    Err(e) => Err(io_err(&path, e)),
                }
            }
            Err(e) => Err(io_err(&path, e)),
        }
    }

    /// Hold the message's lock (an advisory `flock` on its file) while `f` runs: envelope
    /// rewrites by the daemon and read-modify-writes by `queue` commands never interleave, so a
    /// delivery recorded meanwhile is never overwritten with a stale "pending" (which would
    /// send the message twice). One lock per message: deliveries of different messages never
    /// wait for each other.
    fn locked<T>(
        &self,
        id: &QueueId,
        f: impl FnOnce(&File) -> Result<T, SpoolError>,
    ) -> Result<T, SpoolError> {
        use std::os::unix::fs::MetadataExt;
        let path = self.message_path(id);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SpoolError::NotFound),
            Err(e) => return Err(io_err(&path, e)),
        };
        // An advisory flock (what std uses on Linux), released when `file` is closed below.
        file.lock().map_err(|e| io_err(&path, e))?;
        // Removed while we waited for the lock: it stays removed.
        if file.metadata().map_err(|e| io_err(&path, e))?.nlink() == 0 {
            return Err(SpoolError::NotFound);
        }
        let result = f(&file);
        drop(file);
        result
    }

    /// Read an envelope, change it, and write it back, under the message's lock.
    pub fn modify(
        &self,
        id: &QueueId,
        f: impl FnOnce(&mut Envelope) -> bool,
    ) -> Result<Envelope, SpoolError> {
        self.locked(id, |_| {
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
        self.locked(id, |_| self.write_envelope(id, envelope))
    }

    fn write_envelope(&self, id: &QueueId, envelope: &Envelope) -> Result<(), SpoolError> {
        let target = self.envelope_path(id);
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

    /// Remove a message: its file first (so a crash in between leaves only an orphan envelope,
    /// which `recover` removes).
    ///
    /// The directory is not fsynced: a crash right after may bring the message back and it is
    /// delivered again — a duplicate, never a loss, as with Postfix's queue.
    pub fn remove(&self, id: &QueueId) -> Result<(), SpoolError> {
        self.locked(id, |file| {
            let msg = self.message_path(id);
            let recycle = self.spares.as_ref().filter(|s| s.has_room());
            let gone = match recycle {
                // Out of the queue in one rename, then emptied: a delivered message does not
                // linger on disk.
                Some(spares) => {
                    let spare = self.tmp.join(format!("{id}.spare"));
                    fs::rename(&msg, &spare).map(|()| {
                        let unwanted = match file.set_len(0) {
                            Ok(()) => spares.keep(spare).err(),
                            Err(_) => Some(spare),
                        };
                        if let Some(spare) = unwanted {
                            let _ = fs::remove_file(spare);
                        }
                    })
                }
                None => fs::remove_file(&msg),
            };
            match gone {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SpoolError::NotFound),
                Err(e) => return Err(io_err(&msg, e)),
            }
            let env = self.envelope_path(id);
            match fs::remove_file(&env) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&env, e)),
                _ => Ok(()),
            }
        })
    }

    /// Every queued message's id, oldest first.
    pub fn list(&self) -> Result<Vec<QueueId>, SpoolError> {
        let mut ids: Vec<QueueId> = fs::read_dir(&self.queue)
            .map_err(|e| io_err(&self.queue, e))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                QueueId::parse(name.strip_suffix(".msg")?)
            })
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// Ends every committed message file: the envelope's length (u64, little-endian) and this.
pub(super) const TRAILER_MAGIC: &[u8; 8] = b"dkrenv01";
const TRAILER_LEN: u64 = 16;
/// No envelope is this large (recipients are bounded by `limits.max_recipients`).
const MAX_ENVELOPE: u64 = 64 * 1024 * 1024;

/// The envelope committed at the end of a message file, if the file ends with one.
fn committed_envelope(path: &Path, file: &File) -> Result<Option<Vec<u8>>, SpoolError> {
    use std::os::unix::fs::FileExt;
    let size = file.metadata().map_err(|e| io_err(path, e))?.len();
    if size < TRAILER_LEN {
        return Ok(None);
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.read_exact_at(&mut trailer, size - TRAILER_LEN)
        .map_err(|e| io_err(path, e))?;
    if &trailer[8..] != TRAILER_MAGIC {
        return Ok(None);
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&trailer[..8]);
    let len = u64::from_le_bytes(len);
    if len > MAX_ENVELOPE || len > size - TRAILER_LEN {
        return Ok(None);
    }
    let mut json = vec![0u8; len as usize];
    file.read_exact_at(&mut json, size - TRAILER_LEN - len)
        .map_err(|e| io_err(path, e))?;
    Ok(Some(json))
}

fn parse_envelope(path: &Path, bytes: &[u8]) -> Result<Envelope, SpoolError> {
    serde_json::from_slice(bytes).map_err(|e| SpoolError::Corrupt {
        path: path.display().to_string(),
        detail: e.to_string(),
    })
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

pub(super) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
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
            tls_optional: false,
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
        let mut e = spool.load(&id).unwrap();
        assert_eq!(e, env());
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut spool.message(&id, &e).open().unwrap(), &mut bytes)
            .unwrap();
        assert_eq!(bytes, b"hello");
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
        fs::write(dir.path().join("queue/00000000000000000B.env"), b"{}").unwrap();
        // A committed message stays.
        let id = QueueId::new();
        let mut d = spool.draft(id.clone()).unwrap();
        d.write(b"kept").unwrap();
        spool.commit(d, &env()).unwrap();
        assert_eq!(spool.recover().unwrap(), 2);
        assert_eq!(spool.list().unwrap(), vec![id.clone()]);
        assert_eq!(spool.load(&id).unwrap(), env());
    }

    #[test]
    fn a_spool_of_the_two_file_layout_still_loads() {
        // Earlier versions kept the envelope only in `.env` and the bare message in `.msg`.
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let id = QueueId::new();
        fs::write(dir.path().join(format!("queue/{id}.msg")), b"hello").unwrap();
        fs::write(
            dir.path().join(format!("queue/{id}.env")),
            serde_json::to_vec(&env()).unwrap(),
        )
        .unwrap();
        assert_eq!(spool.recover().unwrap(), 0);
        assert_eq!(spool.list().unwrap(), vec![id.clone()]);
        let e = spool.load(&id).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut spool.message(&id, &e).open().unwrap(), &mut bytes)
            .unwrap();
        assert_eq!(bytes, b"hello");
        spool.remove(&id).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("queue")).unwrap().count(), 0);
    }

    #[test]
    fn an_update_wins_and_is_removed_with_its_message() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let id = QueueId::new();
        let mut d = spool.draft(id.clone()).unwrap();
        d.write(b"x").unwrap();
        spool.commit(d, &env()).unwrap();
        let changed = spool
            .modify(&id, |e| {
                e.recipients[0].attempts = 3;
                true
            })
            .unwrap();
        assert_eq!(spool.load(&id).unwrap(), changed);
        spool.remove(&id).unwrap();
        assert!(matches!(spool.load(&id), Err(SpoolError::NotFound)));
        assert!(matches!(
            spool.modify(&id, |_| true),
            Err(SpoolError::NotFound)
        ));
        assert_eq!(fs::read_dir(dir.path().join("queue")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_recycling_spool_reuses_the_files_of_delivered_messages() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap().with_recycling();
        let inode = |p: &Path| fs::metadata(p).unwrap().ino();
        let first = QueueId::new();
        let mut d = spool.draft(first.clone()).unwrap();
        d.write(b"first message").unwrap();
        spool.commit(d, &env()).unwrap();
        let used = inode(&spool.message_path(&first));
        spool.remove(&first).unwrap();
        // Out of the queue, emptied, waiting in tmp/.
        assert!(spool.list().unwrap().is_empty());
        let spare = dir.path().join(format!("tmp/{first}.spare"));
        assert_eq!(fs::metadata(&spare).unwrap().len(), 0);

        let second = QueueId::new();
        let mut d = spool.draft(second.clone()).unwrap();
        d.write(b"second").unwrap();
        spool.commit(d, &Envelope { size: 6, ..env() }).unwrap();
        assert_eq!(inode(&spool.message_path(&second)), used);
        let e = spool.load(&second).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut spool.message(&second, &e).open().unwrap(), &mut bytes)
            .unwrap();
        assert_eq!(bytes, b"second");

        // An abandoned draft goes back emptied too, and a restart keeps the spares.
        let d = spool.draft(QueueId::new()).unwrap();
        drop(d);
        spool.remove(&second).unwrap();
        let restarted = Spool::open(dir.path()).unwrap().with_recycling();
        assert_eq!(
            restarted.recover().unwrap(),
            0,
            "spares are not half-written"
        );
        for f in fs::read_dir(dir.path().join("tmp")).unwrap().flatten() {
            assert_eq!(f.metadata().unwrap().len(), 0, "{:?}", f.path());
        }
        // A `queue` command's spool unlinks.
        let third = QueueId::new();
        let mut d = Spool::open(dir.path())
            .unwrap()
            .draft(third.clone())
            .unwrap();
        d.write(b"x").unwrap();
        let plain = Spool::open(dir.path()).unwrap();
        plain.commit(d, &env()).unwrap();
        let before = fs::read_dir(dir.path().join("tmp")).unwrap().count();
        plain.remove(&third).unwrap();
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            before
        );
    }
}

//! `next-hops.json` in the spool directory: the closed next-hop hosts as the daemon sees them,
//! rewritten (temporary file + rename) whenever one closes, fails its probe or opens again,
//! so that `queue list` and `queue show`, which run in another process, can say what a
//! waiting message really waits for. It is advice, not state: the daemon never reads it back
//! (at start every host is open), and a reader ignores it when no daemon runs.

use crate::outbound::breaker::Snapshot;
use std::path::Path;

/// The file's name in the spool directory.
pub const FILE: &str = "next-hops.json";

/// Write `snapshot` for the queue commands.
pub fn write(spool_dir: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    let path = spool_dir.join(FILE);
    let tmp = spool_dir.join(format!(".{FILE}.tmp"));
    let bytes = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)
}

/// What the daemon last wrote (nothing closed when there is no file or it cannot be read).
pub fn read(spool_dir: &Path) -> Snapshot {
    std::fs::read(spool_dir.join(FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

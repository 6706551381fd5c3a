//! `mode: directory`: each signed message becomes `<queue id>.eml` in a directory — the
//! staging and demo mode. Written to a temporary name, fsynced and renamed, so a reader never
//! sees half a message. When envelope tagging gave the sender a BATV tag, the file starts with
//! a `Return-Path` field holding it, as a final delivery would (RFC 5321 §4.4): the one thing
//! about the envelope a receiver would see that the message itself does not show. Otherwise
//! the file is the message exactly as it would be sent.

use super::{Message, Outcome, Parcel};
use std::io::Write;
use std::path::Path;

pub fn deliver(dir: &Path, parcel: &Parcel<'_>) -> Vec<Outcome> {
    match write(dir, parcel) {
        Ok(path) => parcel.all(Outcome::Delivered(format!("written to {}", path.display()))),
        Err(e) => parcel.all(Outcome::Temporary(format!(
            "cannot write to {}: {e}",
            dir.display()
        ))),
    }
}

fn write(dir: &Path, parcel: &Parcel<'_>) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.eml.tmp", parcel.queue_id));
    let target = dir.join(format!("{}.eml", parcel.queue_id));
    let mut out = std::fs::File::create(&tmp)?;
    if is_tagged(parcel.sender) {
        out.write_all(format!("Return-Path: <{}>\r\n", parcel.sender).as_bytes())?;
    }
    for sig in parcel.signatures {
        out.write_all(sig.as_bytes())?;
    }
    match parcel.message {
        Message::File { path, len } => {
            let mut msg = std::io::Read::take(std::fs::File::open(path)?, len);
            std::io::copy(&mut msg, &mut out)?;
        }
        Message::InMemory(bytes) => out.write_all(bytes)?,
    }
    out.sync_data()?;
    std::fs::rename(&tmp, &target)?;
    Ok(target)
}

/// Does the envelope sender carry a BATV tag (`prvs=...=user@domain`)?
fn is_tagged(sender: &str) -> bool {
    sender
        .rsplit_once('@')
        .is_some_and(|(local, _)| crate::backscatter::prvs::parse(local).is_some())
}

//! What an INPUT on the command line names, told by what it holds rather than by its name: a
//! Maildir (a directory with `cur/` and `new/`: every message in them), another directory
//! (everything in it, recursively, hidden entries left out), an mbox file (starts with a
//! `From ` line: each message), a single message (`.eml`: starts with a header field), or a
//! report file (XML, gzip, zip). Each goes to the [`Collector`]; an unreadable one is named
//! with its reason and the rest goes on. Messages are read one at a time, each capped at
//! [`MAX_MESSAGE_BYTES`].

use super::collect::Collector;
use super::input::{load_bytes, read_capped, InputError, MAX_REPORT_BYTES};
use super::mail::reports_in_message;
use mail_parser::mailbox::mbox::MessageIterator;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The largest e-mail message read: a report of [`MAX_REPORT_BYTES`], base64-encoded, and more.
pub const MAX_MESSAGE_BYTES: u64 = 150 * 1024 * 1024;
/// Directories inside directories, at most (a symbolic link back up stops here).
const MAX_DIR_DEPTH: usize = 16;

/// Read everything `path` names into `collector`.
pub fn read_input(path: &Path, collector: &mut Collector) {
    read_path(path, collector, 0);
}

fn read_path(path: &Path, c: &mut Collector, depth: usize) {
    let label = path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return c.error(label, format!("cannot read: {e}")),
    };
    if !meta.is_dir() {
        return read_file(path, c);
    }
    if path.join("cur").is_dir() && path.join("new").is_dir() {
        // A Maildir: its messages. Its subfolders (Maildir++ `.Sent`, `.Trash`) are other
        // mailboxes, given on their own if wanted; tmp/ holds deliveries not yet complete.
        for sub in ["cur", "new"] {
            for entry in entries(&path.join(sub), c) {
                if entry.is_file() {
                    read_message_file(&entry, c);
                }
            }
        }
        return;
    }
    if depth >= MAX_DIR_DEPTH {
        return c.error(
            label,
            format!("directories nested more than {MAX_DIR_DEPTH} deep: not read"),
        );
    }
    for entry in entries(path, c) {
        read_path(&entry, c, depth + 1);
    }
}

/// The entries of a directory, sorted by name (so runs and their output are repeatable),
/// without hidden ones (`.DS_Store`, `.git`, Maildir++ folders).
fn entries(dir: &Path, c: &mut Collector) -> Vec<PathBuf> {
    let list = match std::fs::read_dir(dir) {
        Ok(list) => list,
        Err(e) => {
            c.error(dir.display().to_string(), format!("cannot read: {e}"));
            return Vec::new();
        }
    };
    let mut out: Vec<PathBuf> = list
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().as_encoded_bytes().starts_with(b"."))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

fn read_file(path: &Path, c: &mut Collector) {
    let label = path.display().to_string();
    let mut reader = match File::open(path) {
        Ok(f) => BufReader::with_capacity(64 * 1024, f),
        Err(e) => return c.error(label, format!("cannot read: {e}")),
    };
    let kind = match reader.fill_buf() {
        Ok(head) => Kind::of(head),
        Err(e) => return c.error(label, format!("cannot read: {e}")),
    };
    match kind {
        Kind::Mbox => read_mbox(&label, reader, c),
        Kind::Message => read_message(&label, reader, c),
        Kind::Report => match read_capped(reader, MAX_REPORT_BYTES, InputError::TooLarge) {
            Ok(raw) => load_bytes(&label, &raw)
                .into_iter()
                .for_each(|l| c.report(l)),
            Err(e) => c.error(label, e.to_string()),
        },
    }
}

/// A Maildir file: one message, whatever it starts with.
fn read_message_file(path: &Path, c: &mut Collector) {
    let label = path.display().to_string();
    match File::open(path) {
        Ok(f) => read_message(&label, f, c),
        Err(e) => c.error(label, format!("cannot read: {e}")),
    }
}

fn read_message(label: &str, reader: impl Read, c: &mut Collector) {
    match read_capped(reader, MAX_MESSAGE_BYTES, InputError::TooLarge) {
        Ok(raw) => c.message(reports_in_message(label, &raw)),
        Err(InputError::TooLarge) => c.error(label.to_string(), too_large()),
        Err(e) => c.error(label.to_string(), e.to_string()),
    }
}

fn read_mbox(label: &str, reader: impl BufRead, c: &mut Collector) {
    for (index, message) in MessageIterator::new(reader).enumerate() {
        let message_label = format!("{label} message {}", index + 1);
        match message {
            Ok(m) if m.contents().len() as u64 > MAX_MESSAGE_BYTES => {
                c.error(message_label, too_large())
            }
            Ok(m) => c.message(reports_in_message(&message_label, m.contents())),
            Err(e) => {
                // The rest of the file cannot be found without reading it.
                return c.error(message_label, format!("cannot read: {e}"));
            }
        }
    }
}

fn too_large() -> String {
    format!(
        "a message larger than {} MiB: not read",
        MAX_MESSAGE_BYTES >> 20
    )
}

/// What a file holds, from its first bytes.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Mbox,
    Message,
    Report,
}

impl Kind {
    fn of(head: &[u8]) -> Kind {
        if head.starts_with(b"From ") {
            return Kind::Mbox;
        }
        // XML starts with markup (`<?xml`, `<feedback`, `<d:feedback`), never a field name.
        if head.trim_ascii_start().starts_with(b"<") || head.starts_with("\u{feff}".as_bytes()) {
            return Kind::Report;
        }
        let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
        match line.iter().position(|&b| b == b':') {
            Some(colon) if colon > 0 && line[..colon].iter().all(|&b| (33..=126).contains(&b)) => {
                Kind::Message
            }
            _ => Kind::Report,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_content() {
        for (head, kind) in [
            (
                &b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n"[..],
                Kind::Mbox,
            ),
            (b"Return-Path: <a@b>\r\nSubject: x\r\n", Kind::Message),
            (b"Received: from x\n", Kind::Message),
            (b"<?xml version=\"1.0\"?>", Kind::Report),
            (b"  \n<feedback>", Kind::Report),
            (b"\x1f\x8b\x08", Kind::Report),
            (b"PK\x03\x04", Kind::Report),
            (b"not a header line\n", Kind::Report),
            (b"", Kind::Report),
        ] {
            assert_eq!(Kind::of(head), kind, "{:?}", String::from_utf8_lossy(head));
        }
    }
}

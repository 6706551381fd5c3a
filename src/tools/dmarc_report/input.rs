//! Getting report XML out of a report file or attachment: plain XML, gzip (`.xml.gz`, `.gz`)
//! and zip (one or more XML files). The format is told by the content (magic bytes), not the
//! file name, since reporters name attachments inconsistently.
//!
//! Hostile input is expected: every file may decompress to at most [`MAX_REPORT_BYTES`] in
//! total (a report is kilobytes to a few MiB; a zip or gzip bomb stops at the cap), a zip may
//! hold at most [`MAX_ZIP_ENTRIES`] files, and every failure is an error value naming what is
//! wrong, never a panic.

use super::model::Report;
use super::parse::{parse_report, ParseError};
use std::borrow::Cow;
use std::io::{Cursor, Read};
use std::path::Path;

/// The most bytes one input file may hold or decompress to (all its zip entries together).
pub const MAX_REPORT_BYTES: u64 = 100 * 1024 * 1024;
/// The most files a zip archive may hold.
pub const MAX_ZIP_ENTRIES: usize = 1000;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const ZIP_EMPTY_MAGIC: &[u8] = b"PK\x05\x06";

/// Why a file (or one file inside a zip) gave no report.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error("larger than {} MiB: not a DMARC aggregate report", MAX_REPORT_BYTES >> 20)]
    TooLarge,
    #[error("corrupt or truncated gzip data: {0}")]
    Gzip(std::io::Error),
    #[error("decompresses to more than {} MiB: refused (a report is a few MiB at most; this looks like a decompression bomb)", MAX_REPORT_BYTES >> 20)]
    Bomb,
    #[error("not a readable zip archive: {0}")]
    Zip(String),
    #[error("the zip archive holds more than {MAX_ZIP_ENTRIES} files: refused")]
    TooManyEntries,
    #[error("the zip archive holds no file")]
    EmptyZip,
    #[error("{0}")]
    Parse(#[from] ParseError),
}

/// One report read from a file, or why it could not be. `label` names it for the operator:
/// the file's path, plus the entry's name for a file inside a zip.
#[derive(Debug)]
pub struct Loaded {
    pub label: String,
    pub report: Result<Report, InputError>,
}

/// Every report in `path`: one for XML and gzip, one per file for zip. An unreadable file gives
/// one error entry.
pub fn load_file(path: &Path) -> Vec<Loaded> {
    let label = path.display().to_string();
    let raw = match std::fs::File::open(path)
        .map_err(InputError::Read)
        .and_then(|f| read_capped(f, MAX_REPORT_BYTES, InputError::TooLarge))
    {
        Ok(raw) => raw,
        Err(e) => {
            return vec![Loaded {
                label,
                report: Err(e),
            }]
        }
    };
    load_bytes(&label, &raw)
}

/// Like [`load_file`], for bytes already in memory.
pub fn load_bytes(label: &str, raw: &[u8]) -> Vec<Loaded> {
    load(label, raw, Strictness::File)
}

/// Like [`load_bytes`], for a part of an e-mail message: content without a `<feedback>`
/// anywhere is [`ParseError::NotAReport`] before it is parsed, so that ordinary attachments
/// (HTML, other XML) are told apart from damaged reports.
pub fn load_attachment(label: &str, raw: &[u8]) -> Vec<Loaded> {
    load(label, raw, Strictness::Attachment)
}

/// How sure the caller is that the bytes are meant to be a report.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strictness {
    /// The operator named the file: whatever is wrong with it is worth saying.
    File,
    /// One part of a message: it may be anything.
    Attachment,
}

fn load(label: &str, raw: &[u8], strictness: Strictness) -> Vec<Loaded> {
    if raw.starts_with(ZIP_MAGIC) || raw.starts_with(ZIP_EMPTY_MAGIC) {
        return match unzip(label, raw, strictness) {
            Ok(list) => list,
            Err(e) => vec![Loaded {
                label: label.to_string(),
                report: Err(e),
            }],
        };
    }
    let mut budget = MAX_REPORT_BYTES;
    vec![Loaded {
        label: label.to_string(),
        report: decode(raw, &mut budget, strictness),
    }]
}

/// gzip or plain XML → report; `budget` is what may still be decompressed.
fn decode(raw: &[u8], budget: &mut u64, strictness: Strictness) -> Result<Report, InputError> {
    // Borrowed unless it had to be decompressed: a 100 MiB plain report is not copied.
    let xml: Cow<[u8]> = if raw.starts_with(GZIP_MAGIC) {
        let out = gunzip(raw, *budget)?;
        *budget = budget.saturating_sub(out.len() as u64);
        Cow::Owned(out)
    } else {
        Cow::Borrowed(raw)
    };
    let text = xml_text(&xml);
    if strictness == Strictness::Attachment && !text.contains("feedback") {
        return Err(ParseError::NotAReport("no <feedback> element".to_string()).into());
    }
    Ok(parse_report(&text)?)
}

/// The text of an XML document. Reports declare UTF-8 but some carry stray Latin-1 bytes in
/// free-text fields: those become U+FFFD instead of failing the whole report. A UTF-16 byte
/// order mark (a few Windows-based reporters) means UTF-16.
fn xml_text(xml: &[u8]) -> Cow<'_, str> {
    let utf16 = |unit: fn([u8; 2]) -> u16| {
        let units: Vec<u16> = xml[2..]
            .chunks_exact(2)
            .map(|c| unit([c[0], c[1]]))
            .collect();
        Cow::Owned(String::from_utf16_lossy(&units))
    };
    match xml {
        [0xff, 0xfe, ..] => utf16(u16::from_le_bytes),
        [0xfe, 0xff, ..] => utf16(u16::from_be_bytes),
        _ => String::from_utf8_lossy(xml),
    }
}

fn gunzip(raw: &[u8], budget: u64) -> Result<Vec<u8>, InputError> {
    // Multi-member: a concatenation of gzip streams is one gzip file (RFC 1952 §2.2).
    let decoder = flate2::read::MultiGzDecoder::new(raw);
    read_capped(decoder, budget, InputError::Bomb).map_err(|e| match e {
        InputError::Read(io) => InputError::Gzip(io),
        other => other,
    })
}

fn unzip(label: &str, raw: &[u8], strictness: Strictness) -> Result<Vec<Loaded>, InputError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(raw)).map_err(zip_error)?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(InputError::TooManyEntries);
    }
    let mut budget = MAX_REPORT_BYTES;
    let mut out = Vec::new();
    for index in 0..archive.len() {
        let mut entry = match archive.by_index(index) {
            Ok(e) => e,
            Err(e) => {
                out.push(Loaded {
                    label: format!("{label} (file {})", index + 1),
                    report: Err(zip_error(e)),
                });
                continue;
            }
        };
        if entry.is_dir() {
            continue;
        }
        let name = entry
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| format!("file {}", index + 1));
        let entry_label = format!("{label} ({name})");
        let report = if entry.encrypted() {
            Err(InputError::Zip(format!("{name} is encrypted")))
        } else {
            match read_capped(&mut entry, budget, InputError::Bomb) {
                Ok(bytes) => {
                    budget = budget.saturating_sub(bytes.len() as u64);
                    decode(&bytes, &mut budget, strictness)
                }
                Err(InputError::Read(e)) => Err(InputError::Zip(format!("{name}: {e}"))),
                Err(e) => Err(e),
            }
        };
        let bomb = matches!(report, Err(InputError::Bomb));
        out.push(Loaded {
            label: entry_label,
            report,
        });
        if bomb {
            // The budget is spent: later entries could only fail the same way.
            break;
        }
    }
    if out.is_empty() {
        return Err(InputError::EmptyZip);
    }
    Ok(out)
}

fn zip_error(e: zip::result::ZipError) -> InputError {
    match e {
        zip::result::ZipError::CompressionMethodNotSupported(m) => InputError::Zip(format!(
            "compression method {m} is not supported (only stored and deflate, which reporters use)"
        )),
        other => InputError::Zip(other.to_string()),
    }
}

/// Read everything, but at most `cap` bytes: one byte more means `too_big`.
pub(super) fn read_capped(
    reader: impl Read,
    cap: u64,
    too_big: InputError,
) -> Result<Vec<u8>, InputError> {
    let mut buf = Vec::new();
    reader
        .take(cap.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(InputError::Read)?;
    if buf.len() as u64 > cap {
        return Err(too_big);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_and_invalid_utf8_are_read() {
        let xml = "<feedback><report_metadata><org_name>Zoë</org_name></report_metadata>\
                   <policy_published><domain>example.com</domain></policy_published></feedback>";
        let mut le = vec![0xff, 0xfe];
        le.extend(xml.encode_utf16().flat_map(u16::to_le_bytes));
        let mut be = vec![0xfe, 0xff];
        be.extend(xml.encode_utf16().flat_map(u16::to_be_bytes));
        let latin1 = xml.replace("Zoë", "Zo\u{0}").replace('\u{0}', "");
        let mut latin1 = latin1.into_bytes();
        let at = latin1.windows(2).position(|w| w == b"Zo").unwrap_or(0) + 2;
        latin1.insert(at, 0xeb);
        for (bytes, org) in [(le, "Zoë"), (be, "Zoë"), (latin1, "Zo\u{fffd}")] {
            let loaded = load_bytes("r.xml", &bytes);
            let report = loaded[0].report.as_ref().expect("report");
            assert_eq!(report.org_name, org);
        }
    }
}

//! A TLS report (RFC 8460 JSON) checked against the RFC's schema in tests/data by Python's
//! jsonschema (Debian's python3-jsonschema, which scripts/install-test-deps.sh installs), through
//! tests/support/tlsrpt_schema.py. Used by the library's report tests and the end-to-end ones.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// `Ok`, or the validator's complaint.
pub fn schema_check(json: &[u8]) -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("/usr/bin/python3")
        .arg(root.join("tests/support/tlsrpt_schema.py"))
        .arg(root.join("tests/data/tlsrpt-schema.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (scripts/install-test-deps.sh installs python3-jsonschema)");
    child.stdin.take().unwrap().write_all(json).unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !text.contains("No module named"),
        "python3-jsonschema is missing: run scripts/install-test-deps.sh\n{text}"
    );
    if out.status.success() && text.trim() == "ok" {
        Ok(())
    } else {
        Err(text)
    }
}

//! What the dmarc-report tests share: the fixtures (tests/data/dmarc), a config naming the
//! relay, and the real binary run as an operator runs it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub const BIN: &str = env!("CARGO_BIN_EXE_dkim-relay");
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
pub const RELAY_IP: &str = "203.0.113.7";

pub const GOOGLE: &str = "google.com!example.com!1767225600!1767311999.xml";
pub const OUTLOOK_GZ: &str = "protection.outlook.com!example.com!1767225600!1767312000.xml.gz";
pub const ZIP: &str = "example.org!2026-01-01.zip";

pub fn fixture(name: &str) -> PathBuf {
    Path::new(ROOT).join("tests/data/dmarc").join(name)
}

pub fn source_fixture(name: &str) -> String {
    std::fs::read_to_string(fixture("sources").join(name)).expect("fixture")
}

/// A config like the relay's tests write, with `public_addresses` so the relay is recognised
/// by address, signing example.com (two selectors) and example.org.
pub fn config(dir: &Path) -> PathBuf {
    let key = Path::new(ROOT).join("config/dev-keys/example.com.dev2026e.pem");
    let rsa = Path::new(ROOT).join("config/dev-keys/example.com.dev2026r.pem");
    let path = dir.join("config.yaml");
    let yaml = format!(
        r#"hostname: relay.test
spool_dir: {spool}
public_addresses: ["{RELAY_IP}"]
listeners:
  - address: "127.0.0.1:2525"
    tls: none
clients:
  - network: 127.0.0.0/8
    allow_from: ["example.com", "example.org"]
dkim:
  domains:
    example.com:
      - selector: dev2026r
        private_key: {rsa}
      - selector: dev2026e
        private_key: {key}
    example.org:
      - selector: org1
        private_key: {key}
"#,
        spool = dir.join("spool").display(),
        rsa = rsa.display(),
        key = key.display(),
    );
    std::fs::write(&path, yaml).expect("write config");
    path
}

pub use crate::relay::CliOut as Out;

/// `dkim-relay dmarc-report ARGS`.
pub fn run(args: &[&str]) -> Out {
    let mut all = vec!["dmarc-report"];
    all.extend_from_slice(args);
    crate::relay::run_cli(&all)
}

pub fn all_fixtures() -> Vec<String> {
    [GOOGLE, OUTLOOK_GZ, ZIP]
        .iter()
        .map(|f| fixture(f).display().to_string())
        .collect()
}

pub fn run_with_config(extra: &[&str], files: &[String]) -> (tempfile::TempDir, Out) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let mut args: Vec<&str> = vec!["-c", cfg.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    args.extend(files.iter().map(String::as_str));
    let out = run(&args);
    (dir, out)
}

pub fn json(out: &Out) -> serde_json::Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\nstderr: {}", out.stdout, out.stderr))
}

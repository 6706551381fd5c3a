//! What signing a message costs, against what it cannot cost less than.
//!
//! For RSA-2048, Ed25519 and dual (both) signing, relaxed/relaxed and simple/simple, and bodies
//! of 1 KiB, 10 KiB, 100 KiB and 1 MiB fed in 16 KiB pieces (what one socket read gives):
//! - `one-pass`: what the relay does to each body chunk as it arrives and at the final dot:
//!   `dkim::message::MessageSigning` (one body canonicalization for every selector, each
//!   signature self-verified) plus `mime::scan::BodyScan` (long lines, 8-bit bytes);
//! - `one-pass+verify`: the same, plus what the relay adds for messages up to
//!   `dkim.independent_verify_max`: mail-auth's own verifier over the signed message
//!   (`dkim::independent::verify`);
//! - `per-selector`: one mail-auth `DkimSigningStream` per selector plus our `BodyCanon` for
//!   self-verification (the body is canonicalized and hashed once per selector, and once more);
//! - `floor`: SHA-256 over the raw body bytes plus the raw aws-lc signatures of a digest.
//!
//! Run: `./scripts/cargo.sh bench --bench signing` (`-- --quick` for a faster, rougher pass).
//! After criterion's own lines it prints one table: messages/s and MB/s of each path and the
//! ratio to the floor, from criterion's median estimates of this run. The `+verify` columns
//! are the cost of the independent self-verification on top of `one-pass`.

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use criterion::{BenchmarkId, Criterion, Throughput};
use dkim_relay::dkim::canon::BodyCanon;
use dkim_relay::dkim::independent::{self, KnownKeys};
use dkim_relay::dkim::message::MessageSigning;
use dkim_relay::dkim::signer::{SelectorSigner, SelectorSpec, Signers, SigningOptions};
use dkim_relay::dkim::verify::{self, MadeSignature};
use dkim_relay::mime::scan::BodyScan;
use dkim_relay::smtp::header::parse_fields;
use mail_auth::headers::HeaderWriter;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const SIZES: &[(&str, usize)] = &[
    ("1KiB", 1024),
    ("10KiB", 10 * 1024),
    ("100KiB", 100 * 1024),
    ("1MiB", 1024 * 1024),
];
const ALGOS: &[&str] = &["rsa", "ed25519", "dual"];
const CANONS: &[&str] = &["relaxed", "simple"];
/// What one read from the client's socket hands the signer.
const CHUNK: usize = 16 * 1024;

const HEADER: &[u8] = b"Received: from app1.example.com ([127.0.0.1]) by relay.example.com\r\n\
\twith ESMTP id 0000000000000000AB; Mon, 2 Nov 2026 10:00:00 +0000\r\n\
From: Billing <billing@example.com>\r\n\
To: Customer <customer@example.net>\r\n\
Subject: Your invoice for November\r\n\
Date: Mon, 2 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <0000000000000000AB.1234@relay.example.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n";

fn dev_key(selector: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("config/dev-keys/example.com.{selector}.pem"))
}

/// A prose body of exactly `size` bytes: 70-odd byte lines, a blank line between paragraphs.
fn body(size: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "invoice", "the", "amount", "of", "your", "account", "is", "due", "on", "payment", "thank",
        "you", "for", "business", "please", "find", "details", "below", "and", "total",
    ];
    let mut out = Vec::with_capacity(size + 100);
    let (mut line, mut lines, mut i) = (0, 0, 0usize);
    while out.len() < size {
        let w = WORDS[(i * 7 + i / 3) % WORDS.len()];
        i += 1;
        if line > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(w.as_bytes());
        line += w.len() + 1;
        if line > 68 {
            out.extend_from_slice(b"\r\n");
            line = 0;
            lines += 1;
            if lines % 8 == 0 {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.truncate(size - 2);
    out.extend_from_slice(b"\r\n");
    out
}

fn signers(algo: &str, relaxed: bool) -> Signers {
    let selectors: &[&str] = match algo {
        "rsa" => &["dev2026r"],
        "ed25519" => &["dev2026e"],
        _ => &["dev2026r", "dev2026e"],
    };
    let specs = selectors
        .iter()
        .map(|s| SelectorSpec {
            selector: s.to_string(),
            private_key: dev_key(s),
        })
        .collect();
    let options = SigningOptions {
        relaxed_headers: relaxed,
        relaxed_body: relaxed,
        expire: None,
    };
    match Signers::load(&BTreeMap::from([("example.com".into(), specs)]), options) {
        Ok(s) => s,
        Err(_) => panic!("the development keys in config/dev-keys must load"),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `dkim::message::MessageSigning`: one body pass for every selector, with the body scan the
/// relay runs next to it.
fn one_pass(list: &[Arc<SelectorSigner>], body: &[u8]) -> usize {
    one_pass_fields(list, body).len()
}

fn one_pass_fields(
    list: &[Arc<SelectorSigner>],
    body: &[u8],
) -> Vec<dkim_relay::dkim::message::MadeField> {
    let mut signing = MessageSigning::new(list);
    let mut scan = BodyScan::new();
    for piece in body.chunks(CHUNK) {
        signing.write_body(piece);
        scan.write(piece);
    }
    if scan.finish().has_long_lines() {
        panic!("the bench body has no long lines");
    }
    match signing.finish(HEADER, now()) {
        Ok(fields) => fields,
        Err(e) => panic!("signing failed: {e}"),
    }
}

/// `one_pass`, then mail-auth's verifier over the message as it would be spooled and sent.
fn one_pass_verify(
    list: &[Arc<SelectorSigner>],
    keys: &KnownKeys,
    verifier: &mail_auth::MessageAuthenticator,
    rt: &tokio::runtime::Runtime,
    body: &[u8],
) -> usize {
    let made = one_pass_fields(list, body);
    let mut message = Vec::with_capacity(body.len() + 4096);
    for m in &made {
        message.extend_from_slice(m.header.as_bytes());
    }
    message.extend_from_slice(HEADER);
    message.extend_from_slice(b"\r\n");
    message.extend_from_slice(body);
    match rt.block_on(independent::verify(verifier, keys, &message, &made)) {
        Ok(()) => made.len(),
        Err(e) => panic!("independent verification failed: {e}"),
    }
}

/// One mail-auth stream per selector plus our body hasher, each signature self-verified.
fn per_selector(list: &[Arc<SelectorSigner>], body: &[u8], relaxed: bool) -> usize {
    let mut streams: Vec<_> = list
        .iter()
        .map(|s| {
            let mut stream = s.signer.sign_streaming();
            stream.write(HEADER);
            stream.write(b"\r\n");
            (s, stream)
        })
        .collect();
    let mut canon = BodyCanon::new(relaxed);
    for piece in body.chunks(CHUNK) {
        for (_, stream) in streams.iter_mut() {
            stream.write(piece);
        }
        canon.write(piece);
    }
    let body_hash = canon.finish();
    let Ok(fields) = parse_fields(HEADER) else {
        panic!("bench header section must parse");
    };
    let mut made = 0;
    for (s, stream) in streams {
        let Ok(sig) = stream.finish() else {
            panic!("mail-auth signing failed");
        };
        let header = sig.to_header();
        let check = MadeSignature {
            selector: &s.selector,
            algorithm: s.algorithm,
            public_key: &s.public_key,
            relaxed_headers: relaxed,
            header: header.as_bytes(),
            b: &sig.b,
            h: &sig.h,
        };
        // The old path's independent body check: our hash against mail-auth's bh=.
        if sig.bh != body_hash || verify::check(&check, &fields).is_err() {
            panic!("self-verification failed");
        }
        made += 1;
    }
    made
}

struct FloorKeys {
    rsa: RsaKeyPair,
    ed: Ed25519KeyPair,
    rng: SystemRandom,
}

fn floor_keys() -> FloorKeys {
    let der = |s| match PrivateKeyDer::from_pem_file(dev_key(s)) {
        Ok(PrivateKeyDer::Pkcs8(k)) => k.secret_pkcs8_der().to_vec(),
        _ => panic!("development key {s} must be PKCS#8"),
    };
    let (Ok(rsa), Ok(ed)) = (
        RsaKeyPair::from_pkcs8(&der("dev2026r")),
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der("dev2026e")),
    ) else {
        panic!("development keys must parse");
    };
    FloorKeys {
        rsa,
        ed,
        rng: SystemRandom::new(),
    }
}

/// SHA-256 over the raw body, then each algorithm's raw signature of that digest.
fn floor(keys: &FloorKeys, algo: &str, body: &[u8]) -> usize {
    let d = digest(&SHA256, body);
    let mut n = 0;
    if algo != "ed25519" {
        let mut sig = vec![0u8; keys.rsa.public_modulus_len()];
        if keys
            .rsa
            .sign(&RSA_PKCS1_SHA256, &keys.rng, d.as_ref(), &mut sig)
            .is_err()
        {
            panic!("RSA signing failed");
        }
        n += sig.len();
    }
    if algo != "rsa" {
        n += keys.ed.sign(d.as_ref()).as_ref().len();
    }
    n
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let out_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("criterion");
    let started = SystemTime::now();
    let (warm, measure) = if quick {
        (Duration::from_millis(300), Duration::from_millis(700))
    } else {
        (Duration::from_secs(1), Duration::from_secs(3))
    };
    let mut c = Criterion::default()
        .output_directory(&out_dir)
        .warm_up_time(warm)
        .measurement_time(measure)
        .sample_size(20)
        .configure_from_args();

    let keys = floor_keys();
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    // Every key comes from the pre-loaded cache: this resolver is never asked.
    let verifier = match mail_auth::MessageAuthenticator::new_cloudflare_tls() {
        Ok(v) => v,
        Err(e) => panic!("verifier: {e}"),
    };
    let bodies: Vec<Vec<u8>> = SIZES.iter().map(|&(_, n)| body(n)).collect();
    for algo in ALGOS {
        let mut g = c.benchmark_group(format!("floor/{algo}"));
        for (&(label, size), b) in SIZES.iter().zip(&bodies) {
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_with_input(BenchmarkId::new("floor", label), b, |bench, b| {
                bench.iter(|| floor(&keys, algo, black_box(b)))
            });
        }
        g.finish();
    }
    {
        // The body scan alone (`mime::scan::BodyScan`), fed as the relay feeds it.
        let mut g = c.benchmark_group("scan");
        for (&(label, size), b) in SIZES.iter().zip(&bodies) {
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_with_input(BenchmarkId::new("scan", label), b, |bench, b| {
                bench.iter(|| {
                    let mut scan = BodyScan::new();
                    for piece in black_box(b).chunks(CHUNK) {
                        scan.write(piece);
                    }
                    scan.finish()
                })
            });
        }
        g.finish();
    }
    for canon in CANONS {
        let relaxed = *canon == "relaxed";
        for algo in ALGOS {
            let all = signers(algo, relaxed);
            let Some(list) = all.for_from_domain("example.com") else {
                panic!("no signers for example.com");
            };
            let known = KnownKeys::new(list);
            let mut g = c.benchmark_group(format!("sign/{canon}/{algo}"));
            for (&(label, size), b) in SIZES.iter().zip(&bodies) {
                g.throughput(Throughput::Bytes(size as u64));
                g.bench_with_input(BenchmarkId::new("one-pass", label), b, |bench, b| {
                    bench.iter(|| one_pass(list, black_box(b)))
                });
                g.bench_with_input(BenchmarkId::new("one-pass+verify", label), b, |bench, b| {
                    bench.iter(|| one_pass_verify(list, &known, &verifier, &rt, black_box(b)))
                });
                g.bench_with_input(BenchmarkId::new("per-selector", label), b, |bench, b| {
                    bench.iter(|| per_selector(list, black_box(b), relaxed))
                });
            }
            g.finish();
        }
    }
    c.final_summary();
    print_table(&out_dir, started);
    print_scan_table(&out_dir, started);
}

/// The body scan's share of what the relay spends on a body (relaxed, dual signing).
fn print_scan_table(dir: &Path, since: SystemTime) {
    println!();
    println!("Body scan (long lines, 8-bit), one thread; share of relaxed dual one-pass signing");
    println!(
        "{:<7} | {:>9} {:>9} | {:>9} {:>7}",
        "size", "scan µs", "MB/s", "1-pass µs", "share"
    );
    for &(label, size) in SIZES {
        let scan = median_ns(dir, "scan", "scan", label, since);
        let one = median_ns(dir, "sign/relaxed/dual", "one-pass", label, since);
        let Some(scan) = scan else { continue };
        let one_cols = one.map_or_else(
            || format!("{:>9} {:>7}", "-", "-"),
            |o| format!("{:>9.1} {:>6.2}%", o / 1e3, scan / o * 100.0),
        );
        println!(
            "{:<7} | {:>9.2} {:>9.0} | {}",
            label,
            scan / 1e3,
            size as f64 / scan * 1e3,
            one_cols
        );
    }
}

/// Criterion's median for one benchmark of this run, in nanoseconds.
fn median_ns(
    dir: &Path,
    group: &str,
    function: &str,
    size: &str,
    since: SystemTime,
) -> Option<f64> {
    let path = dir
        .join(group.replace('/', "_"))
        .join(function)
        .join(size)
        .join("new/estimates.json");
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    if modified < since {
        return None; // left over from an earlier run (filtered out of this one)
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn print_table(dir: &Path, since: SystemTime) {
    println!();
    println!("DKIM signing, one thread; criterion medians of this run; ratio = time / floor");
    println!("floor = SHA-256 of the raw body + aws-lc signature(s) of the digest");
    println!(
        "{:<8} {:<7} {:<7} | {:>9} {:>9} {:>8} | {:>9} {:>9} {:>8} {:>6} | {:>9} {:>6} | {:>9} {:>6}",
        "canon",
        "algo",
        "size",
        "floor µs",
        "msg/s",
        "MB/s",
        "1-pass µs",
        "msg/s",
        "MB/s",
        "ratio",
        "per-sel µs",
        "ratio",
        "+verify µs",
        "ratio"
    );
    for canon in CANONS {
        for algo in ALGOS {
            for &(label, size) in SIZES {
                let fl = median_ns(dir, &format!("floor/{algo}"), "floor", label, since);
                let group = format!("sign/{canon}/{algo}");
                let one = median_ns(dir, &group, "one-pass", label, since);
                let per = median_ns(dir, &group, "per-selector", label, since);
                let verified = median_ns(dir, &group, "one-pass+verify", label, since);
                let (Some(fl), Some(one)) = (fl, one) else {
                    continue;
                };
                let rate = |ns: f64| 1e9 / ns;
                let mbs = |ns: f64| size as f64 / ns * 1e3;
                let cols = |x: Option<f64>| {
                    x.map_or_else(
                        || format!("{:>9} {:>6}", "-", "-"),
                        |p| format!("{:>9.1} {:>6.2}", p / 1e3, p / fl),
                    )
                };
                let per_cols = cols(per);
                let verify_cols = cols(verified);
                println!(
                    "{:<8} {:<7} {:<7} | {:>9.1} {:>9.0} {:>8.1} | {:>9.1} {:>9.0} {:>8.1} {:>6.2} | {} | {}",
                    canon,
                    algo,
                    label,
                    fl / 1e3,
                    rate(fl),
                    mbs(fl),
                    one / 1e3,
                    rate(one),
                    mbs(one),
                    one / fl,
                    per_cols,
                    verify_cols
                );
            }
        }
    }
}

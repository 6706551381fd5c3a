//! The CPU time of one RSA-2048 signature as the relay makes it: the key loaded by
//! `dkim::keys::PrivateKey` and signed through mail-auth's `SigningKey` on the aws-lc this
//! crate links, over a DKIM-Signature's worth of header data. It is the yardstick of
//! bench/relay-vs-postfix.sh, which divides the relay's CPU per message by it: both measured in
//! the same run, on the same machine, in CPU time (user + system), so a busy machine moves both
//! alike.
//!
//! Run: `./scripts/cargo.sh bench --bench rsa_signature` (`-- --key PATH --rounds N`). Prints
//! one line, `rsa2048_sign_us=<median> min=<..> max=<..> rounds=<N> per_round=<M>`: the median
//! of N rounds of M signatures each, in microseconds of process CPU time per signature.

use dkim_relay::dkim::keys::{KeyAlgorithm, PrivateKey};
use mail_auth::crypto::SigningKey;
use std::hint::black_box;
use std::path::PathBuf;

/// Signatures per round: enough that the clock's resolution does not matter.
const PER_ROUND: usize = 200;

/// The process's CPU time (user + system), in microseconds.
fn cpu_us() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } != 0 {
        eprintln!("rsa_signature: clock_gettime failed");
        std::process::exit(1);
    }
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

fn main() {
    let mut key =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/dev-keys/example.com.dev2026r.pem");
    let mut rounds = 15usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--key" => key = args.next().map(PathBuf::from).unwrap_or(key),
            "--rounds" => rounds = args.next().and_then(|n| n.parse().ok()).unwrap_or(rounds),
            // What `cargo bench` passes to every bench binary.
            "--bench" => {}
            other => {
                eprintln!("rsa_signature: unknown argument {other} (--key PATH, --rounds N)");
                std::process::exit(2);
            }
        }
    }
    let loaded = match PrivateKey::load(&key) {
        Ok(k) if k.algorithm == KeyAlgorithm::RsaSha256 => k,
        Ok(_) => {
            eprintln!("rsa_signature: {} is not an RSA key", key.display());
            std::process::exit(2);
        }
        Err(e) => {
            eprintln!("rsa_signature: {e}");
            std::process::exit(2);
        }
    };
    // What the relay signs: the canonicalized signed header fields and the DKIM-Signature
    // field with an empty b= (a few hundred bytes; hashing them is noise next to RSA).
    let data = b"from:Billing <billing@example.com>\r\nto:Customer <customer@example.net>\r\n\
subject:Your invoice for November\r\ndate:Mon, 2 Nov 2026 10:00:00 +0000\r\n\
message-id:<0000000000000000AB.1234@relay.example.com>\r\n\
dkim-signature:v=1; a=rsa-sha256; s=dev2026r; d=example.com; c=relaxed/relaxed; \
h=From:To:Subject:Date:Message-ID; t=1793613600; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b="
        .to_vec();
    let sign = || match loaded.signing_key.sign(&data[..]) {
        Ok(sig) => sig,
        Err(e) => {
            eprintln!("rsa_signature: signing failed: {e}");
            std::process::exit(1);
        }
    };
    // Warm up (page in, CPU frequency), then measure.
    for _ in 0..PER_ROUND / 4 {
        black_box(sign());
    }
    let mut per_sig: Vec<f64> = (0..rounds.max(1))
        .map(|_| {
            let t = cpu_us();
            for _ in 0..PER_ROUND {
                black_box(sign());
            }
            (cpu_us() - t) / PER_ROUND as f64
        })
        .collect();
    per_sig.sort_by(f64::total_cmp);
    let median = per_sig[per_sig.len() / 2];
    println!(
        "rsa2048_sign_us={median:.1} min={:.1} max={:.1} rounds={} per_round={PER_ROUND}",
        per_sig[0],
        per_sig[per_sig.len() - 1],
        per_sig.len()
    );
}

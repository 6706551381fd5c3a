//! The command-line ends of `keygen`, `dns-check`, `verify` and `hash-password` (and, from
//! their own files, `check-config` and `rotate`): read arguments already parsed by `main`, run
//! the tool, print, and return the exit status. Kept out of `main.rs` so the binary's file stays
//! a table of commands.

pub use super::check_config::check_config_command;
use super::dns_check::{any_fail, render_json, render_text, run_checks};
use super::keygen::{keygen, KeygenAlgorithm};
pub use super::rotate::rotate_command;
use super::verify::{all_passed, verify_message, LocalKey};
use super::{EXIT_FAIL, EXIT_OK};
use crate::config::{resolve_path, Settings};
use crate::dkim::keys::PrivateKey;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

/// A runtime for a command's few lookups.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// The resolver and a runtime to run the lookups on; `None` (after saying why on stderr) when
/// either cannot be had.
fn resolver_and_runtime(
    resolver: Result<mail_auth::MessageAuthenticator, String>,
) -> Option<(mail_auth::MessageAuthenticator, tokio::runtime::Runtime)> {
    match resolver.and_then(|r| runtime().map(|rt| (r, rt))) {
        Ok(pair) => Some(pair),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

/// `keygen --domain D --selector S [--algorithm A] [--out DIR]`.
pub fn keygen_command(domain: &str, selector: &str, algorithm: &str, out: &Path) -> u8 {
    let Some(alg) = KeygenAlgorithm::parse(algorithm) else {
        eprintln!(
            "unknown algorithm '{algorithm}': use one of {}",
            KeygenAlgorithm::NAMES.join(", ")
        );
        return EXIT_FAIL;
    };
    match keygen(domain, selector, alg, out) {
        Ok(g) => {
            print!("{g}");
            eprintln!(
                "wrote {} (mode 0600). Publish the record above, then add to the config:\n  dkim:\n    domains:\n      {}:\n        - selector: {}\n          private_key: {}\nand run `dkim-relay dns-check` once DNS serves it.",
                g.path.display(),
                g.domain,
                g.selector,
                g.path.display()
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("keygen: {e}");
            EXIT_FAIL
        }
    }
}

/// `dns-check [-c FILE] [--domain D] [--format text|json]`.
pub fn dns_check_command(config: Option<&Path>, domain: Option<&str>, json: bool) -> u8 {
    let path = resolve_path(config);
    let settings = match Settings::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_FAIL;
        }
    };
    if let Some(d) = domain {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        if !settings.dkim.domains.contains_key(&d) {
            eprintln!(
                "{d} is not a signing domain in {} (configured: {})",
                path.display(),
                settings
                    .dkim
                    .domains
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return EXIT_FAIL;
        }
    }
    if settings.dkim.domains.is_empty() {
        eprintln!(
            "{}: no dkim.domains configured: nothing to check",
            path.display()
        );
        return EXIT_FAIL;
    }
    let Some((resolver, rt)) =
        resolver_and_runtime(crate::resolver::build(settings.dns.nameservers.as_deref()))
    else {
        return EXIT_FAIL;
    };
    let results = rt.block_on(run_checks(&settings, &resolver, domain));
    if json {
        print!("{}", render_json(&results));
    } else {
        print!("{}", render_text(&results));
    }
    if any_fail(&results) {
        EXIT_FAIL
    } else {
        EXIT_OK
    }
}

/// `verify [FILE…|-] [--key PEM [--domain D] [--selector S]] [-c FILE]`. With several files
/// every line (results and errors) starts with `FILE: `, as grep does; exit 1 when any message
/// fails or cannot be read.
pub fn verify_command(
    files: &[PathBuf],
    key: Option<&Path>,
    domain: Option<&str>,
    selector: Option<&str>,
    config: Option<&Path>,
) -> u8 {
    let local = match key {
        Some(p) => match PrivateKey::load(p) {
            Ok(k) => Some(LocalKey {
                key: k,
                domain: domain.map(str::to_string),
                selector: selector.map(str::to_string),
            }),
            Err(e) => {
                eprintln!("{e}");
                return EXIT_FAIL;
            }
        },
        None => {
            if domain.is_some() || selector.is_some() {
                eprintln!(
                    "--domain and --selector choose which signatures --key is for; give --key too"
                );
                return EXIT_FAIL;
            }
            None
        }
    };
    let stdin_count = files.iter().filter(|f| f.as_os_str() == "-").count();
    if stdin_count > 1 {
        eprintln!("verify: - (standard input) can be given only once");
        return EXIT_FAIL;
    }
    let Some((resolver, rt)) = resolver_and_runtime(verify_resolver(local.is_some(), config))
    else {
        return EXIT_FAIL;
    };
    let stdin = [PathBuf::from("-")];
    let inputs = if files.is_empty() { &stdin[..] } else { files };
    let prefixed = inputs.len() > 1;
    let mut status = EXIT_OK;
    for file in inputs {
        let prefix = if prefixed {
            format!("{}: ", file.display())
        } else {
            String::new()
        };
        let raw = match read_input(file) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{prefix}{e}");
                status = EXIT_FAIL;
                continue;
            }
        };
        match rt.block_on(verify_message(&raw, &resolver, local.as_ref())) {
            Ok(reports) => {
                for r in &reports {
                    println!("{prefix}{r}");
                }
                if !all_passed(&reports) {
                    status = EXIT_FAIL;
                }
            }
            Err(e) => {
                eprintln!("{prefix}verify: {e}");
                status = EXIT_FAIL;
            }
        }
    }
    status
}

/// With `--key`, a resolver with no name servers: nothing reaches DNS. Else the config's
/// `dns.nameservers` when a config can be read (an explicit `-c` must be readable), else the
/// system resolver.
fn verify_resolver(
    local: bool,
    config: Option<&Path>,
) -> Result<mail_auth::MessageAuthenticator, String> {
    if local {
        return crate::resolver::build(Some(&[]));
    }
    let path: PathBuf = resolve_path(config);
    match Settings::load(&path) {
        Ok(s) => crate::resolver::build(s.dns.nameservers.as_deref()),
        Err(e) if config.is_some() => Err(e.to_string()),
        Err(_) => crate::resolver::build(None),
    }
}

/// The message in `file`, or on standard input for `-`.
fn read_input(file: &Path) -> Result<Vec<u8>, String> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read the message from stdin: {e}"))?;
        return Ok(buf);
    }
    std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}

/// `hash-password`: read a password (the terminal without echo, or a line of standard input)
/// and print its argon2id hash for `clients[].password_hash`.
pub fn hash_password_command() -> u8 {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
        let echo = crate::sys::EchoOff::stdin();
        let mut line = String::new();
        let r = stdin.lock().read_line(&mut line);
        drop(echo);
        eprintln!();
        if r.is_err() {
            eprintln!("dkim-relay: cannot read the password");
            return EXIT_FAIL;
        }
        line
    } else {
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).is_err() {
            eprintln!("dkim-relay: cannot read the password from standard input");
            return EXIT_FAIL;
        }
        line
    };
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("dkim-relay: empty password");
        return EXIT_FAIL;
    }
    match crate::password::hash_password(password) {
        Ok(h) => {
            println!("{h}");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("dkim-relay: {e}");
            EXIT_FAIL
        }
    }
}

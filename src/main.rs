//! The `dkim-relay` command line. `anyhow` stays here and in `app`.

use clap::{Parser, Subcommand};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "dkim-relay", version, about = "Outbound DKIM-signing SMTP submission relay")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    Serve {
        /// Configuration file (default: $DKIM_RELAY_CONFIG, else /etc/dkim-relay/config.yaml).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Load and validate the configuration, keys and certificates; print a summary.
    CheckConfig {
        /// Configuration file (default: $DKIM_RELAY_CONFIG, else /etc/dkim-relay/config.yaml).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Read a password (stdin, or the terminal without echo) and print its argon2id hash.
    HashPassword,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let path = dkim_relay::config::resolve_path(config.as_deref());
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("dkim-relay: cannot start the runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match runtime.block_on(dkim_relay::app::serve(&path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("dkim-relay: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::CheckConfig { config } => check_config(config),
        Command::HashPassword => hash_password(),
    }
}

fn check_config(config: Option<PathBuf>) -> ExitCode {
    let path = dkim_relay::config::resolve_path(config.as_deref());
    match dkim_relay::core::Core::load(&path) {
        Ok(core) => {
            let s = &core.settings;
            println!("{}: OK", path.display());
            println!("hostname: {}", s.hostname);
            println!("spool: {}", s.spool_dir.display());
            for l in &s.listeners {
                println!("listener: {} (tls: {:?})", l.name(), l.tls);
            }
            for c in &s.clients {
                let who = match &c.kind {
                    dkim_relay::config::ClientKind::User { name, .. } => format!("user {name}"),
                    dkim_relay::config::ClientKind::Network(n) => format!("network {n}"),
                    dkim_relay::config::ClientKind::UnixUser(u) => format!("unix user {u}"),
                };
                println!("client: {who} ({} allowed sender patterns)", c.allow_from.len());
            }
            for (domain, list) in core.signers.domains() {
                let sel: Vec<String> = list.iter().map(|s| format!("{} ({})", s.selector, s.algorithm.tag())).collect();
                println!("domain: {domain}: {}", sel.join(", "));
            }
            let mode = match &s.delivery.mode {
                dkim_relay::config::DeliveryMode::Mx => "mx".to_string(),
                dkim_relay::config::DeliveryMode::RelayHost(r) => format!("relay_host {}:{}", r.host, r.port),
                dkim_relay::config::DeliveryMode::Directory(d) => format!("directory {}", d.display()),
            };
            println!("delivery: {mode}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn hash_password() -> ExitCode {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        eprint!("Password: ");
        let _ = std::io::stderr().flush();
        let echo = EchoOff::new();
        let mut line = String::new();
        let r = stdin.lock().read_line(&mut line);
        drop(echo);
        eprintln!();
        if r.is_err() {
            eprintln!("dkim-relay: cannot read the password");
            return ExitCode::from(1);
        }
        line
    } else {
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).is_err() {
            eprintln!("dkim-relay: cannot read the password from standard input");
            return ExitCode::from(1);
        }
        line
    };
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!("dkim-relay: empty password");
        return ExitCode::from(1);
    }
    match dkim_relay::inbound::auth::hash_password(password) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dkim-relay: {e}");
            ExitCode::from(1)
        }
    }
}

/// Terminal echo off for as long as it lives.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return EchoOff(None);
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            libc::tcsetattr(0, libc::TCSANOW, &t);
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restores the attributes read in new().
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
}

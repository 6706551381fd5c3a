//! The `dkim-relay` command line. `anyhow` stays here and in `app`.

use clap::{Parser, Subcommand};
use dkim_relay::tools::cli as tools;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "dkim-relay",
    version,
    about = "Outbound DKIM-signing SMTP submission relay"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load and validate the configuration, keys and certificates; print a summary.
    CheckConfig {
        /// Configuration file (default: $DKIM_RELAY_CONFIG, else /etc/dkim-relay/config.yaml).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Make a new DKIM key (DIR/D.S.pem, mode 0600) and print the DNS record to publish.
    #[command(long_about = KEYGEN_HELP)]
    Keygen {
        /// Signing domain (d=).
        #[arg(long)]
        domain: String,
        /// Selector (s=); the record goes at S._domainkey.D.
        #[arg(long)]
        selector: String,
        /// Key type.
        #[arg(long, default_value = "rsa2048",
              value_parser = ["rsa2048", "rsa3072", "rsa4096", "ed25519"])]
        algorithm: String,
        /// Directory for the key file (created 0700 if missing).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Check each configured domain's DKIM, SPF and DMARC records; exit 1 on any FAIL.
    DnsCheck {
        /// Configuration file (default: $DKIM_RELAY_CONFIG, else /etc/dkim-relay/config.yaml).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// Check only this configured domain.
        #[arg(long)]
        domain: Option<String>,
        /// Output format.
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// Verify every DKIM signature of a message and say why one fails.
    Verify {
        /// The message file, or - for stdin (default).
        file: Option<PathBuf>,
        /// Verify with this private key's public half instead of DNS.
        #[arg(long)]
        key: Option<PathBuf>,
        /// With --key: only signatures with this d=.
        #[arg(long)]
        domain: Option<String>,
        /// With --key: only signatures with this s=.
        #[arg(long)]
        selector: Option<String>,
        /// Configuration file whose dns.nameservers to use (default: as for serve; the system
        /// resolver when none is readable).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
}

const KEYGEN_HELP: &str = "Make a new DKIM private key and print the DNS record to publish.

The key is written as PKCS#8 PEM to DIR/D.S.pem with mode 0600; an existing file is never \
overwritten. The record is printed in zone-file syntax, split into strings of at most 255 bytes \
(the most one TXT string holds), followed by a comment line with the bare value for DNS panels \
that take one value without quotes.

rsa2048 is the default because every receiver verifies it. ed25519 (RFC 8463) keys are short \
and fast, but some receivers still do not verify them. To get both, dual-sign: generate one RSA \
and one Ed25519 key with two selectors and list both under the domain in the config; every \
selector listed signs, and receivers use the signature they understand.";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => {
            let path = dkim_relay::config::resolve_path(config.as_deref());
            match dkim_relay::config::Settings::load(&path) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Keygen {
            domain,
            selector,
            algorithm,
            out,
        } => ExitCode::from(tools::keygen_command(&domain, &selector, &algorithm, &out)),
        Command::DnsCheck {
            config,
            domain,
            format,
        } => ExitCode::from(tools::dns_check_command(
            config.as_deref(),
            domain.as_deref(),
            format == "json",
        )),
        Command::Verify {
            file,
            key,
            domain,
            selector,
            config,
        } => ExitCode::from(tools::verify_command(
            file.as_deref(),
            key.as_deref(),
            domain.as_deref(),
            selector.as_deref(),
            config.as_deref(),
        )),
    }
}

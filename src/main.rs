//! The `dkim-relay` command line. `anyhow` stays here and in `app`.

use clap::{Parser, Subcommand};
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
}

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
    }
}

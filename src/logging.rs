//! The daemon's log: where it goes (stderr), how it looks (`log.format`), how much of it
//! (`log.level`, or `RUST_LOG`), and the two things an operator should never have to filter out
//! by hand: colour escapes in a file, pipe, journald or `docker logs`, and per-connection
//! warnings about what a client sent that the operator cannot act on.
//!
//! Colour: only when stderr is a terminal and `NO_COLOR` is unset or empty
//! (<https://no-color.org>); never in JSON. Libraries that log through the `log` crate
//! (rustls) reach the same subscriber through [`ClientNoise`], which lowers their complaints
//! about a peer's handshake to debug level.
//!
//! Imports only `config` of ours.

use crate::config::LogFormat;
use std::ffi::OsStr;
use std::io::IsTerminal;

/// Whether the text log gets ANSI colours: on a terminal, unless `NO_COLOR` holds anything.
pub fn colour_wanted(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Install the global subscriber and the `log` bridge. A second call (tests, or a library
/// user who set their own) changes nothing.
pub fn init(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("dkim_relay={level},warn")));
    let no_color = std::env::var_os("NO_COLOR");
    let colour = format == LogFormat::Text
        && colour_wanted(std::io::stderr().is_terminal(), no_color.as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(colour);
    let installed = match format {
        LogFormat::Json => tracing::subscriber::set_global_default(builder.json().finish()),
        LogFormat::Text => tracing::subscriber::set_global_default(builder.finish()),
    };
    if installed.is_err() {
        return;
    }
    // What the subscriber can let through at most; `log` drops the rest before formatting.
    let max = match tracing::level_filters::LevelFilter::current().into_level() {
        None => log::LevelFilter::Off,
        Some(tracing::Level::ERROR) => log::LevelFilter::Error,
        Some(tracing::Level::WARN) => log::LevelFilter::Warn,
        Some(tracing::Level::INFO) => log::LevelFilter::Info,
        Some(tracing::Level::DEBUG) => log::LevelFilter::Debug,
        Some(tracing::Level::TRACE) => log::LevelFilter::Trace,
    };
    if log::set_boxed_logger(Box::new(ClientNoise(tracing_log::LogTracer::new()))).is_ok() {
        log::set_max_level(max);
    }
}

/// `log` targets whose warnings are about what the peer sent in its TLS handshake, not about
/// the relay: rustls' handshake message parser warns, once per connection, about an IP
/// address given as SNI (msmtp does that for `host 127.0.0.1`), a duplicated or malformed
/// host name, a meaningless CertificateRequest. Nothing in the relay's configuration changes
/// them, so they go to debug level; the handshake's outcome is logged (and counted) anyway.
const PEER_NOISE_TARGETS: &[&str] = &["rustls::msgs::handshake"];

/// The `log` -> `tracing` bridge, with peer noise lowered to debug.
struct ClientNoise(tracing_log::LogTracer);

impl ClientNoise {
    fn lowered(metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn && PEER_NOISE_TARGETS.contains(&metadata.target())
    }
}

impl log::Log for ClientNoise {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        if Self::lowered(metadata) {
            let debug = log::Metadata::builder()
                .level(log::Level::Debug)
                .target(metadata.target())
                .build();
            return self.0.enabled(&debug);
        }
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !Self::lowered(record.metadata()) {
            return self.0.log(record);
        }
        self.0.log(
            &log::Record::builder()
                .args(*record.args())
                .level(log::Level::Debug)
                .target(record.target())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.0.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some(OsStr::new(""))));
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(!colour_wanted(false, None));
        assert!(!colour_wanted(false, Some(OsStr::new("1"))));
    }

    #[test]
    fn only_handshake_warnings_are_lowered() {
        let meta = |level, target| log::Metadata::builder().level(level).target(target).build();
        assert!(ClientNoise::lowered(&meta(
            log::Level::Warn,
            "rustls::msgs::handshake"
        )));
        assert!(!ClientNoise::lowered(&meta(
            log::Level::Debug,
            "rustls::msgs::handshake"
        )));
        assert!(!ClientNoise::lowered(&meta(
            log::Level::Warn,
            "rustls::server::hs"
        )));
    }
}

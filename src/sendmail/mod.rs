//! `dkim-relay sendmail`, and the binary invoked as `sendmail`: the drop-in submission path for
//! cron, PHP's `mail()`, `mail`/`mailx` and `git send-email`. It is a client, with no queue of
//! its own: it reads the whole message from stdin into memory (at most `MAX_INPUT`, 64 MiB),
//! prepares it (`message`), and hands it to the relay over its unix socket — where the relay
//! knows the caller by the socket's peer uid — or over SMTP with AUTH (`client`). The relay
//! does the checking, signing and queueing. The outcome is an exit code from sysexits.h with
//! one line on stderr: 75 when the relay cannot take the message now (the caller retries),
//! 77 when the caller or the sender is not allowed, 64 for bad usage, 65 for a bad message.
//! Imports only `smtp`, `sys` and `trust` of ours: it is a client of the relay.

mod addresses;
pub(crate) mod args;
mod client;
pub(crate) mod message;
pub(crate) mod target;
mod trust;

use std::ffi::OsString;

pub const EX_OK: u8 = 0;
pub const EX_USAGE: u8 = 64;
pub const EX_DATAERR: u8 = 65;
pub const EX_UNAVAILABLE: u8 = 69;
pub const EX_SOFTWARE: u8 = 70;
pub const EX_IOERR: u8 = 74;
pub const EX_TEMPFAIL: u8 = 75;
pub const EX_NOPERM: u8 = 77;
pub const EX_CONFIG: u8 = 78;

/// Why the message was not submitted: the exit code and the one line for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

/// Run sendmail with the arguments after the program name; returns the exit code.
/// `list_queue` runs `-bp` (the queue listing, as `mailq`).
pub fn run(args: &[OsString], list_queue: impl FnOnce() -> u8) -> u8 {
    let options = match args::parse(args) {
        Ok(o) => o,
        Err(e) => return fail(&Failure::new(EX_USAGE, e)),
    };
    if options.list_queue {
        return list_queue();
    }
    match send(&options) {
        Ok(()) => EX_OK,
        Err(f) => fail(&f),
    }
}

fn fail(f: &Failure) -> u8 {
    // One line: a multi-line reply or error must not spill over several.
    let line: String = f
        .message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    eprintln!("sendmail: {line}");
    f.code
}

fn send(options: &args::Options) -> Result<(), Failure> {
    let config = target::SendmailConfig::load()?;
    let target = target::Target::choose(&config)?;
    let user = crate::sys::user_name(crate::sys::euid());
    let input = message::read_input(
        std::io::stdin().lock(),
        options.ignore_dots,
        message::MAX_INPUT,
    )?;
    let prepared = message::prepare(
        &input,
        &message::Context {
            options,
            qualify_domain: config.qualify_domain(),
            user: user.as_deref(),
        },
    )?;
    drop(input);
    let tls = match &target {
        target::Target::Unix(_) => None,
        target::Target::Smtp { .. } => Some(trust::tls_config(&config)?),
    };
    if options.verbose {
        eprintln!(
            "sendmail: submitting to {} from <{}> to {}",
            target.describe(),
            prepared.sender,
            prepared.recipients.join(", ")
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(EX_SOFTWARE, format!("cannot start the runtime: {e}")))?;
    let done = runtime.block_on(client::submit(&target, tls, &prepared, options.verbose))?;
    if options.verbose {
        eprintln!("sendmail: {done}");
    }
    Ok(())
}

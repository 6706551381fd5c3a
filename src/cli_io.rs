//! What every command does when whoever reads its output goes away: `dkim-relay queue list |
//! head -1`, `dkim-relay dmarc-report --format json BIG.xml | head -c 1`. As Unix tools do, it
//! stops quietly: exit status 0, nothing on stderr, no panic.
//!
//! Rust ignores SIGPIPE, so a write to a pipe without a reader fails with EPIPE, and `print!`
//! panics on that. Restoring SIGPIPE's default would also kill `serve` and `sendmail` on a
//! closed *socket*, so instead there is one mechanism for both ways a command writes:
//! [`install`] (a panic hook: a `print!`/`eprint!` that failed because its pipe has no reader
//! any more ends the process with 0) and [`stdout`] (a writer for code that handles its write
//! errors, with the same rule).
//!
//! Imports only `sys` of ours (poll).

use std::io::{self, Write};

/// Make a `print!`/`println!` (or `eprint!`) into a pipe whose reader is gone end the process
/// quietly with status 0. Any other panic goes to the previous hook as before. Call once, first
/// thing in `main`.
pub fn install() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        // std's print macros panic with "failed printing to stdout: <error>"; which stream it
        // was tells which descriptor to look at, and the descriptor's state decides.
        let fd = if message.starts_with("failed printing to stdout") {
            Some(1)
        } else if message.starts_with("failed printing to stderr") {
            Some(2)
        } else {
            None
        };
        if fd.is_some_and(crate::sys::reader_gone) {
            std::process::exit(0);
        }
        previous(info);
    }));
}

/// Standard output for commands that handle their write errors: a write that finds the reader
/// gone (EPIPE) ends the process quietly with status 0; other errors are returned.
pub fn stdout() -> QuietStdout {
    QuietStdout(io::stdout().lock())
}

/// See [`stdout`].
pub struct QuietStdout(io::StdoutLock<'static>);

fn quiet_if_reader_gone(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    e
}

impl Write for QuietStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(quiet_if_reader_gone)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(quiet_if_reader_gone)
    }
}

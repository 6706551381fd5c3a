//! One SMTP session: reading commands (pipelined or not), dispatching each to its handler,
//! writing replies, and the session-wide limits (idle time, total time, commands, errors).

use super::policy::Identity;
use super::receive::Reception;
use super::{Peer, Shared};
use crate::config::ListenerTls;
use crate::core::Core;
use crate::smtp::reply::Reply;
use smtp_proto::{Error as ProtoError, Request};
use std::borrow::Cow;
use std::io;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest command line accepted: 998 octets plus CRLF (RFC 5322's line limit; RFC 5321 asks
/// for 512 but extensions make longer ones legitimate).
pub const MAX_COMMAND_LINE: usize = 1000;

/// Replies to pipelined commands are written out once this much is waiting: a few KiB of
/// pipelined EHLOs must not make the relay hold a reply many times their size.
const MAX_PENDING_REPLIES: usize = 16 * 1024;

/// The connection: its stream, what was read but not yet used, replies not yet written.
pub(crate) struct Conn<S> {
    pub stream: S,
    pub buf: Vec<u8>,
    out: Vec<u8>,
    /// The front of `buf` is the tail of an over-long command line (see `next_line`).
    skipping: bool,
}

/// Why reading stopped.
pub(crate) enum ReadError {
    Eof,
    Idle,
    Io(#[allow(dead_code)] io::Error),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Conn<S> {
        Conn {
            stream,
            buf: Vec::with_capacity(8192),
            out: Vec::with_capacity(1024),
            skipping: false,
        }
    }

    pub fn reply(&mut self, r: &Reply) {
        self.out.extend_from_slice(&r.to_bytes());
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Read more bytes into `buf`, waiting at most `idle`.
    pub async fn fill(&mut self, idle: Duration) -> Result<usize, ReadError> {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(idle, self.stream.read(&mut chunk)).await {
            Err(_) => Err(ReadError::Idle),
            Ok(Err(e)) => Err(ReadError::Io(e)),
            Ok(Ok(0)) => Err(ReadError::Eof),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
        }
    }

    /// The next complete line (with its line break), reading as needed. Lines longer than
    /// `MAX_COMMAND_LINE` come back as `Ok(None)` after being discarded.
    pub async fn read_line(&mut self, idle: Duration) -> Result<Option<Vec<u8>>, ReadError> {
        loop {
            if let Some(line) = self.take_line() {
                return Ok(line);
            }
            self.fill(idle).await?;
        }
    }

    /// A complete line from the buffer: see `next_line`.
    pub fn take_line(&mut self) -> Option<Option<Vec<u8>>> {
        next_line(&mut self.buf, &mut self.skipping)
    }
}

/// Take a complete command line (with its line break) off the front of `buf`:
/// `Some(Some(line))`, `Some(None)` for an over-long line (the caller answers `500 5.5.2`), or
/// `None` when no complete line is buffered yet. An over-long line is discarded up to and
/// including its LF, however it arrives: `skipping` remembers, between calls, that the front
/// of `buf` is the tail of a line already refused, so that tail is never read as a command.
/// Pure, so it is fuzzed.
pub fn next_line(buf: &mut Vec<u8>, skipping: &mut bool) -> Option<Option<Vec<u8>>> {
    loop {
        match memchr::memchr(b'\n', buf) {
            Some(pos) if *skipping => {
                buf.drain(..=pos);
                *skipping = false;
            }
            Some(pos) => {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                return Some((line.len() <= MAX_COMMAND_LINE).then_some(line));
            }
            None if *skipping => {
                buf.clear();
                return None;
            }
            None if buf.len() >= MAX_COMMAND_LINE => {
                // No LF yet and no room left for one: refuse it now, drop the rest later.
                buf.clear();
                *skipping = true;
                return Some(None);
            }
            None => return None,
        }
    }
}

/// Parse one command line, or give the reply a bad one gets. Pure, so it is fuzzed.
pub fn parse_command(line: &[u8]) -> Result<Request<Cow<'_, str>>, Reply> {
    Request::parse(&mut line.iter()).map_err(syntax_reply)
}

/// What to do after a command.
pub(crate) enum Flow {
    Continue,
    Close,
    StartTls,
}

/// The mail transaction: from MAIL to the end of DATA (or RSET).
pub(crate) struct Transaction<'c> {
    /// The envelope sender; empty for `<>`.
    pub sender: String,
    pub recipients: Vec<String>,
    pub smtputf8: bool,
    /// A BDAT transfer in progress.
    pub bdat: Option<(Reception<'c>, crate::smtp::data::Normalizer)>,
}

/// The state of one session.
pub(crate) struct Session<'c> {
    pub core: &'c Core,
    pub shared: &'c Shared,
    pub peer: Peer,
    pub listener_tls: ListenerTls,
    pub tls: bool,
    pub helo: Option<String>,
    pub esmtp: bool,
    pub identity: Option<Identity>,
    pub tx: Option<Transaction<'c>>,
    pub auth_failures: u32,
    pub errors: usize,
    pub commands: usize,
    pub started: Instant,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl<'c> Session<'c> {
    /// A new session for a connection from `peer`, identified (or not) before any command.
    pub fn new(
        core: &'c Core,
        shared: &'c Shared,
        peer: Peer,
        listener_tls: ListenerTls,
        identity: Option<Identity>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Session<'c> {
        Session {
            core,
            shared,
            peer,
            listener_tls,
            tls: false,
            helo: None,
            esmtp: false,
            identity,
            tx: None,
            auth_failures: 0,
            errors: 0,
            commands: 0,
            started: Instant::now(),
            shutdown,
        }
    }

    /// How long the next read may wait: the idle timeout, or less when the session deadline
    /// comes first. Every read goes through this, so a client that trickles a byte now and
    /// then (never idle) still cannot outlive `session_timeout`.
    pub fn idle(&self) -> Duration {
        let left = self
            .core
            .settings
            .limits
            .session_timeout
            .saturating_sub(self.started.elapsed());
        self.core.settings.limits.idle_timeout.min(left)
    }

    fn out_of_time(&self) -> bool {
        self.started.elapsed() >= self.core.settings.limits.session_timeout
    }

    /// The reply when a read timed out: idle (421 4.4.2) or the session deadline (421 4.7.0).
    pub fn timeout_reply(&self, during: &str) -> Reply {
        if self.out_of_time() {
            Reply::new(
                421,
                "4.7.0",
                "Session time limit reached, closing connection",
            )
        } else {
            Reply::new(
                421,
                "4.4.2",
                format!("Idle timeout{during}, closing connection"),
            )
        }
    }

    /// AUTH is offered over TLS, and in clear text only to loopback clients.
    pub fn auth_allowed(&self) -> bool {
        self.tls || self.peer.is_loopback()
    }

    /// Run the session on `conn` until it ends; `Some(conn)` asks the caller to start TLS on
    /// the stream and call again.
    pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        mut conn: Conn<S>,
    ) -> Option<Conn<S>> {
        loop {
            while let Some(line) = conn.take_line() {
                let flow = match line {
                    None => {
                        self.errors += 1;
                        conn.reply(&Reply::new(500, "5.5.2", "Line too long"));
                        Flow::Continue
                    }
                    Some(line) => self.command(&line, &mut conn).await,
                };
                if conn.out.len() > MAX_PENDING_REPLIES && conn.flush().await.is_err() {
                    return None;
                }
                let flow = match flow {
                    Flow::Continue if self.errors >= self.core.settings.limits.max_errors => {
                        conn.reply(&Reply::new(
                            421,
                            "4.7.0",
                            "Too many errors, closing connection",
                        ));
                        Flow::Close
                    }
                    f => f,
                };
                match flow {
                    Flow::Continue => {}
                    Flow::Close => {
                        let _ = conn.flush().await;
                        return None;
                    }
                    Flow::StartTls => {
                        if conn.flush().await.is_err() {
                            return None;
                        }
                        // Anything pipelined after STARTTLS was sent in clear text and must not
                        // be taken as said inside TLS (CVE-2011-0411).
                        conn.buf.clear();
                        return Some(conn);
                    }
                }
            }
            if conn.flush().await.is_err() {
                return None;
            }
            // Waiting for the next command: SIGTERM closes the session now (421 4.3.2) rather
            // than holding the drain until the client speaks. DATA is read elsewhere and is
            // not cut short.
            let filled = tokio::select! {
                r = conn.fill(self.idle()) => r,
                _ = shutdown_requested(&mut self.shutdown) => {
                    conn.reply(&Reply::new(421, "4.3.2", "Service shutting down, try again later"));
                    let _ = conn.flush().await;
                    return None;
                }
            };
            match filled {
                Ok(_) => {}
                Err(ReadError::Idle) => {
                    conn.reply(&self.timeout_reply(""));
                    let _ = conn.flush().await;
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    async fn command<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        line: &[u8],
        conn: &mut Conn<S>,
    ) -> Flow {
        self.commands += 1;
        if *self.shutdown.borrow() {
            conn.reply(&Reply::new(
                421,
                "4.3.2",
                "Service shutting down, try again later",
            ));
            return Flow::Close;
        }
        if self.commands > self.core.settings.limits.max_commands || self.out_of_time() {
            conn.reply(&Reply::new(
                421,
                "4.7.0",
                "Session limit reached, closing connection",
            ));
            return Flow::Close;
        }
        let request = match parse_command(line) {
            Ok(r) => r,
            Err(reply) => return self.error(conn, reply),
        };
        match request {
            Request::Ehlo { host } => self.ehlo(&host, true, conn),
            Request::Helo { host } => self.ehlo(&host, false, conn),
            Request::Lhlo { .. } => self.error(conn, Reply::new(500, "5.5.1", "LHLO is for LMTP")),
            Request::StartTls => self.starttls(conn),
            Request::Auth {
                mechanism,
                initial_response,
            } => {
                self.auth(mechanism, initial_response.into_owned(), conn)
                    .await
            }
            Request::Mail { from } => self.mail(from, conn).await,
            Request::Rcpt { to } => self.rcpt(to, conn),
            Request::Data => self.data(conn).await,
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last, conn).await,
            Request::Rset => {
                self.tx = None;
                conn.reply(&Reply::new(250, "2.0.0", "OK"));
                Flow::Continue
            }
            Request::Noop { .. } => {
                conn.reply(&Reply::new(250, "2.0.0", "OK"));
                Flow::Continue
            }
            Request::Quit => {
                conn.reply(&Reply::new(
                    221,
                    "2.0.0",
                    format!("{} closing connection", self.core.settings.hostname),
                ));
                Flow::Close
            }
            Request::Vrfy { .. } => {
                conn.reply(&Reply::new(
                    252,
                    "2.5.2",
                    "Cannot VRFY user, but will accept message",
                ));
                Flow::Continue
            }
            Request::Help { .. } => {
                conn.reply(&Reply::new(
                    214,
                    "2.0.0",
                    "See RFC 5321; dkim-relay signs and relays submitted mail",
                ));
                Flow::Continue
            }
            Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => {
                self.error(conn, Reply::new(502, "5.5.1", "Command not implemented"))
            }
        }
    }

    /// Reply with an error and count it against the session.
    pub fn error<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
        reply: Reply,
    ) -> Flow {
        self.errors += 1;
        conn.reply(&reply);
        Flow::Continue
    }

    fn starttls<S: AsyncRead + AsyncWrite + Unpin>(&mut self, conn: &mut Conn<S>) -> Flow {
        if self.tls {
            return self.error(conn, Reply::new(503, "5.5.1", "Already in TLS"));
        }
        if self.listener_tls != ListenerTls::StartTls || self.core.tls.is_none() {
            return self.error(conn, Reply::new(502, "5.5.1", "STARTTLS not offered here"));
        }
        if self.helo.is_none() {
            return self.error(conn, Reply::new(503, "5.5.1", "Say EHLO first"));
        }
        conn.reply(&Reply::new(220, "2.0.0", "Ready to start TLS"));
        Flow::StartTls
    }

    /// After STARTTLS the session starts over (RFC 3207 4.2): forget what was said in clear.
    pub fn reset_after_tls(&mut self) {
        self.tls = true;
        self.helo = None;
        self.esmtp = false;
        self.tx = None;
        if self.identity.as_ref().is_some_and(|i| i.authenticated) {
            self.identity = None;
        }
    }
}

/// Resolves once shutdown has been asked for (at once if it already was).
async fn shutdown_requested(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        // The sender is gone: the relay is stopping anyway, but do not close on our own.
        std::future::pending::<()>().await;
    }
}

fn syntax_reply(e: ProtoError) -> Reply {
    match e {
        ProtoError::UnknownCommand => Reply::new(500, "5.5.1", "Command unrecognized"),
        ProtoError::InvalidSenderAddress => Reply::new(501, "5.1.7", "Bad sender address syntax"),
        ProtoError::InvalidRecipientAddress => {
            Reply::new(501, "5.1.3", "Bad recipient address syntax")
        }
        ProtoError::SyntaxError { syntax } => Reply::new(501, "5.5.4", format!("Syntax: {syntax}")),
        ProtoError::InvalidParameter { param } => {
            Reply::new(501, "5.5.4", format!("Invalid parameter {param}"))
        }
        ProtoError::UnsupportedParameter { param } => {
            let shown: String = param
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(40)
                .collect();
            Reply::new(555, "5.5.4", format!("Unsupported parameter {shown}"))
        }
        ProtoError::ResponseTooLong => Reply::new(500, "5.5.2", "Line too long"),
        ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => {
            Reply::new(500, "5.5.2", "Syntax error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
        let (mut buf, mut skipping, mut got) = (Vec::new(), false, Vec::new());
        for c in chunks {
            buf.extend_from_slice(c);
            while let Some(l) = next_line(&mut buf, &mut skipping) {
                got.push(l);
            }
        }
        got
    }

    #[test]
    fn over_long_line_is_dropped_whole_however_it_arrives() {
        let long = vec![b'A'; 3000];
        let want = vec![None, Some(b"NOOP\r\n".to_vec())];
        // In one piece, and split so that the tail (a would-be command) arrives on its own.
        assert_eq!(lines(&[&long, b"MAIL FROM:<x@y>\r\nNOOP\r\n"]), want);
        assert_eq!(
            lines(&[&long[..1500], &long[1500..], b"QUIT\r\nNOOP\r\n"]),
            want
        );
        let mut whole = long.clone();
        whole.extend_from_slice(b"RSET\r\nNOOP\r\n");
        assert_eq!(lines(&[&whole]), want);
        // 998 + CRLF is the longest line taken.
        let ok = [vec![b'N'; 998], b"\r\n".to_vec()].concat();
        assert_eq!(lines(&[&ok]), vec![Some(ok.clone())]);
        let over = [vec![b'N'; 999], b"\r\n".to_vec()].concat();
        assert_eq!(lines(&[&over]), vec![None]);
    }
}

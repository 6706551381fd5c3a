//! The SMTP conversation that hands one message to the relay: connect (unix socket, TCP, or TLS
//! from the first byte), EHLO, STARTTLS when offered on `smtp://`, AUTH when credentials are
//! set, MAIL, one RCPT per recipient, DATA. Every refusal becomes a sysexits code: 4xx and
//! connection trouble 75 (the caller retries), 5.7.x 77, other 5xx after the data 65, before it
//! 69. Each read and write has a deadline.

use super::message::Prepared;
use super::target::{Target, Tls};
use super::{Failure, EX_DATAERR, EX_NOPERM, EX_TEMPFAIL, EX_UNAVAILABLE};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// RFC 5321 4.5.3.2 suggests 5 minutes for most commands; a local relay answers in
/// milliseconds, so a shorter wait tells the caller sooner that something is wrong.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// After the final dot the relay signs, verifies and fsyncs: allow it longer.
const DATA_END_TIMEOUT: Duration = Duration::from_secs(600);
/// A reply line longer than this is not SMTP.
const MAX_REPLY_LINE: u64 = 4096;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One reply of the server.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The enhanced status code of the first line (RFC 3463), if it has one.
    fn enhanced(&self) -> Option<&str> {
        let first = self.lines.first()?.split(' ').next()?;
        let mut parts = first.split('.');
        let ok = parts.next().is_some_and(|c| matches!(c, "2" | "4" | "5"))
            && parts.clone().count() == 2
            && parts
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then_some(first)
    }

    /// Does an EHLO reply list this extension (keyword, case-insensitive)?
    fn offers(&self, keyword: &str) -> Option<&str> {
        self.lines.iter().skip(1).find_map(|l| {
            let (k, rest) = l.split_once(' ').unwrap_or((l.as_str(), ""));
            k.eq_ignore_ascii_case(keyword).then_some(rest)
        })
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

/// Which step a reply answered: it decides what a refusal means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Greeting,
    Ehlo,
    StartTls,
    Auth,
    Mail,
    Rcpt,
    Data,
    EndOfData,
}

/// The exit code and line for a reply that is not the one hoped for.
fn refusal(step: Step, what: &str, reply: &Reply) -> Failure {
    let code = if reply.code < 500 {
        EX_TEMPFAIL
    } else if reply.enhanced().is_some_and(|e| e.starts_with("5.7."))
        || matches!(reply.code, 530 | 535)
    {
        EX_NOPERM
    } else if step == Step::EndOfData {
        EX_DATAERR
    } else {
        EX_UNAVAILABLE
    };
    Failure::new(code, format!("the relay refused {what}: {reply}"))
}

struct Conn {
    r: BufReader<Box<dyn Stream>>,
    verbose: bool,
}

fn lost(e: impl std::fmt::Display) -> Failure {
    Failure::new(EX_TEMPFAIL, format!("connection to the relay lost: {e}"))
}

impl Conn {
    fn new(s: Box<dyn Stream>, verbose: bool) -> Conn {
        Conn {
            r: BufReader::new(s),
            verbose,
        }
    }

    async fn read_reply(&mut self, timeout: Duration) -> Result<Reply, Failure> {
        tokio::time::timeout(timeout, self.read_reply_inner())
            .await
            .map_err(|_| {
                Failure::new(
                    EX_TEMPFAIL,
                    format!("the relay did not answer within {} s", timeout.as_secs()),
                )
            })?
    }

    async fn read_reply_inner(&mut self) -> Result<Reply, Failure> {
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = (&mut self.r)
                .take(MAX_REPLY_LINE)
                .read_until(b'\n', &mut line)
                .await
                .map_err(lost)?;
            if n == 0 {
                return Err(lost("closed by the relay"));
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            if self.verbose {
                eprintln!("<<< {text}");
            }
            let code = text.get(..3).and_then(|c| c.parse::<u16>().ok());
            let Some(code) = code.filter(|c| (200..600).contains(c)) else {
                return Err(lost(format!("not an SMTP reply: {text:?}")));
            };
            let more = text.as_bytes().get(3) == Some(&b'-');
            lines.push(text.get(4..).unwrap_or("").to_string());
            if !more {
                return Ok(Reply { code, lines });
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let w = self.r.get_mut();
        tokio::time::timeout(COMMAND_TIMEOUT, async {
            w.write_all(bytes).await?;
            w.flush().await
        })
        .await
        .map_err(|_| lost("write timed out"))?
        .map_err(lost)
    }

    /// Send a command line; `shown` is what -v prints (AUTH secrets are masked).
    async fn command(&mut self, line: &str, shown: &str) -> Result<Reply, Failure> {
        if self.verbose {
            eprintln!(">>> {shown}");
        }
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply(COMMAND_TIMEOUT).await
    }

    /// Expect `want` (a code, or 2 for any 2xx) or fail as `step` says.
    async fn expect(
        &mut self,
        line: &str,
        want: u16,
        step: Step,
        what: &str,
    ) -> Result<Reply, Failure> {
        let r = self.command(line, line).await?;
        check(r, want, step, what)
    }
}

fn check(r: Reply, want: u16, step: Step, what: &str) -> Result<Reply, Failure> {
    let ok = if want < 10 {
        r.code / 100 == want
    } else {
        r.code == want
    };
    if ok {
        Ok(r)
    } else {
        Err(refusal(step, what, &r))
    }
}

/// The name this host gives in EHLO.
fn helo_name() -> String {
    let name = crate::sys::hostname().unwrap_or_default();
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if valid {
        name
    } else {
        "localhost".to_string()
    }
}

/// Hand the message to the relay. Ok holds the relay's final reply (`250 … queued as ID`).
pub async fn submit(
    target: &Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    prepared: &Prepared,
    verbose: bool,
) -> Result<Reply, Failure> {
    let where_ = target.describe();
    let unreachable = |e: String| {
        Failure::new(
            EX_TEMPFAIL,
            format!("cannot reach the relay at {where_}: {e}"),
        )
    };
    let connect = async {
        match target {
            Target::Unix(path) => tokio::net::UnixStream::connect(path)
                .await
                .map(|s| Box::new(s) as Box<dyn Stream>)
                .map_err(|e| unreachable(e.to_string())),
            Target::Smtp {
                host,
                port,
                tls: mode,
                ..
            } => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
                let _ = tcp.set_nodelay(true);
                if *mode == Tls::Implicit {
                    let s = handshake(tcp, host, tls.clone(), &where_).await?;
                    Ok(s)
                } else {
                    Ok(Box::new(tcp) as Box<dyn Stream>)
                }
            }
        }
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| {
            unreachable(format!(
                "no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })??;
    let mut c = Conn::new(stream, verbose);
    check(
        c.read_reply(COMMAND_TIMEOUT).await?,
        220,
        Step::Greeting,
        "the connection",
    )?;
    let ehlo_line = format!("EHLO {}", helo_name());
    let mut ehlo = c.expect(&ehlo_line, 250, Step::Ehlo, "EHLO").await?;

    if let Target::Smtp {
        host,
        tls: Tls::StartTls,
        credentials,
        ..
    } = target
    {
        if ehlo.offers("STARTTLS").is_some() {
            c.expect("STARTTLS", 220, Step::StartTls, "STARTTLS")
                .await?;
            // Bytes the server sent after its 220 would be read as if they came over TLS.
            if !c.r.buffer().is_empty() {
                return Err(lost("the relay sent data right after its STARTTLS reply"));
            }
            let plain = c.r.into_inner();
            let s = handshake(plain, host, tls.clone(), &where_).await?;
            c = Conn::new(s, verbose);
            ehlo = c.expect(&ehlo_line, 250, Step::Ehlo, "EHLO").await?;
        } else if credentials.is_some() && !is_loopback(host) {
            return Err(Failure::new(
                EX_UNAVAILABLE,
                format!("{where_} offers no STARTTLS: not sending the password in clear text"),
            ));
        }
    }
    if let Target::Smtp {
        credentials: Some((user, pass)),
        ..
    } = target
    {
        authenticate(&mut c, &ehlo, user, pass).await?;
    }

    let mut params = String::new();
    if prepared.eight_bit && ehlo.offers("8BITMIME").is_some() {
        params.push_str(" BODY=8BITMIME");
    }
    if ehlo.offers("SIZE").is_some() {
        params.push_str(&format!(" SIZE={}", prepared.message.len()));
    }
    let utf8 = !prepared.sender.is_ascii() || prepared.recipients.iter().any(|r| !r.is_ascii());
    if utf8 && ehlo.offers("SMTPUTF8").is_some() {
        params.push_str(" SMTPUTF8");
    }
    let sender = &prepared.sender;
    let what = format!("the sender <{sender}>");
    c.expect(
        &format!("MAIL FROM:<{sender}>{params}"),
        2,
        Step::Mail,
        &what,
    )
    .await?;
    for rcpt in &prepared.recipients {
        let what = format!("the recipient <{rcpt}>");
        c.expect(&format!("RCPT TO:<{rcpt}>"), 2, Step::Rcpt, &what)
            .await?;
    }
    c.expect("DATA", 354, Step::Data, "DATA").await?;
    send_data(&mut c, &prepared.message).await?;
    let done = check(
        c.read_reply(DATA_END_TIMEOUT).await?,
        2,
        Step::EndOfData,
        "the message",
    )?;
    // The message is the relay's now; a failed QUIT changes nothing.
    let _ = c.command("QUIT", "QUIT").await;
    Ok(done)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    host: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    where_: &str,
) -> Result<Box<dyn Stream>, Failure> {
    let fail = |e: String| Failure::new(EX_TEMPFAIL, format!("TLS with {where_} failed: {e}"));
    let config = tls.ok_or_else(|| fail("no TLS configuration".into()))?;
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| fail(format!("'{host}' is not a valid server name: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let s = tokio::time::timeout(COMMAND_TIMEOUT, connector.connect(name, stream))
        .await
        .map_err(|_| fail("handshake timed out".into()))?
        .map_err(|e| fail(e.to_string()))?;
    Ok(Box::new(s))
}

async fn authenticate(c: &mut Conn, ehlo: &Reply, user: &str, pass: &str) -> Result<(), Failure> {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    let mechanisms = ehlo.offers("AUTH").ok_or_else(|| {
        Failure::new(
            EX_UNAVAILABLE,
            "credentials are configured but the relay offers no AUTH",
        )
    })?;
    let has = |m: &str| mechanisms.split(' ').any(|x| x.eq_ignore_ascii_case(m));
    let what = format!("the login of {user}");
    let reply = if has("PLAIN") || !has("LOGIN") {
        let token = B64.encode(format!("\0{user}\0{pass}"));
        c.command(&format!("AUTH PLAIN {token}"), "AUTH PLAIN ****")
            .await?
    } else {
        check(
            c.command("AUTH LOGIN", "AUTH LOGIN").await?,
            334,
            Step::Auth,
            &what,
        )?;
        check(
            c.command(&B64.encode(user), "****").await?,
            334,
            Step::Auth,
            &what,
        )?;
        c.command(&B64.encode(pass), "****").await?
    };
    check(reply, 235, Step::Auth, &what).map(|_| ())
}

/// The message, dot-stuffed, in pieces, then the final dot.
async fn send_data(c: &mut Conn, message: &[u8]) -> Result<(), Failure> {
    if c.verbose {
        eprintln!(">>> ({} bytes of message)", message.len());
    }
    let mut at_line_start = true;
    let mut out = Vec::with_capacity(70 * 1024);
    for chunk in message.chunks(64 * 1024) {
        out.clear();
        crate::smtp::data::dot_stuff(chunk, &mut at_line_start, &mut out);
        c.write(&out).await?;
    }
    let end: &[u8] = if message.is_empty() || message.ends_with(b"\r\n") {
        b".\r\n"
    } else {
        b"\r\n.\r\n"
    };
    if c.verbose {
        eprintln!(">>> .");
    }
    c.write(end).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, line: &str) -> Reply {
        Reply {
            code,
            lines: vec![line.to_string()],
        }
    }

    #[test]
    fn replies_map_to_sysexits() {
        let r = |step, code, line| refusal(step, "x", &reply(code, line)).code;
        assert_eq!(
            r(Step::Mail, 530, "5.7.0 Authentication required"),
            EX_NOPERM
        );
        assert_eq!(
            r(Step::EndOfData, 550, "5.7.1 Sender not allowed"),
            EX_NOPERM
        );
        assert_eq!(r(Step::EndOfData, 554, "5.6.0 two From fields"), EX_DATAERR);
        assert_eq!(r(Step::Rcpt, 550, "5.1.1 no such user"), EX_UNAVAILABLE);
        assert_eq!(r(Step::Rcpt, 452, "4.5.3 too many recipients"), EX_TEMPFAIL);
        assert_eq!(
            r(Step::Greeting, 421, "4.7.0 Too many connections"),
            EX_TEMPFAIL
        );
        assert_eq!(r(Step::Auth, 535, "Authentication failed"), EX_NOPERM);
    }

    #[test]
    fn enhanced_codes_and_extensions() {
        assert_eq!(reply(550, "5.7.1 no").enhanced(), Some("5.7.1"));
        assert_eq!(reply(550, "no such thing").enhanced(), None);
        assert_eq!(reply(250, "1.2.3.4 hello").enhanced(), None);
        let ehlo = Reply {
            code: 250,
            lines: vec![
                "relay.test".into(),
                "SIZE 1000".into(),
                "STARTTLS".into(),
                "AUTH PLAIN LOGIN".into(),
            ],
        };
        assert_eq!(ehlo.offers("starttls"), Some(""));
        assert_eq!(ehlo.offers("AUTH"), Some("PLAIN LOGIN"));
        assert_eq!(ehlo.offers("relay.test"), None);
        assert_eq!(ehlo.offers("8BITMIME"), None);
    }
}

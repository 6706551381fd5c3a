//! A real receiving SMTP server for tests, on 127.0.0.1: it records every message with its
//! envelope, offers STARTTLS when given a certificate, can require AUTH, and answers scripted
//! replies for chosen recipients (e.g. 451 twice, then 250). It counts connections (in total
//! and at once), MAIL and RSET commands, and can hold its answer to the final dot (to catch
//! the sender in the middle of a transfer). It can go down as a restarting server does (the
//! port refuses connections; an open connection is closed at its next command, so a message
//! whose data is in gets its answer) and come back up on the same port, keeping what it
//! received.
//! Like a strict real server it can refuse a message holding a line over 998 bytes (`500 Line
//! too long`), and leave 8BITMIME / SMTPUTF8 out of its EHLO.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message as the sink received it.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub sender: String,
    pub recipients: Vec<String>,
    /// Unstuffed message bytes, as sent before the final dot.
    pub data: Vec<u8>,
    pub tls: bool,
    /// What followed `MAIL FROM:<...>` (` BODY=8BITMIME`, ` SMTPUTF8`), trimmed.
    pub mail_params: String,
}

#[derive(Default)]
struct State {
    messages: Vec<Delivered>,
    rcpt_script: HashMap<String, VecDeque<String>>,
    connections: usize,
    open: usize,
    max_open: usize,
    mails: usize,
    rsets: usize,
    /// Messages whose data arrived (acknowledged or not).
    data_received: usize,
    /// Wait this long before answering the final dot.
    stall: Option<Duration>,
    starttls: bool,
    auth: Option<(String, String)>,
    /// Do not offer PIPELINING.
    no_pipelining: bool,
    /// MAIL commands that arrived with more commands right behind them (RFC 2920 batches).
    pipelined: usize,
    /// Bumped by `down`: connections of an older generation close at their next command.
    generation: u64,
    /// Refuse a message with a line over 998 bytes (RFC 5321 4.5.3.1.6).
    line_limit: bool,
    /// Messages refused for a line over the limit.
    too_long: usize,
    /// Do not offer 8BITMIME / SMTPUTF8.
    no_8bitmime: bool,
    no_smtputf8: bool,
    /// RSET commands that arrived with more commands right behind them.
    rsets_pipelined: usize,
    /// Answer RSET with `500` (a server in a state the client cannot reset).
    refuse_rset: bool,
}

pub struct Sink {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Sink {
    /// Start on a free port. `tls`: (certificate, key) PEM paths to offer STARTTLS with.
    pub async fn start(tls: Option<(&str, &str)>) -> Sink {
        Self::start_on("127.0.0.1:0", tls).await
    }

    pub async fn start_on(addr: &str, tls: Option<(&str, &str)>) -> Sink {
        let listener = TcpListener::bind(addr).await.expect("sink bind");
        let addr = listener.local_addr().expect("sink addr");
        let state = Arc::new(Mutex::new(State {
            starttls: tls.is_some(),
            ..State::default()
        }));
        let acceptor = tls.map(|(c, k)| {
            let config = dkim_relay::tls::load(std::path::Path::new(c), std::path::Path::new(k))
                .expect("sink tls");
            tokio_rustls::TlsAcceptor::from(config)
        });
        let task = accept(listener, state.clone(), acceptor.clone());
        Sink {
            addr,
            state,
            task,
            acceptor,
        }
    }

    pub fn stop(&self) {
        self.task.abort();
    }

    /// Go down as a crashed or restarting server does: the port refuses connections, and the
    /// open ones are cut.
    pub fn down(&self) {
        self.task.abort();
        self.state.lock().unwrap().generation += 1;
    }

    /// Come back up on the same port (waiting, at most 10 s, for the old socket to be gone).
    pub async fn up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("sink cannot bind {} again: {e}", self.addr),
            }
        };
        self.task = accept(listener, self.state.clone(), self.acceptor.clone());
    }

    /// Stop offering PIPELINING: clients must wait for each reply.
    pub fn no_pipelining(&self) {
        self.state.lock().unwrap().no_pipelining = true;
    }

    /// Answer `500 5.5.0 Line too long` to a message with a line over 998 bytes (after its
    /// final dot, as it is read).
    pub fn enforce_line_limit(&self) {
        self.state.lock().unwrap().line_limit = true;
    }

    /// Messages refused with `500 Line too long`.
    pub fn refused_too_long(&self) -> usize {
        self.state.lock().unwrap().too_long
    }

    /// Stop offering 8BITMIME.
    pub fn no_8bitmime(&self) {
        self.state.lock().unwrap().no_8bitmime = true;
    }

    /// Stop offering SMTPUTF8.
    pub fn no_smtputf8(&self) {
        self.state.lock().unwrap().no_smtputf8 = true;
    }

    /// How many MAIL commands arrived with the next command already behind them.
    pub fn pipelined(&self) -> usize {
        self.state.lock().unwrap().pipelined
    }

    /// Answer RCPT TO:<rcpt> with these replies first (then 250).
    pub fn script_rcpt(&self, rcpt: &str, replies: &[&str]) {
        self.state.lock().unwrap().rcpt_script.insert(
            rcpt.to_string(),
            replies.iter().map(|s| s.to_string()).collect(),
        );
    }

    pub fn require_auth(&self, user: &str, pass: &str) {
        self.state.lock().unwrap().auth = Some((user.into(), pass.into()));
    }

    pub fn messages(&self) -> Vec<Delivered> {
        self.state.lock().unwrap().messages.clone()
    }

    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// The most connections that were open at the same time.
    pub fn max_open(&self) -> usize {
        self.state.lock().unwrap().max_open
    }

    /// MAIL FROM commands seen (transactions begun).
    pub fn mails(&self) -> usize {
        self.state.lock().unwrap().mails
    }

    pub fn rsets(&self) -> usize {
        self.state.lock().unwrap().rsets
    }

    /// RSET commands that arrived with the next command already behind them.
    pub fn rsets_pipelined(&self) -> usize {
        self.state.lock().unwrap().rsets_pipelined
    }

    /// Answer every RSET with `500 5.5.1` from now on.
    pub fn refuse_rset(&self) {
        self.state.lock().unwrap().refuse_rset = true;
    }

    /// Messages whose data arrived in full, whether or not they were answered yet.
    pub fn data_received(&self) -> usize {
        self.state.lock().unwrap().data_received
    }

    /// Hold the answer to every final dot for `d` (the message counts as delivered only once
    /// answered).
    pub fn stall_after_data(&self, d: Duration) {
        self.state.lock().unwrap().stall = Some(d);
    }

    /// Wait until `n` messages arrived (or `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Delivered> {
        let start = Instant::now();
        loop {
            let m = self.messages();
            if m.len() >= n || start.elapsed() > timeout {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accept connections on `listener` until aborted, each served in its own task.
fn accept(
    listener: TcpListener,
    st: Arc<Mutex<State>>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let generation = {
                let mut s = st.lock().unwrap();
                s.connections += 1;
                s.open += 1;
                s.max_open = s.max_open.max(s.open);
                s.generation
            };
            let st = st.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let counted =
                    serve(Box::new(stream), st.clone(), acceptor, false, generation).await;
                if !matches!(counted, Ok(true)) {
                    st.lock().unwrap().open -= 1;
                }
            });
        }
    })
}

/// One connection; `Ok(true)` when it ended with QUIT and was already counted as closed.
fn serve(
    stream: Box<dyn Stream>,
    st: Arc<Mutex<State>>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    tls: bool,
    generation: u64,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<bool>> + Send>> {
    Box::pin(async move {
        let mut r = BufReader::new(stream);
        if !tls {
            r.get_mut().write_all(b"220 sink.test ESMTP\r\n").await?;
        }
        let mut sender = String::new();
        let mut mail_params = String::new();
        let mut rcpts: Vec<String> = Vec::new();
        let mut authed = false;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await? == 0 {
                return Ok(false);
            }
            if st.lock().unwrap().generation != generation {
                // Went down since this connection opened: close it without an answer.
                return Ok(false);
            }
            let upper = line.to_ascii_uppercase();
            let reply: String = if upper.starts_with("EHLO") {
                let (starttls, auth, pipelining, eight_bit, utf8) = {
                    let s = st.lock().unwrap();
                    (
                        s.starttls && !tls,
                        s.auth.is_some(),
                        !s.no_pipelining,
                        !s.no_8bitmime,
                        !s.no_smtputf8,
                    )
                };
                let mut caps = vec!["sink.test", "SIZE 100000000"];
                if eight_bit {
                    caps.push("8BITMIME");
                }
                if utf8 {
                    caps.push("SMTPUTF8");
                }
                if pipelining {
                    caps.push("PIPELINING");
                }
                if starttls {
                    caps.push("STARTTLS");
                }
                if auth {
                    caps.push("AUTH PLAIN LOGIN");
                }
                let n = caps.len();
                caps.iter()
                    .enumerate()
                    .map(|(i, c)| format!("250{}{c}\r\n", if i + 1 < n { '-' } else { ' ' }))
                    .collect()
            } else if upper.starts_with("HELO") {
                "250 sink.test\r\n".into()
            } else if upper.starts_with("STARTTLS") {
                let Some(acc) = acceptor.clone() else {
                    r.get_mut().write_all(b"502 no\r\n").await?;
                    continue;
                };
                r.get_mut().write_all(b"220 go\r\n").await?;
                let inner = r.into_inner();
                let tls_stream = acc.accept(inner).await?;
                return serve(Box::new(tls_stream), st, None, true, generation).await;
            } else if upper.starts_with("AUTH PLAIN") {
                use base64::Engine;
                let arg = line
                    .trim_end()
                    .splitn(3, ' ')
                    .nth(2)
                    .unwrap_or("")
                    .to_string();
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(arg)
                    .unwrap_or_default();
                let parts: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
                let want = st.lock().unwrap().auth.clone();
                match want {
                    Some((u, p))
                        if parts.len() == 3
                            && parts[1] == u.as_bytes()
                            && parts[2] == p.as_bytes() =>
                    {
                        authed = true;
                        "235 ok\r\n".into()
                    }
                    _ => "535 5.7.8 bad credentials\r\n".into(),
                }
            } else if upper.starts_with("MAIL FROM:") {
                {
                    let mut s = st.lock().unwrap();
                    s.mails += 1;
                    if !r.buffer().is_empty() {
                        s.pipelined += 1;
                    }
                }
                if st.lock().unwrap().auth.is_some() && !authed {
                    "530 5.7.0 auth first\r\n".into()
                } else {
                    sender = extract(&line);
                    mail_params = line
                        .split_once('>')
                        .map_or("", |(_, rest)| rest)
                        .trim()
                        .to_string();
                    rcpts.clear();
                    "250 2.1.0 ok\r\n".into()
                }
            } else if upper.starts_with("RCPT TO:") {
                let rcpt = extract(&line);
                let scripted = st
                    .lock()
                    .unwrap()
                    .rcpt_script
                    .get_mut(&rcpt)
                    .and_then(|q| q.pop_front());
                match scripted {
                    Some(reply) => format!("{reply}\r\n"),
                    None => {
                        rcpts.push(rcpt);
                        "250 2.1.5 ok\r\n".into()
                    }
                }
            } else if upper.starts_with("DATA") && rcpts.is_empty() {
                // RFC 2920: a pipelined DATA after no accepted recipient is refused.
                "554 5.5.1 no valid recipients\r\n".into()
            } else if upper.starts_with("DATA") {
                r.get_mut().write_all(b"354 go\r\n").await?;
                let mut data = Vec::new();
                let mut longest = 0;
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l).await? == 0 {
                        return Ok(false);
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    if l.starts_with(b".") {
                        l.remove(0);
                    }
                    longest = longest.max(l.len().saturating_sub(2));
                    data.extend_from_slice(&l);
                }
                let stall = {
                    let mut s = st.lock().unwrap();
                    s.data_received += 1;
                    s.stall
                };
                if let Some(d) = stall {
                    tokio::time::sleep(d).await;
                }
                let refuse = {
                    let mut s = st.lock().unwrap();
                    let refuse = s.line_limit && longest > 998;
                    s.too_long += usize::from(refuse);
                    refuse
                };
                if refuse {
                    r.get_mut()
                        .write_all(b"500 5.5.0 Line too long\r\n")
                        .await?;
                    continue;
                }
                r.get_mut().write_all(b"250 2.0.0 accepted\r\n").await?;
                st.lock().unwrap().messages.push(Delivered {
                    sender: sender.clone(),
                    recipients: rcpts.clone(),
                    data,
                    tls,
                    mail_params: mail_params.clone(),
                });
                continue;
            } else if upper.starts_with("RSET") {
                let mut s = st.lock().unwrap();
                s.rsets += 1;
                if !r.buffer().is_empty() {
                    s.rsets_pipelined += 1;
                }
                rcpts.clear();
                if s.refuse_rset {
                    "500 5.5.1 not now\r\n".into()
                } else {
                    "250 ok\r\n".into()
                }
            } else if upper.starts_with("QUIT") {
                // Closed as far as the client is concerned once it reads 221: count it closed
                // before answering, so a client that opens its next connection right after
                // never finds this one still counted (max_open would race otherwise).
                st.lock().unwrap().open -= 1;
                let _ = r.get_mut().write_all(b"221 bye\r\n").await;
                return Ok(true);
            } else if upper.starts_with("NOOP") {
                "250 ok\r\n".into()
            } else {
                "500 unknown\r\n".into()
            };
            r.get_mut().write_all(reply.as_bytes()).await?;
        }
    })
}

fn extract(line: &str) -> String {
    let start = line.find('<').map(|p| p + 1).unwrap_or(0);
    let end = line[start..]
        .find('>')
        .map(|p| start + p)
        .unwrap_or(line.len());
    line[start..end].to_string()
}

/// Read everything a stream has until EOF (helper for raw tests).
pub async fn read_all<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = s.read_to_end(&mut v).await;
    v
}

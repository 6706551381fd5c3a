//! A small SMTP load client for bench/relay-vs-postfix.sh: what `smtp-source` does (N messages
//! over C concurrent sessions, one message per connection, on loopback), plus what it does not
//! report: each message's submission latency, from the end of DATA (the terminating dot
//! written) to the server's final reply.
//!
//! Run: `./scripts/cargo.sh bench --bench smtp_load -- --connect 127.0.0.1:2525 --size 1024
//! --messages 2000 --sessions 32`. Other options: `--from`, `--to`, `--helo`, `--dump FILE`
//! (every latency in microseconds, one a line). Prints one line:
//! `ok=N failed=F seconds=S msgs_per_s=R p50_ms=.. p99_ms=.. max_ms=..`; exits 1 if any
//! message was not accepted (the first few errors go to stderr).
//!
//! One thread (a current-thread tokio runtime), so the client takes as little of a 2-core
//! machine from the relays as smtp-source does. Each message: connect, 220, EHLO, MAIL, RCPT,
//! DATA, the message, the dot (its own write, TCP_NODELAY, so "end of DATA" is the moment that
//! write returns), the reply, QUIT, 221. The message: From, To, Date, Message-ID and Subject,
//! then `--size` bytes of 78-character lines (like smtp-source's `-l`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// No reply may take longer than this (a stuck server fails the message instead of the run).
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

struct Options {
    connect: String,
    size: usize,
    messages: usize,
    sessions: usize,
    from: String,
    to: String,
    helo: String,
    dump: Option<String>,
}

fn usage(why: &str) -> ! {
    eprintln!(
        "smtp_load: {why}\nusage: smtp_load --connect HOST:PORT [--size BYTES] [--messages N] \
         [--sessions C] [--from ADDR] [--to ADDR] [--helo NAME] [--dump FILE]"
    );
    std::process::exit(2);
}

fn options() -> Options {
    let mut o = Options {
        connect: String::new(),
        size: 1024,
        messages: 100,
        sessions: 1,
        from: "bench@example.com".into(),
        to: "sink@example.net".into(),
        helo: "client.example.com".into(),
        dump: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--bench" {
            // What `cargo bench` passes to every bench binary.
            continue;
        }
        let Some(v) = args.next() else {
            usage(&format!("{a} needs a value"))
        };
        let number = |v: &str| {
            v.parse::<usize>()
                .unwrap_or_else(|_| usage(&format!("{a}: not a number: {v}")))
        };
        match a.as_str() {
            "--connect" => o.connect = v,
            "--size" => o.size = number(&v),
            "--messages" => o.messages = number(&v),
            "--sessions" => o.sessions = number(&v).max(1),
            "--from" => o.from = v,
            "--to" => o.to = v,
            "--helo" => o.helo = v,
            "--dump" => o.dump = Some(v),
            _ => usage(&format!("unknown option {a}")),
        }
    }
    if o.connect.is_empty() {
        usage("--connect is required");
    }
    o
}

/// The message for number `n`: header section and `size` bytes of body, dot-stuffing not
/// needed (no line starts with a dot), ending in CRLF.
fn message(o: &Options, n: usize, date: &str) -> Vec<u8> {
    let mut m = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nDate: {date}\r\nMessage-ID: <{n}.{pid}@{helo}>\r\n\
         Subject: load test message {n}\r\n\r\n",
        from = o.from,
        to = o.to,
        helo = o.helo,
        pid = std::process::id(),
    )
    .into_bytes();
    let mut line = 0usize;
    let body_start = m.len();
    while m.len() - body_start + 2 < o.size {
        let left = o.size - (m.len() - body_start) - 2;
        let len = left.min(78);
        line += 1;
        let text = format!("{line} the quick brown fox jumps over the lazy dog, twice over");
        let mut bytes: Vec<u8> = text.bytes().cycle().take(len).collect();
        if let Some(last @ b' ') = bytes.last_mut() {
            *last = b'x';
        }
        m.extend_from_slice(&bytes);
        m.extend_from_slice(b"\r\n");
    }
    if m.len() == body_start {
        m.extend_from_slice(b"\r\n");
    }
    m
}

/// One connection's reads: whole replies, however they arrive.
struct Replies {
    buf: Vec<u8>,
}

impl Replies {
    /// The next complete reply's code (multi-line replies end at "NNN ").
    async fn next(&mut self, s: &mut TcpStream) -> Result<u16, String> {
        loop {
            if let Some(code) = self.take() {
                return Ok(code);
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(REPLY_TIMEOUT, s.read(&mut chunk))
                .await
                .map_err(|_| "timed out waiting for a reply".to_string())?
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn take(&mut self) -> Option<u16> {
        let mut start = 0;
        while let Some(end) = memchr::memchr(b'\n', &self.buf[start..]) {
            let line = &self.buf[start..start + end + 1];
            start += end + 1;
            if line.len() >= 4 && line[3] != b'-' {
                let code = std::str::from_utf8(&line[..3]).ok()?.parse().ok()?;
                self.buf.drain(..start);
                return Some(code);
            }
        }
        None
    }
}

async fn expect(r: &mut Replies, s: &mut TcpStream, want: u16, step: &str) -> Result<(), String> {
    let code = r.next(s).await?;
    if code == want {
        Ok(())
    } else {
        Err(format!("{step}: {code}"))
    }
}

/// One message over one connection: its latency from the end of DATA to the 250.
async fn send_one(o: &Options, msg: &[u8]) -> Result<Duration, String> {
    let mut s = TcpStream::connect(&o.connect)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let mut r = Replies { buf: Vec::new() };
    expect(&mut r, &mut s, 220, "greeting").await?;
    let steps: [(String, u16, &str); 4] = [
        (format!("EHLO {}\r\n", o.helo), 250, "EHLO"),
        (format!("MAIL FROM:<{}>\r\n", o.from), 250, "MAIL"),
        (format!("RCPT TO:<{}>\r\n", o.to), 250, "RCPT"),
        ("DATA\r\n".into(), 354, "DATA"),
    ];
    for (cmd, want, step) in &steps {
        s.write_all(cmd.as_bytes())
            .await
            .map_err(|e| format!("{step}: {e}"))?;
        expect(&mut r, &mut s, *want, step).await?;
    }
    s.write_all(msg)
        .await
        .map_err(|e| format!("message: {e}"))?;
    s.write_all(b".\r\n")
        .await
        .map_err(|e| format!("dot: {e}"))?;
    let end_of_data = Instant::now();
    expect(&mut r, &mut s, 250, "end of data").await?;
    let latency = end_of_data.elapsed();
    s.write_all(b"QUIT\r\n")
        .await
        .map_err(|e| format!("QUIT: {e}"))?;
    // The 221 (or the close) is not the message's business.
    let _ = r.next(&mut s).await;
    Ok(latency)
}

struct Tally {
    next: usize,
    latencies: Vec<Duration>,
    failed: usize,
}

async fn session(o: Rc<Options>, tally: Rc<RefCell<Tally>>, date: Rc<String>) {
    loop {
        let n = {
            let mut t = tally.borrow_mut();
            if t.next >= o.messages {
                return;
            }
            t.next += 1;
            t.next
        };
        let msg = message(&o, n, &date);
        match send_one(&o, &msg).await {
            Ok(l) => tally.borrow_mut().latencies.push(l),
            Err(e) => {
                let mut t = tally.borrow_mut();
                t.failed += 1;
                if t.failed <= 5 {
                    eprintln!("smtp_load: message {n}: {e}");
                }
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

fn main() {
    let o = Rc::new(options());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("smtp_load: {e}");
            std::process::exit(1);
        }
    };
    let tally = Rc::new(RefCell::new(Tally {
        next: 0,
        latencies: Vec::with_capacity(o.messages),
        failed: 0,
    }));
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let date = Rc::new(dkim_relay::smtp::date::rfc5322_date(now));
    let started = Instant::now();
    rt.block_on(async {
        let local = tokio::task::LocalSet::new();
        for _ in 0..o.sessions.min(o.messages.max(1)) {
            local.spawn_local(session(o.clone(), tally.clone(), date.clone()));
        }
        local.await;
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut t = tally.borrow_mut();
    t.latencies.sort();
    if let Some(path) = &o.dump {
        let text: String = t
            .latencies
            .iter()
            .map(|l| format!("{}\n", l.as_micros()))
            .collect();
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("smtp_load: {path}: {e}");
        }
    }
    let ok = t.latencies.len();
    println!(
        "ok={ok} failed={} seconds={seconds:.3} msgs_per_s={:.1} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        t.failed,
        ok as f64 / seconds,
        percentile(&t.latencies, 0.50),
        percentile(&t.latencies, 0.99),
        percentile(&t.latencies, 1.0),
    );
    if t.failed > 0 {
        std::process::exit(1);
    }
}

//! `dkim-relay queue list|show|retry|delete` and `mailq`: spool administration that is safe
//! while `serve` runs. It reads and writes the spool directly, with the spool's own atomic
//! operations (an envelope is replaced by write + fsync + rename; a message is removed
//! envelope first), and tells a running daemon to look again with SIGUSR1: `retry` sets the
//! recipients' next attempt to now, and the daemon's USR1 handler re-reads the whole spool and
//! attempts what is due. `delete` needs no signal: the scheduler treats a vanished envelope
//! as done. The daemon is found through the pid file it keeps in the spool directory (written
//! by `app`).
//! What a recipient waits for comes from the envelope, and, while the daemon runs, from the
//! closed next-hop hosts it writes to `next-hops.json` (`queue::next_hops`).

use crate::config::units::format_size;
use crate::config::{Delivery, Settings};
use crate::outbound::breaker::{ClosedHost, Snapshot};
use crate::smtp::date::age;
use crate::spool::{Envelope, QueueId, RecipientState, Spool, SpoolError, StoredMessage};
use std::io::Write;
use std::path::Path;

/// The daemon's pid file, in the spool directory.
pub const PID_FILE: &str = "dkim-relay.pid";

/// What the operator asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    List,
    Show(String),
    /// One message, or every message (`None`).
    Retry(Option<String>),
    Delete(String),
}

/// The pid in a pid file.
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Run a queue command with the configuration at `config`; returns the exit code.
pub fn run(config: &Path, action: Action) -> u8 {
    // `queue list | head`: a reader that goes away ends the command quietly.
    let mut out = crate::cli_io::stdout();
    match execute(config, action, &mut out) {
        Ok(()) => 0,
        Err(e) => {
            let _ = out.flush();
            eprintln!("dkim-relay queue: {e}");
            1
        }
    }
}

fn execute(config: &Path, action: Action, out: &mut dyn Write) -> Result<(), String> {
    let settings = Settings::load(config).map_err(|e| e.to_string())?;
    let dir = &settings.spool_dir;
    // Opening would create a missing spool, as root perhaps, under the daemon's feet.
    if !dir.join("queue").is_dir() {
        return Err(format!(
            "no spool at {}: the relay has not run with {}",
            dir.display(),
            config.display()
        ));
    }
    let spool = Spool::open(dir).map_err(|e| e.to_string())?;
    let now = crate::clock::unix_now();
    // A file left by a daemon that is gone says nothing about now.
    let closed = match running_daemon(dir) {
        Some(_) => crate::queue::next_hops::read(dir),
        None => Snapshot::default(),
    };
    let view = View {
        now,
        closed: &closed,
        delivery: &settings.delivery,
    };
    let w = |r: std::io::Result<()>| r.map_err(|e| format!("cannot write the output: {e}"));
    match action {
        Action::List => w(list(&spool, &view, out)),
        Action::Show(id) => {
            let id = parse_id(&id)?;
            let env = load(&spool, &id)?;
            w(show(&spool, &id, &env, &view, out))
        }
        Action::Delete(id) => {
            let id = parse_id(&id)?;
            spool.remove(&id).map_err(|e| not_found(&id, e))?;
            w(writeln!(out, "{id}: deleted"))
        }
        Action::Retry(Some(id)) => {
            let id = parse_id(&id)?;
            let n = make_due(&spool, &id, now).map_err(|e| not_found(&id, e))?;
            if n == 0 {
                return w(writeln!(
                    out,
                    "{id}: nothing to retry (every recipient is done)"
                ));
            }
            w(writeln!(out, "{id}: {n} recipient(s) due now"))?;
            w(writeln!(out, "{}", wake_daemon(dir)))
        }
        Action::Retry(None) => {
            let mut messages = 0;
            for id in spool.list().map_err(|e| e.to_string())? {
                match make_due(&spool, &id, now) {
                    Ok(0) | Err(SpoolError::NotFound) => {}
                    Ok(_) => messages += 1,
                    Err(e) => eprintln!("dkim-relay queue: {id}: {e}"),
                }
            }
            w(writeln!(out, "{messages} message(s) due now"))?;
            w(writeln!(out, "{}", wake_daemon(dir)))
        }
    }
}

fn parse_id(id: &str) -> Result<QueueId, String> {
    QueueId::parse(id.trim()).ok_or_else(|| format!("'{id}' is not a queue id (18 hex digits)"))
}

fn not_found(id: &QueueId, e: SpoolError) -> String {
    match e {
        SpoolError::NotFound => format!("{id}: no such message in the queue"),
        e => format!("{id}: {e}"),
    }
}

fn load(spool: &Spool, id: &QueueId) -> Result<Envelope, String> {
    spool.load(id).map_err(|e| not_found(id, e))
}

/// Set every pending recipient's next attempt to now; returns how many.
fn make_due(spool: &Spool, id: &QueueId, now: i64) -> Result<usize, SpoolError> {
    let mut n = 0;
    // Under the spool's envelope lock: a delivery the daemon records meanwhile is not undone.
    spool.modify(id, |env| {
        for r in env.recipients.iter_mut() {
            if r.state == RecipientState::Pending {
                r.next_attempt = r.next_attempt.min(now);
                n += 1;
            }
        }
        n > 0
    })?;
    Ok(n)
}

/// The pid of the daemon of this spool, if one runs.
fn running_daemon(spool_dir: &Path) -> Option<i32> {
    let pid = read_pid(&spool_dir.join(PID_FILE)).and_then(|p| i32::try_from(p).ok())?;
    // After a kill -9 the file stays and the pid may be reused: make sure it is a relay
    // (`dkim-relay… serve`) before signalling, as USR1 would kill most programs.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"));
    let is_relay = match &cmdline {
        Ok(c) => is_relay_command_line(c),
        // No /proc (not Linux): only the pid file to go by.
        Err(_) => !Path::new("/proc/self").exists(),
    };
    (is_relay && crate::sys::process_alive(pid)).then_some(pid)
}

/// Send SIGUSR1 to the daemon of this spool, if it runs; says what happened.
pub(crate) fn wake_daemon(spool_dir: &Path) -> String {
    let Some(pid) = running_daemon(spool_dir) else {
        return "the relay is not running: delivery is attempted when it starts".to_string();
    };
    if let Err(e) = crate::sys::send_usr1(pid) {
        return format!("cannot signal the relay (pid {pid}): {e}; it retries on its own schedule");
    }
    format!("the relay (pid {pid}) is retrying now")
}

/// `/proc/PID/cmdline` of `dkim-relay serve …` (by any path, or a name like `dkim-relayd`).
fn is_relay_command_line(cmdline: &[u8]) -> bool {
    let mut args = cmdline.split(|b| *b == 0);
    let program = args.next().unwrap_or_default();
    let name = program.rsplit(|b| *b == b'/').next().unwrap_or_default();
    name.starts_with(b"dkim-relay") && args.next() == Some(b"serve".as_slice())
}

/// What the listing needs besides the envelopes.
struct View<'a> {
    now: i64,
    /// The closed next-hop hosts (empty when the daemon does not run).
    closed: &'a Snapshot,
    /// For the destination of a recipient.
    delivery: &'a Delivery,
}

impl View<'_> {
    /// The closed host that mail for `recipient` waits for (the first to be probed), if any.
    fn waiting_for(&self, recipient: &str) -> Option<&ClosedHost> {
        let destination = crate::outbound::transport::destination(self.delivery, recipient);
        self.closed.waiting_for(&destination)
    }
}

fn list(spool: &Spool, view: &View<'_>, out: &mut dyn Write) -> std::io::Result<()> {
    let now = view.now;
    let ids = spool.list().map_err(std::io::Error::other)?;
    let mut shown = 0;
    for id in &ids {
        // A message delivered or deleted between the listing and now is simply not shown.
        let Ok(env) = spool.load(id) else { continue };
        if shown == 0 {
            writeln!(
                out,
                "{:<18}  {:>5}  {:>9}  Sender/Recipient",
                "Queue ID", "Age", "Size"
            )?;
        }
        shown += 1;
        let sender = if env.sender.is_empty() {
            "<>"
        } else {
            &env.sender
        };
        writeln!(
            out,
            "{id}  {:>5}  {:>9}  {sender}",
            age(now - env.received_at),
            format_size(env.size)
        )?;
        for r in &env.recipients {
            writeln!(out, "{:>38}{}  {}", "", r.address, status(r, view))?;
        }
    }
    if shown == 0 {
        writeln!(out, "Mail queue is empty")
    } else {
        writeln!(out, "-- {shown} message(s) in the queue")
    }
}

fn status(r: &crate::spool::RecipientStatus, view: &View<'_>) -> String {
    let now = view.now;
    let waiting = match r.state {
        RecipientState::Pending => view.waiting_for(&r.address),
        _ => None,
    };
    let mut s = match r.state {
        RecipientState::Delivered => "delivered".to_string(),
        RecipientState::Failed if r.dsn_sent => "failed, bounce sent".to_string(),
        RecipientState::Failed => "failed, bounce pending".to_string(),
        RecipientState::Expired if r.dsn_sent => "expired, bounce sent".to_string(),
        RecipientState::Expired => "expired, bounce pending".to_string(),
        RecipientState::Pending if waiting.is_some() => {
            waiting.map(waiting_line).unwrap_or_default()
        }
        RecipientState::Pending if r.next_attempt <= now => "pending, due now".to_string(),
        RecipientState::Pending => format!("pending, next in {}", age(r.next_attempt - now)),
    };
    if r.attempts > 0 {
        s.push_str(&format!(", {} attempt(s)", r.attempts));
    }
    if let Some(last) = &r.last_reply {
        s.push_str(&format!(" ({})", one_line(last)));
    }
    s
}

/// `waiting for 127.0.0.1:25, closed since 12:01:07 after: connect: refused; probe at
/// 12:01:12` (times of day in UTC, as the log's).
fn waiting_line(h: &ClosedHost) -> String {
    let host = if h.host.trim_start_matches('[').starts_with(&h.name) {
        h.host.clone()
    } else {
        format!("{} [{}]", h.name, h.host)
    };
    let probe = if h.probing {
        "probe under way".to_string()
    } else {
        format!("probe at {}", time_of_day(h.probe_at))
    };
    format!(
        "waiting for {host}, closed since {} after: {}; {probe}",
        time_of_day(h.since),
        one_line(&h.reason)
    )
}

/// `12:01:07` (UTC).
fn time_of_day(unix: i64) -> String {
    let s = unix.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn show(
    spool: &Spool,
    id: &QueueId,
    env: &Envelope,
    view: &View<'_>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let now = view.now;
    let sender = if env.sender.is_empty() {
        "<>"
    } else {
        &env.sender
    };
    writeln!(out, "Queue ID:   {id}")?;
    writeln!(
        out,
        "Received:   {} ({} ago)",
        crate::smtp::date::rfc5322_date(env.received_at),
        age(now - env.received_at)
    )?;
    writeln!(out, "Client:     {}", env.client)?;
    writeln!(out, "Sender:     {sender}")?;
    writeln!(out, "Size:       {} bytes", env.size)?;
    let flags: Vec<&str> = [
        (env.eight_bit, "8bitmime"),
        (env.smtputf8, "smtputf8"),
        (env.is_dsn, "bounce"),
    ]
    .iter()
    .filter_map(|(on, name)| on.then_some(*name))
    .collect();
    if !flags.is_empty() {
        writeln!(out, "Flags:      {}", flags.join(", "))?;
    }
    for sig in &env.signatures {
        writeln!(out, "Signature:  {}", signature_summary(sig))?;
    }
    writeln!(out, "Recipients:")?;
    for r in &env.recipients {
        writeln!(out, "  {}  {}", r.address, status(r, view))?;
    }
    writeln!(out, "Header:")?;
    let head = read_head(&spool.message(id, env));
    for line in head.lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// The header section of a stored message (at most 64 KiB of it), for `show`.
fn read_head(message: &StoredMessage) -> String {
    use std::io::Read;
    let mut buf = Vec::new();
    let read = message
        .open()
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut buf));
    if let Err(e) = read {
        return format!("(cannot read {}: {e})", message.path.display());
    }
    let end = memchr::memmem::find(&buf, b"\r\n\r\n").unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `d=example.com s=sel a=rsa-sha256` of a DKIM-Signature field.
fn signature_summary(field: &str) -> String {
    let value = field.split_once(':').map_or(field, |(_, v)| v);
    let unfolded: String = value.split_whitespace().collect();
    let tag = |t: &str| {
        unfolded
            .split(';')
            .find_map(|kv| kv.strip_prefix(t).and_then(|v| v.strip_prefix('=')))
            .unwrap_or("?")
            .to_string()
    };
    format!("d={} s={} a={}", tag("d"), tag("s"), tag("a"))
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_sizes_and_signatures_read_well() {
        assert_eq!(age(42), "42s");
        assert_eq!(age(17 * 60), "17m");
        assert_eq!(age(5 * 3600), "5h");
        assert_eq!(age(3 * 86_400), "3d");
        assert_eq!(age(-5), "0s");
        assert_eq!(
            signature_summary("DKIM-Signature: v=1; a=rsa-sha256; s=dev2026r;\r\n\td=example.com; c=relaxed/relaxed; b=abc\r\n"),
            "d=example.com s=dev2026r a=rsa-sha256"
        );
    }

    #[test]
    fn a_waiting_recipient_says_what_it_waits_for() {
        let mut h = ClosedHost {
            host: "127.0.0.1:25".into(),
            name: "127.0.0.1".into(),
            since: 1_800_000_000 + 12 * 3600 + 67,
            reason: "connect: Connection refused (os error 111)".into(),
            failures: 1,
            probe_at: 1_800_000_000 + 12 * 3600 + 72,
            probing: false,
            destinations: vec!["127.0.0.1:25".into()],
        };
        // 1_800_000_000 is 08:00:00 UTC.
        assert_eq!(
            waiting_line(&h),
            "waiting for 127.0.0.1:25, closed since 20:01:07 after: connect: Connection refused (os error 111); probe at 20:01:12"
        );
        h.name = "mx.example.net".into();
        h.probing = true;
        assert!(
            waiting_line(&h).starts_with("waiting for mx.example.net [127.0.0.1:25], "),
            "{}",
            waiting_line(&h)
        );
        assert!(waiting_line(&h).ends_with("; probe under way"));
    }

    #[test]
    fn only_a_relay_daemon_is_signalled() {
        assert!(is_relay_command_line(
            b"/usr/local/bin/dkim-relay\0serve\0-c\0/etc/x.yaml\0"
        ));
        assert!(is_relay_command_line(b"dkim-relay\0serve\0"));
        assert!(!is_relay_command_line(b"dkim-relay\0queue\0list\0serve\0"));
        assert!(!is_relay_command_line(
            b"/target/debug/deps/dkim_relay-0f3a\0serve\0"
        ));
        assert!(!is_relay_command_line(b"/usr/bin/python3\0serve\0"));
    }

    #[test]
    fn no_daemon_means_no_signal() {
        let dir = tempfile::tempdir().unwrap();
        assert!(wake_daemon(dir.path()).contains("not running"));
        // A pid file naming a process that is not a relay (this test binary) is not signalled.
        std::fs::write(
            dir.path().join(PID_FILE),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        assert!(wake_daemon(dir.path()).contains("not running"));
    }
}

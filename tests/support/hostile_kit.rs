//! Helpers for the hostile-client tests: a relay that delivers to a receiving sink, a relay
//! with a config edited beyond what `Relay::start`'s `extra` can add (listeners, clients),
//! clients bound to chosen loopback source addresses, and checks on what came out.
#![allow(dead_code)]

use crate::relay::{self, Relay};
use crate::smtp_client::Client;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

/// DNS pointed at a closed loopback port and the DNS doctor off: these tests never need DNS,
/// and the system resolver is not on loopback.
pub const NO_DNS: &str = "dns:\n  nameservers: [\"127.0.0.1:9\"]\n  check_interval: 0s\n";

/// Everything goes to `sink` as the relay host, in clear text. `limits` is a YAML block body
/// (indented two spaces) or empty.
pub fn to_sink(sink_port: u16, limits: &str) -> String {
    let limits = if limits.is_empty() {
        String::new()
    } else {
        format!("limits:\n{limits}")
    };
    format!(
        "delivery:\n  mode: relay_host\n  retry: [1s]\n  connect_timeout: 5s\n  command_timeout: 10s\n  relay_host:\n    address: \"127.0.0.1:{sink_port}\"\n    tls: none\n{NO_DNS}{limits}"
    )
}

/// A relay delivering into `relay.outbox()` (an absolute path: a relative one would be taken
/// from the test's working directory), with `limits` as in `to_sink` and `more` appended.
pub fn start_outbox(limits: &str, more: &str) -> Relay {
    start_outbox_edited(limits, more, |yaml, _| yaml)
}

/// `start_outbox`, with the config text also changed by `edit(yaml, relay_dir)`: for
/// listeners and clients, which `Relay::start`'s `extra` cannot add (it already writes those
/// sections). The relay is started, stopped, given the edited config and started again, as
/// its temporary directory is only known once it exists.
pub fn start_outbox_edited(
    limits: &str,
    more: &str,
    edit: impl FnOnce(String, &std::path::Path) -> String,
) -> Relay {
    const LATER: &str = "/nonexistent/outbox-set-below";
    let limits = if limits.is_empty() {
        String::new()
    } else {
        format!("limits:\n{limits}")
    };
    let extra =
        format!("delivery:\n  mode: directory\n  directory: {LATER}\n{NO_DNS}{limits}{more}");
    let mut relay = Relay::start(&extra);
    relay.kill9();
    let yaml = std::fs::read_to_string(&relay.config).expect("read config");
    let outbox = relay.outbox().display().to_string();
    let yaml = edit(yaml.replace(LATER, &outbox), relay.dir.path());
    std::fs::write(&relay.config, yaml).expect("write config");
    relay.spawn();
    relay
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.0/8 is all ours).
pub async fn tcp_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from, 0))
        .expect("bind source address");
    socket.connect(to).await.expect("connect")
}

pub async fn client_from(from: &str, to: SocketAddr) -> Client {
    Client::from_stream(tcp_from(from.parse().expect("ip"), to).await)
}

/// Connect, read the greeting, EHLO, AUTH PLAIN as `app`.
pub async fn authed(to: SocketAddr) -> Client {
    let mut c = Client::connect(to).await;
    assert_eq!(c.read_reply().await.code, 220);
    assert_eq!(c.cmd("EHLO client.test").await.code, 250);
    let r = c.auth_plain("app", relay::PASSWORD).await;
    assert_eq!(r.code, 235, "{r:?}");
    c
}

/// The reply codes in a transcript, in order (continuation lines skipped).
pub fn codes(transcript: &str) -> Vec<u16> {
    transcript
        .split("\r\n")
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .filter_map(|l| l.get(..3).and_then(|c| c.parse().ok()))
        .collect()
}

/// Does `b` hold a CR not followed by LF, or an LF not preceded by CR?
pub fn has_bare_newline(b: &[u8]) -> bool {
    b.iter().enumerate().any(|(i, &c)| {
        (c == b'\n' && (i == 0 || b[i - 1] != b'\r'))
            || (c == b'\r' && b.get(i + 1) != Some(&b'\n'))
    })
}

/// The `.eml` files in the outbox, waiting up to `timeout` for `n` of them.
pub async fn outbox_files(relay: &Relay, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
    let start = std::time::Instant::now();
    loop {
        let files: Vec<Vec<u8>> = std::fs::read_dir(relay.outbox())
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .filter_map(|e| std::fs::read(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        if files.len() >= n || start.elapsed() > timeout {
            return files;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The body of a message: everything after the first blank line.
pub fn body_of(message: &[u8]) -> &[u8] {
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => &message[p + 4..],
        None => b"",
    }
}

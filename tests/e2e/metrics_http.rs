//! The operations endpoint over real TCP on loopback, spoken to with raw HTTP/1.1 bytes.
//!
//! Set `DKIM_RELAY_SCRAPE_OUT=FILE` to save a real `/metrics` scrape (with every series
//! populated) for `.ci/promtool-check.sh FILE`.

use dkim_relay::metrics::{
    serve, Algorithm, AuthMechanism, DeliveryResult, Direction, Metrics, Readiness, RejectReason,
    CONTENT_TYPE,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::new());
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(serve(
        listener,
        Arc::clone(&metrics),
        Arc::clone(&readiness),
        rx,
    ));
    Server {
        addr,
        metrics,
        readiness,
        stop,
        task,
    }
}

struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// One request on a fresh connection (`Connection: close`), the whole reply read to EOF.
async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("reply within 10 s")
        .unwrap();
    parse(&String::from_utf8(raw).unwrap())
}

fn parse(raw: &str) -> Reply {
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete reply");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

#[tokio::test]
async fn healthz_is_ok_whatever_the_readiness() {
    let srv = start().await;
    let r = request(srv.addr, "GET", "/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok\n");
}

#[tokio::test]
async fn metrics_exports_every_metric_with_help() {
    let srv = start().await;
    let m = &srv.metrics;
    // Populate every family, as a running relay would after a while.
    m.init_config_labels(
        ["[::]:587", "/run/dkim-relay/submit.sock"],
        [
            ("example.com", Algorithm::RsaSha256),
            ("example.com", Algorithm::Ed25519Sha256),
        ],
    );
    m.connection("[::]:587");
    m.sessions_active.inc();
    m.auth_failure(AuthMechanism::Plain);
    m.messages_received_total.inc_by(3);
    m.rejected(RejectReason::HeaderPolicy);
    m.signed("example.com", Algorithm::RsaSha256);
    m.signed("example.com", Algorithm::Ed25519Sha256);
    m.signing_seconds.observe(0.000_31);
    m.message_size_bytes.observe(2345.0);
    m.deliveries(DeliveryResult::Delivered, 2);
    m.delivery_seconds.observe(0.4);
    m.queue_messages.set(1);
    m.queue_oldest_age_seconds.set(42.0);
    m.tls_failure(Direction::Inbound);
    m.dns_failures_total.inc();
    m.set_dns_checks(
        ["dkim:s1", "spf", "dmarc"]
            .map(|c| ("example.com".into(), c.into(), i64::from(c != "dmarc"))),
    );
    m.self_verify_failures_total.inc();
    m.config_reload(true);

    let r = request(srv.addr, "GET", "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.head.contains(&format!(
            "content-type: {}",
            CONTENT_TYPE.to_ascii_lowercase()
        )),
        "{}",
        r.head
    );
    // The endpoint serves the registry whole (which families exist is the unit tests' job).
    let help = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("# HELP "))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(help(&r.body), help(&srv.metrics.render()));
    assert!(r.body.contains(
        r#"dkim_relay_messages_signed_total{algorithm="ed25519-sha256",domain="example.com"} 1"#
    ));
    assert!(r
        .body
        .contains(r#"dkim_relay_dns_check_ok{check="dmarc",domain="example.com"} 0"#));
    if let Some(out) = std::env::var_os("DKIM_RELAY_SCRAPE_OUT") {
        std::fs::write(out, &r.body).unwrap();
    }

    // HEAD: same headers, no body.
    let r = request(srv.addr, "HEAD", "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "");
}

#[tokio::test]
async fn readyz_follows_config_listeners_and_spool() {
    let srv = start().await;
    let spool = tempfile::tempdir().unwrap();

    let r = request(srv.addr, "GET", "/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "not ready: configuration not loaded\n");

    srv.readiness.set_config_loaded(true);
    srv.readiness.set_spool_dir(spool.path().to_path_buf());
    let r = request(srv.addr, "GET", "/readyz").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "not ready: listeners not bound\n");

    srv.readiness.set_listeners_bound(true);
    let r = request(srv.addr, "GET", "/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"));
    // The probe cleans up after itself.
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);

    srv.readiness.set_listeners_bound(false);
    assert_eq!(request(srv.addr, "GET", "/readyz").await.status, 503);
}

/// An unwritable spool makes /readyz fail. The tests run as root, where `chmod 0500` does not
/// stop writes, so the spool path is made unusable in ways root cannot bypass: a regular file
/// where the directory should be (ENOTDIR), and a directory that does not exist (ENOENT).
#[tokio::test]
async fn readyz_fails_when_spool_is_not_writable() {
    let srv = start().await;
    srv.readiness.set_config_loaded(true);
    srv.readiness.set_listeners_bound(true);
    let tmp = tempfile::tempdir().unwrap();

    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    srv.readiness.set_spool_dir(file.clone());
    let r = request(srv.addr, "GET", "/readyz").await;
    assert_eq!(r.status, 503);
    assert!(
        r.body.starts_with(&format!(
            "not ready: spool {} not writable: ",
            file.display()
        )),
        "{}",
        r.body
    );
    assert_eq!(r.body.lines().count(), 1);

    srv.readiness.set_spool_dir(tmp.path().join("missing"));
    let r = request(srv.addr, "GET", "/readyz").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("not writable"), "{}", r.body);

    srv.readiness.set_spool_dir(tmp.path().to_path_buf());
    assert_eq!(request(srv.addr, "GET", "/readyz").await.status, 200);
}

#[tokio::test]
async fn unknown_path_is_404_and_other_methods_405() {
    let srv = start().await;
    assert_eq!(request(srv.addr, "GET", "/").await.status, 404);
    assert_eq!(request(srv.addr, "GET", "/metrics/x").await.status, 404);
    let r = request(srv.addr, "POST", "/metrics").await;
    assert_eq!(r.status, 405);
    assert!(r.head.contains("allow: get, head"), "{}", r.head);
    assert_eq!(request(srv.addr, "DELETE", "/healthz").await.status, 405);
}

#[tokio::test]
async fn keep_alive_serves_several_requests() {
    let srv = start().await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 2, "{raw}");
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let srv = start().await;
    assert_eq!(request(srv.addr, "GET", "/healthz").await.status, 200);
    // An idle keep-alive connection must not hold the shutdown up.
    let mut idle = TcpStream::connect(srv.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let _ = idle.read(&mut buf).await.unwrap();

    srv.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), srv.task)
        .await
        .expect("serve returns promptly after shutdown")
        .unwrap();
    assert!(TcpStream::connect(srv.addr).await.is_err());
    // The idle connection was closed.
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test]
async fn shutdown_when_sender_dropped() {
    let srv = start().await;
    drop(srv.stop);
    tokio::time::timeout(Duration::from_secs(5), srv.task)
        .await
        .expect("serve returns when the shutdown sender is gone")
        .unwrap();
}

#[tokio::test]
async fn slow_client_is_cut_off() {
    let srv = start().await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    // Half a request line, then nothing: the header read timeout (5 s) closes the connection.
    s.write_all(b"GET /heal").await.unwrap();
    let mut buf = Vec::new();
    let started = std::time::Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf))
        .await
        .expect("connection closed by the server");
    assert!(started.elapsed() < Duration::from_secs(10));
}

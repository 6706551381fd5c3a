//! `dkim-relay bounce-check --listen ...`: the Postfix policy daemon. It listens on unix
//! sockets and/or TCP addresses, answers every request of a connection (`policy`), reloads
//! the configuration and secrets on SIGHUP (an invalid new configuration is refused and the old
//! one stays), stops on SIGTERM/SIGINT, and serves its own `/metrics` and `/healthz` when
//! given `--metrics`.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] connections at once (more are closed at once, and
//! Postfix answers that client with its `default_action`), requests and lines bounded by
//! `policy`, an idle connection closed after [`IDLE_TIMEOUT`], a started request abandoned after
//! [`REQUEST_TIMEOUT`].

use super::policy::{self, Request};
use super::{Tagging, Verdict};
use crate::metrics::bounce_check::{BounceCheckMetrics, BounceVerdict};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Connections served at once (Postfix holds one per smtpd process: 100 by default).
pub const MAX_CONNECTIONS: usize = 512;
/// Postfix closes an idle policy connection after `smtpd_policy_service_max_idle` (300 s); we
/// close ours a little later, so the client is normally the one that does.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(330);
/// Once the first line of a request arrived, the rest must follow within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// After SIGTERM, how long connections get to finish the request they are in.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Where the daemon listens, in Postfix's notation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:/path` (or a bare absolute path).
    Unix(PathBuf),
    /// `inet:127.0.0.1:10040` (or `127.0.0.1:10040`, `inet:[::1]:10040`, `inet:localhost:10040`).
    Tcp(SocketAddr),
}

impl Endpoint {
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(s)));
        }
        let addr = s.strip_prefix("inet:").unwrap_or(s);
        let addr = match addr.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => addr.to_string(),
        };
        addr.parse::<SocketAddr>().map(Endpoint::Tcp).map_err(|_| {
            format!("'{s}' is neither unix:/path nor inet:ip:port (e.g. inet:127.0.0.1:10040)")
        })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "inet:{a}"),
        }
    }
}

/// How the daemon was asked to run.
pub struct Options {
    pub config: PathBuf,
    /// Reads `config` again on SIGHUP (the same loading as at start).
    pub reload: fn(&Path) -> Result<Tagging, String>,
    pub listen: Vec<Endpoint>,
    /// File mode of the unix sockets.
    pub socket_mode: u32,
    /// Where to serve `/metrics` and `/healthz`.
    pub metrics: Option<SocketAddr>,
}

enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// Run until SIGTERM/SIGINT. `Err` when it cannot start (configuration, a socket).
pub async fn run(opts: Options, tagging: Tagging) -> Result<(), String> {
    let metrics = Arc::new(BounceCheckMetrics::new());
    let live = Arc::new(ArcSwap::from_pointee(tagging));
    let mut bound = Vec::new();
    for e in &opts.listen {
        bound.push(bind(e, opts.socket_mode)?);
    }
    let metrics_listener = match opts.metrics {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| format!("metrics listener {addr}: {e}"))?,
        ),
        None => None,
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = JoinSet::new();
    let mut sockets = Vec::new();
    for (b, e) in bound.into_iter().zip(&opts.listen) {
        tracing::info!(listener = %e, "bounce-check listening");
        let (live, metrics, permits, shutdown) = (
            live.clone(),
            metrics.clone(),
            permits.clone(),
            shutdown_rx.clone(),
        );
        if let Bound::Unix(_, path) = &b {
            sockets.push(path.clone());
        }
        tasks.spawn(accept_loop(b, live, metrics, permits, shutdown));
    }
    if let Some(l) = metrics_listener {
        tasks.spawn(serve_metrics(l, metrics.clone(), shutdown_rx.clone()));
    }
    {
        let t = live.load();
        tracing::info!(
            domains = ?t.domains().collect::<Vec<_>>(),
            max_age_days = t.max_age_days(),
            version = env!("CARGO_PKG_VERSION"),
            "bounce-check started"
        );
    }

    use tokio::signal::unix::{signal, SignalKind};
    let sig = |k| signal(k).map_err(|e| format!("cannot handle signals: {e}"));
    let (mut hup, mut term, mut int) = (
        sig(SignalKind::hangup())?,
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
    );
    loop {
        tokio::select! {
            _ = hup.recv() => match (opts.reload)(&opts.config) {
                Ok(t) => {
                    live.store(Arc::new(t));
                    metrics.config_reload(true);
                    tracing::info!("configuration reloaded");
                }
                Err(e) => {
                    metrics.config_reload(false);
                    for line in e.lines() {
                        tracing::error!(error = %line, "reload refused; keeping the running configuration");
                    }
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("bounce-check stopping");
    let _ = shutdown_tx.send(true);
    if tokio::time::timeout(SHUTDOWN_GRACE * 2, async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tasks.shutdown().await;
    }
    for path in sockets {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

fn bind(e: &Endpoint, mode: u32) -> Result<Bound, String> {
    match e {
        Endpoint::Tcp(addr) => {
            let l = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(TcpListener::from_std)
                .map_err(|err| format!("cannot listen on {e}: {err}"))?;
            Ok(Bound::Tcp(l))
        }
        Endpoint::Unix(path) => {
            // A socket left by a crash would make bind fail; anything else is not ours.
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                use std::os::unix::fs::FileTypeExt;
                if !meta.file_type().is_socket() {
                    return Err(format!("{} exists and is not a socket", path.display()));
                }
                let _ = std::fs::remove_file(path);
            }
            let l =
                UnixListener::bind(path).map_err(|err| format!("cannot listen on {e}: {err}"))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|err| format!("cannot set the mode of {}: {err}", path.display()))?;
            Ok(Bound::Unix(l, path.clone()))
        }
    }
}

async fn accept_loop(
    bound: Bound,
    live: Arc<ArcSwap<Tagging>>,
    metrics: Arc<BounceCheckMetrics>,
    permits: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted: std::io::Result<Box<dyn Stream>> = tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            a = accept(&bound) => a,
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "bounce-check: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = MAX_CONNECTIONS,
                "bounce-check: too many connections; closing a new one"
            );
            continue;
        };
        let (live, metrics, shutdown) = (live.clone(), metrics.clone(), shutdown.clone());
        conns.spawn(async move {
            serve_connection(stream, &live, &metrics, shutdown).await;
            drop(permit);
        });
    }
    drop(bound);
    if tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        conns.shutdown().await;
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn accept(bound: &Bound) -> std::io::Result<Box<dyn Stream>> {
    Ok(match bound {
        Bound::Tcp(l) => Box::new(l.accept().await?.0),
        Bound::Unix(l, _) => Box::new(l.accept().await?.0),
    })
}

/// Answer the requests of one connection until the client closes it, it idles out, a request
/// is broken, or shutdown (between requests).
async fn serve_connection(
    stream: Box<dyn Stream>,
    live: &ArcSwap<Tagging>,
    metrics: &BounceCheckMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = BufReader::new(reader);
    let mut request = Request::default();
    let mut line = Vec::with_capacity(256);
    let mut started: Option<tokio::time::Instant> = None;
    loop {
        line.clear();
        let deadline = match started {
            Some(t) => t + REQUEST_TIMEOUT,
            None => tokio::time::Instant::now() + IDLE_TIMEOUT,
        };
        // One byte more than a line may have (plus its newline): enough to tell "too long".
        let mut limited = (&mut reader).take(policy::MAX_LINE as u64 + 3);
        let read = limited.read_until(b'\n', &mut line);
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, read) => r,
            _ = shutdown.changed(), if started.is_none() => return,
        };
        match read {
            Err(_) => {
                tracing::debug!("policy connection idle or too slow; closing it");
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "policy connection broke");
                return;
            }
            Ok(Ok(0)) => return,
            Ok(Ok(_)) => {}
        }
        let Some(content) = line.strip_suffix(b"\n") else {
            if line.len() > policy::MAX_LINE {
                tracing::warn!(error = %policy::ProtocolError::LineTooLong, "broken policy request; closing the connection");
            }
            // Otherwise the client closed in the middle of a line.
            return;
        };
        started.get_or_insert_with(tokio::time::Instant::now);
        match request.push_line(content) {
            Err(e) => {
                tracing::warn!(error = %e, "broken policy request; closing the connection");
                return;
            }
            Ok(false) => continue,
            Ok(true) if request.is_empty() => {
                // A stray empty line between requests.
                started = None;
                continue;
            }
            Ok(true) => {}
        }
        let now = super::unix_now();
        let answered = policy::answer(&live.load(), &request, now);
        let (verdict, action) = match answered {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "broken policy request; closing the connection");
                return;
            }
        };
        metrics.checked(metric(verdict));
        let recipient = request.get("recipient").unwrap_or("");
        let client = request.get("client_address").unwrap_or("");
        if verdict.is_backscatter() {
            tracing::info!(%client, %recipient, reason = verdict.describe(), "backscatter refused");
        } else {
            tracing::debug!(%client, %recipient, ?verdict, "policy request answered DUNNO");
        }
        if writer.write_all(action.as_bytes()).await.is_err() || writer.flush().await.is_err() {
            return;
        }
        request = Request::default();
        started = None;
    }
}

/// `/metrics` (this process's own set) and `/healthz`, HTTP/1.1, each connection bounded in
/// time and number as the relay's endpoint is.
async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<BounceCheckMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    use crate::metrics::http::{CONNECTION_TIMEOUT, HEADER_READ_TIMEOUT, MAX_CONNECTIONS};
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut conns = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if conns.len() >= MAX_CONNECTIONS {
            continue;
        }
        let metrics = metrics.clone();
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let body = metrics_response(&req, &metrics);
                async move { Ok::<_, std::convert::Infallible>(body) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
        });
    }
    conns.shutdown().await;
}

fn metrics_response<B>(
    req: &hyper::Request<B>,
    metrics: &BounceCheckMetrics,
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
    use hyper::{header, Method, StatusCode};
    let (status, content_type, body) =
        if req.method() != Method::GET && req.method() != Method::HEAD {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "method not allowed\n".to_string(),
            )
        } else {
            match req.uri().path() {
                "/metrics" => (
                    StatusCode::OK,
                    crate::metrics::CONTENT_TYPE,
                    metrics.render(),
                ),
                "/healthz" => (
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    "ok\n".to_string(),
                ),
                _ => (
                    StatusCode::NOT_FOUND,
                    "text/plain; charset=utf-8",
                    "not found\n".to_string(),
                ),
            }
        };
    let mut resp = hyper::Response::new(http_body_util::Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

fn metric(v: Verdict) -> BounceVerdict {
    match v {
        Verdict::NotChecked => BounceVerdict::NotChecked,
        Verdict::TrustedSource => BounceVerdict::TrustedSource,
        Verdict::Valid => BounceVerdict::Valid,
        Verdict::Untagged => BounceVerdict::Untagged,
        Verdict::Expired => BounceVerdict::Expired,
        Verdict::BadTag => BounceVerdict::BadTag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_in_postfix_notation() {
        assert_eq!(
            Endpoint::parse("inet:127.0.0.1:10040"),
            Ok(Endpoint::Tcp("127.0.0.1:10040".parse().unwrap()))
        );
        assert_eq!(
            Endpoint::parse("localhost:10040"),
            Ok(Endpoint::Tcp("127.0.0.1:10040".parse().unwrap()))
        );
        assert_eq!(
            Endpoint::parse("inet:[::1]:10040"),
            Ok(Endpoint::Tcp("[::1]:10040".parse().unwrap()))
        );
        assert_eq!(
            Endpoint::parse("unix:/run/x.sock"),
            Ok(Endpoint::Unix("/run/x.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("/run/x.sock"),
            Ok(Endpoint::Unix("/run/x.sock".into()))
        );
        assert!(Endpoint::parse("unix:").is_err());
        assert!(Endpoint::parse("inet:example.com:25").is_err());
        assert!(Endpoint::parse("10040").is_err());
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.sock");
        drop(bind(&Endpoint::Unix(path.clone()), 0o660).unwrap());
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        drop(bind(&Endpoint::Unix(path.clone()), 0o660).unwrap());
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let e = bind(&Endpoint::Unix(file), 0o660).err().unwrap();
        assert!(e.contains("is not a socket"), "{e}");
    }
}

//! The operations endpoint: `GET /metrics` (text exposition format), `GET /healthz` (the
//! process is alive), `GET /readyz` (configuration loaded, listeners bound, spool writable and
//! not short of space) and, when the relay provides one, `GET /status` (a [`StatusPage`] for a
//! person; `?format=json` for a program). HTTP/1.1 only, on hyper; `HEAD` is accepted wherever
//! `GET` is.
//!
//! Every connection is bounded in time ([`CONNECTION_TIMEOUT`]) and in number
//! ([`MAX_CONNECTIONS`]), so a slow or hostile client cannot hold tasks forever.

use super::{Metrics, CONTENT_TYPE};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE as CT};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

type Body = http_body_util::Full<Bytes>;

/// Longest a single connection may stay open (keep-alive included).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a client may take to send a request's header section.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed right after accept.
pub const MAX_CONNECTIONS: usize = 64;
/// After shutdown, how long open connections get to finish their current request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What `/readyz` reports. The relay sets the flags as it starts (and on reload); each `/readyz`
/// also runs the checks added with [`Readiness::add_check`] (the spool's free space) and probes
/// the spool directory for writability.
#[derive(Debug, Default)]
pub struct Readiness {
    config_loaded: AtomicBool,
    listeners_bound: AtomicBool,
    spool_dir: Mutex<Option<PathBuf>>,
    probe_seq: AtomicU64,
    checks: Checks,
}

/// A readiness condition owned elsewhere: `Err(reason)` while not met. Called on the blocking
/// thread pool.
pub type ReadyCheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Default)]
struct Checks(Mutex<Vec<Arc<ReadyCheck>>>);

impl std::fmt::Debug for Checks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map_or(0, |c| c.len());
        write!(f, "{n} check(s)")
    }
}

impl Readiness {
    /// Not ready: no config, no listeners, no spool directory yet.
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// The configuration was loaded and validated.
    pub fn set_config_loaded(&self, v: bool) {
        self.config_loaded.store(v, Ordering::Release);
    }

    /// Every SMTP listener is bound and accepting (false again while shutting down).
    pub fn set_listeners_bound(&self, v: bool) {
        self.listeners_bound.store(v, Ordering::Release);
    }

    /// The spool directory to probe (set at start and on reload).
    pub fn set_spool_dir(&self, dir: PathBuf) {
        *self.spool_dir.lock().unwrap_or_else(|p| p.into_inner()) = Some(dir);
    }

    /// One more condition for `/readyz` (e.g. the spool's free space above
    /// `limits.spool_min_free`); it is asked at every `/readyz`, so it recovers by itself.
    pub fn add_check(&self, check: ReadyCheck) {
        self.checks
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(check));
    }

    fn spool_dir(&self) -> Option<PathBuf> {
        self.spool_dir
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `Ok(())` when ready, else a one-line reason. Blocks on file I/O (the spool probe): call it
    /// off the async threads, as `/readyz` does.
    pub fn check_blocking(&self) -> Result<(), String> {
        if !self.config_loaded.load(Ordering::Acquire) {
            return Err("configuration not loaded".into());
        }
        if !self.listeners_bound.load(Ordering::Acquire) {
            return Err("listeners not bound".into());
        }
        let checks: Vec<Arc<ReadyCheck>> = self
            .checks
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for check in checks {
            check()?;
        }
        let Some(dir) = self.spool_dir() else {
            return Err("spool directory not set".into());
        };
        let seq = self.probe_seq.fetch_add(1, Ordering::Relaxed);
        probe_writable(&dir, seq).map_err(|e| format!("spool {} not writable: {e}", dir.display()))
    }

    /// [`Readiness::check_blocking`] on the blocking thread pool.
    pub async fn check(self: &Arc<Self>) -> Result<(), String> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.check_blocking())
            .await
            .unwrap_or_else(|e| Err(format!("readiness check failed: {e}")))
    }
}

/// Create, write, fsync and remove a small file in `dir`: proves the spool can take a message
/// now (not full, not read-only, still there). The name starts with a dot and ends in `.probe`
/// so a spool scan can skip a leftover from a crash between create and remove; `seq` keeps
/// concurrent probes apart.
fn probe_writable(dir: &std::path::Path, seq: u64) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(format!(".readyz-{}-{seq}.probe", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        f.write_all(b"readyz\n")?;
        f.sync_all()
    })();
    // Remove even when the write or fsync failed; a missing file here is not an error.
    let removed = std::fs::remove_file(&path);
    result?;
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The `/status` page, put together elsewhere (this module imports nothing else of ours).
pub trait StatusPage: Send + Sync + 'static {
    /// The page, as HTML or (`json`) as JSON. May block on file I/O: it is called on the
    /// blocking thread pool.
    fn render(&self, json: bool) -> Page;
}

/// A rendered page: its content type, extra response header fields (a Content-Security-Policy,
/// say) and body.
pub struct Page {
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Serve `/metrics`, `/healthz` and `/readyz` on `listener` until `*shutdown.borrow()` is true
/// (or the sender is dropped). Open connections then get a short grace period to finish.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: watch::Receiver<bool>,
) {
    serve_with_status(listener, metrics, readiness, None, shutdown).await;
}

/// [`serve`], plus `/status` from `status`.
pub async fn serve_with_status(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    status: Option<Arc<dyn StatusPage>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if conns.len() >= MAX_CONNECTIONS {
                        tracing::warn!(%peer, "metrics endpoint: too many connections, closing");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve_connection(
                        stream,
                        Arc::clone(&metrics),
                        Arc::clone(&readiness),
                        status.clone(),
                        shutdown.clone(),
                    ));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    // Connections saw the shutdown too and are finishing their current request.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        conns.shutdown().await;
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    status: Option<Arc<dyn StatusPage>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = service_fn(move |req| {
        let metrics = Arc::clone(&metrics);
        let readiness = Arc::clone(&readiness);
        let status = status.clone();
        async move { Ok::<_, Infallible>(route(req, &metrics, &readiness, status).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let deadline = tokio::time::sleep(CONNECTION_TIMEOUT);
    tokio::pin!(deadline);
    let mut shutting_down = *shutdown.borrow();
    if shutting_down {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "metrics endpoint: connection error");
                }
                return;
            }
            () = &mut deadline => {
                tracing::debug!("metrics endpoint: connection timed out");
                return;
            }
            changed = shutdown.changed(), if !shutting_down => {
                if changed.is_err() || *shutdown.borrow() {
                    shutting_down = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

async fn route(
    req: Request<Incoming>,
    metrics: &Metrics,
    readiness: &Arc<Readiness>,
    status: Option<Arc<dyn StatusPage>>,
) -> Response<Body> {
    let path = req.uri().path();
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz")
        || (path == "/status" && status.is_some());
    if !known {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match path {
        "/metrics" => {
            let mut resp = Response::new(Body::new(Bytes::from(metrics.render())));
            resp.headers_mut()
                .insert(CT, HeaderValue::from_static(CONTENT_TYPE));
            resp
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/status" => match status {
            Some(page) => status_page(page, wants_json(req.uri().query())).await,
            None => text(StatusCode::NOT_FOUND, "not found\n"),
        },
        _ => match readiness.check().await {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(reason) => {
                tracing::debug!(%reason, "not ready");
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {reason}\n"),
                )
            }
        },
    }
}

/// `?format=json` (among other parameters, in any order).
fn wants_json(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|kv| kv == "format=json"))
}

async fn status_page(page: Arc<dyn StatusPage>, json: bool) -> Response<Body> {
    let rendered = match tokio::task::spawn_blocking(move || page.render(json)).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "status page failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "status page failed\n");
        }
    };
    let mut resp = Response::new(Body::new(Bytes::from(rendered.body)));
    let headers = resp.headers_mut();
    headers.insert(CT, HeaderValue::from_static(rendered.content_type));
    for (name, value) in rendered.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    resp
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Body::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CT, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

//! A real HTTPS server for tests (hyper over rustls) on port 443 of an address of its own in
//! 127.0.0.0/8, since an MTA-STS policy URL has no port: the test's DNS server maps
//! `mta-sts.<domain>` to that address, so parallel tests never share a socket. It serves the
//! answers set per path (status, media type, body), records every request, and can be taken
//! down and brought back on the same address.
//!
//! Binding port 443 needs root (or CAP_NET_BIND_SERVICE), as the test machines and CI have.
//! It runs on its own thread and runtime (tests that run the real binary block the test's).
//! Declared once in tests/e2e/main.rs; use it as `crate::https_server`.
#![allow(dead_code)]

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One request as the server got it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub host: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Clone)]
struct Answer {
    status: u16,
    media_type: String,
    body: Vec<u8>,
    location: Option<String>,
}

#[derive(Default)]
struct State {
    answers: HashMap<String, Answer>,
    seen: Vec<Seen>,
}

pub struct HttpsServer {
    pub addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<Mutex<State>>,
    stop: Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            std::thread::JoinHandle<()>,
        )>,
    >,
}

/// Addresses handed out in this process (the pid spreads processes apart).
static NEXT: AtomicUsize = AtomicUsize::new(0);

fn candidate(i: usize) -> IpAddr {
    let n = (std::process::id() as usize * 7 + i) % 60_000;
    IpAddr::V4(Ipv4Addr::new(
        127,
        1 + (n / 250) as u8 % 200,
        0,
        1 + (n % 250) as u8,
    ))
}

impl HttpsServer {
    /// Start on port 443 of an unused loopback address, presenting `tls`.
    pub fn start(tls: Arc<rustls::ServerConfig>) -> HttpsServer {
        let state = Arc::new(Mutex::new(State::default()));
        for _ in 0..200 {
            let ip = candidate(NEXT.fetch_add(1, Ordering::Relaxed));
            let addr = SocketAddr::new(ip, 443);
            let Ok(listener) = std::net::TcpListener::bind(addr) else {
                continue;
            };
            let server = HttpsServer {
                addr,
                tls,
                state,
                stop: Mutex::new(None),
            };
            server.serve(listener);
            return server;
        }
        panic!("no free 127.x.0.y:443 to bind (is the test running as root?)");
    }

    /// Answer `path` with `status`, `media_type` and `body` from now on.
    pub fn set(&self, path: &str, status: u16, media_type: &str, body: &[u8]) {
        self.state.lock().unwrap().answers.insert(
            path.to_string(),
            Answer {
                status,
                media_type: media_type.to_string(),
                body: body.to_vec(),
                location: None,
            },
        );
    }

    /// Answer `path` with a redirect to `location`.
    pub fn redirect(&self, path: &str, location: &str) {
        self.state.lock().unwrap().answers.insert(
            path.to_string(),
            Answer {
                status: 301,
                media_type: "text/plain".into(),
                body: Vec::new(),
                location: Some(location.to_string()),
            },
        );
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Requests for `path` so far.
    pub fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }

    /// Stop listening: connections are refused until `start_again`.
    pub fn stop(&self) {
        if let Some((tx, thread)) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
            let _ = thread.join();
        }
    }

    /// Listen again on the same address.
    pub fn start_again(&self) {
        let listener = std::net::TcpListener::bind(self.addr).expect("rebind");
        self.serve(listener);
    }

    fn serve(&self, listener: std::net::TcpListener) {
        listener.set_nonblocking(true).expect("nonblocking");
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let tls = tokio_rustls::TlsAcceptor::from(self.tls.clone());
        let state = self.state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("https server runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let (tcp, _) = tokio::select! {
                        r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                        _ = &mut rx => return,
                    };
                    let tls = tls.clone();
                    let state = state.clone();
                    tokio::spawn(async move {
                        let Ok(stream) = tls.accept(tcp).await else {
                            return;
                        };
                        let service = hyper::service::service_fn(move |req| {
                            let state = state.clone();
                            async move { Ok::<_, hyper::Error>(answer(req, &state).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        *self.stop.lock().unwrap() = Some((tx, thread));
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    state: &Mutex<State>,
) -> hyper::Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let header = |name: hyper::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let host = header(hyper::header::HOST).unwrap_or_default();
    let content_type = header(hyper::header::CONTENT_TYPE);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let mut state = state.lock().unwrap();
    state.seen.push(Seen {
        method,
        path: path.clone(),
        host,
        content_type,
        body,
    });
    let a = state.answers.get(&path).cloned().unwrap_or(Answer {
        status: 404,
        media_type: "text/plain".into(),
        body: b"not found".to_vec(),
        location: None,
    });
    let mut builder = hyper::Response::builder()
        .status(a.status)
        .header(hyper::header::CONTENT_TYPE, a.media_type);
    if let Some(l) = a.location {
        builder = builder.header(hyper::header::LOCATION, l);
    }
    builder
        .body(Full::new(Bytes::from(a.body)))
        .expect("response")
}

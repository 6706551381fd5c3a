//! Listeners: bind the configured sockets, accept under the connection limits (overall and per
//! address), greet, and run a session per connection — with TLS first on implicit-TLS ports and
//! after STARTTLS on the others.

use super::policy::{network_identity, unix_identity};
use super::session::{Conn, Session};
use super::{Peer, Shared};
use crate::config::{ListenAddress, ListenerTls};
use crate::core::Core;
use crate::smtp::reply::Reply;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound socket, ready to accept.
pub enum Bound {
    Tcp {
        listener: TcpListener,
        tls: ListenerTls,
        name: String,
    },
    Unix {
        listener: UnixListener,
        name: String,
    },
}

impl Bound {
    pub fn name(&self) -> &str {
        match self {
            Bound::Tcp { name, .. } | Bound::Unix { name, .. } => name,
        }
    }
}

/// Bind every configured listener; errors name the listener.
pub fn bind(core: &Core) -> Result<Vec<Bound>, String> {
    let mut out = Vec::new();
    for l in &core.settings.listeners {
        let name = l.name();
        match &l.address {
            ListenAddress::Tcp(addr) => {
                let std_listener = std::net::TcpListener::bind(addr)
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                std_listener
                    .set_nonblocking(true)
                    .map_err(|e| format!("{addr}: {e}"))?;
                let listener =
                    TcpListener::from_std(std_listener).map_err(|e| format!("{addr}: {e}"))?;
                out.push(Bound::Tcp {
                    listener,
                    tls: l.tls,
                    name,
                });
            }
            ListenAddress::Unix(path) => {
                // A socket file left by a crash would make bind fail; a regular file is not ours.
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    use std::os::unix::fs::FileTypeExt;
                    if meta.file_type().is_socket() {
                        let _ = std::fs::remove_file(path);
                    } else {
                        return Err(format!("{} exists and is not a socket", path.display()));
                    }
                }
                if let Some(parent) = path.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                let listener = UnixListener::bind(path)
                    .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(l.unix_mode))
                    .map_err(|e| format!("cannot set mode of {}: {e}", path.display()))?;
                out.push(Bound::Unix { listener, name });
            }
        }
    }
    Ok(out)
}

/// Connection limits shared by all listeners.
pub struct Limits {
    pub overall: Arc<Semaphore>,
    /// The size of `overall`.
    pub max: usize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    pub per_ip_max: usize,
}

impl Limits {
    pub fn new(max: usize, per_ip_max: usize) -> Arc<Limits> {
        Arc::new(Limits {
            overall: Arc::new(Semaphore::new(max)),
            max,
            per_ip: Mutex::new(HashMap::new()),
            per_ip_max,
        })
    }

    fn take_ip(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut map = self.per_ip.lock().ok()?;
        let n = map.entry(ip).or_insert(0);
        if *n >= self.per_ip_max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            limits: self.clone(),
            ip,
        })
    }
}

/// One connection's place in the per-address count; released on drop.
struct IpSlot {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.limits.per_ip.lock() {
            if let Some(n) = map.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
    }
}

/// Accept on `bound` until shutdown.
pub async fn serve(
    bound: Bound,
    live: Arc<ArcSwap<Core>>,
    shared: Arc<Shared>,
    limits: Arc<Limits>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return;
                }
            }
            accepted = accept(&bound) => {
                let Some((conn, ip, uid)) = accepted else {
                    // Accept errors (EMFILE…): back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let permit = limits.overall.clone().try_acquire_owned().ok();
                let slot = match ip {
                    Some(ip) => limits.take_ip(ip).map(Some),
                    None => Some(None),
                };
                let (Some(permit), Some(slot)) = (permit, slot) else {
                    tokio::spawn(refuse(conn));
                    continue;
                };
                let tls = match &bound {
                    Bound::Tcp { tls, .. } => *tls,
                    Bound::Unix { .. } => ListenerTls::None,
                };
                shared.metrics.connection(bound.name());
                let core = live.load_full();
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                let per_ip_max = limits.per_ip_max;
                tokio::spawn(async move {
                    // With cluster.redis the address's connections are counted across every
                    // replica too (a lease, given back when the session ends).
                    let _lease = match (&shared.cluster, ip) {
                        (Some(cluster), Some(ip)) => match cluster.lease(ip, per_ip_max).await {
                            Some(lease) => Some(lease),
                            None => {
                                refuse(conn).await;
                                return;
                            }
                        },
                        _ => None,
                    };
                    shared.metrics.sessions_active.inc();
                    handle(conn, Peer { ip, uid }, tls, core, shared.clone(), shutdown, permit).await;
                    // The address's slot first: once the gauge says the session is gone, a
                    // new connection from that address must find its slot free.
                    drop(slot);
                    shared.metrics.sessions_active.dec();
                });
            }
        }
    }
}

/// A connection of either kind.
enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(bound: &Bound) -> Option<(Accepted, Option<IpAddr>, Option<u32>)> {
    match bound {
        Bound::Tcp { listener, .. } => {
            let (stream, addr) = listener.accept().await.ok()?;
            let _ = stream.set_nodelay(true);
            Some((Accepted::Tcp(stream), Some(addr.ip()), None))
        }
        Bound::Unix { listener, .. } => {
            let (stream, _) = listener.accept().await.ok()?;
            let uid = stream.peer_cred().ok().map(|c| c.uid());
            Some((Accepted::Unix(stream), None, uid))
        }
    }
}

async fn refuse(conn: Accepted) {
    let reply = Reply::new(421, "4.7.0", "Too many connections, try again later").to_bytes();
    let _ = match conn {
        Accepted::Tcp(mut s) => s.write_all(&reply).await,
        Accepted::Unix(mut s) => s.write_all(&reply).await,
    };
}

async fn handle(
    conn: Accepted,
    peer: Peer,
    tls: ListenerTls,
    core: Arc<Core>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let identity = match (peer.ip, peer.uid) {
        (Some(ip), _) => network_identity(&core.settings.clients, ip),
        (None, Some(uid)) => unix_identity(&core.settings.clients, uid),
        (None, None) => None,
    };
    let mut session = Session::new(&core, &shared, peer, tls, identity, shutdown);
    match conn {
        Accepted::Unix(stream) => {
            run_plain(&mut session, stream).await;
        }
        Accepted::Tcp(stream) if tls == ListenerTls::Implicit => {
            let Some(config) = core.tls.clone() else {
                return;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    session.tls = true;
                    run_plain(&mut session, tls_stream).await;
                }
                _ => {
                    shared
                        .metrics
                        .tls_failure(crate::metrics::Direction::Inbound);
                    tracing::debug!(peer = ?session.peer.ip, "TLS handshake failed");
                }
            }
        }
        Accepted::Tcp(stream) => {
            let Some(conn) = run_plain(&mut session, stream).await else {
                return;
            };
            let Some(config) = core.tls.clone() else {
                return;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(conn.stream)).await {
                Ok(Ok(tls_stream)) => {
                    session.reset_after_tls();
                    let _ = session.run(Conn::new(tls_stream)).await;
                }
                _ => {
                    shared
                        .metrics
                        .tls_failure(crate::metrics::Direction::Inbound);
                    tracing::debug!(peer = ?session.peer.ip, "STARTTLS handshake failed");
                }
            }
        }
    }
}

/// Greet and run a session; returns the connection if the client asked for STARTTLS.
async fn run_plain<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<'_>,
    stream: S,
) -> Option<Conn<S>> {
    let mut conn = Conn::new(stream);
    conn.reply(&Reply::new(
        220,
        "",
        format!("{} ESMTP dkim-relay", session.core.settings.hostname),
    ));
    session.run(conn).await
}

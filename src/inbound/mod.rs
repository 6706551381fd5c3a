//! Inbound SMTP: listeners (TCP with or without TLS, unix socket), the session state machine
//! with one file per command, authentication and sender policy, and the reception of a message
//! (header checks, fix-ups, signing, spooling) before the 250.
//! Must not import `outbound`, `queue` or `tools`: new messages are announced on a channel.

pub(crate) mod auth;
pub(crate) mod budget;
mod data;
mod ehlo;
mod fit;
pub(crate) mod hash_pool;
pub(crate) mod listener;
mod mail;
pub(crate) mod policy;
mod rcpt;
mod receive;
mod reencode;
mod refusal;
mod session;
#[cfg(test)]
mod session_tests;
mod shared_limits;
pub(crate) mod throttle;

/// The pure pieces of command handling, for the fuzz targets.
pub use session::{next_line, parse_command, MAX_COMMAND_LINE};

use crate::spool::{Committed, Spool};
use std::net::IpAddr;
use std::sync::Arc;

/// What lives for the whole process and is shared by all sessions.
pub struct Shared {
    pub spool: Spool,
    pub auth_throttle: throttle::AuthThrottle,
    pub rate_limiter: throttle::RateLimiter,
    /// Accepted messages are handed to the delivery side here (`spool::Committed`).
    pub queued: tokio::sync::mpsc::UnboundedSender<Committed>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Password checks, bounded by `limits.auth_hash_concurrency`.
    pub hash_pool: hash_pool::HashPool,
    /// What clients may hold in memory before spooling: `limits.buffer_memory`.
    pub buffer_budget: budget::BufferBudget,
    /// Limits shared with other replicas, when `cluster.redis` is set.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// Who is on the other end of the connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// None for unix-socket clients.
    pub ip: Option<IpAddr>,
    /// The peer's uid, on the unix listener.
    pub uid: Option<u32>,
}

impl Peer {
    pub fn is_loopback(&self) -> bool {
        self.ip.is_some_and(|ip| match ip {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        })
    }
}

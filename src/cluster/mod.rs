//! Limits shared by several replicas through Redis (or Valkey), when `cluster.redis` is set:
//! the per-client message rate, the per-address AUTH failure count, and per-address connection
//! leases. Each decision is one atomic Lua script ([`scripts`]) answered within the decision
//! budget (`cluster.timeout`); when Redis is down or slower than that, the decision says so
//! (`None`) and the caller applies `cluster.on_redis_down`. A health task pings Redis twice a
//! second, keeps `dkim_relay_cluster_redis_up` current, logs each change once, reconnects,
//! and renews this replica's connection leases.
//!
//! Imports `config` (its settings) and `metrics` only.

pub mod scripts;

use crate::config::{ClusterSettings, OnRedisDown};
use crate::metrics::{ClusterLimit, Metrics};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a connection lease lives without renewal: a replica that dies gives its
/// connections back to the count after this.
pub const LEASE_LIFETIME: Duration = Duration::from_secs(30);
/// How often the health task renews the leases (well within their lifetime).
const LEASE_RENEWAL: Duration = Duration::from_secs(10);
/// How often the health task pings Redis.
const HEALTH_INTERVAL: Duration = Duration::from_millis(500);
/// How long (re)connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The shared limits of this replica.
pub struct Cluster {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    up: AtomicBool,
    budget: Duration,
    on_down: OnRedisDown,
    metrics: Arc<Metrics>,
    /// This process's name in lease ids.
    replica: String,
    next_lease: AtomicU64,
    /// Live leases of this replica: id → address, renewed by the health task.
    leases: Mutex<HashMap<u64, IpAddr>>,
    rate: redis::Script,
    auth: redis::Script,
    take: redis::Script,
    renew: redis::Script,
}

/// A connection's place in its address's shared count; given back on drop.
pub struct Lease {
    cluster: Arc<Cluster>,
    id: u64,
    ip: IpAddr,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let gone = self
            .cluster
            .leases
            .lock()
            .map(|mut m| m.remove(&self.id).is_some())
            .unwrap_or(false);
        if !gone {
            return;
        }
        let (cluster, member, key) = (
            self.cluster.clone(),
            self.cluster.lease_member(self.id),
            scripts::lease_key(self.ip),
        );
        // Best effort: if Redis cannot be told, the lease expires on its own.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _: Option<i64> = cluster
                    .run(ClusterLimit::Connections, |mut c| async move {
                        redis::cmd("ZREM")
                            .arg(&key)
                            .arg(&member)
                            .query_async(&mut c)
                            .await
                    })
                    .await;
            });
        }
    }
}

/// A Redis URL with its password hidden, for logs and check-config.
pub fn shown_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Build the Redis client of `settings`, with the password from `password` (read from
/// `cluster.password_file`) when given; errors are for the operator.
pub fn client(settings: &ClusterSettings, password: Option<&str>) -> Result<redis::Client, String> {
    use redis::IntoConnectionInfo;
    let mut info = settings
        .redis
        .as_str()
        .into_connection_info()
        .map_err(|e| format!("cluster.redis: {e}"))?;
    if let Some(p) = password {
        let redis = info.redis_settings().clone().set_password(p);
        info = info.set_redis_settings(redis);
    }
    redis::Client::open(info).map_err(|e| format!("cluster.redis: {e}"))
}

/// Can Redis be reached (and authenticated to) within a few seconds? For check-config.
pub async fn probe(client: &redis::Client) -> Result<(), String> {
    let attempt = async {
        let mut c = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut c).await
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

impl Cluster {
    /// Start sharing limits through `client`; the health task runs until `shutdown`.
    pub fn start(
        settings: &ClusterSettings,
        client: redis::Client,
        metrics: Arc<Metrics>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Arc<Cluster> {
        metrics.cluster_redis_up.set(0);
        let cluster = Arc::new(Cluster {
            client,
            conn: Mutex::new(None),
            up: AtomicBool::new(false),
            budget: settings.timeout,
            on_down: settings.on_redis_down,
            metrics,
            replica: format!("{:016x}", rand::random::<u64>()),
            next_lease: AtomicU64::new(0),
            leases: Mutex::new(HashMap::new()),
            rate: redis::Script::new(scripts::MESSAGE_RATE),
            auth: redis::Script::new(scripts::AUTH_FAILURE),
            take: redis::Script::new(scripts::LEASE_TAKE),
            renew: redis::Script::new(scripts::LEASE_RENEW),
        });
        tokio::spawn(cluster.clone().health(shutdown, shown_url(&settings.redis)));
        cluster
    }

    /// What to do when Redis cannot decide.
    pub fn on_redis_down(&self) -> OnRedisDown {
        self.on_down
    }

    /// Is Redis answering (as of the last decision or health check)?
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Count one message of `client` against `per_minute`: `Some(true)` allowed and counted,
    /// `Some(false)` over the shared rate, `None` Redis could not decide.
    pub async fn take_message(&self, client: &str, per_minute: u32) -> Option<bool> {
        let interval_us = 60_000_000 / u64::from(per_minute.max(1));
        let key = scripts::rate_key(client);
        let allowed: i64 = self
            .run(ClusterLimit::MessageRate, |mut c| {
                let mut inv = self.rate.key(&key);
                inv.arg(interval_us).arg(per_minute);
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        self.count(ClusterLimit::MessageRate, allowed == 1);
        Some(allowed == 1)
    }

    /// The address's AUTH failures so far (within the failure memory).
    pub async fn auth_failures(&self, ip: IpAddr) -> Option<u32> {
        let key = scripts::auth_key(ip);
        let n: Option<u32> = self
            .run(ClusterLimit::AuthFailures, |mut c| async move {
                redis::cmd("GET").arg(&key).query_async(&mut c).await
            })
            .await?;
        Some(n.unwrap_or(0))
    }

    /// Count one AUTH failure of the address, remembered for `memory` after it; the new count.
    pub async fn auth_failure(&self, ip: IpAddr, memory: Duration) -> Option<u32> {
        let key = scripts::auth_key(ip);
        let ms = u64::try_from(memory.as_millis()).unwrap_or(u64::MAX);
        let n: u32 = self
            .run(ClusterLimit::AuthFailures, |mut c| {
                let mut inv = self.auth.key(&key);
                inv.arg(ms);
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        self.count(ClusterLimit::AuthFailures, true);
        Some(n)
    }

    /// A connection lease for `ip` unless it already has `max` live ones across every replica
    /// (`None`). When Redis cannot decide, the connection is not refused on its account (the
    /// per-process limit still applies) and its lease is kept, so that it is counted from the
    /// moment Redis answers again, for as long as the connection lives.
    pub async fn lease(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Lease> {
        let id = self.next_lease.fetch_add(1, Ordering::Relaxed);
        let (key, member) = (scripts::lease_key(ip), self.lease_member(id));
        let ttl = u64::try_from(LEASE_LIFETIME.as_millis()).unwrap_or(u64::MAX);
        // Registered before it is taken, so a renewal never misses it.
        if let Ok(mut m) = self.leases.lock() {
            m.insert(id, ip);
        }
        let lease = Lease {
            cluster: self.clone(),
            id,
            ip,
        };
        let taken: Option<i64> = self
            .run(ClusterLimit::Connections, |mut c| {
                let mut inv = self.take.key(&key);
                inv.arg(&member).arg(max).arg(ttl);
                async move { inv.invoke_async(&mut c).await }
            })
            .await;
        match taken {
            Some(1) => {
                self.count(ClusterLimit::Connections, true);
                Some(lease)
            }
            Some(_) => {
                self.count(ClusterLimit::Connections, false);
                if let Ok(mut m) = self.leases.lock() {
                    m.remove(&id);
                }
                None
            }
            None => Some(lease),
        }
    }

    fn lease_member(&self, id: u64) -> String {
        format!("{}:{id}", self.replica)
    }

    fn count(&self, limit: ClusterLimit, allowed: bool) {
        self.metrics.cluster_decision(limit, allowed);
    }

    /// Run one Redis operation within the decision budget. `None` when Redis is known to be
    /// down (no waiting at all), failed, or took too long; the first such failure marks Redis
    /// down until the health task sees it answer again.
    async fn run<T, F, Fut>(&self, limit: ClusterLimit, op: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let conn = if self.is_up() {
            self.conn.lock().ok().and_then(|c| c.clone())
        } else {
            None
        };
        let Some(conn) = conn else {
            self.metrics.cluster_unavailable(limit);
            return None;
        };
        let start = Instant::now();
        let result = tokio::time::timeout(self.budget, op(conn)).await;
        self.metrics
            .cluster_redis_seconds
            .observe(start.elapsed().as_secs_f64());
        match result {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.set_down(&format!("{e}"));
                self.metrics.cluster_unavailable(limit);
                None
            }
            Err(_) => {
                self.set_down(&format!("no answer within {:?}", self.budget));
                self.metrics.cluster_unavailable(limit);
                None
            }
        }
    }

    fn set_down(&self, why: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            self.metrics.cluster_redis_up.set(0);
            let fallback = match self.on_down {
                OnRedisDown::Local => "counting per process",
                OnRedisDown::Defer => "deferring messages and AUTH (451/454)",
            };
            tracing::warn!(error = %why, "Redis unavailable: limits are no longer shared; {fallback} until it answers again");
        }
    }

    fn set_up(&self, url: &str) {
        if !self.up.swap(true, Ordering::AcqRel) {
            self.metrics.cluster_redis_up.set(1);
            tracing::info!(redis = %url, "Redis answering: limits are shared across replicas");
        }
    }

    /// Connect, ping, renew leases; until shutdown.
    async fn health(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        url: String,
    ) {
        let mut renewed = Instant::now();
        let mut first_failure_logged = false;
        loop {
            let conn = self.conn.lock().ok().and_then(|c| c.clone());
            let conn = match conn {
                Some(c) => Some(c),
                None => match self.connect().await {
                    Ok(c) => {
                        if let Ok(mut slot) = self.conn.lock() {
                            *slot = Some(c.clone());
                        }
                        Some(c)
                    }
                    Err(e) => {
                        if !first_failure_logged {
                            tracing::warn!(redis = %url, error = %e, "cannot connect to Redis; limits are per process until it answers");
                            first_failure_logged = true;
                        }
                        None
                    }
                },
            };
            if let Some(mut c) = conn {
                let ping = tokio::time::timeout(
                    self.budget.max(Duration::from_millis(100)),
                    redis::cmd("PING").query_async::<String>(&mut c),
                )
                .await;
                match ping {
                    Ok(Ok(_)) => {
                        let was_up = self.is_up();
                        // Leases taken while Redis was away are registered before anyone
                        // relies on the shared count again.
                        if !was_up || renewed.elapsed() >= LEASE_RENEWAL {
                            self.renew_leases(&mut c).await;
                            renewed = Instant::now();
                        }
                        self.set_up(&url);
                    }
                    Ok(Err(e)) => self.set_down(&e.to_string()),
                    Err(_) => self.set_down("no answer to PING"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    }

    async fn connect(&self) -> redis::RedisResult<ConnectionManager> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        match tokio::time::timeout(
            CONNECT_TIMEOUT * 2,
            self.client.get_connection_manager_with_config(config),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "connection timed out",
            ))),
        }
    }

    async fn renew_leases(&self, c: &mut ConnectionManager) {
        let live: Vec<(u64, IpAddr)> = match self.leases.lock() {
            Ok(m) => m.iter().map(|(id, ip)| (*id, *ip)).collect(),
            Err(_) => return,
        };
        if live.is_empty() {
            return;
        }
        let ttl = u64::try_from(LEASE_LIFETIME.as_millis()).unwrap_or(u64::MAX);
        let mut inv = self.renew.prepare_invoke();
        inv.arg(ttl);
        for (id, ip) in &live {
            inv.key(scripts::lease_key(*ip)).arg(self.lease_member(*id));
        }
        let renewed = tokio::time::timeout(CONNECT_TIMEOUT, inv.invoke_async::<i64>(c)).await;
        if !matches!(renewed, Ok(Ok(_))) {
            tracing::debug!("connection leases not renewed this time");
        }
    }
}

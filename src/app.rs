//! Wiring: load the configuration, open the spool, bind the listeners, start the scheduler and
//! the metrics endpoint, and handle signals (HUP reload, TERM/INT drain, USR1 retry queue).
//! The one module that may import everything.

use crate::core::Core;
use crate::inbound::listener::{self, Limits};
use crate::inbound::throttle::{AuthThrottle, RateLimiter};
use crate::inbound::Shared;
use crate::metrics::{Metrics, Readiness};
use crate::queue::Scheduler;
use crate::spool::Spool;
use crate::tools::queue::{read_pid, PID_FILE};
use anyhow::{anyhow, Context as _};
use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

/// How long SIGTERM waits for sessions to finish.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Label pairs (domain, algorithm) of the configured signers, for the metrics.
fn signer_labels(core: &Core) -> Vec<(String, crate::metrics::Algorithm)> {
    core.signers
        .domains()
        .flat_map(|(d, list)| {
            list.iter().map(move |s| {
                let a = match s.algorithm {
                    crate::dkim::keys::KeyAlgorithm::RsaSha256 => {
                        crate::metrics::Algorithm::RsaSha256
                    }
                    crate::dkim::keys::KeyAlgorithm::Ed25519Sha256 => {
                        crate::metrics::Algorithm::Ed25519Sha256
                    }
                };
                (d.clone(), a)
            })
        })
        .collect()
}

fn init_labels(metrics: &Metrics, core: &Core) {
    let listeners: Vec<String> = core.settings.listeners.iter().map(|l| l.name()).collect();
    let labels = signer_labels(core);
    metrics.init_config_labels(
        listeners.iter().map(String::as_str),
        labels.iter().map(|(d, a)| (d.as_str(), *a)),
    );
}

/// `dkim-relay serve`.
pub async fn serve(config_path: &Path) -> anyhow::Result<()> {
    let core = Core::load(config_path).map_err(|e| anyhow!("{e}"))?;
    // As the configuration says (`RUST_LOG` overrides the level).
    crate::logging::init(core.settings.log.format, &core.settings.log.level);
    let metrics = Arc::new(Metrics::new());
    init_labels(&metrics, &core);
    let readiness = Arc::new(Readiness::new());

    let spool = Spool::open(&core.settings.spool_dir)
        .with_context(|| format!("spool {}", core.settings.spool_dir.display()))?
        .with_recycling();
    let recovered = spool.recover()?;
    if recovered > 0 {
        tracing::warn!(
            files = recovered,
            "cleared half-written spool files left by a crash"
        );
    }
    // `dkim-relay queue retry` finds the daemon through this file to send it SIGUSR1.
    let _pid_file = PidFile::create(&core.settings.spool_dir)
        .inspect_err(|e| tracing::warn!(error = %e, "cannot write the pid file; `queue retry` will not wake the daemon"))
        .ok();
    readiness.set_spool_dir(core.settings.spool_dir.join("tmp"));
    readiness.set_config_loaded(true);

    // Every socket is bound before anything starts: a taken port (SMTP or metrics) stops the
    // start with its address, before the scheduler has picked up a single message, and once
    // the SMTP ports answer, /metrics does too.
    let metrics_listener = match core.settings.metrics {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics listener {addr}"))?,
        ),
        None => None,
    };
    let bound = listener::bind(&core).map_err(|e| anyhow!(e))?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (queued_tx, queued_rx) = mpsc::unbounded_channel();
    let (retry_tx, retry_rx) = mpsc::unbounded_channel();
    let limits = Limits::new(
        core.settings.limits.max_connections,
        core.settings.limits.max_connections_per_ip,
    );
    let live = Arc::new(ArcSwap::from_pointee(core));
    // Not ready while the spool is short of space: a load balancer sends clients to a replica
    // that can take their mail (the minimum of the current configuration, reloads included).
    {
        let (spool, live) = (spool.clone(), live.clone());
        readiness.add_check(Box::new(move || {
            let min_free = live.load().settings.limits.spool_min_free;
            spool
                .free_space()
                .check(min_free, 0)
                .map_err(|short| short.to_string())
        }));
    }

    let queued_for_reports = queued_tx.clone();
    let shared = Arc::new(Shared {
        spool: spool.clone(),
        auth_throttle: AuthThrottle::default(),
        rate_limiter: RateLimiter::default(),
        queued: queued_tx,
        metrics: metrics.clone(),
        hash_pool: crate::inbound::hash_pool::HashPool::new(
            live.load().settings.limits.auth_hash_concurrency,
            metrics.auth_hash_waiting.clone(),
        ),
        buffer_budget: crate::inbound::budget::BufferBudget::new(
            live.load().settings.limits.buffer_memory,
            live.load().settings.limits.max_connections,
            metrics.buffer_memory_bytes.clone(),
        ),
        cluster: start_cluster(&live.load(), &metrics, &shutdown_rx)?,
    });

    let board = Arc::new(crate::status::StatusBoard::new(
        metrics.clone(),
        live.clone(),
        spool.clone(),
    ));
    board.spawn_ticker(shutdown_rx.clone());
    let policies = start_tls_policies(&spool, &live, &metrics, &queued_for_reports, &shutdown_rx)?;
    let scheduler = Scheduler::new(spool, live.clone(), metrics.clone(), Some(policies));
    let scheduler_task = tokio::spawn(scheduler.run(queued_rx, retry_rx, shutdown_rx.clone()));
    crate::service::spawn_watchdog(scheduler_task.abort_handle(), shutdown_rx.clone());

    if let Some(l) = metrics_listener {
        tokio::spawn(crate::metrics::serve_with_status(
            l,
            metrics.clone(),
            readiness.clone(),
            Some(board.clone() as Arc<dyn crate::metrics::StatusPage>),
            shutdown_rx.clone(),
        ));
    }
    for b in bound {
        tracing::info!(listener = %b.name(), "listening");
        tokio::spawn(listener::serve(
            b,
            live.clone(),
            shared.clone(),
            limits.clone(),
            shutdown_rx.clone(),
        ));
    }
    readiness.set_listeners_bound(true);
    spawn_rotation_watch(
        config_path.to_path_buf(),
        live.clone(),
        metrics.clone(),
        shutdown_rx.clone(),
    );
    if !live.load().settings.dns.check_interval.is_zero() {
        spawn_dns_doctor(
            live.clone(),
            metrics.clone(),
            board.clone(),
            shutdown_rx.clone(),
        );
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "dkim-relay started");
    let running = format!(
        "accepting mail on {} listener(s)",
        live.load().settings.listeners.len()
    );
    crate::service::ready(&running);

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                crate::service::reloading();
                let status = if reload(config_path, &live, &metrics) {
                    running.clone()
                } else {
                    format!("{running}; the last reload was refused (see the log)")
                };
                crate::service::ready(&status);
            }
            _ = usr1.recv() => {
                tracing::info!("retrying the whole queue now");
                let _ = retry_tx.send(());
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    tracing::info!("shutting down: no new connections; waiting for sessions to finish");
    crate::service::stopping();
    readiness.set_listeners_bound(false);
    let _ = shutdown_tx.send(true);
    // Sessions finish (new commands get 421 4.3.2; a message in DATA is received to its end)
    // while the scheduler starts nothing new and gives deliveries under way their grace.
    // The semaphore's size was fixed at start (a reload does not resize it): wait for all of it.
    let all = u32::try_from(limits.max).unwrap_or(u32::MAX);
    let sessions = async {
        match tokio::time::timeout(DRAIN_DEADLINE, limits.overall.acquire_many(all)).await {
            Ok(_) => tracing::info!("all sessions finished"),
            Err(_) => tracing::warn!("drain deadline reached; closing remaining sessions (their messages were not acknowledged)"),
        }
    };
    let deliveries = async {
        let grace = crate::queue::DELIVERY_GRACE + Duration::from_secs(5);
        let mut task = scheduler_task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    };
    tokio::join!(sessions, deliveries);
    tracing::info!("stopped; the spool is consistent");
    Ok(())
}

/// The settings of a core snapshot, for the DNS doctor (which re-reads them every pass, so a
/// reload's domains and interval apply from the next pass).
struct SettingsOf(Arc<Core>);

impl std::ops::Deref for SettingsOf {
    type Target = crate::config::Settings;
    fn deref(&self) -> &Self::Target {
        &self.0.settings
    }
}

/// MTA-STS and TLS-RPT: the policy cache and the report store in the spool (both kept across
/// reloads), the hourly refresh of policies in use, and the daily reports. What each round
/// does follows the live configuration.
fn start_tls_policies(
    spool: &Spool,
    live: &Arc<ArcSwap<Core>>,
    metrics: &Arc<Metrics>,
    queued: &mpsc::UnboundedSender<crate::spool::Committed>,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<crate::outbound::transport::Policies> {
    use crate::tls_policy::mta_sts::{Fetcher, StsCache};
    use crate::tls_policy::report::{json::Submitter, send, store::Store};
    let dir = live.load().settings.spool_dir.clone();
    let sts = Arc::new(
        StsCache::open(&dir, crate::clock::unix_now())
            .with_context(|| format!("MTA-STS policy cache in {}", dir.display()))?,
    );
    let store = Arc::new(
        Store::open(&dir).with_context(|| format!("TLS report store in {}", dir.display()))?,
    );
    let fetcher = {
        let live = live.clone();
        move || {
            let core = live.load();
            let d = &core.settings.delivery;
            let on = matches!(d.mode, crate::config::DeliveryMode::Mx)
                && d.security.mta_sts != crate::config::MtaStsMode::Off;
            let trust = core.trust.clone().filter(|_| on)?;
            Some(Fetcher::new(core.resolver.clone(), trust))
        }
    };
    tokio::spawn(
        sts.clone()
            .run(fetcher, Duration::from_secs(3600), shutdown.clone()),
    );
    let reports = Arc::new(crate::queue::reports::SpoolReports {
        spool: spool.clone(),
        live: live.clone(),
        announce: Some(queued.clone()),
        metrics: Some(metrics.clone()),
    });
    let round = {
        let live = live.clone();
        move || {
            let core = live.load();
            let r = &core.settings.delivery.security.tls_reports;
            let trust = core.trust.clone().filter(|_| r.enabled)?;
            Some(send::Round {
                resolver: core.resolver.clone(),
                trust,
                submitter: Submitter {
                    organization: r.organization.clone(),
                    contact: r.contact.clone(),
                    hostname: core.settings.hostname.clone(),
                },
            })
        }
    };
    tokio::spawn(send::run_daily(
        store.clone(),
        reports,
        round,
        shutdown.clone(),
    ));
    Ok(crate::outbound::transport::Policies { sts, store })
}

/// The DNS doctor: the dns-check logic at start and every `dns.check_interval`, warnings in the
/// log and `dkim_relay_dns_check_ok{domain,check}` gauges. It never stops mail.
fn spawn_dns_doctor(
    live: Arc<ArcSwap<Core>>,
    metrics: Arc<Metrics>,
    board: Arc<crate::status::StatusBoard>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let resolver = live.load().resolver.clone();
        let stop = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    return;
                }
            }
        };
        crate::tools::dns_check::doctor_loop(
            || SettingsOf(live.load_full()),
            &resolver,
            stop,
            |results| {
                board.record_doctor(results);
                metrics.set_dns_checks(crate::tools::dns_check::gauge_values(results));
            },
        )
        .await;
    });
}

/// Pending key rotations start signing once DNS serves their key: check every
/// `dns.check_interval` (every 5 minutes when the DNS doctor is off) and rebuild the signers
/// when one became active.
fn spawn_rotation_watch(
    path: std::path::PathBuf,
    live: Arc<ArcSwap<Core>>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        loop {
            let core = live.load_full();
            if crate::tools::rotate::activate_ready(&core.settings, &core.resolver).await {
                reload(&path, &live, &metrics);
            }
            let interval = match core.settings.dns.check_interval {
                d if d.is_zero() => Duration::from_secs(300),
                d => d,
            };
            drop(core);
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
            }
        }
    });
}

/// Share limits through Redis when `cluster.redis` is set (read at start: a reload does not
/// change it). Redis need not be up yet; until it answers, `on_redis_down` applies.
fn start_cluster(
    core: &Core,
    metrics: &Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Option<Arc<crate::cluster::Cluster>>> {
    let Some(settings) = &core.settings.cluster else {
        return Ok(None);
    };
    let client =
        crate::cluster::client(settings, core.redis_password.as_deref()).map_err(|e| anyhow!(e))?;
    tracing::info!(redis = %crate::cluster::shown_url(&settings.redis), "sharing limits through Redis");
    Ok(Some(crate::cluster::Cluster::start(
        settings,
        client,
        metrics.clone(),
        shutdown.clone(),
    )))
}

/// SIGHUP: load the configuration again; swap it in only if all of it is good. Returns
/// whether it was.
fn reload(path: &Path, live: &ArcSwap<Core>, metrics: &Metrics) -> bool {
    match Core::load(path) {
        Ok(core) => {
            init_labels(metrics, &core);
            live.store(Arc::new(core));
            metrics.config_reload(true);
            tracing::info!("configuration reloaded");
            true
        }
        Err(e) => {
            metrics.config_reload(false);
            for err in &e.0 {
                tracing::error!(error = %err, "reload refused; keeping the running configuration");
            }
            false
        }
    }
}

/// The daemon's pid file, by which `queue retry` finds it; removed when dropped (at exit), if
/// it is still ours.
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Write `<spool>/dkim-relay.pid` (temporary file + rename, so a reader never sees half).
    pub fn create(spool_dir: &Path) -> std::io::Result<PidFile> {
        let pid = std::process::id();
        let path = spool_dir.join(PID_FILE);
        let tmp = spool_dir.join(format!(".{}.{pid}", PID_FILE));
        std::fs::write(&tmp, format!("{pid}\n"))?;
        std::fs::rename(&tmp, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(PidFile { path, pid })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Another daemon started on the same spool since: its file is not ours to remove.
        if read_pid(&self.path) == Some(self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_is_removed_only_by_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let p = PidFile::create(dir.path()).unwrap();
        assert_eq!(
            read_pid(&dir.path().join(PID_FILE)),
            Some(std::process::id())
        );
        drop(p);
        assert!(!dir.path().join(PID_FILE).exists());
        let p = PidFile::create(dir.path()).unwrap();
        std::fs::write(dir.path().join(PID_FILE), "1\n").unwrap();
        drop(p);
        assert_eq!(read_pid(&dir.path().join(PID_FILE)), Some(1));
    }
}

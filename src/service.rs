//! Telling the service manager how the daemon is doing (systemd `Type=notify`, through the
//! sd-notify crate): `READY=1` once every listener is bound, `RELOADING=1` (with the
//! `MONOTONIC_USEC` systemd ≥ 253 asks for) and then `READY=1` around a SIGHUP reload,
//! `STOPPING=1` when the drain starts, and — when the unit sets `WatchdogSec=` — `WATCHDOG=1`
//! at half that interval for as long as the runtime schedules tasks, its blocking pool runs them
//! and the delivery scheduler is alive. A scheduler that ended, or a runtime that stopped
//! turning, stops the petting, and systemd restarts the relay. `STATUS=` lines tell
//! `systemctl status` what is going on.
//!
//! Without `NOTIFY_SOCKET` (not under systemd) every call does nothing. Imports nothing else
//! of ours.

use sd_notify::NotifyState;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::AbortHandle;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// Every listener is bound and serving: the start (or a reload) is complete.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins (SIGHUP). `MONOTONIC_USEC` ties the message to this reload for systemd's
/// `Type=notify-reload`; send [`ready`] when it is over, whatever its outcome.
pub fn reloading() {
    let mut states = vec![
        NotifyState::Reloading,
        NotifyState::Status("reloading the configuration"),
    ];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

/// The drain begins (SIGTERM/SIGINT).
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("draining: no new connections, sessions finishing"),
    ]);
}

/// When the service manager asked for a watchdog (`WATCHDOG_USEC`, for this process), pet it
/// at half the interval while `scheduler` runs and the blocking pool answers, until shutdown.
pub fn spawn_watchdog(scheduler: AbortHandle, mut shutdown: watch::Receiver<bool>) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (interval / 2).max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                    continue;
                }
            }
            if scheduler.is_finished() {
                tracing::error!("the delivery scheduler has stopped; no longer petting the watchdog, so the service manager restarts the relay");
                return;
            }
            // File I/O and signing run on the blocking pool: it must still take work.
            let pool = tokio::time::timeout(every, tokio::task::spawn_blocking(|| ())).await;
            if !matches!(pool, Ok(Ok(()))) {
                tracing::warn!(
                    "blocking thread pool did not answer within the watchdog's half interval"
                );
                continue;
            }
            send(&[NotifyState::Watchdog]);
        }
    });
}

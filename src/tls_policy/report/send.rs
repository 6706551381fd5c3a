//! Sending a day's reports (RFC 8460 5): for each recipient domain with results that day, its
//! `_smtp._tls` record says where; the report goes to each `https:` destination as a POST of
//! the gzip'd JSON, and to each `mailto:` one as a message the relay queues itself
//! ([`ReportQueue`], signed like any message of the relay). A domain's report is claimed in
//! the store before it goes, so it goes once (at most), whoever sends it; a domain whose
//! record could not be looked up is left for the next round.

use super::json::{Report, Submitter, MEDIA_TYPE};
use super::mail::{self, ReportMessage};
use super::rua::{self, Destination, Rua};
use super::store::{Day, Store};
use crate::tls_policy::https::{self, Limits, Request};
use crate::tls_policy::trust::Trust;
use mail_auth::MessageAuthenticator;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// How long a report POST may take, and how much of the answer is read.
pub const POST_LIMITS: Limits = Limits {
    timeout: Duration::from_secs(60),
    max_body: 64 * 1024,
};

/// Puts a report message in the relay's own queue.
pub trait ReportQueue: Send + Sync {
    /// Queue `message`, signed by the relay with its signature also covering
    /// [`mail::SIGNED_FIELDS`]; the queue id, or why not.
    fn queue(
        &self,
        message: ReportMessage,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>>;
}

/// What became of one domain's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Sent (or tried) to these destinations: each with the queue id / HTTP status, or why
    /// not.
    To(Vec<(Destination, Result<String, String>)>),
    /// The domain takes no reports (no or no valid `_smtp._tls` record).
    NotWanted(String),
    /// The record could not be looked up; tried again next round.
    Later(String),
    /// Sent before (by this process or another).
    Already,
}

/// What sending needs.
pub struct Sender<'a> {
    pub resolver: &'a MessageAuthenticator,
    pub trust: &'a Trust,
    pub store: &'a Store,
    pub submitter: &'a Submitter,
    pub queue: &'a dyn ReportQueue,
}

impl Sender<'_> {
    /// Send every report of `day` not sent yet: (domain, what became of it).
    pub async fn send_day(&self, day: Day, now: i64) -> std::io::Result<Vec<(String, Sent)>> {
        let results = self.store.read_day(day)?;
        let mut out = Vec::with_capacity(results.len());
        for (domain, counts) in results {
            let sent = match rua::discover(self.resolver, &domain).await {
                Rua::Failed(e) => Sent::Later(e),
                Rua::Absent(reason) => {
                    // Remembered as done, so the record is not asked for again today.
                    if self.store.claim(day, &domain)? {
                        Sent::NotWanted(reason)
                    } else {
                        Sent::Already
                    }
                }
                Rua::Destinations(_) if !self.store.claim(day, &domain)? => Sent::Already,
                Rua::Destinations(destinations) => {
                    let report = Report::build(self.submitter, day, &domain, &counts);
                    let mut tried = Vec::with_capacity(destinations.len());
                    for d in destinations {
                        let result = self.deliver(&d, day, &domain, &report, now).await;
                        match &result {
                            Ok(how) => {
                                tracing::info!(domain = %domain, day = %day, to = %d, result = %how, "TLS report sent")
                            }
                            Err(e) => {
                                tracing::warn!(domain = %domain, day = %day, to = %d, error = %e, "TLS report not sent")
                            }
                        }
                        tried.push((d, result));
                    }
                    Sent::To(tried)
                }
            };
            out.push((domain, sent));
        }
        Ok(out)
    }

    async fn deliver(
        &self,
        to: &Destination,
        day: Day,
        domain: &str,
        report: &Report,
        now: i64,
    ) -> Result<String, String> {
        match to {
            Destination::Mail(address) => {
                let message = mail::build(self.submitter, day, domain, report, address, now);
                self.queue
                    .queue(message)
                    .await
                    .map(|id| format!("queued as {id}"))
            }
            Destination::Https(url) => {
                let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
                let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
                let path = uri.path_and_query().map_or("/", |p| p.as_str());
                let request = Request {
                    method: "POST",
                    host,
                    port: uri.port_u16().unwrap_or(443),
                    path,
                    body: Some((MEDIA_TYPE, report.gzip())),
                };
                let answer = https::send(self.resolver, self.trust, request, POST_LIMITS)
                    .await
                    .map_err(|e| e.to_string())?;
                if (200..300).contains(&answer.status) {
                    Ok(format!("HTTP {}", answer.status))
                } else {
                    Err(format!("{url} answered HTTP {}", answer.status))
                }
            }
        }
    }
}

/// When the reports of the day `now` falls in go out: between 5 and 60 minutes after the
/// next midnight UTC, at a moment `jitter_secs` picks (senders spread their reports out
/// rather than all sending at midnight).
pub fn next_run(now: i64, jitter_secs: i64) -> i64 {
    let midnight = Day::of(now).start() + 86_400;
    midnight + 300 + jitter_secs.rem_euclid(3_300)
}

/// What a round of daily sending needs from the live configuration.
pub struct Round {
    pub resolver: MessageAuthenticator,
    pub trust: Trust,
    pub submitter: Submitter,
}

/// One round: send every past day's reports not sent yet (a relay that was down at midnight
/// catches up), then forget days older than [`KEEP_DAYS`](super::store::KEEP_DAYS).
pub async fn round(
    store: &Store,
    queue: &dyn ReportQueue,
    ctx: &Round,
    now: i64,
) -> std::io::Result<usize> {
    let today = Day::of(now);
    let oldest = Day(today.0 - super::store::KEEP_DAYS);
    let sender = Sender {
        resolver: &ctx.resolver,
        trust: &ctx.trust,
        store,
        submitter: &ctx.submitter,
        queue,
    };
    let mut sent = 0;
    for day in store.days()? {
        if day >= today || day < oldest {
            continue;
        }
        for (_, outcome) in sender.send_day(day, now).await? {
            if matches!(outcome, Sent::To(_)) {
                sent += 1;
            }
        }
    }
    store.prune(oldest)?;
    Ok(sent)
}

/// Send the reports every day (at start, then shortly after each midnight UTC) until
/// `shutdown` turns true. `ctx` reads the live configuration each round (`None`: reports are
/// off now).
pub async fn run_daily(
    store: std::sync::Arc<Store>,
    queue: std::sync::Arc<dyn ReportQueue>,
    ctx: impl Fn() -> Option<Round>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let now = crate::tls_policy::unix_now();
        if let Some(c) = ctx() {
            if let Err(e) = round(&store, queue.as_ref(), &c, now).await {
                tracing::warn!(error = %e, "cannot read the TLS report results in the spool");
            }
        }
        let wake = next_run(now, rand::random::<i64>());
        let wait = Duration::from_secs(u64::try_from(wake - now).unwrap_or(60).max(60));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_go_in_the_first_hour_after_midnight() {
        let day = Day::parse("2026-11-23").unwrap();
        let noon = day.start() + 43_200;
        for jitter in [0, 1, 3_299, 3_300, -5, i64::MAX] {
            let at = next_run(noon, jitter);
            assert!(at >= day.start() + 86_400 + 300, "{jitter}");
            assert!(at < day.start() + 86_400 + 3_600, "{jitter}");
        }
        // Just before midnight: the coming midnight, not the one after.
        assert!(next_run(day.start() + 86_399, 0) < day.start() + 2 * 86_400);
    }
}

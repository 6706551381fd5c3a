//! TLS reports the relay mails itself (RFC 8460 5.3): each report message goes into the spool
//! like any message — from `<>`, DKIM-signed through the one signing entry point with the key
//! of the relay's hostname's domain (the signatures also covering `TLS-Report-Domain` and
//! `TLS-Report-Submitter`), marked `TLS-Required: No` so that a policy never holds it — and is
//! announced to the scheduler (from the `tls-report` command, the running relay is woken
//! instead).

use crate::core::Core;
use crate::dkim::message::{sign_message_covering, SignError};
use crate::spool::{Committed, Envelope, QueueId, Spool};
use crate::tls_policy::report::mail::{ReportMessage, SIGNED_FIELDS};
use crate::tls_policy::report::send::ReportQueue;
use arc_swap::ArcSwap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Puts report messages in the spool.
pub struct SpoolReports {
    pub spool: Spool,
    pub live: Arc<ArcSwap<Core>>,
    /// The scheduler's channel for new messages (`None` outside the daemon).
    pub announce: Option<mpsc::UnboundedSender<Committed>>,
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl SpoolReports {
    async fn put(&self, message: ReportMessage) -> Result<String, String> {
        let core = self.live.load_full();
        let now = crate::clock::unix_now();
        let hostname = &core.settings.hostname;
        let signers = core.signers.for_from_domain(hostname).ok_or_else(|| {
            format!("no DKIM key for {hostname} or a parent domain: reports go out signed")
        })?;
        let signatures =
            match sign_message_covering(signers, &message.bytes, now.max(0) as u64, &SIGNED_FIELDS)
            {
                Ok(made) => made.into_iter().map(|m| m.header).collect(),
                Err(e) => {
                    if let (SignError::SelfVerify(_), Some(m)) = (&e, &self.metrics) {
                        m.self_verify_failures_total.inc();
                    }
                    return Err(format!("cannot sign the report: {e}"));
                }
            };
        let env = Envelope {
            signatures,
            size: message.bytes.len() as u64,
            tls_optional: true,
            ..Envelope::new(
                message.sender.clone(),
                [message.recipient.clone()],
                now,
                "tls-report".into(),
            )
        };
        let id = QueueId::new();
        let (spool, id2, bytes) = (self.spool.clone(), id.clone(), message.bytes);
        tokio::task::spawn_blocking(move || {
            let mut draft = spool.draft(id2)?;
            draft.write(&bytes)?;
            spool.commit(draft, &env)
        })
        .await
        .map_err(|e| format!("cannot queue the report: {e}"))?
        .map_err(|e| format!("cannot queue the report: {e}"))?;
        if let Some(announce) = &self.announce {
            let _ = announce.send(Committed::id_only(id.clone()));
        }
        Ok(id.to_string())
    }
}

impl ReportQueue for SpoolReports {
    fn queue(
        &self,
        message: ReportMessage,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + '_>> {
        Box::pin(self.put(message))
    }
}

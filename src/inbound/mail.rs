//! MAIL FROM: who may start a transaction, and as which sender.

use super::session::{Conn, Flow, Session, Transaction};
use super::shared_limits::RateVerdict;
use crate::metrics::RejectReason;
use crate::smtp::address::is_valid_mailbox;
use crate::smtp::reply::{shown, Reply};
use smtp_proto::{MailFrom, MAIL_SMTPUTF8};
use std::borrow::Cow;
use tokio::io::{AsyncRead, AsyncWrite};

impl Session<'_> {
    pub(crate) async fn mail<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        from: MailFrom<Cow<'_, str>>,
        conn: &mut Conn<S>,
    ) -> Flow {
        if self.helo.is_none() {
            return self.error(conn, Reply::new(503, "5.5.1", "Say EHLO first"));
        }
        if self.tx.is_some() {
            return self.error(conn, Reply::new(503, "5.5.1", "Sender already given"));
        }
        let Some(identity) = self.identity.as_ref() else {
            self.shared.metrics.rejected(RejectReason::Auth);
            return self.error(conn, Reply::new(530, "5.7.0", "Authentication required"));
        };
        let limit = self.core.settings.limits.max_message_size;
        if from.size as u64 > limit {
            self.shared.metrics.rejected(RejectReason::Size);
            return self.error(
                conn,
                Reply::new(
                    552,
                    "5.3.4",
                    format!("Message size exceeds fixed maximum message size ({limit} bytes)"),
                ),
            );
        }
        let sender = from.address.trim().to_string();
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        if !smtputf8 && !sender.is_ascii() {
            // RFC 6531 3.4: an internationalised address needs the SMTPUTF8 parameter.
            return self.error(
                conn,
                Reply::new(
                    553,
                    "5.6.7",
                    "Non-ASCII sender address requires the SMTPUTF8 parameter",
                ),
            );
        }
        if !sender.is_empty() {
            if !is_valid_mailbox(&sender) {
                return self.error(conn, Reply::new(501, "5.1.7", "Bad sender address syntax"));
            }
            if !identity.may_send_as(&sender) {
                tracing::warn!(client = %identity.name, sender = %shown(&sender), "rejected: sender not allowed");
                self.shared.metrics.rejected(RejectReason::SenderNotAllowed);
                return self.error(
                    conn,
                    Reply::new(
                        550,
                        "5.7.1",
                        format!(
                            "Sender <{}> not allowed for {}",
                            shown(&sender),
                            identity.name
                        ),
                    ),
                );
            }
        }
        // Below limits.spool_min_free (with room for the declared SIZE): a temporary refusal
        // now rather than a message received in full and then refused (Postfix: queue_minfree).
        let min_free = self.core.settings.limits.spool_min_free;
        if let Err(short) = self
            .shared
            .spool
            .free_space()
            .check(min_free, from.size as u64)
        {
            tracing::debug!(%short, "MAIL refused: spool short of space");
            self.shared.metrics.rejected(RejectReason::Spool);
            return self.error(
                conn,
                Reply::new(452, "4.3.1", "Insufficient system storage, try again later"),
            );
        }
        let per_minute = self.core.settings.limits.messages_per_minute_per_client;
        let client = identity.name.clone();
        let verdict = self.shared.message_rate(&client, per_minute).await;
        let refused = match verdict {
            RateVerdict::Deferred => Some((
                "deferred: the shared rate count is unavailable (cluster.on_redis_down: defer)",
                "Rate limit cannot be checked right now, try again later".to_string(),
            )),
            RateVerdict::OverRate => Some((
                "rejected: rate limit",
                format!("Rate limit of {per_minute} messages per minute exceeded, try again later"),
            )),
            RateVerdict::Allowed => None,
        };
        if let Some((why, text)) = refused {
            tracing::warn!(client = %client, "{why}");
            self.shared.metrics.rejected(RejectReason::RateLimit);
            return self.error(conn, Reply::new(451, "4.7.1", text));
        }
        self.tx = Some(Transaction {
            sender,
            recipients: Vec::new(),
            // BODY=8BITMIME is not kept: whether the message is 8-bit is decided from its bytes.
            smtputf8,
            bdat: None,
        });
        conn.reply(&Reply::new(250, "2.1.0", "Sender OK"));
        Flow::Continue
    }
}

//! MAIL FROM: who may start a transaction, and as which sender.

use super::session::{shown, Conn, Flow, Session, Transaction};
use crate::metrics::RejectReason;
use crate::smtp::address::is_valid_mailbox;
use crate::smtp::reply::Reply;
use smtp_proto::{MailFrom, MAIL_SMTPUTF8};
use std::borrow::Cow;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

impl Session<'_> {
    pub(crate) fn mail<S: AsyncRead + AsyncWrite + Unpin>(
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
        let per_minute = self.core.settings.limits.messages_per_minute_per_client;
        if !self
            .shared
            .rate_limiter
            .allow(&identity.name, per_minute, Instant::now())
        {
            tracing::warn!(client = %identity.name, "rejected: rate limit");
            self.shared.metrics.rejected(RejectReason::RateLimit);
            return self.error(
                conn,
                Reply::new(
                    451,
                    "4.7.1",
                    format!(
                        "Rate limit of {per_minute} messages per minute exceeded, try again later"
                    ),
                ),
            );
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

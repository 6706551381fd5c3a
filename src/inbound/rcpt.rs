//! RCPT TO: collect recipients, within the per-message limit.

use super::session::{Conn, Flow, Session};
use crate::smtp::address::{is_valid_mailbox, normalize};
use crate::smtp::reply::Reply;
use smtp_proto::RcptTo;
use std::borrow::Cow;
use tokio::io::{AsyncRead, AsyncWrite};

impl Session<'_> {
    pub(crate) fn rcpt<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        to: RcptTo<Cow<'_, str>>,
        conn: &mut Conn<S>,
    ) -> Flow {
        let max = self.core.settings.limits.max_recipients;
        let Some(tx) = self.tx.as_mut() else {
            return self.error(conn, Reply::new(503, "5.5.1", "Need MAIL before RCPT"));
        };
        if tx.bdat.is_some() {
            return self.error(
                conn,
                Reply::new(503, "5.5.1", "RCPT not allowed during BDAT"),
            );
        }
        let address = to.address.trim();
        if !is_valid_mailbox(address) {
            return self.error(
                conn,
                Reply::new(501, "5.1.3", "Bad recipient address syntax"),
            );
        }
        if !tx.smtputf8 && !address.is_ascii() {
            // RFC 6531 3.4: an internationalised address needs SMTPUTF8 on MAIL.
            return self.error(
                conn,
                Reply::new(
                    553,
                    "5.6.7",
                    "Non-ASCII recipient address requires SMTPUTF8 on MAIL FROM",
                ),
            );
        }
        if tx.recipients.len() >= max {
            self.shared
                .metrics
                .rejected(crate::metrics::RejectReason::TooManyRecipients);
            conn.reply(&Reply::new(
                452,
                "4.5.3",
                format!("Too many recipients (at most {max} per message)"),
            ));
            return Flow::Continue;
        }
        tx.recipients.push(normalize(address));
        conn.reply(&Reply::new(250, "2.1.5", "Recipient OK"));
        Flow::Continue
    }
}

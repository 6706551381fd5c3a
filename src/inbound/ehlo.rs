//! EHLO and HELO: greet, start over, and say what we offer.

use super::session::{Conn, Flow, Session};
use crate::config::ListenerTls;
use crate::smtp::reply::{shown, Reply};
use std::borrow::Cow;
use tokio::io::{AsyncRead, AsyncWrite};

impl Session<'_> {
    pub(crate) fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        host: &str,
        esmtp: bool,
        conn: &mut Conn<S>,
    ) -> Flow {
        if host.trim().is_empty() {
            return self.error(
                conn,
                Reply::new(501, "5.5.4", "Say EHLO with your host name"),
            );
        }
        // A new greeting ends any transaction (RFC 5321 4.1.4).
        self.tx = None;
        self.helo = Some(shown(host).into_owned());
        self.esmtp = esmtp;
        let hostname = &self.core.settings.hostname;
        if !esmtp {
            conn.reply(&Reply::new(
                250,
                "",
                format!("{hostname} hello {}", shown(host)),
            ));
            return Flow::Continue;
        }
        let mut lines: Vec<Cow<'static, str>> = vec![
            format!("{hostname} hello {}", shown(host)).into(),
            "PIPELINING".into(),
            format!("SIZE {}", self.core.settings.limits.max_message_size).into(),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
        ];
        if !self.tls && self.listener_tls == ListenerTls::StartTls && self.core.tls.is_some() {
            lines.push("STARTTLS".into());
        }
        if self.auth_allowed() && !self.identity.as_ref().is_some_and(|i| i.authenticated) {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        conn.reply(&Reply {
            code: 250,
            status: "",
            lines,
        });
        Flow::Continue
    }
}

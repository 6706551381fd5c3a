//! DATA and BDAT: the message bytes, framed (CRLF.CRLF, or counted chunks) and streamed into a
//! `Reception`.

use super::receive::{AcceptedEnvelope, Arrival, Reception};
use super::session::{Conn, Flow, ReadError, Session};
use crate::smtp::data::{DataDecoder, Normalizer};
use crate::smtp::reply::Reply;
use tokio::io::{AsyncRead, AsyncWrite};

impl<'c> Session<'c> {
    /// Guards common to DATA and BDAT; the envelope to receive into.
    fn envelope_for_data(&mut self) -> Result<AcceptedEnvelope, Reply> {
        let Some(tx) = self.tx.as_ref() else {
            return Err(Reply::new(503, "5.5.1", "Need MAIL command"));
        };
        if tx.recipients.is_empty() {
            return Err(Reply::new(554, "5.5.1", "No valid recipients"));
        }
        let identity = self
            .identity
            .clone()
            .ok_or_else(|| Reply::new(530, "5.7.0", "Authentication required"))?;
        Ok(AcceptedEnvelope {
            sender: tx.sender.clone(),
            recipients: tx.recipients.clone(),
            identity,
            // 8-bit or not is decided from the bytes received, not from BODY=.
            smtputf8: tx.smtputf8,
        })
    }

    fn arrival(&self) -> Arrival {
        let authenticated = self.identity.as_ref().is_some_and(|i| i.authenticated);
        let protocol = match (self.esmtp, self.tls, authenticated) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        };
        Arrival {
            helo: self.helo.clone().unwrap_or_default(),
            client_ip: self.peer.ip,
            protocol,
        }
    }

    pub(crate) async fn data<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        conn: &mut Conn<S>,
    ) -> Flow {
        if self.tx.as_ref().is_some_and(|t| t.bdat.is_some()) {
            return self.error(
                conn,
                Reply::new(503, "5.5.1", "DATA not allowed after BDAT"),
            );
        }
        let envelope = match self.envelope_for_data() {
            Ok(e) => e,
            Err(r) => return self.error(conn, r),
        };
        conn.reply(&Reply::new(
            354,
            "",
            "Start mail input; end with <CRLF>.<CRLF>",
        ));
        if conn.flush().await.is_err() {
            return Flow::Close;
        }
        let mut reception = Reception::new(self.core, self.shared, envelope, self.arrival());
        let mut decoder = DataDecoder::new();
        let mut out = Vec::with_capacity(64 * 1024);
        loop {
            let end = decoder.decode(&conn.buf, &mut out);
            match end {
                Some(n) => {
                    conn.buf.drain(..n);
                }
                None => conn.buf.clear(),
            }
            reception.feed(&out);
            out.clear();
            if end.is_some() {
                break;
            }
            match conn.fill(self.idle()).await {
                Ok(_) => {}
                Err(ReadError::Idle) => {
                    conn.reply(&self.timeout_reply(" during DATA"));
                    return Flow::Close;
                }
                // Connection lost mid-message: the draft is dropped with the reception.
                Err(_) => return Flow::Close,
            }
        }
        let reply = reception.finish(decoder.saw_bare_newline()).await;
        self.tx = None;
        conn.reply(&reply);
        Flow::Continue
    }

    pub(crate) async fn bdat<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        chunk_size: usize,
        is_last: bool,
        conn: &mut Conn<S>,
    ) -> Flow {
        // The chunk follows the command whatever we think of it: read it in any case.
        let mut reception = match self.tx.as_mut().and_then(|t| t.bdat.take()) {
            Some(r) => Some(r),
            None => match self.envelope_for_data() {
                Ok(envelope) => Some((
                    Reception::new(self.core, self.shared, envelope, self.arrival()),
                    Normalizer::default(),
                )),
                Err(reply) => {
                    if self.drain(chunk_size, conn).await.is_err() {
                        return Flow::Close;
                    }
                    return self.error(conn, reply);
                }
            },
        };
        let mut left = chunk_size;
        let mut out = Vec::with_capacity(64 * 1024);
        while left > 0 {
            if conn.buf.is_empty() {
                match conn.fill(self.idle()).await {
                    Ok(_) => {}
                    Err(ReadError::Idle) => {
                        conn.reply(&self.timeout_reply(" during BDAT"));
                        return Flow::Close;
                    }
                    Err(_) => return Flow::Close,
                }
            }
            let take = left.min(conn.buf.len());
            if let Some((r, norm)) = reception.as_mut() {
                norm.push(&conn.buf[..take], &mut out);
                r.feed(&out);
                out.clear();
            }
            conn.buf.drain(..take);
            left -= take;
        }
        let Some((mut r, mut norm)) = reception else {
            return Flow::Continue;
        };
        if is_last {
            norm.finish(&mut out);
            r.feed(&out);
            let reply = r.finish(norm.saw_bare_newline()).await;
            self.tx = None;
            conn.reply(&reply);
        } else if let Some(refusal) = r.refusal().cloned() {
            // Keep the refusal for the rest of the chunks; answer each with it.
            conn.reply(&refusal);
            if let Some(tx) = self.tx.as_mut() {
                tx.bdat = Some((r, norm));
            }
        } else {
            conn.reply(&Reply::new(
                250,
                "2.0.0",
                format!("{chunk_size} octets received"),
            ));
            if let Some(tx) = self.tx.as_mut() {
                tx.bdat = Some((r, norm));
            }
        }
        Flow::Continue
    }

    async fn drain<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        mut left: usize,
        conn: &mut Conn<S>,
    ) -> Result<(), ReadError> {
        while left > 0 {
            if conn.buf.is_empty() {
                conn.fill(self.idle()).await?;
            }
            let take = left.min(conn.buf.len());
            conn.buf.drain(..take);
            left -= take;
        }
        Ok(())
    }
}

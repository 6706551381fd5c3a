//! AUTH PLAIN and LOGIN (RFC 4954, 4616) against argon2id/bcrypt hashes, with the failure
//! brake: per-address delays from the 4th failure (served before the password is checked), 421
//! at a connection's 10th. The check runs on the bounded `hash_pool` (454 4.7.0 when no slot
//! comes in time). An unknown user costs the same hash computation and gets the same reply as a
//! wrong password.

use super::policy::{user_client, user_identity};
use super::session::{Conn, Flow, Session};
use crate::metrics::{AuthMechanism, OverloadReason, RejectReason};
use crate::smtp::reply::Reply;
use base64::Engine;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN};
use tokio::io::{AsyncRead, AsyncWrite};

/// A connection's failures before it is closed.
const MAX_FAILURES_PER_CONNECTION: u32 = 10;

/// A valid argon2id hash of a random password: what an unknown user is checked against so
/// that the answer takes as long as for a known one.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$1Y7Ad6z2r5K5WnqsFv5f0bqJdQ9oQ1q7w8Hq3XG3b0A";

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

impl Session<'_> {
    pub(crate) async fn auth<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        mechanism: u64,
        initial: String,
        conn: &mut Conn<S>,
    ) -> Flow {
        if !self.auth_allowed() {
            return self.error(
                conn,
                Reply::new(
                    538,
                    "5.7.11",
                    "Encryption required for requested authentication mechanism",
                ),
            );
        }
        if self.helo.is_none() || !self.esmtp {
            return self.error(conn, Reply::new(503, "5.5.1", "Say EHLO first"));
        }
        if self.identity.as_ref().is_some_and(|i| i.authenticated) {
            return self.error(conn, Reply::new(503, "5.5.1", "Already authenticated"));
        }
        if self.tx.is_some() {
            return self.error(
                conn,
                Reply::new(503, "5.5.1", "AUTH not allowed during a mail transaction"),
            );
        }
        let (mech_name, credentials) = match mechanism {
            AUTH_PLAIN => ("plain", self.auth_plain(initial, conn).await),
            AUTH_LOGIN => ("login", self.auth_login(initial, conn).await),
            _ => {
                return self.error(
                    conn,
                    Reply::new(
                        504,
                        "5.5.4",
                        "Unrecognized authentication type (use PLAIN or LOGIN)",
                    ),
                )
            }
        };
        let (user, password) = match credentials {
            Ok(c) => c,
            Err(Some(reply)) => return self.error(conn, reply),
            Err(None) => return Flow::Close,
        };
        let client = user_client(&self.core.settings.clients, &user);
        let hash = client
            .map(|(_, h)| h.to_string())
            .unwrap_or_else(|| DUMMY_HASH.to_string());
        // One check at a time per address; an address that has been failing waits its delay
        // before the check (holding no hash slot), then the check runs on the bounded pool.
        // Known and unknown users take exactly the same path.
        let shared = self.shared;
        let pool = &shared.hash_pool;
        let Ok(turn) = pool.turn(self.peer.ip).await else {
            return self.hash_busy(conn);
        };
        let Ok(delay) = shared.auth_delay(self.peer.ip).await else {
            tracing::warn!(peer = ?self.peer.ip, "AUTH deferred: the shared failure count is unavailable (cluster.on_redis_down: defer)");
            return self.error(
                conn,
                Reply::new(454, "4.7.0", "Temporary authentication failure"),
            );
        };
        if !delay.is_zero() {
            let _ = conn.flush().await;
            tokio::time::sleep(delay).await;
        }
        let Ok(verified) = pool.verify(hash, password).await else {
            return self.hash_busy(conn);
        };
        match client {
            Some((c, _)) if verified => {
                self.identity = Some(user_identity(c, &user));
                tracing::info!(user = %user, peer = ?self.peer.ip, "authenticated");
                conn.reply(&Reply::new(235, "2.7.0", "Authentication successful"));
                Flow::Continue
            }
            _ => {
                self.auth_failures += 1;
                self.shared.metrics.auth_failure(if mech_name == "plain" {
                    AuthMechanism::Plain
                } else {
                    AuthMechanism::Login
                });
                self.shared.metrics.rejected(RejectReason::Auth);
                tracing::warn!(mechanism = mech_name, peer = ?self.peer.ip, failures = self.auth_failures, "authentication failed");
                // Its delay was served before the check.
                shared.auth_failed(self.peer.ip).await;
                drop(turn);
                if self.auth_failures >= MAX_FAILURES_PER_CONNECTION {
                    conn.reply(&Reply::new(
                        421,
                        "4.7.0",
                        "Too many authentication failures, closing connection",
                    ));
                    return Flow::Close;
                }
                self.error(
                    conn,
                    Reply::new(535, "5.7.8", "Authentication credentials invalid"),
                )
            }
        }
    }

    /// No password-check slot in time: a temporary failure that is not counted as a wrong
    /// password (nothing was checked), only as a session error.
    fn hash_busy<S: AsyncRead + AsyncWrite + Unpin>(&mut self, conn: &mut Conn<S>) -> Flow {
        self.shared
            .metrics
            .overload_refusal(OverloadReason::AuthHashBusy);
        tracing::warn!(peer = ?self.peer.ip, "no password-check slot in time; AUTH answered 454");
        self.error(
            conn,
            Reply::new(454, "4.7.0", "Temporary authentication failure"),
        )
    }

    /// Read the client's answer to a 334 challenge. `Err(None)`: connection gone.
    async fn challenge<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        prompt: &str,
        conn: &mut Conn<S>,
    ) -> Result<String, Option<Reply>> {
        conn.reply(&Reply::new(334, "", prompt.to_string()));
        conn.flush().await.map_err(|_| None)?;
        let line = conn
            .read_line(self.idle())
            .await
            .map_err(|_| None)?
            .ok_or_else(|| Some(Reply::new(500, "5.5.2", "Line too long")))?;
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if text == "*" {
            return Err(Some(Reply::new(501, "5.0.0", "Authentication cancelled")));
        }
        Ok(text)
    }

    async fn auth_plain<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        initial: String,
        conn: &mut Conn<S>,
    ) -> Result<(String, String), Option<Reply>> {
        let response = if initial.is_empty() {
            self.challenge("", conn).await?
        } else {
            initial
        };
        let bad = || {
            Some(Reply::new(
                501,
                "5.5.2",
                "Cannot decode AUTH PLAIN response",
            ))
        };
        let raw = if response == "=" {
            Vec::new()
        } else {
            b64(&response).ok_or_else(bad)?
        };
        let mut parts = raw.split(|b| *b == 0);
        let (Some(authz), Some(user), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let user = String::from_utf8(user.to_vec()).map_err(|_| bad())?;
        let pass = String::from_utf8(pass.to_vec()).map_err(|_| bad())?;
        if !authz.is_empty() && authz != user.as_bytes() {
            return Err(Some(Reply::new(
                535,
                "5.7.8",
                "Authentication credentials invalid",
            )));
        }
        Ok((user, pass))
    }

    async fn auth_login<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        initial: String,
        conn: &mut Conn<S>,
    ) -> Result<(String, String), Option<Reply>> {
        let bad = || {
            Some(Reply::new(
                501,
                "5.5.2",
                "Cannot decode AUTH LOGIN response",
            ))
        };
        let user_b64 = if initial.is_empty() {
            self.challenge("VXNlcm5hbWU6", conn).await?
        } else {
            initial
        };
        let user = String::from_utf8(b64(&user_b64).ok_or_else(bad)?).map_err(|_| bad())?;
        let pass_b64 = self.challenge("UGFzc3dvcmQ6", conn).await?;
        let pass = String::from_utf8(b64(&pass_b64).ok_or_else(bad)?).map_err(|_| bad())?;
        Ok((user, pass))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_is_a_hash_no_password_matches() {
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!crate::password::verify_password_in(
            DUMMY_HASH,
            "",
            &mut Vec::new()
        ));
    }
}

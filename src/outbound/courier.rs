//! The SMTP courier: one connection to a next hop (mail-send's client for the commands), TLS as
//! the policy says, MAIL/RCPT with an outcome per recipient, and the DATA phase written by us
//! from the spool file (dot-stuffed, signatures first) so a large message is never in memory.

use super::next_hop::{self, Hop, HopError};
use super::{Outcome, Parcel};
use crate::config::OutboundTls;
use crate::smtp::data::dot_stuff;
use mail_auth::MessageAuthenticator;
use mail_send::SmtpClient;
use smtp_proto::{EhloResponse, Response, EXT_8BIT_MIME, EXT_SMTP_UTF8, EXT_START_TLS};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How to talk to a next hop.
#[derive(Clone)]
pub struct Policy {
    pub hostname: String,
    pub tls: OutboundTls,
    /// Check the peer's certificate (relay hosts); MX delivery does not, as MTAs do not.
    pub verify_certificate: bool,
    pub credentials: Option<(String, String)>,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

/// A stream of either kind behind one type.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Deliver to the first of `hops` that takes the connection.
pub async fn deliver(
    resolver: &MessageAuthenticator,
    hops: &[Hop],
    policy: &Policy,
    parcel: &Parcel<'_>,
) -> Vec<Outcome> {
    let mut last = String::from("no next hop");
    let mut permanent = true;
    for hop in hops {
        let addrs = match next_hop::addresses(resolver, hop).await {
            Ok(a) => a,
            Err(HopError::Permanent(e)) => {
                last = e;
                continue;
            }
            Err(HopError::Temporary(e)) => {
                permanent = false;
                last = e;
                continue;
            }
        };
        for addr in addrs {
            match session(addr, hop, policy, parcel).await {
                Ok(outcomes) => return outcomes,
                Err(e) => {
                    tracing::debug!(queue_id = parcel.queue_id, host = %hop.host, %addr, error = %e, "next hop failed");
                    permanent = false;
                    last = format!("{} [{}]: {e}", hop.host, addr.ip());
                }
            }
        }
    }
    if permanent {
        parcel.all(Outcome::Permanent(last))
    } else {
        parcel.all(Outcome::Temporary(last))
    }
}

/// Reasons a connection did not get as far as an answer for the recipients: try the next
/// address, or later.
type HopResult<T> = Result<T, String>;

async fn session(
    addr: std::net::SocketAddr,
    hop: &Hop,
    policy: &Policy,
    parcel: &Parcel<'_>,
) -> HopResult<Vec<Outcome>> {
    let mut client = SmtpClient::connect(addr, policy.connect_timeout)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = client.stream.set_nodelay(true);
    client.timeout = policy.command_timeout;
    if policy.tls == OutboundTls::Implicit {
        let connector = mail_send::smtp::tls::build_tls_connector(!policy.verify_certificate)
            .map_err(|e| e.to_string())?;
        let tls = client
            .into_tls(&connector, &hop.host)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let mut boxed = SmtpClient {
            stream: Box::new(tls.stream) as Box<dyn Stream>,
            timeout: tls.timeout,
        };
        greeting(&mut boxed, policy).await?;
        let ehlo = ehlo(&mut boxed, policy).await?;
        return transaction(boxed, ehlo, policy, parcel).await;
    }
    greeting(&mut client, policy).await?;
    let caps = ehlo(&mut client, policy).await?;
    let offered = caps.has_capability(EXT_START_TLS);
    let mut boxed: SmtpClient<Box<dyn Stream>>;
    let caps = if policy.tls != OutboundTls::None && offered {
        let reply = client
            .cmd(b"STARTTLS\r\n")
            .await
            .map_err(|e| format!("STARTTLS: {e}"))?;
        if reply.code != 220 {
            if policy.tls == OutboundTls::Required {
                return Ok(parcel.all(Outcome::Temporary(format!(
                    "{} refused STARTTLS: {}",
                    hop.host,
                    show(&reply)
                ))));
            }
            boxed = SmtpClient {
                stream: Box::new(client.stream),
                timeout: client.timeout,
            };
            caps
        } else {
            let connector = mail_send::smtp::tls::build_tls_connector(!policy.verify_certificate)
                .map_err(|e| e.to_string())?;
            let tls = client
                .into_tls(&connector, &hop.host)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            boxed = SmtpClient {
                stream: Box::new(tls.stream),
                timeout: tls.timeout,
            };
            ehlo(&mut boxed, policy).await?
        }
    } else {
        if policy.tls == OutboundTls::Required {
            let _ = client.cmd(b"QUIT\r\n").await;
            return Ok(parcel.all(Outcome::Temporary(format!(
                "{} does not offer STARTTLS and TLS is required",
                hop.host
            ))));
        }
        boxed = SmtpClient {
            stream: Box::new(client.stream),
            timeout: client.timeout,
        };
        caps
    };
    transaction(boxed, caps, policy, parcel).await
}

async fn greeting<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<S>,
    policy: &Policy,
) -> HopResult<()> {
    // mail-send's read() has no timeout of its own.
    let reply = tokio::time::timeout(policy.connect_timeout, client.read())
        .await
        .map_err(|_| "no greeting".to_string())?
        .map_err(|e| format!("greeting: {e}"))?;
    if reply.code != 220 {
        return Err(format!("greeting: {}", show(&reply)));
    }
    Ok(())
}

async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<S>,
    policy: &Policy,
) -> HopResult<EhloResponse<String>> {
    tokio::time::timeout(policy.command_timeout, client.ehlo(&policy.hostname))
        .await
        .map_err(|_| "EHLO timed out".to_string())?
        .map_err(|e| format!("EHLO: {e}"))
}

async fn transaction(
    mut client: SmtpClient<Box<dyn Stream>>,
    caps: EhloResponse<String>,
    policy: &Policy,
    parcel: &Parcel<'_>,
) -> HopResult<Vec<Outcome>> {
    if let Some((user, pass)) = &policy.credentials {
        let creds = mail_send::Credentials::new(user.clone(), pass.clone());
        if let Err(e) = client.authenticate(&creds, &caps).await {
            let _ = client.cmd(b"QUIT\r\n").await;
            return Ok(parcel.all(Outcome::Temporary(format!(
                "authentication at relay host failed: {e}"
            ))));
        }
    }
    let mut mail = format!("MAIL FROM:<{}>", parcel.sender);
    if parcel.eight_bit && caps.has_capability(EXT_8BIT_MIME) {
        mail.push_str(" BODY=8BITMIME");
    }
    if parcel.smtputf8 && caps.has_capability(EXT_SMTP_UTF8) {
        mail.push_str(" SMTPUTF8");
    }
    mail.push_str("\r\n");
    let reply = client
        .cmd(mail.as_bytes())
        .await
        .map_err(|e| format!("MAIL: {e}"))?;
    if reply.code >= 400 {
        let _ = client.cmd(b"QUIT\r\n").await;
        return Ok(parcel.all(outcome_of(&reply)));
    }
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(parcel.recipients.len());
    for rcpt in &parcel.recipients {
        let reply = client
            .cmd(format!("RCPT TO:<{rcpt}>\r\n").as_bytes())
            .await
            .map_err(|e| format!("RCPT: {e}"))?;
        outcomes.push((reply.code >= 400).then(|| outcome_of(&reply)));
    }
    if outcomes.iter().all(Option::is_some) {
        let _ = client.cmd(b"QUIT\r\n").await;
        return Ok(outcomes.into_iter().flatten().collect());
    }
    let reply = client
        .cmd(b"DATA\r\n")
        .await
        .map_err(|e| format!("DATA: {e}"))?;
    if reply.code != 354 {
        let _ = client.cmd(b"QUIT\r\n").await;
        let o = outcome_of(&reply);
        return Ok(outcomes
            .into_iter()
            .map(|x| x.unwrap_or_else(|| o.clone()))
            .collect());
    }
    tokio::time::timeout(
        policy.command_timeout.max(Duration::from_secs(60)) * 4,
        send_message(&mut client.stream, parcel),
    )
    .await
    .map_err(|_| "timed out sending the message".to_string())?
    .map_err(|e| format!("sending the message: {e}"))?;
    let reply = tokio::time::timeout(policy.command_timeout, client.read())
        .await
        .map_err(|_| "no reply after the message".to_string())?
        .map_err(|e| format!("after the message: {e}"))?;
    let _ = client.cmd(b"QUIT\r\n").await;
    let o = if reply.code < 300 {
        Outcome::Delivered(show(&reply))
    } else {
        outcome_of(&reply)
    };
    Ok(outcomes
        .into_iter()
        .map(|x| x.unwrap_or_else(|| o.clone()))
        .collect())
}

/// Signatures, then the stored bytes dot-stuffed, then the terminator.
async fn send_message<S: AsyncWrite + Unpin>(
    stream: &mut S,
    parcel: &Parcel<'_>,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(70 * 1024);
    for sig in parcel.signatures {
        out.extend_from_slice(sig.as_bytes());
    }
    let mut file = tokio::fs::File::open(parcel.message).await?;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut at_line_start = true;
    let mut last_two = [b'\r', b'\n'];
    loop {
        let n = file.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        dot_stuff(&chunk[..n], &mut at_line_start, &mut out);
        if n >= 2 {
            last_two = [chunk[n - 2], chunk[n - 1]];
        } else {
            last_two = [last_two[1], chunk[0]];
        }
        stream.write_all(&out).await?;
        out.clear();
    }
    if last_two != [b'\r', b'\n'] {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    stream.write_all(&out).await?;
    stream.flush().await
}

fn show(reply: &Response<String>) -> String {
    let esc = if reply.esc[0] > 0 {
        format!(" {}.{}.{}", reply.esc[0], reply.esc[1], reply.esc[2])
    } else {
        String::new()
    };
    let text: String = reply
        .message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(400)
        .collect();
    format!("{}{} {}", reply.code, esc, text)
}

fn outcome_of(reply: &Response<String>) -> Outcome {
    match reply.code {
        200..=399 => Outcome::Delivered(show(reply)),
        500..=599 => Outcome::Permanent(show(reply)),
        _ => Outcome::Temporary(show(reply)),
    }
}

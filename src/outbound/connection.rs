//! Opening an SMTP connection to a next hop (TCP, greeting, EHLO, TLS as the policy says,
//! AUTH), checking that an idle one is still usable (RSET), and closing one politely.
//! mail-send's client speaks the commands; every wait on the peer has a timeout.

use crate::config::OutboundTls;
use mail_send::SmtpClient;
use smtp_proto::{EhloResponse, Response, EXT_START_TLS};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

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

/// A stream of either kind (plain TCP or TLS) behind one type.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An open, greeted, (maybe) encrypted and authenticated connection, ready for MAIL.
pub struct Connection {
    pub(crate) client: SmtpClient<Box<dyn Stream>>,
    pub(crate) caps: EhloResponse<String>,
    /// The host name it was opened for (MX name or relay host), for logs.
    pub host: String,
    pub addr: SocketAddr,
    /// Mail transactions completed on it.
    pub transactions: u32,
}

/// Why a connection could not be opened. Neither is permanent for the mail: another address,
/// another host or a later attempt may do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The address is unreachable or broken (refused, timed out, no greeting, TLS handshake
    /// failed): try the next address; the circuit breaker closes this one.
    #[error("{detail}")]
    Down { detail: String, tls: bool },
    /// The host answered but cannot take our mail under the policy (TLS required and not
    /// offered, credentials refused): try the next host; it is not dead.
    #[error("{detail}")]
    Policy { detail: String, tls: bool },
}

impl OpenError {
    /// TLS that was required or tried did not happen (`tls_failures_total`).
    pub fn is_tls(&self) -> bool {
        match self {
            OpenError::Down { tls, .. } | OpenError::Policy { tls, .. } => *tls,
        }
    }
}

fn down(what: &str, e: &dyn std::fmt::Display) -> OpenError {
    OpenError::Down {
        detail: format!("{what}: {e}"),
        tls: false,
    }
}

fn tls_down(what: &str, e: &dyn std::fmt::Display) -> OpenError {
    OpenError::Down {
        detail: format!("{what}: {e}"),
        tls: true,
    }
}

/// Open a connection to `addr` for `host` as `policy` says.
pub async fn open(addr: SocketAddr, host: &str, policy: &Policy) -> Result<Connection, OpenError> {
    let mut client = SmtpClient::connect(addr, policy.connect_timeout)
        .await
        .map_err(|e| down("connect", &e))?;
    let _ = client.stream.set_nodelay(true);
    client.timeout = policy.command_timeout;

    if policy.tls == OutboundTls::Implicit {
        let tls = client
            .into_tls(&connector(policy)?, host)
            .await
            .map_err(|e| tls_down("TLS handshake", &e))?;
        let mut client = SmtpClient {
            stream: Box::new(tls.stream) as Box<dyn Stream>,
            timeout: tls.timeout,
        };
        greeting(&mut client, policy).await?;
        let caps = ehlo(&mut client, policy).await?;
        return authenticate(client, caps, addr, host, policy).await;
    }

    greeting(&mut client, policy).await?;
    let caps = ehlo(&mut client, policy).await?;
    let offered = caps.has_capability(EXT_START_TLS);
    if policy.tls == OutboundTls::None || (!offered && policy.tls == OutboundTls::Opportunistic) {
        let client = SmtpClient {
            stream: Box::new(client.stream) as Box<dyn Stream>,
            timeout: client.timeout,
        };
        return authenticate(client, caps, addr, host, policy).await;
    }
    if !offered {
        // Required TLS and no STARTTLS: never send the mail in clear text.
        let _ = client.cmd(b"QUIT\r\n").await;
        return Err(OpenError::Policy {
            detail: format!("{host} does not offer STARTTLS and TLS is required"),
            tls: true,
        });
    }
    let reply = client
        .cmd(b"STARTTLS\r\n")
        .await
        .map_err(|e| down("STARTTLS", &e))?;
    if reply.code != 220 {
        if policy.tls != OutboundTls::Opportunistic {
            let _ = client.cmd(b"QUIT\r\n").await;
            return Err(OpenError::Policy {
                detail: format!("{host} refused STARTTLS: {}", show(&reply)),
                tls: true,
            });
        }
        // Opportunistic: the handshake never began, so carry on in clear text as without TLS.
        let client = SmtpClient {
            stream: Box::new(client.stream) as Box<dyn Stream>,
            timeout: client.timeout,
        };
        return authenticate(client, caps, addr, host, policy).await;
    }
    // A failed handshake is a broken host, not a reason to fall back to clear text.
    let tls = client
        .into_tls(&connector(policy)?, host)
        .await
        .map_err(|e| tls_down("TLS handshake", &e))?;
    let mut client = SmtpClient {
        stream: Box::new(tls.stream) as Box<dyn Stream>,
        timeout: tls.timeout,
    };
    // RFC 3207 4.2: everything learnt before TLS is forgotten; ask again.
    let caps = ehlo(&mut client, policy).await?;
    authenticate(client, caps, addr, host, policy).await
}

fn connector(policy: &Policy) -> Result<tokio_rustls::TlsConnector, OpenError> {
    mail_send::smtp::tls::build_tls_connector(!policy.verify_certificate)
        .map_err(|e| tls_down("TLS setup", &e))
}

async fn greeting<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<S>,
    policy: &Policy,
) -> Result<(), OpenError> {
    // mail-send's read() has no timeout of its own.
    let reply = tokio::time::timeout(policy.connect_timeout, client.read())
        .await
        .map_err(|_| OpenError::Down {
            detail: "no greeting".into(),
            tls: false,
        })?
        .map_err(|e| down("greeting", &e))?;
    if reply.code != 220 {
        return Err(down("greeting", &show(&reply)));
    }
    Ok(())
}

async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<S>,
    policy: &Policy,
) -> Result<EhloResponse<String>, OpenError> {
    // ehlo() runs under the client's command timeout.
    client
        .ehlo(&policy.hostname)
        .await
        .map_err(|e| down("EHLO", &e))
}

async fn authenticate(
    mut client: SmtpClient<Box<dyn Stream>>,
    caps: EhloResponse<String>,
    addr: SocketAddr,
    host: &str,
    policy: &Policy,
) -> Result<Connection, OpenError> {
    if let Some((user, pass)) = &policy.credentials {
        let creds = mail_send::Credentials::new(user.clone(), pass.clone());
        if let Err(e) = client.authenticate(&creds, &caps).await {
            let _ = client.cmd(b"QUIT\r\n").await;
            return Err(OpenError::Policy {
                detail: format!("authentication at {host} failed: {e}"),
                tls: false,
            });
        }
    }
    Ok(Connection {
        client,
        caps,
        host: host.to_string(),
        addr,
        transactions: 0,
    })
}

impl Connection {
    /// Is this idle connection still good for another transaction? RSET must say 250
    /// (RFC 5321 4.1.1.5); anything else and the connection is dropped.
    pub async fn reset(&mut self) -> bool {
        matches!(self.client.cmd(b"RSET\r\n").await, Ok(r) if r.code == 250)
    }

    /// Say QUIT (briefly waiting for the answer) and close.
    pub async fn quit(mut self) {
        self.client.timeout = self.client.timeout.min(Duration::from_secs(5));
        let _ = self.client.cmd(b"QUIT\r\n").await;
    }
}

/// A reply as one line for logs and DSNs: code, enhanced status, text without controls.
pub fn show(reply: &Response<String>) -> String {
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

//! Opening an SMTP connection to a next hop (TCP, greeting, EHLO, TLS as the policy says,
//! AUTH), checking that an idle one is still usable (RSET), and closing one politely.
//! mail-send's client speaks the commands; every wait on the peer has a timeout. Under a
//! transport security policy ([`Secure`]) the certificate is checked — for the host name
//! (MTA-STS) or against the host's TLSA records (DANE) — and what fell short is kept for the
//! TLS report.

use crate::config::OutboundTls;
use crate::dane::{DaneVerifier, TlsaRrset};
use crate::tls_policy::report::{FailureDetail, ResultType};
use crate::tls_policy::verify::{self, PolicyVerifier, Verdict};
use crate::trust::Trust;
use mail_send::SmtpClient;
use smtp_proto::{EhloResponse, Response, EXT_START_TLS};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
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

/// What a transport security policy asks of one connection beyond [`Policy`]: STARTTLS, and
/// the certificate check of [`Check`]. Enforced, anything less fails the connection (never
/// clear text); not enforced (MTA-STS testing, `TLS-Required: No`), the connection goes on and
/// the shortfall is only reported.
#[derive(Clone, Copy)]
pub struct Secure<'a> {
    pub check: Check<'a>,
    pub enforce: bool,
    /// The policy, as replies name it (`the MTA-STS policy of example.com`, `the DANE policy
    /// of mx.example.net`).
    pub name: &'a str,
}

/// How the certificate is checked.
#[derive(Clone, Copy)]
pub enum Check<'a> {
    /// MTA-STS: it verifies for the MX host name against `trust` (webpki).
    Pkix(&'a Trust),
    /// DANE with usable TLSA records: it matches one of them (DANE-TA names: the TLSA base
    /// domain, the MX host, `recipient_domain`). The SNI is the TLSA base domain (RFC 7672
    /// 8.1).
    Dane {
        tlsa: &'a TlsaRrset,
        recipient_domain: &'a str,
    },
    /// DANE whose TLSA records are all unusable: TLS is mandatory, nothing is authenticated.
    Encrypt,
}

/// Which policy verified a connection's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// For the host name, against the trusted roots (MTA-STS).
    Pkix,
    /// Against the host's TLSA records (DANE).
    Dane,
}

/// The verifier consulted during a handshake, for its verdict afterwards.
enum Checker {
    Pkix(Arc<PolicyVerifier>),
    Dane(Arc<DaneVerifier>),
}

impl Checker {
    fn verdict(&self) -> Verdict {
        match self {
            Checker::Pkix(v) => v.verdict(),
            Checker::Dane(v) => match v.verdict() {
                crate::dane::Verdict::Unchecked => Verdict::Unchecked,
                crate::dane::Verdict::Matched(_) => Verdict::Valid,
                crate::dane::Verdict::Failed(f) => {
                    Verdict::Invalid(crate::tls_policy::dane::check_failure(&f))
                }
            },
        }
    }

    fn verified(&self) -> Verified {
        match self {
            Checker::Pkix(_) => Verified::Pkix,
            Checker::Dane(_) => Verified::Dane,
        }
    }
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
    pub tls: bool,
    /// TLS with a certificate verified under a policy, and which.
    pub verified: Option<Verified>,
    /// What a policy not enforced found wrong with it (for the TLS report).
    pub policy_failure: Option<FailureDetail>,
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
    Down {
        detail: String,
        tls: bool,
        /// A TLS failure, as a TLS report names it.
        report: Option<Box<FailureDetail>>,
    },
    /// The host answered but cannot take our mail under the policy (TLS required and not
    /// offered, a certificate an enforced policy refuses, credentials refused): try the next
    /// host; it is not dead.
    #[error("{detail}")]
    Policy {
        detail: String,
        tls: bool,
        report: Option<Box<FailureDetail>>,
    },
}

impl OpenError {
    /// TLS that was required or tried did not happen (`tls_failures_total`).
    pub fn is_tls(&self) -> bool {
        match self {
            OpenError::Down { tls, .. } | OpenError::Policy { tls, .. } => *tls,
        }
    }

    /// The TLS failure, as a TLS report names it (`None`: TLS was not the problem).
    pub fn report(&self) -> Option<&FailureDetail> {
        match self {
            OpenError::Down { report, .. } | OpenError::Policy { report, .. } => report.as_deref(),
        }
    }
}

fn down(what: &str, e: &dyn std::fmt::Display) -> OpenError {
    OpenError::Down {
        detail: format!("{what}: {e}"),
        tls: false,
        report: None,
    }
}

fn tls_down(what: &str, e: &dyn std::fmt::Display) -> OpenError {
    OpenError::Down {
        detail: format!("{what}: {e}"),
        tls: true,
        report: None,
    }
}

/// A policy refusal of the connection, with what the report says about it.
fn refused(detail: String, report: FailureDetail) -> OpenError {
    OpenError::Policy {
        detail,
        tls: true,
        report: Some(Box::new(report)),
    }
}

/// STARTTLS not offered (or refused) where a policy wanted it.
fn starttls_missing(why: String) -> FailureDetail {
    FailureDetail {
        failure_reason_code: Some(why),
        ..FailureDetail::new(ResultType::StarttlsNotSupported)
    }
}

/// A failed handshake, as a report names it.
fn handshake_report(e: &mail_send::Error) -> FailureDetail {
    match e {
        mail_send::Error::Tls(r) => verify::handshake_failure(Some(r), &e.to_string()),
        _ => verify::handshake_failure(None, &e.to_string()),
    }
}

/// Open a connection to `addr` for `host` as `policy` says, and as `secure` says when a
/// transport security policy applies.
pub async fn open(
    addr: SocketAddr,
    host: &str,
    policy: &Policy,
    secure: Option<Secure<'_>>,
) -> Result<Connection, OpenError> {
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
        return authenticate(client, caps, addr, host, true, policy).await;
    }

    greeting(&mut client, policy).await?;
    let caps = ehlo(&mut client, policy).await?;
    let offered = caps.has_capability(EXT_START_TLS);
    let enforced = secure.filter(|s| s.enforce);
    let required = policy.tls == OutboundTls::Required || enforced.is_some();
    if policy.tls == OutboundTls::None || (!offered && !required) {
        let client = SmtpClient {
            stream: Box::new(client.stream) as Box<dyn Stream>,
            timeout: client.timeout,
        };
        let mut conn = authenticate(client, caps, addr, host, false, policy).await?;
        if secure.is_some() {
            conn.policy_failure = Some(starttls_missing(format!("{host} does not offer STARTTLS")));
        }
        return Ok(conn);
    }
    if !offered {
        // Required TLS and no STARTTLS: never send the mail in clear text.
        let _ = client.cmd(b"QUIT\r\n").await;
        let detail = match enforced {
            Some(s) => format!(
                "4.7.5 {host} does not offer STARTTLS, which {} requires",
                s.name
            ),
            None => format!("{host} does not offer STARTTLS and TLS is required"),
        };
        return Err(refused(
            detail,
            starttls_missing(format!("{host} does not offer STARTTLS")),
        ));
    }
    let reply = client
        .cmd(b"STARTTLS\r\n")
        .await
        .map_err(|e| down("STARTTLS", &e))?;
    if reply.code != 220 {
        let why = format!("{host} refused STARTTLS: {}", show(&reply));
        if required {
            let _ = client.cmd(b"QUIT\r\n").await;
            let detail = match enforced {
                Some(s) => format!("4.7.5 {why}, and {} requires TLS", s.name),
                None => why.clone(),
            };
            return Err(refused(detail, starttls_missing(why)));
        }
        // Opportunistic: the handshake never began, so carry on in clear text as without TLS.
        let client = SmtpClient {
            stream: Box::new(client.stream) as Box<dyn Stream>,
            timeout: client.timeout,
        };
        let mut conn = authenticate(client, caps, addr, host, false, policy).await?;
        if secure.is_some() {
            conn.policy_failure = Some(starttls_missing(why));
        }
        return Ok(conn);
    }
    // A failed handshake is a broken host, not a reason to fall back to clear text.
    let (connector, verifier) = match secure.map(|s| (s.check, s.enforce)) {
        Some((Check::Pkix(trust), enforce)) => {
            let (config, verifier) = PolicyVerifier::client_config(trust, enforce);
            (
                tokio_rustls::TlsConnector::from(config),
                Some(Checker::Pkix(verifier)),
            )
        }
        Some((
            Check::Dane {
                tlsa,
                recipient_domain,
            },
            enforce,
        )) => {
            let verifier = tlsa.verifier(host, recipient_domain);
            let verifier = if enforce {
                verifier
            } else {
                verifier.relaxed()
            };
            let (config, verifier) = verifier.client_config();
            (
                tokio_rustls::TlsConnector::from(config),
                Some(Checker::Dane(verifier)),
            )
        }
        Some((Check::Encrypt, _)) | None => (connector(policy)?, None),
    };
    let sni = match secure.map(|s| s.check) {
        Some(Check::Dane { tlsa, .. }) => tlsa.base_domain(),
        _ => host.to_string(),
    };
    let tls = match client.into_tls(&connector, &sni).await {
        Ok(tls) => tls,
        Err(e) => {
            // The host is up and answered; an enforced policy refused its certificate.
            if let (Some(s), Some(Verdict::Invalid(f))) =
                (enforced, verifier.as_ref().map(|v| v.verdict()))
            {
                let detail = match s.check {
                    Check::Dane { .. } => format!(
                        "4.7.5 the certificate of {host} does not match {} ({}): {e}",
                        s.name,
                        f.failure_reason_code.as_deref().unwrap_or(f.result.as_str())
                    ),
                    _ => format!(
                        "4.7.5 the certificate of {host} does not verify ({}), and {} requires it: {e}",
                        f.result, s.name
                    ),
                };
                return Err(refused(detail, f));
            }
            return Err(OpenError::Down {
                detail: format!("TLS handshake: {e}"),
                tls: true,
                report: Some(Box::new(handshake_report(&e))),
            });
        }
    };
    let mut client = SmtpClient {
        stream: Box::new(tls.stream) as Box<dyn Stream>,
        timeout: tls.timeout,
    };
    // RFC 3207 4.2: everything learnt before TLS is forgotten; ask again.
    let caps = ehlo(&mut client, policy).await?;
    let mut conn = authenticate(client, caps, addr, host, true, policy).await?;
    if let Some(checker) = verifier {
        match checker.verdict() {
            Verdict::Valid => conn.verified = Some(checker.verified()),
            Verdict::Invalid(f) => conn.policy_failure = Some(f),
            Verdict::Unchecked => {}
        }
    }
    Ok(conn)
}

/// The TLS client for hosts without MTA-STS or DANE (and relay hosts): built once per kind, as
/// building one reads and parses the system's CA store and starts an empty session cache (a
/// failure is not kept: the next connection tries again).
fn connector(policy: &Policy) -> Result<tokio_rustls::TlsConnector, OpenError> {
    static VERIFYING: OnceLock<tokio_rustls::TlsConnector> = OnceLock::new();
    static ANY_CERTIFICATE: OnceLock<tokio_rustls::TlsConnector> = OnceLock::new();
    let cell = if policy.verify_certificate {
        &VERIFYING
    } else {
        &ANY_CERTIFICATE
    };
    if let Some(built) = cell.get() {
        return Ok(built.clone());
    }
    let built = mail_send::smtp::tls::build_tls_connector(!policy.verify_certificate)
        .map_err(|e| tls_down("TLS setup", &e))?;
    Ok(cell.get_or_init(|| built).clone())
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
            report: None,
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
    tls: bool,
    policy: &Policy,
) -> Result<Connection, OpenError> {
    if let Some((user, pass)) = &policy.credentials {
        let creds = mail_send::Credentials::new(user.clone(), pass.clone());
        if let Err(e) = client.authenticate(&creds, &caps).await {
            let _ = client.cmd(b"QUIT\r\n").await;
            return Err(OpenError::Policy {
                detail: format!("authentication at {host} failed: {e}"),
                tls: false,
                report: None,
            });
        }
    }
    Ok(Connection {
        client,
        caps,
        host: host.to_string(),
        addr,
        tls,
        verified: None,
        policy_failure: None,
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

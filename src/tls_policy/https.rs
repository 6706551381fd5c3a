//! HTTPS requests the relay makes on its own behalf: fetching MTA-STS policies (RFC 8461 3.3)
//! and posting TLS reports (RFC 8460 5.4). hyper's HTTP/1.1 client over a rustls connection we
//! open ourselves, so the host name is resolved by the relay's own resolver (`dns.nameservers`)
//! and the certificate checked against [`Trust`]; one request per connection, redirects never
//! followed (hyper does not follow them; a 3xx is just a status), the whole exchange under one
//! deadline and the answer's body under a size limit.

use crate::trust::Trust;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;

use mail_auth::MessageAuthenticator;
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One request.
pub struct Request<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// Host name (or IP literal) and port of the server.
    pub host: &'a str,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: &'a str,
    /// Body and its media type, for POST.
    pub body: Option<(&'a str, Vec<u8>)>,
}

/// Bounds of one exchange.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// From the first DNS query to the last byte of the answer.
    pub timeout: Duration,
    /// Largest body accepted.
    pub max_body: usize,
}

/// The server's answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// The media type without parameters, lower case (`text/plain`).
    pub media_type: Option<String>,
    pub body: Vec<u8>,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpsError {
    #[error("{0} does not exist in DNS")]
    NoSuchHost(String),
    #[error("cannot resolve {0}: {1}")]
    Dns(String, String),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    /// The server's certificate did not verify (untrusted, expired, wrong name).
    #[error("the certificate of {0} does not verify: {1}")]
    Certificate(String, String),
    #[error("TLS with {0} failed: {1}")]
    Tls(String, String),
    #[error("HTTP exchange with {0} failed: {1}")]
    Http(String, String),
    #[error("the answer from {0} is larger than {1} bytes")]
    TooLarge(String, usize),
    #[error("no complete answer from {0} within {1:?}")]
    Timeout(String, Duration),
}

/// Send `request` and read the answer, within `limits`.
pub async fn send(
    resolver: &MessageAuthenticator,
    trust: &Trust,
    request: Request<'_>,
    limits: Limits,
) -> Result<Response, HttpsError> {
    let host = request.host.to_string();
    match tokio::time::timeout(limits.timeout, exchange(resolver, trust, request, limits)).await {
        Ok(result) => result,
        Err(_) => Err(HttpsError::Timeout(host, limits.timeout)),
    }
}

async fn exchange(
    resolver: &MessageAuthenticator,
    trust: &Trust,
    request: Request<'_>,
    limits: Limits,
) -> Result<Response, HttpsError> {
    let host = request.host;
    let started = Instant::now();
    let addrs = addresses(resolver, host, request.port).await?;
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
        .map_err(|e| HttpsError::Tls(host.into(), e.to_string()))?
        .to_owned();
    let connector = tokio_rustls::TlsConnector::from(trust.https());
    let mut last = HttpsError::Connect(host.into(), "no address".into());
    let mut stream = None;
    for addr in addrs {
        // Leave time for the next address when there is one: a dead IPv6 route must not eat
        // the whole deadline.
        let budget = limits.timeout.saturating_sub(started.elapsed()) / 2;
        match tokio::time::timeout(budget, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => {
                stream = Some(tcp);
                break;
            }
            Ok(Err(e)) => last = HttpsError::Connect(addr.to_string(), e.to_string()),
            Err(_) => last = HttpsError::Connect(addr.to_string(), "timed out".into()),
        }
    }
    let Some(tcp) = stream else { return Err(last) };
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| tls_error(host, &e))?;

    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| HttpsError::Http(host.into(), e.to_string()))?;
    let driver = tokio::spawn(conn);
    let authority = if request.port == 443 {
        host.to_string()
    } else {
        format!("{host}:{}", request.port)
    };
    let mut builder = hyper::Request::builder()
        .method(request.method)
        .uri(request.path)
        .header(hyper::header::HOST, authority)
        .header(
            hyper::header::USER_AGENT,
            concat!("dkim-relay/", env!("CARGO_PKG_VERSION")),
        )
        .header(hyper::header::CONNECTION, "close");
    let body = match request.body {
        Some((media_type, bytes)) => {
            builder = builder.header(hyper::header::CONTENT_TYPE, media_type);
            Bytes::from(bytes)
        }
        None => Bytes::new(),
    };
    let req = builder
        .body(Full::new(body))
        .map_err(|e| HttpsError::Http(host.into(), e.to_string()))?;
    let result = async {
        let answer = sender
            .send_request(req)
            .await
            .map_err(|e| HttpsError::Http(host.into(), e.to_string()))?;
        let status = answer.status().as_u16();
        let media_type = answer
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
        let body = Limited::new(answer.into_body(), limits.max_body)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    HttpsError::TooLarge(host.into(), limits.max_body)
                } else {
                    HttpsError::Http(host.into(), e.to_string())
                }
            })?
            .to_bytes()
            .to_vec();
        Ok(Response {
            status,
            media_type,
            body,
        })
    }
    .await;
    driver.abort();
    result
}

/// A TLS failure, told apart: a certificate that does not verify is the server's problem to
/// report (RFC 8460 `sts-webpki-invalid`), anything else a failed handshake.
fn tls_error(host: &str, e: &std::io::Error) -> HttpsError {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(c)) => {
            HttpsError::Certificate(host.into(), format!("{c:?}"))
        }
        _ => HttpsError::Tls(host.into(), e.to_string()),
    }
}

/// The addresses of `host` (`resolver::addresses`), failures as this client reports them.
async fn addresses(
    resolver: &MessageAuthenticator,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, HttpsError> {
    use crate::resolver::AddressError;
    crate::resolver::addresses(resolver, host, port)
        .await
        .map_err(|e| match e {
            AddressError::NoSuchHost => HttpsError::NoSuchHost(host.into()),
            AddressError::NoAddress => HttpsError::Dns(host.into(), "no address records".into()),
            AddressError::Failed(why) => HttpsError::Dns(host.into(), why),
        })
}

//! A raw SMTP client for tests: plain TCP, STARTTLS or implicit TLS (any certificate), exact
//! bytes on the wire, replies parsed into (code, text).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub struct Client {
    r: BufReader<Box<dyn Stream>>,
}

/// A reply: its code and the text of all its lines joined by newlines.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.expect("connect");
        Client {
            r: BufReader::new(Box::new(s)),
        }
    }

    /// A client on a stream the test set up itself (e.g. bound to a chosen source address).
    pub fn from_stream(s: impl Stream + 'static) -> Client {
        Client {
            r: BufReader::new(Box::new(s)),
        }
    }

    pub async fn connect_tls(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.expect("connect");
        let tls = connector()
            .connect(
                rustls_pki_types::ServerName::try_from("localhost").unwrap(),
                s,
            )
            .await
            .expect("tls");
        Client {
            r: BufReader::new(Box::new(tls)),
        }
    }

    pub async fn read_reply(&mut self) -> Reply {
        let mut text = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.r.read_line(&mut line).await.unwrap_or(0);
            if n == 0 {
                return Reply {
                    code: 0,
                    text: text.join("\n"),
                };
            }
            let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            let more = line.as_bytes().get(3) == Some(&b'-');
            text.push(line.get(4..).unwrap_or("").trim_end().to_string());
            if !more {
                return Reply {
                    code,
                    text: text.join("\n"),
                };
            }
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        let _ = self.r.get_mut().write_all(bytes).await;
        let _ = self.r.get_mut().flush().await;
    }

    pub async fn cmd(&mut self, line: &str) -> Reply {
        self.write(format!("{line}\r\n").as_bytes()).await;
        self.read_reply().await
    }

    /// STARTTLS and the new EHLO.
    pub async fn starttls(self) -> Client {
        let mut me = self;
        let r = me.cmd("STARTTLS").await;
        assert_eq!(r.code, 220, "STARTTLS: {r:?}");
        let inner = me.r.into_inner();
        let tls = connector()
            .connect(
                rustls_pki_types::ServerName::try_from("localhost").unwrap(),
                inner,
            )
            .await
            .expect("tls");
        let mut c = Client {
            r: BufReader::new(Box::new(tls)),
        };
        let r = c.cmd("EHLO client.test").await;
        assert_eq!(r.code, 250);
        c
    }

    pub async fn auth_plain(&mut self, user: &str, pass: &str) -> Reply {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
        self.cmd(&format!("AUTH PLAIN {token}")).await
    }

    /// DATA with the message dot-stuffed and terminated; returns the final reply.
    pub async fn data(&mut self, message: &[u8]) -> Reply {
        let r = self.cmd("DATA").await;
        if r.code != 354 {
            return r;
        }
        let mut out = Vec::new();
        let mut at_start = true;
        dkim_relay::smtp::data::dot_stuff(message, &mut at_start, &mut out);
        if !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.write(&out).await;
        self.read_reply().await
    }

    /// A whole transaction after EHLO/AUTH: MAIL, RCPTs, DATA. Returns the last reply.
    pub async fn send(&mut self, from: &str, to: &[&str], message: &[u8]) -> Reply {
        let r = self.cmd(&format!("MAIL FROM:<{from}>")).await;
        if r.code != 250 {
            return r;
        }
        for t in to {
            let r = self.cmd(&format!("RCPT TO:<{t}>")).await;
            if r.code != 250 {
                return r;
            }
        }
        self.data(message).await
    }
}

#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn connector() -> tokio_rustls::TlsConnector {
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

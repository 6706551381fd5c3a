//! `listeners` (TCP or unix sockets) and `tls` (the certificate the TLS listeners need).

use super::{root, Checker, Fallback::Schema};
use crate::config::raw::{RawListener, RawTls};
use crate::config::{ListenAddress, Listener, ListenerTls, TlsFiles};
use std::net::SocketAddr;
use std::path::PathBuf;

pub(super) fn check(c: &mut Checker, raw: &[RawListener]) -> Vec<Listener> {
    let mut out = Vec::new();
    if raw.is_empty() {
        c.err(
            &root().key("listeners"),
            "no listeners: add at least one (address: \"127.0.0.1:2525\")",
        );
    }
    for (i, l) in raw.iter().enumerate() {
        let p = root().key("listeners").index(i);
        let tls = c.choice(
            p.key("tls"),
            l.tls.as_ref(),
            &[
                ("none", ListenerTls::None),
                ("starttls", ListenerTls::StartTls),
                ("implicit", ListenerTls::Implicit),
            ],
            Schema,
        );
        let octal = |m: &str| {
            u32::from_str_radix(m.trim(), 8)
                .ok()
                .filter(|v| *v <= 0o777)
        };
        let default_mode = |c: &mut Checker| c.default_with(&p.key("mode"), octal);
        let unix_mode = match &l.mode {
            None => default_mode(c),
            Some(m) => match octal(m) {
                Some(v) => v,
                None => {
                    c.err(
                        &p.key("mode"),
                        format!("'{m}' is not an octal file mode like 0660"),
                    );
                    default_mode(c)
                }
            },
        };
        let address = match (&l.address, &l.unix) {
            (Some(a), None) => match a.trim().parse::<SocketAddr>() {
                Ok(sa) => ListenAddress::Tcp(sa),
                Err(_) => {
                    c.err(
                        &p.key("address"),
                        format!("'{a}' is not ip:port (e.g. \"[::]:587\" or \"127.0.0.1:2525\")"),
                    );
                    continue;
                }
            },
            (None, Some(u)) => {
                if l.tls.is_some() && tls != ListenerTls::None {
                    c.err(&p.key("tls"), "a unix listener has no TLS");
                }
                ListenAddress::Unix(PathBuf::from(u))
            }
            (Some(_), Some(_)) => {
                c.err(&p, "give either address or unix, not both");
                continue;
            }
            (None, None) => {
                c.err(&p, "a listener needs address: (TCP) or unix: (socket path)");
                continue;
            }
        };
        if out.iter().any(|o: &Listener| o.address == address) {
            c.err(&p, "this address is listed twice");
        }
        out.push(Listener {
            address,
            tls,
            unix_mode,
        });
    }
    out
}

/// The `tls` section, which any listener with TLS needs.
pub(super) fn check_tls(
    c: &mut Checker,
    raw: Option<&RawTls>,
    listeners: &[Listener],
) -> Option<TlsFiles> {
    let tls = raw.and_then(|t| {
        let p = root().key("tls");
        match (&t.certificate, &t.private_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                certificate: cert.into(),
                private_key: key.into(),
            }),
            (None, _) => {
                c.err(&p, "certificate is missing");
                None
            }
            (_, None) => {
                c.err(&p, "private_key is missing");
                None
            }
        }
    });
    if tls.is_none() && listeners.iter().any(|l| l.tls != ListenerTls::None) {
        c.err(
            &root().key("listeners"),
            "a listener uses TLS but there is no tls: section with certificate and private_key",
        );
    }
    tls
}

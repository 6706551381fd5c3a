//! Where sendmail submits and as whom: `$DKIM_RELAY_SUBMIT`, else `submit:` in the sendmail
//! config (`$DKIM_RELAY_SENDMAIL_CONFIG`, else /etc/dkim-relay/sendmail.yaml), else the local
//! relay's socket; the address forms `unix:PATH`, `smtp://[user:pass@]host[:port]` and
//! `smtps://…`; credentials from the URL or `username` + `password_file`.

use super::{Failure, EX_CONFIG};
use crate::smtp::url::{percent_decode, split_host_port, PercentError};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_SUBMIT: &str = "unix:/run/dkim-relay/submit.sock";
pub const DEFAULT_CONFIG: &str = "/etc/dkim-relay/sendmail.yaml";
pub const SUBMIT_ENV: &str = "DKIM_RELAY_SUBMIT";
pub const CONFIG_ENV: &str = "DKIM_RELAY_SENDMAIL_CONFIG";

/// The sendmail config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendmailConfig {
    pub submit: Option<String>,
    pub qualify_domain: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

impl SendmailConfig {
    /// Read the config named by the environment, or the default one if it exists. A file that
    /// was named explicitly must exist; the default may be absent (then everything defaults).
    pub fn load() -> Result<SendmailConfig, Failure> {
        let (path, named) = match std::env::var_os(CONFIG_ENV) {
            Some(p) if !p.is_empty() => (PathBuf::from(p), true),
            _ => (PathBuf::from(DEFAULT_CONFIG), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !named && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SendmailConfig::default())
            }
            Err(e) => {
                return Err(Failure::new(
                    EX_CONFIG,
                    format!("cannot read {}: {e}", path.display()),
                ))
            }
        };
        Self::parse(&path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<SendmailConfig, Failure> {
        if text.trim().is_empty() {
            return Ok(SendmailConfig::default());
        }
        let config: SendmailConfig = serde_yaml_ng::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            Failure::new(EX_CONFIG, format!("{}{at}: {e}", path.display()))
        })?;
        if let Some(d) = &config.qualify_domain {
            if d.is_empty() || d.contains(['@', ' ']) {
                return Err(Failure::new(
                    EX_CONFIG,
                    format!("{}: qualify_domain '{d}' is not a domain", path.display()),
                ));
            }
        }
        Ok(config)
    }

    pub fn qualify_domain(&self) -> Option<&str> {
        self.qualify_domain.as_deref()
    }
}

/// TLS on an SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// `smtp://`: STARTTLS when the server offers it.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

/// Where to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Smtp {
        host: String,
        port: u16,
        tls: Tls,
        credentials: Option<(String, String)>,
    },
}

impl Target {
    /// The target for this run, from the environment or the config.
    pub fn choose(config: &SendmailConfig) -> Result<Target, Failure> {
        let from_env = std::env::var(SUBMIT_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty());
        let address = from_env
            .or_else(|| config.submit.clone())
            .unwrap_or_else(|| DEFAULT_SUBMIT.to_string());
        let mut target = parse(address.trim()).map_err(|e| Failure::new(EX_CONFIG, e))?;
        // Credentials in the URL win; otherwise the config's username + password_file.
        if let Target::Smtp { credentials, .. } = &mut target {
            if credentials.is_none() {
                if let Some(user) = &config.username {
                    let file = config.password_file.as_ref().ok_or_else(|| {
                        Failure::new(EX_CONFIG, "username is set but password_file is not")
                    })?;
                    credentials.replace((user.clone(), read_password(file)?));
                }
            }
        }
        Ok(target)
    }

    /// For messages: where we tried to submit, never with the password.
    pub fn describe(&self) -> String {
        match self {
            Target::Unix(p) => format!("unix:{}", p.display()),
            Target::Smtp {
                host, port, tls, ..
            } => {
                let scheme = if *tls == Tls::Implicit {
                    "smtps"
                } else {
                    "smtp"
                };
                if host.contains(':') {
                    format!("{scheme}://[{host}]:{port}")
                } else {
                    format!("{scheme}://{host}:{port}")
                }
            }
        }
    }
}

fn read_password(path: &Path) -> Result<String, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            EX_CONFIG,
            format!("cannot read password_file {}: {e}", path.display()),
        )
    })?;
    let first = text.lines().next().unwrap_or("");
    Ok(first.to_string())
}

/// Parse a submission address.
pub fn parse(address: &str) -> Result<Target, String> {
    if let Some(path) = address.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!("'{address}': unix: needs a socket path"));
        }
        return Ok(Target::Unix(PathBuf::from(path)));
    }
    let (tls, rest, default_port) = if let Some(r) = address.strip_prefix("smtp://") {
        (Tls::StartTls, r, 587)
    } else if let Some(r) = address.strip_prefix("smtps://") {
        (Tls::Implicit, r, 465)
    } else {
        return Err(format!(
            "'{address}' is not a submission address (unix:/path, smtp://host:port or smtps://host:port)"
        ));
    };
    let rest = rest.trim_end_matches('/');
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let credentials = match userinfo {
        None => None,
        Some(u) => {
            let (user, pass) = u
                .split_once(':')
                .ok_or_else(|| format!("'{}': credentials are user:password", redact(address)))?;
            Some((credential(user)?, credential(pass)?))
        }
    };
    let (host, port) =
        split_host_port(hostport).ok_or_else(|| format!("'{}': unclosed [", redact(address)))?;
    if host.is_empty() {
        return Err(format!("'{}': no host", redact(address)));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse()
            .map_err(|_| format!("'{}': '{p}' is not a port", redact(address)))?,
    };
    Ok(Target::Smtp {
        host: host.to_string(),
        port,
        tls,
        credentials,
    })
}

/// A user name or password of the URL, percent-decoded.
fn credential(text: &str) -> Result<String, String> {
    percent_decode(text).map_err(|e| match e {
        PercentError::BadEscape => {
            "a % in the credentials is not followed by two hex digits".to_string()
        }
        PercentError::NotUtf8 => "the credentials are not UTF-8 once decoded".to_string(),
    })
}

/// The address with its password replaced, for error messages.
fn redact(address: &str) -> String {
    match (address.find("://"), address.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &address[..s + 3], &address[at..]),
        _ => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_forms() {
        assert_eq!(
            parse("unix:/run/dkim-relay/submit.sock").unwrap(),
            Target::Unix("/run/dkim-relay/submit.sock".into())
        );
        assert_eq!(
            parse("smtp://relay.example.com").unwrap(),
            Target::Smtp {
                host: "relay.example.com".into(),
                port: 587,
                tls: Tls::StartTls,
                credentials: None
            }
        );
        assert_eq!(
            parse("smtps://host-web1:p%40ss%3Aw@[::1]:4650/").unwrap(),
            Target::Smtp {
                host: "::1".into(),
                port: 4650,
                tls: Tls::Implicit,
                credentials: Some(("host-web1".into(), "p@ss:w".into()))
            }
        );
        assert!(parse("smtp://u:p@host:notaport")
            .unwrap_err()
            .contains("***"));
        assert!(parse("http://x").is_err());
        assert!(parse("unix:").is_err());
        assert!(parse("smtp://u:%zz@h").is_err());
    }

    #[test]
    fn config_is_strict_and_points_at_the_line() {
        let p = Path::new("/etc/dkim-relay/sendmail.yaml");
        let c =
            SendmailConfig::parse(p, "submit: smtp://h:25\nqualify_domain: example.com\n").unwrap();
        assert_eq!(c.qualify_domain(), Some("example.com"));
        let e = SendmailConfig::parse(p, "submit: x\nqualify_domian: example.com\n").unwrap_err();
        assert_eq!(e.code, EX_CONFIG);
        assert!(e.message.contains("sendmail.yaml:2"), "{}", e.message);
        assert!(SendmailConfig::parse(p, "qualify_domain: a@b\n").is_err());
    }
}

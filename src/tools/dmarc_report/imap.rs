//! `--imap imaps://USER@HOST[:PORT]/MAILBOX`: the reports in a mailbox on an IMAP server, read
//! without changing it. TLS from the first byte (port 993 unless given), the certificate
//! verified against the system roots plus `--ca-file` and `$SSL_CERT_FILE` ([`crate::trust`]);
//! `LOGIN` with the password from `--password-file` or `$DKIM_RELAY_IMAP_PASSWORD`; `EXAMINE`
//! (the read-only select: no flag changes, no `\Recent` lost, nothing expunged) and
//! `UID FETCH … BODY.PEEK[]` (which sets no `\Seen`), in batches, each message handed to
//! [`reports_in_message`] as it arrives. Messages larger than [`MAX_MESSAGE_BYTES`] are named
//! and not fetched. With `--since`, only messages that arrived on or after that day are
//! fetched (`UID SEARCH SINCE`): a report always arrives after the period it covers.

use super::collect::Collector;
use super::mail::{printable, reports_in_message};
use super::mailbox::MAX_MESSAGE_BYTES;
use crate::smtp::url::{percent_decode, split_host_port};
use futures_util::TryStreamExt;
use rustls_pki_types::ServerName;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpStream;

/// The environment variable holding the IMAP password when no `--password-file` is given.
pub const PASSWORD_ENV: &str = "DKIM_RELAY_IMAP_PASSWORD";
/// Connecting, the TLS handshake, the greeting, each command's reply: at most this long.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Messages fetched per `UID FETCH`.
const BATCH: usize = 50;

/// Where the mailbox is and how to get in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapSource {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub mailbox: String,
}

impl ImapSource {
    /// `imaps://USER@HOST[:PORT]/MAILBOX`; USER and MAILBOX may be percent-encoded (`%40` for
    /// an `@` in the user name), MAILBOX defaults to INBOX.
    pub fn parse(url: &str) -> Result<ImapSource, String> {
        let bad =
            |why: &str| format!("--imap {url:?}: {why} (give imaps://USER@HOST[:PORT]/MAILBOX)");
        let rest = url
            .strip_prefix("imaps://")
            .ok_or_else(|| bad("only imaps:// (IMAP over TLS) is supported"))?;
        let (authority, mailbox) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, hostport) = authority
            .rsplit_once('@')
            .ok_or_else(|| bad("no user name"))?;
        let user = percent_decode(user).map_err(|_| bad("the user name is not valid"))?;
        if user.is_empty() {
            return Err(bad("no user name"));
        }
        let (host, port) = split_host_port(hostport).ok_or_else(|| bad("unclosed ["))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => 993,
            Some(p) => p
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("not a port"))?,
        };
        let mailbox = percent_decode(mailbox).map_err(|_| bad("the mailbox name is not valid"))?;
        Ok(ImapSource {
            user,
            host: host.to_string(),
            port,
            mailbox: if mailbox.is_empty() {
                "INBOX".to_string()
            } else {
                mailbox
            },
        })
    }

    /// How messages are named in errors: the URL without secrets, plus the UID.
    fn label(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "imaps://{}@{host}:{}/{}",
            printable(&self.user),
            self.port,
            printable(&self.mailbox)
        )
    }
}

/// The password: the first line of `file`, else `$DKIM_RELAY_IMAP_PASSWORD`.
pub fn password(file: Option<&std::path::Path>) -> Result<String, String> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("--password-file {}: {e}", file.display()))?;
        return Ok(text.lines().next().unwrap_or_default().to_string());
    }
    std::env::var(PASSWORD_ENV).map_err(|_| {
        format!("--imap needs a password: give --password-file FILE or set ${PASSWORD_ENV}")
    })
}

/// What `--imap` needs besides the URL.
pub struct ImapLogin {
    pub password: String,
    pub ca_file: Option<PathBuf>,
    /// Day number: fetch only messages that arrived on or after it.
    pub since: Option<i64>,
}

/// Read every report in the mailbox into `collector`. A failure to connect, log in or open the
/// mailbox is one error naming the server; a message that cannot be fetched, one naming its UID.
pub fn read_mailbox(source: &ImapSource, login: &ImapLogin, collector: &mut Collector) {
    let label = source.label();
    let runtime = match crate::tools::cli::runtime() {
        Ok(r) => r,
        Err(e) => return collector.error(label, e),
    };
    if let Err(e) = runtime.block_on(read(source, login, &label, collector)) {
        collector.error(label, e);
    }
}

async fn step<T, E: std::fmt::Display>(
    what: &str,
    future: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(STEP_TIMEOUT, future).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer in {}s", STEP_TIMEOUT.as_secs())),
    }
}

async fn read(
    source: &ImapSource,
    login: &ImapLogin,
    label: &str,
    collector: &mut Collector<'_>,
) -> Result<(), String> {
    let tls = crate::trust::Trust::for_clients(login.ca_file.as_deref())?.client();
    let name = ServerName::try_from(source.host.clone())
        .map_err(|_| format!("{:?} is not a host name", source.host))?;
    let tcp = step(
        "cannot connect",
        TcpStream::connect((source.host.as_str(), source.port)),
    )
    .await?;
    let stream = step(
        "TLS handshake failed",
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
    )
    .await?;
    let mut client = async_imap::Client::new(stream);
    match step("no greeting", client.read_response()).await? {
        Some(_) => {}
        None => return Err("the server closed the connection before its greeting".into()),
    }
    let mut session = step("login failed", async {
        client
            .login(&source.user, &login.password)
            .await
            .map_err(|(e, _)| e)
    })
    .await?;
    step(
        &format!("cannot open mailbox {:?}", source.mailbox),
        session.examine(&source.mailbox),
    )
    .await?;

    let query = match login.since {
        Some(day) => format!("SINCE {}", imap_date(day)),
        None => "ALL".to_string(),
    };
    let mut uids: Vec<u32> = step("UID SEARCH failed", session.uid_search(&query))
        .await?
        .into_iter()
        .collect();
    uids.sort_unstable();

    // Sizes first, so that no oversized message is ever fetched into memory.
    let mut wanted = Vec::with_capacity(uids.len());
    for batch in uids.chunks(BATCH * 20) {
        let set = uid_set(batch);
        let sizes: Vec<(u32, u32)> = step("UID FETCH failed", async {
            session
                .uid_fetch(&set, "(UID RFC822.SIZE)")
                .await?
                .try_filter_map(|f| async move { Ok(f.uid.zip(f.size)) })
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        for (uid, size) in sizes {
            if u64::from(size) > MAX_MESSAGE_BYTES {
                collector.error(
                    format!("{label} UID {uid}"),
                    format!(
                        "a message larger than {} MiB: not read",
                        MAX_MESSAGE_BYTES >> 20
                    ),
                );
            } else {
                wanted.push(uid);
            }
        }
    }
    wanted.sort_unstable();
    for batch in wanted.chunks(BATCH) {
        let set = uid_set(batch);
        let mut fetches = step(
            "UID FETCH failed",
            session.uid_fetch(&set, "(UID BODY.PEEK[])"),
        )
        .await?;
        loop {
            let fetch = match step("UID FETCH failed", fetches.try_next()).await? {
                Some(f) => f,
                None => break,
            };
            let (Some(uid), Some(body)) = (fetch.uid, fetch.body()) else {
                continue;
            };
            let message_label = format!("{label} UID {uid}");
            collector.message(reports_in_message(&message_label, body));
        }
    }
    // The mailbox was only examined: logging out changes nothing. A failure here loses nothing.
    let _ = tokio::time::timeout(STEP_TIMEOUT, session.logout()).await;
    Ok(())
}

/// `1,2,5:9`: a UID set for a sorted list.
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.saturating_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// An IMAP date (RFC 3501 `date`): `2-Jan-2026`.
fn imap_date(day: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d) = crate::smtp::date::civil_from_days(day);
    let month = MONTHS[usize::try_from(m - 1).unwrap_or(0).min(11)];
    format!("{d}-{month}-{y}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s = ImapSource::parse("imaps://dmarc%40example.com@mail.example.com/Reports%2F2026")
            .unwrap();
        assert_eq!(
            s,
            ImapSource {
                user: "dmarc@example.com".into(),
                host: "mail.example.com".into(),
                port: 993,
                mailbox: "Reports/2026".into()
            }
        );
        let s = ImapSource::parse("imaps://u@[::1]:10993").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.mailbox.as_str()),
            ("::1", 10993, "INBOX")
        );
        assert_eq!(s.label(), "imaps://u@[::1]:10993/INBOX");
        let s = ImapSource::parse("imaps://a@b@127.0.0.1:143/INBOX").unwrap();
        assert_eq!((s.user.as_str(), s.port), ("a@b", 143));
        for (bad, why) in [
            ("imap://u@h/INBOX", "only imaps://"),
            ("imaps://h/INBOX", "no user name"),
            ("imaps://u@/INBOX", "no host"),
            ("imaps://u@h:0/INBOX", "not a port"),
            ("imaps://u@h:x/INBOX", "not a port"),
            ("imaps://u@h/%zz", "mailbox name is not valid"),
        ] {
            let e = ImapSource::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn uid_sets_and_dates() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
        assert_eq!(
            imap_date(crate::tools::dmarc_report::parse_day("2026-01-02").unwrap()),
            "2-Jan-2026"
        );
    }
}

//! Configuration: the YAML file as written (`raw`), checked into `Settings` with every error of
//! the file collected (each naming file, line and column), and swapped whole on reload by the
//! caller. Imports only `sys` of ours (the machine's host name).

pub(crate) mod locate;
mod raw;
pub mod schema;
mod security;
pub(crate) mod units;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use locate::KeyPath;
pub use security::{MtaStsMode, TlsReports, TransportSecurity};
pub(crate) use validate::is_hostname;

/// Where the configuration is looked for when `-c` is not given.
pub const DEFAULT_PATH: &str = "/etc/dkim-relay/config.yaml";
/// The environment variable that names the configuration file.
pub const ENV_VAR: &str = "DKIM_RELAY_CONFIG";

/// Resolve the configuration path: `-c FILE`, else `$DKIM_RELAY_CONFIG`, else the default.
pub fn resolve_path(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_path_buf();
    }
    match std::env::var_os(ENV_VAR) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

/// One problem in a configuration file, with where it is.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.key, self.message)
        }
    }
}

/// All the problems of one file.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Attributes problems found after parsing to the lines of the file they come from.
#[derive(Debug, Default)]
pub struct Origin {
    pub file: PathBuf,
    pub locations: locate::Locations,
}

impl Origin {
    /// An error about the value at `path`.
    pub fn error(&self, path: &KeyPath, message: impl Into<String>) -> ConfigError {
        let (line, column) = match self.locations.find(path) {
            Some((l, c)) => (Some(l), Some(c)),
            None => (None, None),
        };
        ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: path.to_string(),
            message: message.into(),
        }
    }
}

/// A validated configuration.
#[derive(Debug)]
pub struct Settings {
    pub origin: Origin,
    pub hostname: String,
    pub spool_dir: PathBuf,
    pub public_addresses: Option<Vec<IpAddr>>,
    pub listeners: Vec<Listener>,
    pub tls: Option<TlsFiles>,
    pub clients: Vec<Client>,
    pub dkim: Dkim,
    pub delivery: Delivery,
    pub dns: Dns,
    pub limits: Limits,
    pub metrics: Option<SocketAddr>,
    pub log: Log,
    pub envelope_tagging: Option<EnvelopeTagging>,
    /// `cluster`: limits shared with other replicas through Redis.
    pub cluster: Option<ClusterSettings>,
}

/// What the shared limits do when Redis cannot decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisDown {
    /// Count per process, as without `cluster.redis`.
    Local,
    /// Answer MAIL `451 4.7.1` and AUTH `454 4.7.0` until Redis is back.
    Defer,
}

#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `redis://` or `rediss://` URL (user and password may be in it).
    pub redis: String,
    pub password_file: Option<PathBuf>,
    pub on_redis_down: OnRedisDown,
    /// The budget of one shared decision.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerTls {
    None,
    StartTls,
    Implicit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub address: ListenAddress,
    pub tls: ListenerTls,
    pub unix_mode: u32,
}

impl Listener {
    /// A short name for logs and the `listener` metric label.
    pub fn name(&self) -> String {
        match &self.address {
            ListenAddress::Tcp(a) => a.to_string(),
            ListenAddress::Unix(p) => format!("unix:{}", p.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// Who a client is, as the configuration names it.
#[derive(Debug, Clone)]
pub enum ClientKind {
    User { name: String, password_hash: String },
    Network(ipnet::IpNet),
    UnixUser(String),
}

/// One entry of an `allow_from` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderPattern {
    /// `example.com`: that domain exactly.
    Domain(String),
    /// `*.example.com`: its subdomains (not the domain itself).
    Subdomains(String),
    /// `alerts@example.org`: one address.
    Address(String),
}

#[derive(Debug, Clone)]
pub struct Client {
    pub kind: ClientKind,
    pub allow_from: Vec<SenderPattern>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canon {
    Simple,
    Relaxed,
}

#[derive(Debug, Clone)]
pub struct SelectorConf {
    pub selector: String,
    pub private_key: PathBuf,
    pub path: KeyPath,
}

#[derive(Debug, Clone)]
pub struct Dkim {
    /// Signing domain (lower case) -> its selectors.
    pub domains: BTreeMap<String, Vec<SelectorConf>>,
    pub header_canon: Canon,
    pub body_canon: Canon,
    pub expire: Option<Duration>,
    /// Messages up to this size are self-verified with mail-auth's own verifier too.
    pub independent_verify_max: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundTls {
    Opportunistic,
    Required,
    Implicit,
    None,
}

#[derive(Debug, Clone)]
pub struct RelayHost {
    pub host: String,
    pub port: u16,
    pub tls: OutboundTls,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub verify_certificate: bool,
}

#[derive(Debug, Clone)]
pub enum DeliveryMode {
    Mx,
    RelayHost(RelayHost),
    Directory(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub mode: DeliveryMode,
    pub port: u16,
    pub tls: OutboundTls,
    /// `delivery.dane`: recipients' TLSA records honoured (MX delivery).
    pub dane: Dane,
    pub retry: Vec<Duration>,
    pub max_age: Duration,
    /// After this long in the queue the sender gets one DSN with `Action: delayed`; zero: never.
    pub delay_warning: Duration,
    pub max_connections: usize,
    pub max_connections_per_domain: usize,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Longest a closed next-hop host waits for its probe (`outbound::breaker`).
    pub host_retry_max: Duration,
    /// Recipient domain (lower case) -> (host, port).
    pub routes: BTreeMap<String, (String, u16)>,
    /// MTA-STS, extra CA certificates, TLS-RPT.
    pub security: TransportSecurity,
}

#[derive(Debug, Clone)]
pub struct Dns {
    pub nameservers: Option<Vec<SocketAddr>>,
    pub check_interval: Duration,
    pub dnssec: Dnssec,
}

/// `dns.dnssec`: whether the relay believes the AD bit of its nameservers' answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dnssec {
    /// Every answer counts as insecure (DANE cannot apply).
    Off,
    /// The nameservers are validating resolvers the relay trusts: their AD bit says an
    /// answer was DNSSEC-authenticated.
    TrustAd,
}

/// `delivery.dane`: whether the TLSA records of recipients' MX hosts are honoured (RFC 7672).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dane {
    Off,
    On,
}

/// What happens to a body line over 998 bytes (`limits.long_lines`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongLines {
    /// Its MIME part is re-encoded as quoted-printable before signing.
    Encode,
    /// The message is refused (554 5.6.0).
    Reject,
}

/// What happens to 8-bit body parts (`limits.eight_bit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EightBit {
    /// Delivered as they are (with BODY=8BITMIME where offered).
    Keep,
    /// Re-encoded as quoted-printable before signing: 7-bit on the wire.
    Encode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareNewlines {
    Normalize,
    Reject,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_size: u64,
    /// Free bytes the spool's file system must keep: below, MAIL gets 452 4.3.1 and /readyz
    /// 503. 0: no such check (a full disk still gets 452 4.3.1 from the write itself).
    pub spool_min_free: u64,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub idle_timeout: Duration,
    pub session_timeout: Duration,
    pub messages_per_minute_per_client: u32,
    pub bare_newlines: BareNewlines,
    pub max_header_size: u64,
    pub max_commands: usize,
    pub max_errors: usize,
    /// Password verifications running at once (read at start).
    pub auth_hash_concurrency: usize,
    /// Bytes clients may hold in buffers before their data is spooled (read at start).
    pub buffer_memory: u64,
    pub long_lines: LongLines,
    pub eight_bit: EightBit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Log {
    pub format: LogFormat,
    pub level: String,
}

/// `envelope_tagging`: BATV tags on the envelope senders of some domains (see `backscatter`).
#[derive(Debug, Clone)]
pub struct EnvelopeTagging {
    /// Envelope sender domains whose mail is tagged (lower case, no trailing dot).
    pub domains: Vec<String>,
    /// One secret per line; the first signs, every line verifies (read by `core`).
    pub secret_file: PathBuf,
    /// How many days a tag stays valid after the day it was made.
    pub max_age_days: u16,
    /// Networks whose null-sender mail is never judged: the relay's own outbound addresses,
    /// so the DSNs it sends to untagged senders pass the domain's bounce check.
    pub accept_bounces_from: Vec<ipnet::IpNet>,
}

impl Settings {
    /// Read and check a configuration file. Every problem found is returned, each with its line.
    pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                key: String::new(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        Self::parse(path, &text)
    }

    /// Check configuration text that came from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Settings, ConfigErrors> {
        validate::parse(path, text)
    }
}

//! From the file as written to `Settings`: every value checked, every problem collected.
//!
//! This file reads the YAML, reports every unknown key (against `schema::KEYS`) and assembles
//! the sections, each checked in a file of its own: `listeners` (with `tls`), `clients`,
//! `dkim`, `delivery`, `dns`, `limits`, `metrics`, `log`, `cluster`, `tagging`
//! (`envelope_tagging`). A new section gets a new file and one line in [`check`]. Defaults are
//! not written here: an absent key takes the default `schema::KEYS` gives it (`Schema`).

use super::locate::{self, KeyPath};
use super::raw::*;
use super::units::{parse_duration, parse_size};
use super::*;

mod clients;
mod cluster;
mod dane;
mod delivery;
mod dkim;
mod dns;
mod limits;
mod listeners;
mod log;
mod metrics;
mod tagging;

pub(super) struct Checker {
    origin: Origin,
    errors: Vec<ConfigError>,
}

/// Where the value of an absent key comes from.
pub(super) enum Fallback<T> {
    /// The default written in the schema table.
    Schema,
    /// One the caller works out (from another value, or the machine).
    Is(T),
}

impl<T> From<T> for Fallback<T> {
    fn from(v: T) -> Fallback<T> {
        Fallback::Is(v)
    }
}

impl Checker {
    pub(super) fn err(&mut self, path: &KeyPath, msg: impl Into<String>) {
        let e = self.origin.error(path, msg);
        self.errors.push(e);
    }

    /// The default the schema table writes for `path`, read with `parse`. One that does not
    /// parse is our bug, said at the key (the tests load configurations that leave every key
    /// out, so none ships).
    pub(super) fn default_with<T: Default>(
        &mut self,
        path: &KeyPath,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> T {
        self.schema_default(path, parse).unwrap_or_default()
    }

    pub(super) fn schema_default<T>(
        &mut self,
        path: &KeyPath,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let written = schema::default_of(&path.0);
        let value = written.and_then(parse);
        if value.is_none() {
            self.err(
                path,
                format!("internal error: no usable default in the schema table ({written:?})"),
            );
        }
        value
    }

    /// The value of an absent key.
    fn fallback<T: Default>(
        &mut self,
        path: &KeyPath,
        fallback: Fallback<T>,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> T {
        match fallback {
            Fallback::Is(v) => v,
            Fallback::Schema => self.default_with(path, parse),
        }
    }

    pub(super) fn duration(
        &mut self,
        path: KeyPath,
        v: Option<&String>,
        default: impl Into<Fallback<Duration>>,
    ) -> Duration {
        self.parsed(path, v, parse_duration, default.into())
    }

    pub(super) fn size(
        &mut self,
        path: KeyPath,
        v: Option<&String>,
        default: impl Into<Fallback<u64>>,
    ) -> u64 {
        self.parsed(path, v, parse_size, default.into())
    }

    /// A value written as text (`5m`, `25MiB`) read with `parse`; a wrong one is reported and
    /// the default stands in.
    fn parsed<T: Default>(
        &mut self,
        path: KeyPath,
        v: Option<&String>,
        parse: fn(&str) -> Result<T, String>,
        default: Fallback<T>,
    ) -> T {
        match v.map(|s| parse(s)) {
            Some(Ok(d)) => return d,
            Some(Err(e)) => self.err(&path, e),
            None => {}
        }
        self.fallback(&path, default, |d| parse(d).ok())
    }

    pub(super) fn choice<T: Copy>(
        &mut self,
        path: KeyPath,
        v: Option<&String>,
        options: &[(&str, T)],
        default: impl Into<Fallback<T>>,
    ) -> T {
        let named = |name: &str| {
            options
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
                .map(|(_, t)| *t)
        };
        if let Some(v) = v {
            if let Some(t) = named(v) {
                return t;
            }
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            self.err(&path, format!("'{v}' is not one of: {}", names.join(", ")));
        }
        match default.into() {
            Fallback::Is(t) => t,
            Fallback::Schema => self.schema_default(&path, named).unwrap_or(options[0].1),
        }
    }

    /// A count that must be at least 1.
    pub(super) fn positive(
        &mut self,
        path: KeyPath,
        v: Option<usize>,
        default: impl Into<Fallback<usize>>,
    ) -> usize {
        let read = |d: &str| d.parse().ok();
        match v {
            Some(0) => {
                self.err(&path, "must be at least 1");
                self.fallback(&path, default.into(), read)
            }
            Some(n) => n,
            None => self.fallback(&path, default.into(), read),
        }
    }

    /// A value serde has already typed (a port, a flag), or the schema's default.
    pub(super) fn value<T: std::str::FromStr + Default>(
        &mut self,
        path: KeyPath,
        v: Option<T>,
    ) -> T {
        match v {
            Some(v) => v,
            None => self.default_with(&path, |d| d.parse().ok()),
        }
    }

    /// Text, or the schema's default.
    pub(super) fn text(&mut self, path: KeyPath, v: Option<&String>) -> String {
        match v {
            Some(v) => v.clone(),
            None => self.default_with(&path, |d| Some(d.to_string())),
        }
    }
}

pub(super) fn parse(file: &Path, text: &str) -> Result<Settings, ConfigErrors> {
    let mut c = Checker {
        origin: Origin {
            file: file.to_path_buf(),
            locations: locate::scan(text),
        },
        errors: Vec::new(),
    };

    // A file that is not YAML at all: its syntax error is the one thing worth saying (the
    // scanner's view of a broken file is not to be trusted).
    if let Err(e) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        c.errors.push(serde_error(file, &e));
        return Err(ConfigErrors(c.errors));
    }

    // Unknown keys first, all of them, from the scanner's view of the file.
    let unknown: Vec<KeyPath> = c
        .origin
        .locations
        .entries
        .iter()
        .filter(|(p, _, _)| !schema::is_known(&p.0))
        .filter(|(p, _, _)| {
            // Report the outermost unknown key only, not its children too.
            !(1..p.0.len()).any(|n| !schema::is_known(&p.0[..n]))
        })
        .map(|(p, _, _)| p.clone())
        .collect();
    for p in &unknown {
        let name = match p.0.last() {
            Some(locate::Seg::Key(k)) => k.clone(),
            _ => p.to_string(),
        };
        c.err(p, format!("unknown key '{name}'{}", suggestion(p)));
    }

    if text.trim().is_empty() {
        c.err(&KeyPath::default(), "the file is empty");
        return Err(ConfigErrors(c.errors));
    }
    let raw: RawConfig = match serde_yaml_ng::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            // deny_unknown_fields stops at the first unknown key: when it stops where the scan
            // found one, that key is reported above already (with a suggestion).
            let at = e.location().map(|l| (l.line(), l.column()));
            let reported = unknown
                .iter()
                .any(|p| at.is_some() && c.origin.locations.find(p) == at);
            if !reported {
                c.errors.push(serde_error(file, &e));
            }
            return Err(ConfigErrors(c.errors));
        }
    };

    let settings = check(&mut c, raw);
    if c.errors.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigErrors(c.errors))
    }
}

fn serde_error(file: &Path, e: &serde_yaml_ng::Error) -> ConfigError {
    let loc = e.location();
    let mut message = e.to_string();
    if let Some(pos) = message.find(" at line ") {
        message.truncate(pos);
    }
    ConfigError {
        file: file.to_path_buf(),
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
        key: String::new(),
        message,
    }
}

/// "did you mean" for a misspelt key: a known sibling at edit distance 1 or 2.
fn suggestion(path: &KeyPath) -> String {
    let Some(locate::Seg::Key(name)) = path.0.last() else {
        return String::new();
    };
    let mut parent = path.0[..path.0.len() - 1].to_vec();
    let mut best: Option<(usize, &str)> = None;
    for (pattern, _, _) in schema::KEYS {
        let last = pattern
            .rsplit('.')
            .next()
            .unwrap_or(pattern)
            .trim_end_matches("[]");
        parent.push(locate::Seg::Key(last.to_string()));
        if schema::is_known(&parent) {
            let d = edit_distance(name, last);
            if d <= 2 && best.is_none_or(|(bd, _)| d < bd) {
                best = Some((d, last));
            }
        }
        parent.pop();
    }
    best.map(|(_, k)| format!(" (did you mean '{k}'?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

pub(super) fn root() -> KeyPath {
    KeyPath::default()
}

/// A host name as used in EHLO, Message-ID and routes: letters, digits, '-', '.'.
pub(crate) fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// `host:port` or `[v6]:port`.
fn host_port(s: &str) -> Option<(String, u16)> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some((sa.ip().to_string(), sa.port()));
    }
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (is_hostname(host) || host.parse::<IpAddr>().is_ok()).then(|| (host.to_string(), port))
}

/// The whole file: the top-level values here, each section in its own file.
fn check(c: &mut Checker, raw: RawConfig) -> Settings {
    let hostname = match raw.hostname {
        Some(h) if is_hostname(h.trim()) => h.trim().to_ascii_lowercase(),
        Some(h) => {
            c.err(&root().key("hostname"), format!("'{h}' is not a host name"));
            h
        }
        None => crate::sys::hostname().unwrap_or_else(|_| "localhost".into()),
    };
    let spool_dir = PathBuf::from(c.text(root().key("spool_dir"), raw.spool_dir.as_ref()));

    let public_addresses = raw.public_addresses.map(|list| {
        list.iter()
            .enumerate()
            .filter_map(|(i, a)| match a.trim().parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    c.err(
                        &root().key("public_addresses").index(i),
                        format!("'{a}' is not an IP address"),
                    );
                    None
                }
            })
            .collect()
    });

    let listeners = listeners::check(c, &raw.listeners);
    let tls = listeners::check_tls(c, raw.tls.as_ref(), &listeners);
    let clients = clients::check(c, &raw.clients);
    let dkim = dkim::check(c, raw.dkim.as_ref());
    let mut delivery = delivery::check(c, raw.delivery.as_ref());
    delivery.security = super::security::check(
        c,
        raw.delivery.as_ref(),
        delivery.tls,
        &hostname,
        &dkim.domains,
    );
    let envelope_tagging = tagging::check(c, raw.envelope_tagging.as_ref());
    let mut dns = dns::check(c, raw.dns.as_ref());
    (dns.dnssec, delivery.dane) =
        dane::check(c, raw.dns.as_ref(), raw.delivery.as_ref(), delivery.tls);
    let limits = limits::check(c, raw.limits.as_ref());
    let metrics = metrics::check(c, raw.metrics.as_ref());
    let log = log::check(c, raw.log.as_ref());
    let cluster = cluster::check(c, raw.cluster.as_ref());

    Settings {
        origin: std::mem::take(&mut c.origin),
        hostname,
        spool_dir,
        public_addresses,
        listeners,
        tls,
        clients,
        dkim,
        delivery,
        dns,
        limits,
        metrics,
        log,
        envelope_tagging,
        cluster,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn errors(text: &str) -> Vec<String> {
        match Settings::parse(Path::new("t.yaml"), text) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    pub(super) const MINIMAL: &str =
        "hostname: relay.example.com\nlisteners:\n  - address: \"127.0.0.1:2525\"\n";

    #[test]
    fn minimal_is_valid() {
        assert!(errors(MINIMAL).is_empty(), "{:?}", errors(MINIMAL));
    }

    #[test]
    fn a_default_may_also_be_given_by_the_caller() {
        // Computed defaults, and sections that choose their own (an Option for "not given").
        let mut c = Checker {
            origin: Origin::default(),
            errors: Vec::new(),
        };
        let p = root().key("delivery");
        let given: Option<bool> = c.choice(p.key("x"), None, &[("on", Some(true))], None);
        assert_eq!(given, None);
        assert_eq!(c.positive(p.key("y"), None, 3), 3);
        let two = Duration::from_secs(2);
        assert_eq!(c.duration(p.key("z"), Some(&"5x".to_string()), two), two);
        assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
    }

    #[test]
    fn absent_keys_take_the_schema_tables_defaults() {
        // Every section present, every key the checker has a default for left out: each
        // default of the table parses, and means what the reference says.
        let text = format!(
            "{MINIMAL}  - unix: /run/r.sock\ndelivery:\n  mode: relay_host\n  relay_host:\n    address: \"smtp.example.net:587\"\ncluster:\n  redis: redis://127.0.0.1\nenvelope_tagging:\n  domains: [example.com]\n  secret_file: /k\ndkim:\n  domains: {{}}\ndns: {{}}\nlimits: {{}}\nlog: {{}}\n"
        );
        let s = Settings::parse(Path::new("t.yaml"), &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.spool_dir, Path::new("/var/spool/dkim-relay"));
        assert_eq!(s.listeners[0].tls, ListenerTls::None);
        assert_eq!(s.listeners[1].unix_mode, 0o666);
        let (h, b) = (s.dkim.header_canon, s.dkim.body_canon);
        assert_eq!((h, b), (Canon::Relaxed, Canon::Relaxed));
        assert_eq!(s.dkim.independent_verify_max, 1 << 20);
        let d = &s.delivery;
        assert_eq!((d.port, d.tls), (25, OutboundTls::Opportunistic));
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let retry = [1, 5, 15, 30, 60, 120, 240].map(minutes);
        assert_eq!(d.retry, retry);
        assert_eq!(d.max_age, Duration::from_secs(5 * 86_400));
        assert_eq!(d.delay_warning, minutes(240));
        assert_eq!((d.max_connections, d.max_connections_per_domain), (64, 8));
        assert_eq!(d.connect_timeout, Duration::from_secs(30));
        assert_eq!(
            (d.command_timeout, d.host_retry_max),
            (minutes(5), minutes(5))
        );
        match &d.mode {
            DeliveryMode::RelayHost(r) => {
                assert_eq!(r.tls, OutboundTls::Required);
                assert!(r.verify_certificate);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.dns.check_interval, minutes(60));
        let l = &s.limits;
        assert_eq!(l.max_message_size, 25 << 20);
        assert_eq!(l.spool_min_free, 25 << 20);
        assert_eq!((l.max_recipients, l.max_connections), (100, 1024));
        assert_eq!(l.max_connections_per_ip, 32);
        assert_eq!(
            (l.idle_timeout, l.session_timeout),
            (minutes(5), minutes(30))
        );
        assert_eq!(l.messages_per_minute_per_client, 600);
        assert_eq!(l.bare_newlines, BareNewlines::Normalize);
        assert_eq!((l.max_header_size, l.buffer_memory), (1 << 20, 256 << 20));
        assert_eq!((l.max_commands, l.max_errors), (10_000, 10));
        assert_eq!(
            (l.long_lines, l.eight_bit),
            (LongLines::Encode, EightBit::Keep)
        );
        assert_eq!(
            (s.log.format, s.log.level.as_str()),
            (LogFormat::Text, "info")
        );
        let cluster = s.cluster.as_ref().expect("cluster");
        assert_eq!(cluster.on_redis_down, OnRedisDown::Local);
        assert_eq!(cluster.timeout, Duration::from_millis(5));
        assert_eq!(s.envelope_tagging.as_ref().map(|t| t.max_age_days), Some(7));
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_line() {
        let e = errors(
            "hostname: a.b\nlisteners:\n  - address: \"127.0.0.1:1\"\n    port: 3\nfoo: 1\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("t.yaml:4:5: listeners[0].port: unknown key 'port'"),
            "{e:?}"
        );
        assert!(e[1].starts_with("t.yaml:5:1: foo: unknown key"), "{e:?}");
    }

    #[test]
    fn unknown_keys_are_told_once_wherever_they_stand() {
        // Serde stops at the first unknown key: the one the scan reported already is not
        // repeated, and one only serde sees (in a flow mapping) is not lost.
        let e = errors("hostname: a.b\nfoo: 1\nlisteners: [{address: \"127.0.0.1:1\", port: 3}]\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("t.yaml:2:1: foo: unknown key"), "{e:?}");
        let e = errors("hostname: a.b\nlisteners: [{address: \"127.0.0.1:1\", port: 3}]\nfoo: 1\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("t.yaml:3:1: foo: unknown key"), "{e:?}");
        assert!(
            e[1].starts_with("t.yaml:2:38: listeners[0]: unknown field `port`"),
            "{e:?}"
        );
        // A wrong value serde meets before the unknown key is reported too.
        let e = errors(&format!(
            "{MINIMAL}limits:\n  max_recipients: x\n  bogus: 1\n"
        ));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("t.yaml:6:3: limits.bogus: unknown key"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("t.yaml:5:19: limits.max_recipients: invalid type"),
            "{e:?}"
        );
    }

    #[test]
    fn bad_values_are_all_reported() {
        let e = errors(&format!("{MINIMAL}delivery:\n  retry: [1m, 5x]\n  max_age: forever\nlimits:\n  max_message_size: big\n"));
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e.iter()
                .any(|l| l.starts_with("t.yaml:5:3: delivery.retry")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("t.yaml:6:3: delivery.max_age")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|l| l.starts_with("t.yaml:8:3: limits.max_message_size")),
            "{e:?}"
        );
    }

    #[test]
    fn syntax_error_names_the_line() {
        let e = errors("hostname: a\nlisteners:\n  - address: \"x\n  bad: [\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("t.yaml:"), "{e:?}");
        assert!(
            e[0].contains(":4:") || e[0].contains(":3:") || e[0].contains(":5:"),
            "{e:?}"
        );
    }

    #[test]
    fn misspelt_key_gets_a_suggestion() {
        let e = errors(&format!("{MINIMAL}hostnam: x\n"));
        assert!(e[0].contains("did you mean 'hostname'"), "{e:?}");
    }
}

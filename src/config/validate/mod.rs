//! From the file as written to `Settings`: every value checked, every problem collected.

use super::locate::{self, KeyPath};
use super::raw::*;
use super::units::{parse_duration, parse_size};
use super::*;
use std::collections::BTreeMap;

mod tagging;

struct Checker {
    origin: Origin,
    errors: Vec<ConfigError>,
}

impl Checker {
    fn err(&mut self, path: &KeyPath, msg: impl Into<String>) {
        let e = self.origin.error(path, msg);
        self.errors.push(e);
    }

    fn duration(&mut self, path: KeyPath, v: Option<&String>, default: Duration) -> Duration {
        match v.map(|s| parse_duration(s)) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.err(&path, e);
                default
            }
        }
    }

    fn size(&mut self, path: KeyPath, v: Option<&String>, default: u64) -> u64 {
        match v.map(|s| parse_size(s)) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.err(&path, e);
                default
            }
        }
    }

    fn choice<T: Copy>(
        &mut self,
        path: KeyPath,
        v: Option<&String>,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        let Some(v) = v else { return default };
        match options
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(v.trim()))
        {
            Some((_, t)) => *t,
            None => {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                self.err(&path, format!("'{v}' is not one of: {}", names.join(", ")));
                default
            }
        }
    }

    fn positive(&mut self, path: KeyPath, v: Option<usize>, default: usize) -> usize {
        match v {
            Some(0) => {
                self.err(&path, "must be at least 1");
                default
            }
            Some(n) => n,
            None => default,
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

fn root() -> KeyPath {
    KeyPath::default()
}

fn system_hostname() -> String {
    crate::sys::hostname().unwrap_or_else(|_| "localhost".into())
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

fn check(c: &mut Checker, raw: RawConfig) -> Settings {
    let hostname = match raw.hostname {
        Some(h) if is_hostname(h.trim()) => h.trim().to_ascii_lowercase(),
        Some(h) => {
            c.err(&root().key("hostname"), format!("'{h}' is not a host name"));
            h
        }
        None => system_hostname(),
    };
    let spool_dir = PathBuf::from(
        raw.spool_dir
            .unwrap_or_else(|| "/var/spool/dkim-relay".into()),
    );

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

    let listeners = check_listeners(c, &raw.listeners);

    let tls = raw.tls.as_ref().and_then(|t| {
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

    let clients = check_clients(c, &raw.clients);
    let dkim = check_dkim(c, raw.dkim.as_ref());
    let delivery = check_delivery(c, raw.delivery.as_ref());
    let envelope_tagging = tagging::check(c, raw.envelope_tagging.as_ref());

    let dns = {
        let p = root().key("dns");
        let d = raw.dns.as_ref();
        let nameservers = d.and_then(|d| d.nameservers.as_ref()).map(|list| {
            list.iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let s = s.trim();
                    s.parse::<SocketAddr>()
                        .ok()
                        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
                        .or_else(|| {
                            c.err(
                                &p.key("nameservers").index(i),
                                format!("'{s}' is not ip or ip:port"),
                            );
                            None
                        })
                })
                .collect()
        });
        let check_interval = c.duration(
            p.key("check_interval"),
            d.and_then(|d| d.check_interval.as_ref()),
            Duration::from_secs(3600),
        );
        Dns {
            nameservers,
            check_interval,
        }
    };

    let limits = {
        let p = root().key("limits");
        let l = raw.limits.as_ref();
        let max_message_size = c.size(
            p.key("max_message_size"),
            l.and_then(|l| l.max_message_size.as_ref()),
            25 << 20,
        );
        Limits {
            max_message_size,
            // Room for at least one more message of the largest size, as Postfix's
            // queue_minfree.
            spool_min_free: c.size(
                p.key("spool_min_free"),
                l.and_then(|l| l.spool_min_free.as_ref()),
                max_message_size,
            ),
            max_recipients: c.positive(
                p.key("max_recipients"),
                l.and_then(|l| l.max_recipients),
                100,
            ),
            max_connections: c.positive(
                p.key("max_connections"),
                l.and_then(|l| l.max_connections),
                1024,
            ),
            max_connections_per_ip: c.positive(
                p.key("max_connections_per_ip"),
                l.and_then(|l| l.max_connections_per_ip),
                32,
            ),
            idle_timeout: c.duration(
                p.key("idle_timeout"),
                l.and_then(|l| l.idle_timeout.as_ref()),
                Duration::from_secs(300),
            ),
            session_timeout: c.duration(
                p.key("session_timeout"),
                l.and_then(|l| l.session_timeout.as_ref()),
                Duration::from_secs(1800),
            ),
            messages_per_minute_per_client: l
                .and_then(|l| l.messages_per_minute_per_client)
                .unwrap_or(600),
            bare_newlines: c.choice(
                p.key("bare_newlines"),
                l.and_then(|l| l.bare_newlines.as_ref()),
                &[
                    ("normalize", BareNewlines::Normalize),
                    ("reject", BareNewlines::Reject),
                ],
                BareNewlines::Normalize,
            ),
            max_header_size: c.size(
                p.key("max_header_size"),
                l.and_then(|l| l.max_header_size.as_ref()),
                1 << 20,
            ),
            max_commands: c.positive(
                p.key("max_commands"),
                l.and_then(|l| l.max_commands),
                10_000,
            ),
            max_errors: c.positive(p.key("max_errors"), l.and_then(|l| l.max_errors), 10),
            auth_hash_concurrency: c.positive(
                p.key("auth_hash_concurrency"),
                l.and_then(|l| l.auth_hash_concurrency),
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            buffer_memory: c.size(
                p.key("buffer_memory"),
                l.and_then(|l| l.buffer_memory.as_ref()),
                256 << 20,
            ),
            long_lines: c.choice(
                p.key("long_lines"),
                l.and_then(|l| l.long_lines.as_ref()),
                &[("encode", LongLines::Encode), ("reject", LongLines::Reject)],
                LongLines::Encode,
            ),
            eight_bit: c.choice(
                p.key("eight_bit"),
                l.and_then(|l| l.eight_bit.as_ref()),
                &[("keep", EightBit::Keep), ("encode", EightBit::Encode)],
                EightBit::Keep,
            ),
        }
    };
    if limits.buffer_memory < limits.max_header_size {
        c.err(
            &root().key("limits").key("buffer_memory"),
            format!(
                "{} bytes is less than limits.max_header_size ({} bytes): a header section that \
                 large could never be received; raise buffer_memory or lower max_header_size",
                limits.buffer_memory, limits.max_header_size
            ),
        );
    }

    let metrics = raw
        .metrics
        .as_ref()
        .and_then(|m| m.address.as_ref())
        .and_then(|a| match a.trim().parse::<SocketAddr>() {
            Ok(sa) => Some(sa),
            Err(_) => {
                c.err(
                    &root().key("metrics").key("address"),
                    format!("'{a}' is not ip:port"),
                );
                None
            }
        });

    let log = {
        let p = root().key("log");
        let l = raw.log.as_ref();
        let format = c.choice(
            p.key("format"),
            l.and_then(|l| l.format.as_ref()),
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            LogFormat::Text,
        );
        let level = l
            .and_then(|l| l.level.clone())
            .unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
            c.err(
                &p.key("level"),
                format!("'{level}' is not one of: error, warn, info, debug, trace"),
            );
        }
        Log { format, level }
    };

    let cluster = raw.cluster.as_ref().and_then(|cl| {
        let p = root().key("cluster");
        let on_redis_down = c.choice(
            p.key("on_redis_down"),
            cl.on_redis_down.as_ref(),
            &[("local", OnRedisDown::Local), ("defer", OnRedisDown::Defer)],
            OnRedisDown::Local,
        );
        let timeout = c.duration(
            p.key("timeout"),
            cl.timeout.as_ref(),
            Duration::from_millis(5),
        );
        if timeout.is_zero() {
            c.err(&p.key("timeout"), "must be more than 0s");
        }
        let Some(url) = cl.redis.as_ref().map(|u| u.trim().to_string()) else {
            c.err(
                &p.key("redis"),
                "missing: the redis:// or rediss:// URL to share limits through",
            );
            return None;
        };
        let parsed = redis::IntoConnectionInfo::into_connection_info(url.as_str());
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) || parsed.is_err() {
            c.err(
                &p.key("redis"),
                "not a redis://[user:password@]host[:port][/db] or rediss://… URL",
            );
            return None;
        }
        Some(ClusterSettings {
            redis: url,
            password_file: cl.password_file.as_ref().map(PathBuf::from),
            on_redis_down,
            timeout,
        })
    });

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

fn check_listeners(c: &mut Checker, raw: &[RawListener]) -> Vec<Listener> {
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
            ListenerTls::None,
        );
        let unix_mode = match &l.mode {
            None => 0o666,
            Some(m) => match u32::from_str_radix(m.trim(), 8) {
                Ok(v) if v <= 0o777 => v,
                _ => {
                    c.err(
                        &p.key("mode"),
                        format!("'{m}' is not an octal file mode like 0660"),
                    );
                    0o666
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
            path: p,
        });
    }
    out
}

/// Parse one `allow_from` entry.
pub(crate) fn sender_pattern(s: &str) -> Option<SenderPattern> {
    let s = s.trim().to_ascii_lowercase();
    if let Some(d) = s.strip_prefix("*.") {
        return is_hostname(d).then(|| SenderPattern::Subdomains(d.to_string()));
    }
    if let Some((local, domain)) = s.rsplit_once('@') {
        return (!local.is_empty() && is_hostname(domain))
            .then(|| SenderPattern::Address(s.clone()));
    }
    is_hostname(&s).then_some(SenderPattern::Domain(s))
}

fn check_clients(c: &mut Checker, raw: &[RawClient]) -> Vec<Client> {
    let mut out = Vec::new();
    let mut users: BTreeMap<String, usize> = BTreeMap::new();
    for (i, rc) in raw.iter().enumerate() {
        let p = root().key("clients").index(i);
        let kinds = [
            rc.user.is_some(),
            rc.network.is_some(),
            rc.unix_user.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if kinds != 1 {
            c.err(
                &p,
                "a client is exactly one of user: (with password_hash), network: or unix_user:",
            );
            continue;
        }
        let kind = if let Some(user) = &rc.user {
            if let Some(prev) = users.insert(user.clone(), i) {
                c.err(
                    &p.key("user"),
                    format!("user '{user}' is already defined by clients[{prev}]"),
                );
            }
            match &rc.password_hash {
                None => {
                    c.err(
                        &p,
                        "password_hash is missing (make one with `dkim-relay hash-password`)",
                    );
                    continue;
                }
                Some(h) => {
                    let ok = argon2::PasswordHash::new(h)
                        .map(|ph| {
                            ph.algorithm.as_str() == "argon2id"
                                || ph.algorithm.as_str() == "argon2i"
                                || ph.algorithm.as_str() == "argon2d"
                        })
                        .unwrap_or(false)
                        || h.starts_with("$2b$")
                        || h.starts_with("$2a$")
                        || h.starts_with("$2y$");
                    if !ok {
                        c.err(&p.key("password_hash"), "not an argon2id or bcrypt hash (make one with `dkim-relay hash-password`)");
                    }
                    ClientKind::User {
                        name: user.clone(),
                        password_hash: h.clone(),
                    }
                }
            }
        } else if let Some(net) = &rc.network {
            if rc.password_hash.is_some() {
                c.err(
                    &p.key("password_hash"),
                    "only a user: client has a password",
                );
            }
            let parsed = net
                .trim()
                .parse::<ipnet::IpNet>()
                .or_else(|_| net.trim().parse::<IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(n) => ClientKind::Network(n.trunc()),
                Err(_) => {
                    c.err(
                        &p.key("network"),
                        format!("'{net}' is not a network in CIDR form (10.0.0.0/8)"),
                    );
                    continue;
                }
            }
        } else if let Some(u) = &rc.unix_user {
            ClientKind::UnixUser(u.clone())
        } else {
            continue;
        };
        if rc.allow_from.is_empty() {
            c.err(
                &p.key("allow_from"),
                "empty: list the domains or addresses this client may send as",
            );
        }
        let mut allow_from = Vec::new();
        for (j, a) in rc.allow_from.iter().enumerate() {
            match sender_pattern(a) {
                Some(pat) => allow_from.push(pat),
                None => c.err(
                    &p.key("allow_from").index(j),
                    format!("'{a}' is not a domain, *.domain or address"),
                ),
            }
        }
        out.push(Client {
            kind,
            allow_from,
            path: p,
        });
    }
    out
}

fn check_dkim(c: &mut Checker, raw: Option<&RawDkim>) -> Dkim {
    let p = root().key("dkim");
    let mut domains = BTreeMap::new();
    let (mut header_canon, mut body_canon) = (Canon::Relaxed, Canon::Relaxed);
    let mut expire = None;
    let independent_verify_max = c.size(
        p.key("independent_verify_max"),
        raw.and_then(|d| d.independent_verify_max.as_ref()),
        1 << 20,
    );
    if let Some(d) = raw {
        for (domain, selectors) in &d.domains {
            let dp = p.key("domains").key(domain);
            let name = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            if !is_hostname(&name) {
                c.err(&dp, format!("'{domain}' is not a domain name"));
                continue;
            }
            if selectors.is_empty() {
                c.err(
                    &dp,
                    "no selectors: list at least one { selector, private_key }",
                );
            }
            let mut list = Vec::new();
            for (i, s) in selectors.iter().enumerate() {
                let sp = dp.index(i);
                match (&s.selector, &s.private_key) {
                    (Some(sel), Some(key)) => {
                        if !is_hostname(sel) {
                            c.err(
                                &sp.key("selector"),
                                format!("'{sel}' is not a valid selector"),
                            );
                        }
                        if list.iter().any(|x: &SelectorConf| &x.selector == sel) {
                            c.err(
                                &sp.key("selector"),
                                format!("selector '{sel}' is listed twice"),
                            );
                        }
                        list.push(SelectorConf {
                            selector: sel.clone(),
                            private_key: key.into(),
                            path: sp,
                        });
                    }
                    (None, _) => c.err(&sp, "selector is missing"),
                    (_, None) => c.err(&sp, "private_key is missing"),
                }
            }
            domains.insert(name, list);
        }
        if let Some(canon) = &d.canonicalization {
            let parse = |s: &str| match s.trim() {
                "relaxed" => Some(Canon::Relaxed),
                "simple" => Some(Canon::Simple),
                _ => None,
            };
            let (h, b) = canon.split_once('/').unwrap_or((canon, "simple"));
            match (parse(h), parse(b)) {
                (Some(h), Some(b)) => {
                    header_canon = h;
                    body_canon = b;
                }
                _ => c.err(
                    &p.key("canonicalization"),
                    format!(
                        "'{canon}' is not header/body with relaxed or simple (relaxed/relaxed)"
                    ),
                ),
            }
        }
        expire = d.expire.as_ref().and_then(|e| match parse_duration(e) {
            Ok(d) => Some(d),
            Err(m) => {
                c.err(&p.key("expire"), m);
                None
            }
        });
    }
    Dkim {
        domains,
        header_canon,
        body_canon,
        expire,
        independent_verify_max,
    }
}

fn check_delivery(c: &mut Checker, raw: Option<&RawDelivery>) -> Delivery {
    let p = root().key("delivery");
    let tls_options = [
        ("opportunistic", OutboundTls::Opportunistic),
        ("required", OutboundTls::Required),
        ("none", OutboundTls::None),
    ];
    let tls = c.choice(
        p.key("tls"),
        raw.and_then(|d| d.tls.as_ref()),
        &tls_options,
        OutboundTls::Opportunistic,
    );
    let mode_name = raw
        .and_then(|d| d.mode.clone())
        .unwrap_or_else(|| "mx".into());
    let mode = match mode_name.trim() {
        "mx" => DeliveryMode::Mx,
        "directory" => match raw.and_then(|d| d.directory.as_ref()) {
            Some(dir) => DeliveryMode::Directory(PathBuf::from(dir)),
            None => {
                c.err(&p.key("mode"), "mode directory needs delivery.directory");
                DeliveryMode::Mx
            }
        },
        "relay_host" => match raw.and_then(|d| d.relay_host.as_ref()) {
            None => {
                c.err(
                    &p.key("mode"),
                    "mode relay_host needs a delivery.relay_host section",
                );
                DeliveryMode::Mx
            }
            Some(r) => {
                let rp = p.key("relay_host");
                let (host, port) = match r.address.as_deref().map(|a| (a, host_port(a.trim()))) {
                    Some((_, Some(hp))) => hp,
                    Some((a, None)) => {
                        c.err(&rp.key("address"), format!("'{a}' is not host:port"));
                        (String::new(), 0)
                    }
                    None => {
                        c.err(&rp, "address is missing");
                        (String::new(), 0)
                    }
                };
                let tls = c.choice(
                    rp.key("tls"),
                    r.tls.as_ref(),
                    &[
                        ("required", OutboundTls::Required),
                        ("starttls", OutboundTls::Required),
                        ("opportunistic", OutboundTls::Opportunistic),
                        ("implicit", OutboundTls::Implicit),
                        ("none", OutboundTls::None),
                    ],
                    OutboundTls::Required,
                );
                if r.username.is_some() != r.password_file.is_some() {
                    c.err(&rp, "username and password_file go together");
                }
                DeliveryMode::RelayHost(RelayHost {
                    host,
                    port,
                    tls,
                    username: r.username.clone(),
                    password_file: r.password_file.as_ref().map(PathBuf::from),
                    verify_certificate: r.verify_certificate.unwrap_or(true),
                })
            }
        },
        other => {
            c.err(
                &p.key("mode"),
                format!("'{other}' is not one of: mx, relay_host, directory"),
            );
            DeliveryMode::Mx
        }
    };
    let retry = match raw.and_then(|d| d.retry.as_ref()) {
        None => ["1m", "5m", "15m", "30m", "1h", "2h", "4h"]
            .iter()
            .filter_map(|s| parse_duration(s).ok())
            .collect(),
        Some(list) if list.is_empty() => {
            c.err(&p.key("retry"), "empty: give at least one interval");
            vec![Duration::from_secs(300)]
        }
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match parse_duration(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    c.err(&p.key("retry").index(i), e);
                    None
                }
            })
            .collect(),
    };
    let mut routes = BTreeMap::new();
    if let Some(d) = raw {
        for (domain, hop) in &d.routes {
            match host_port(hop.trim()) {
                Some(hp) => {
                    routes.insert(domain.trim().trim_end_matches('.').to_ascii_lowercase(), hp);
                }
                None => c.err(
                    &p.key("routes").key(domain),
                    format!("'{hop}' is not host:port"),
                ),
            }
        }
    }
    Delivery {
        mode,
        port: raw.and_then(|d| d.port).unwrap_or(25),
        tls,
        retry,
        max_age: c.duration(
            p.key("max_age"),
            raw.and_then(|d| d.max_age.as_ref()),
            Duration::from_secs(5 * 86_400),
        ),
        delay_warning: c.duration(
            p.key("delay_warning"),
            raw.and_then(|d| d.delay_warning.as_ref()),
            Duration::from_secs(4 * 3600),
        ),
        max_connections: c.positive(
            p.key("max_connections"),
            raw.and_then(|d| d.max_connections),
            64,
        ),
        max_connections_per_domain: c.positive(
            p.key("max_connections_per_domain"),
            raw.and_then(|d| d.max_connections_per_domain),
            8,
        ),
        connect_timeout: c.duration(
            p.key("connect_timeout"),
            raw.and_then(|d| d.connect_timeout.as_ref()),
            Duration::from_secs(30),
        ),
        command_timeout: c.duration(
            p.key("command_timeout"),
            raw.and_then(|d| d.command_timeout.as_ref()),
            Duration::from_secs(300),
        ),
        host_retry_max: c.duration(
            p.key("host_retry_max"),
            raw.and_then(|d| d.host_retry_max.as_ref()),
            Duration::from_secs(300),
        ),
        routes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match Settings::parse(Path::new("t.yaml"), text) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    const MINIMAL: &str =
        "hostname: relay.example.com\nlisteners:\n  - address: \"127.0.0.1:2525\"\n";

    #[test]
    fn minimal_is_valid() {
        assert!(errors(MINIMAL).is_empty(), "{:?}", errors(MINIMAL));
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

    #[test]
    fn sender_patterns() {
        assert_eq!(
            sender_pattern("Example.com"),
            Some(SenderPattern::Domain("example.com".into()))
        );
        assert_eq!(
            sender_pattern("*.example.com"),
            Some(SenderPattern::Subdomains("example.com".into()))
        );
        assert_eq!(
            sender_pattern("a@example.org"),
            Some(SenderPattern::Address("a@example.org".into()))
        );
        assert_eq!(sender_pattern("@example.org"), None);
        assert_eq!(sender_pattern("exa mple.org"), None);
    }
}

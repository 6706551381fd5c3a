//! Every configuration key, with its default and meaning. The unknown-key check reads this table
//! (so every unknown key of a file is reported at once, with its line), the checker takes the
//! defaults of absent keys from it (`default_of`: each default is written once, here), and a
//! test checks that `docs/configuration.md` documents each entry, so the reference cannot drift
//! from the code.
//!
//! Patterns: `a.b` nested keys, `a[]` a sequence's items, `*` any key (a domain name).

/// (pattern, default, meaning)
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "hostname",
        "the machine's host name",
        "EHLO name, SMTP banner, Received, Message-ID and DSN sender domain",
    ),
    (
        "spool_dir",
        "/var/spool/dkim-relay",
        "where accepted messages are queued (fsynced before 250)",
    ),
    (
        "public_addresses",
        "what hostname resolves to",
        "the relay's outbound IP addresses, for the SPF check",
    ),
    ("listeners", "(required)", "the submission sockets"),
    (
        "listeners[].address",
        "",
        "TCP address to listen on, e.g. \"[::]:587\" or \"127.0.0.1:2525\"",
    ),
    (
        "listeners[].unix",
        "",
        "path of a unix socket for local submission (the peer's uid identifies it)",
    ),
    (
        "listeners[].tls",
        "none",
        "none | starttls | implicit (TCP listeners)",
    ),
    (
        "listeners[].mode",
        "0666",
        "file mode of a unix socket, octal",
    ),
    (
        "tls",
        "",
        "server certificate for STARTTLS and implicit TLS",
    ),
    ("tls.certificate", "", "PEM file: the certificate chain"),
    (
        "tls.private_key",
        "",
        "PEM file: the private key (PKCS#8, PKCS#1 or SEC1)",
    ),
    ("clients", "[]", "who may submit, and for which senders"),
    ("clients[].user", "", "SMTP AUTH user name"),
    (
        "clients[].password_hash",
        "",
        "argon2id (or bcrypt) hash, from `dkim-relay hash-password`",
    ),
    (
        "clients[].network",
        "",
        "trusted network in CIDR form; no AUTH needed from it",
    ),
    (
        "clients[].unix_user",
        "",
        "local user (name or uid) on the unix listener",
    ),
    (
        "clients[].allow_from",
        "[]",
        "allowed senders: example.com, *.example.com or a@example.com",
    ),
    ("dkim", "", "signing keys and options"),
    (
        "dkim.domains",
        "{}",
        "signing domain -> list of selectors; every selector listed signs",
    ),
    (
        "dkim.domains.*",
        "",
        "a signing domain; it also signs for its subdomains",
    ),
    ("dkim.domains.*[].selector", "", "DKIM selector (s= tag)"),
    (
        "dkim.domains.*[].private_key",
        "",
        "PEM private key (RSA >= 2048 bits or Ed25519)",
    ),
    (
        "dkim.canonicalization",
        "relaxed/relaxed",
        "header/body canonicalization: relaxed or simple each",
    ),
    (
        "dkim.expire",
        "(none)",
        "signature lifetime, sets the x= tag",
    ),
    (
        "dkim.independent_verify_max",
        "1MiB",
        "self-verify new signatures with mail-auth's own verifier up to this size",
    ),
    ("delivery", "", "how queued mail leaves"),
    ("delivery.mode", "mx", "mx | relay_host | directory"),
    ("delivery.port", "25", "destination port for MX delivery"),
    (
        "delivery.tls",
        "opportunistic",
        "opportunistic | required | none",
    ),
    (
        "delivery.dane",
        "on with dns.dnssec: trust-ad, else off",
        "off | on: honour MX hosts' DNSSEC-validated TLSA records (RFC 7672)",
    ),
    (
        "delivery.retry",
        "[1m, 5m, 15m, 30m, 1h, 2h, 4h]",
        "retry intervals; the last one repeats",
    ),
    (
        "delivery.max_age",
        "5d",
        "how long a message may stay queued before it bounces",
    ),
    (
        "delivery.delay_warning",
        "4h",
        "after this long queued, the sender gets one delayed-delivery DSN (0s: never)",
    ),
    (
        "delivery.max_connections",
        "64",
        "outbound connections at once",
    ),
    (
        "delivery.max_connections_per_domain",
        "8",
        "outbound connections at once per destination domain",
    ),
    (
        "delivery.connect_timeout",
        "30s",
        "TCP connect and greeting timeout",
    ),
    (
        "delivery.command_timeout",
        "5m",
        "timeout for each outbound SMTP command",
    ),
    (
        "delivery.host_retry_max",
        "5m",
        "longest a failed next-hop host waits for its one probe delivery",
    ),
    (
        "delivery.routes",
        "{}",
        "domain -> \"host:port\" next hops that override MX lookup",
    ),
    (
        "delivery.routes.*",
        "",
        "next hop for this recipient domain",
    ),
    (
        "delivery.relay_host",
        "",
        "upstream smarthost for mode relay_host",
    ),
    (
        "delivery.relay_host.address",
        "",
        "\"host:port\" of the upstream",
    ),
    (
        "delivery.relay_host.tls",
        "required",
        "starttls-required (required), opportunistic, implicit or none",
    ),
    (
        "delivery.relay_host.username",
        "",
        "AUTH user at the upstream",
    ),
    (
        "delivery.relay_host.password_file",
        "",
        "file holding the upstream password",
    ),
    (
        "delivery.relay_host.verify_certificate",
        "true",
        "verify the upstream's certificate",
    ),
    (
        "delivery.directory",
        "",
        "mode directory: each signed message becomes <queue id>.eml here",
    ),
    (
        "delivery.mta_sts",
        "enforce (off with tls: none)",
        "off | testing | enforce: honour recipients' MTA-STS policies (RFC 8461)",
    ),
    (
        "delivery.ca_file",
        "(system roots only)",
        "PEM CA certificates trusted besides the system roots, for MTA-STS",
    ),
    (
        "delivery.tls_reports",
        "(off)",
        "TLS-RPT (RFC 8460): daily reports to each policy domain's rua",
    ),
    (
        "delivery.tls_reports.enabled",
        "true when the section is present",
        "record TLS results and send the daily reports",
    ),
    (
        "delivery.tls_reports.organization",
        "hostname",
        "organization-name of the reports",
    ),
    (
        "delivery.tls_reports.contact",
        "postmaster@hostname",
        "contact-info of the reports",
    ),
    ("dns", "", "resolver settings"),
    (
        "dns.nameservers",
        "system resolver",
        "\"ip:port\" name servers to ask",
    ),
    (
        "dns.check_interval",
        "1h",
        "how often serve re-runs the DNS checks (0s: never)",
    ),
    (
        "dns.dnssec",
        "off",
        "off | trust-ad: believe the AD bit of the nameservers (local validating resolvers)",
    ),
    ("limits", "", "per-session and per-message limits"),
    (
        "limits.max_message_size",
        "25MiB",
        "largest message accepted (SIZE)",
    ),
    (
        "limits.spool_min_free",
        "max_message_size",
        "free space the spool keeps: below it MAIL gets 452 4.3.1 and /readyz 503 (0: off)",
    ),
    ("limits.max_recipients", "100", "recipients per message"),
    (
        "limits.max_connections",
        "1024",
        "inbound connections at once",
    ),
    (
        "limits.max_connections_per_ip",
        "32",
        "inbound connections at once from one address",
    ),
    (
        "limits.idle_timeout",
        "5m",
        "close a session idle this long (421 4.4.2)",
    ),
    (
        "limits.session_timeout",
        "30m",
        "longest a session may last",
    ),
    (
        "limits.messages_per_minute_per_client",
        "600",
        "per-client message rate (451 4.7.1 beyond)",
    ),
    (
        "limits.bare_newlines",
        "normalize",
        "normalize | reject bare CR or LF in message data",
    ),
    (
        "limits.max_header_size",
        "1MiB",
        "largest header section accepted",
    ),
    ("limits.max_commands", "10000", "commands per session"),
    (
        "limits.max_errors",
        "10",
        "failed commands per session before 421",
    ),
    (
        "limits.auth_hash_concurrency",
        "number of CPUs",
        "password checks (argon2/bcrypt) running at once; the rest wait (454 4.7.0 after 5 s)",
    ),
    (
        "limits.buffer_memory",
        "256MiB",
        "memory clients may hold in the relay before it is spooled (451 4.3.2 beyond)",
    ),
    (
        "limits.long_lines",
        "encode",
        "encode | reject body lines over 998 bytes",
    ),
    ("limits.eight_bit", "keep", "keep | encode 8-bit body parts"),
    ("metrics", "", "Prometheus endpoint"),
    (
        "metrics.address",
        "(off)",
        "address for /metrics, /healthz, /readyz and /status",
    ),
    (
        "cluster",
        "",
        "limits shared by several replicas through Redis",
    ),
    (
        "cluster.redis",
        "(off)",
        "redis:// or rediss:// URL of the Redis (or Valkey) the replicas share",
    ),
    (
        "cluster.password_file",
        "(none)",
        "file holding the Redis password (instead of one in the URL)",
    ),
    (
        "cluster.on_redis_down",
        "local",
        "local (count per process) | defer (451 4.7.1 at MAIL, 454 4.7.0 at AUTH)",
    ),
    (
        "cluster.timeout",
        "5ms",
        "longest one shared decision may wait for Redis before on_redis_down applies",
    ),
    ("log", "", "logging"),
    ("log.format", "text", "text | json"),
    ("log.level", "info", "error | warn | info | debug | trace"),
    (
        "envelope_tagging",
        "(off)",
        "BATV tags on envelope senders, checked by `dkim-relay bounce-check`",
    ),
    (
        "envelope_tagging.domains",
        "(required)",
        "envelope sender domains whose mail leaves tagged",
    ),
    (
        "envelope_tagging.secret_file",
        "(required)",
        "file of secrets, one per line: the first signs, all verify",
    ),
    (
        "envelope_tagging.max_age",
        "7d",
        "how long a tag is valid (whole days, 1d to 365d)",
    ),
    (
        "envelope_tagging.accept_bounces_from",
        "[]",
        "addresses/networks whose bounces bounce-check never refuses (the relay's own outbound addresses, for its DSNs)",
    ),
];

/// Is `path` (as `a.b[0].c`, segments given) a known key?
pub fn is_known(path: &[super::locate::Seg]) -> bool {
    KEYS.iter().any(|(pattern, _, _)| matches(pattern, path))
}

/// The default of the key at `path` as this table writes it. The checker parses it where a
/// key is absent, so each default is written once, here.
pub fn default_of(path: &[super::locate::Seg]) -> Option<&'static str> {
    KEYS.iter()
        .find(|(pattern, _, _)| matches(pattern, path))
        .map(|(_, default, _)| *default)
}

fn matches(pattern: &str, path: &[super::locate::Seg]) -> bool {
    use super::locate::Seg;
    let mut segs = path.iter();
    for part in pattern.split('.') {
        let (name, items) = match part.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (part, false),
        };
        match segs.next() {
            Some(Seg::Key(k)) if name == "*" || k == name => {}
            _ => return false,
        }
        if items {
            match segs.next() {
                Some(Seg::Index(_)) => {}
                // The sequence key itself ("listeners[]" also names "listeners").
                None => return true,
                _ => return false,
            }
        }
    }
    // Items of a list-valued key (public_addresses[0]) belong to the key.
    segs.all(|s| matches!(s, Seg::Index(_)))
}

#[cfg(test)]
mod tests {
    use super::super::locate::Seg;
    use super::*;

    fn p(parts: &[&str]) -> Vec<Seg> {
        parts
            .iter()
            .map(|s| match s.parse::<usize>() {
                Ok(n) => Seg::Index(n),
                Err(_) => Seg::Key(s.to_string()),
            })
            .collect()
    }

    #[test]
    fn known_and_unknown() {
        assert!(is_known(&p(&["hostname"])));
        assert!(is_known(&p(&["listeners", "0", "tls"])));
        assert!(is_known(&p(&[
            "dkim",
            "domains",
            "example.com",
            "1",
            "selector"
        ])));
        assert!(is_known(&p(&["delivery", "retry", "3"])));
        assert!(!is_known(&p(&["hostnam"])));
        assert!(!is_known(&p(&["listeners", "0", "port"])));
        assert!(!is_known(&p(&["delivery", "relay_host", "pasword_file"])));
    }
}

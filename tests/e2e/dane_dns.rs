//! The DNSSEC-aware lookups and the DANE host logic against a real validating resolver:
//! Debian's unbound on loopback, with test zones signed in the test (ldns-signzone), one left
//! unsigned, and one whose signatures were spoiled after signing (tests/support/unbound.rs).
//! One unbound serves every test of this file.

use crate::unbound;

use dkim_relay::dane::{self, HostDane, NoDane};
use dkim_relay::dnssec::{fqdn, DnsError, Resolver, Security};
use dkim_relay::outbound::next_hop::{Hop, HopError};
use dkim_relay::outbound::secure_hop;
use mail_auth::hickory_resolver::proto::rr::Name;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;
use unbound::{Unbound, Zone};

const SHA256_A: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const SHA256_B: &str = "0202020202020202020202020202020202020202020202020202020202020202";

fn resolver() -> Option<Resolver> {
    static UNBOUND: OnceLock<Option<Unbound>> = OnceLock::new();
    let u = UNBOUND
        .get_or_init(|| unbound::available().then(start))
        .as_ref()?;
    Some(Resolver::new(vec![u.addr], Duration::from_secs(5), 2))
}

fn start() -> Unbound {
    let mut signed = Zone::signed("signed.test")
        .record("@ IN MX 10 mx")
        .record("mx IN A 127.0.0.5")
        .record(&format!("_25._tcp.mx IN TLSA 3 1 1 {SHA256_A}"))
        .record(&format!("_25._tcp.mx IN TLSA 0 0 1 {SHA256_B}"))
        .record("unusable IN A 127.0.0.6")
        .record(&format!("_25._tcp.unusable IN TLSA 1 1 1 {SHA256_A}"))
        .record("alias IN CNAME mx")
        .record("alias2 IN CNAME notlsa")
        .record("notlsa IN A 127.0.0.7")
        .record(&format!("_25._tcp.alias2 IN TLSA 3 1 1 {SHA256_B}"))
        .record("into-plain IN CNAME mx.plain.test.")
        .record("mxplain IN MX 10 mx.plain.test.")
        .record("tc IN A 127.0.0.8")
        .record("_25._tcp.tc IN CNAME _25._tcp.mx")
        .record("nullmx IN MX 0 .")
        .record("two IN MX 20 b.two")
        .record("two IN MX 10 a.two")
        .record("a.two IN A 127.0.0.12")
        .record("b.two IN A 127.0.0.13");
    for i in 1..=80 {
        signed = signed.record(&format!("big IN A 127.0.1.{i}"));
    }
    let plain = Zone::unsigned("plain.test")
        .record("@ IN MX 10 mx")
        .record("mx IN A 127.0.0.9")
        .record(&format!("_25._tcp.mx IN TLSA 3 1 1 {SHA256_A}"));
    let bogus = Zone::signed("bogus.test")
        .record("@ IN MX 10 mx")
        .record("mx IN A 127.0.0.10")
        .record(&format!("_25._tcp.mx IN TLSA 3 1 1 {SHA256_A}"))
        .record("mx2 IN A 127.0.0.11")
        .spoil("_25._tcp.mx", "TLSA")
        .spoil("mx2", "A");
    Unbound::start(vec![signed, plain, bogus])
}

fn name(s: &str) -> Name {
    fqdn(s).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn secure_answers_carry_the_ad_bit() {
    let Some(r) = resolver() else { return };
    let mx = r.mx(&name("signed.test")).await.unwrap();
    assert_eq!(mx.security, Security::Secure);
    assert_eq!(mx.records.len(), 1);
    assert_eq!(mx.records[0].preference, 10);
    assert_eq!(mx.records[0].exchange, name("mx.signed.test"));

    let a = r.addresses(&name("mx.signed.test")).await.unwrap();
    assert_eq!(
        (a.records.clone(), a.security),
        (vec![ip("127.0.0.5")], Security::Secure)
    );
    assert!(!a.is_alias());

    let tlsa = r.tlsa(&name("_25._tcp.mx.signed.test")).await.unwrap();
    assert_eq!(tlsa.security, Security::Secure);
    assert_eq!(tlsa.records.len(), 2);
}

#[tokio::test]
async fn an_unsigned_zone_is_insecure() {
    let Some(r) = resolver() else { return };
    let mx = r.mx(&name("plain.test")).await.unwrap();
    assert_eq!((mx.records.len(), mx.security), (1, Security::Insecure));
    let a = r.addresses(&name("mx.plain.test")).await.unwrap();
    assert_eq!(
        (a.records.clone(), a.security),
        (vec![ip("127.0.0.9")], Security::Insecure)
    );
    let tlsa = r.tlsa(&name("_25._tcp.mx.plain.test")).await.unwrap();
    assert_eq!((tlsa.records.len(), tlsa.security), (1, Security::Insecure));
}

#[tokio::test]
async fn a_spoiled_signature_is_a_servfail_not_an_insecure_answer() {
    let Some(r) = resolver() else { return };
    // The rest of the zone validates...
    let mx = r.mx(&name("bogus.test")).await.unwrap();
    assert_eq!(mx.security, Security::Secure);
    // ...the spoiled RRsets do not: SERVFAIL, with unbound's Extended DNS Error.
    let e = r.tlsa(&name("_25._tcp.mx.bogus.test")).await.unwrap_err();
    assert!(e.is_bogus(), "{e}");
    let DnsError::ServFail { ede: Some(ede), .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(ede.code, 6, "DNSSEC Bogus: {e}");
    let e = r.addresses(&name("mx2.bogus.test")).await.unwrap_err();
    assert!(e.is_bogus(), "{e}");
}

#[tokio::test]
async fn denial_of_existence_is_authenticated_too() {
    let Some(r) = resolver() else { return };
    let nx = r.mx(&name("nothing.signed.test")).await.unwrap();
    assert!(nx.nx_domain && nx.records.is_empty());
    assert_eq!(nx.security, Security::Secure);
    // NODATA: the name exists, without TLSA records.
    let nodata = r.tlsa(&name("mx.signed.test")).await.unwrap();
    assert!(!nodata.nx_domain && nodata.records.is_empty());
    assert_eq!(nodata.security, Security::Secure);
    let nx = r.mx(&name("nothing.plain.test")).await.unwrap();
    assert!(nx.nx_domain);
    assert_eq!(nx.security, Security::Insecure);
}

#[tokio::test]
async fn cname_chains_are_followed() {
    let Some(r) = resolver() else { return };
    let a = r.addresses(&name("alias.signed.test")).await.unwrap();
    assert!(a.is_alias());
    assert_eq!(a.owner, name("mx.signed.test"));
    assert_eq!(
        (a.records.clone(), a.security),
        (vec![ip("127.0.0.5")], Security::Secure)
    );
    // A signed alias into an unsigned zone is insecure as a whole.
    let a = r.addresses(&name("into-plain.signed.test")).await.unwrap();
    assert_eq!(a.owner, name("mx.plain.test"));
    assert_eq!(a.security, Security::Insecure);
}

#[tokio::test]
async fn a_large_answer_comes_over_tcp() {
    let Some(r) = resolver() else { return };
    // 80 A records and their signature do not fit the 1232 bytes asked for over UDP.
    let a = r.addresses(&name("big.signed.test")).await.unwrap();
    assert_eq!(a.records.len(), 80);
    assert_eq!(a.security, Security::Secure);
}

#[tokio::test]
async fn a_dead_nameserver_is_skipped() {
    let Some(r) = resolver() else { return };
    let live = r.nameservers()[0];
    let dead: SocketAddr = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let r = Resolver::new(vec![dead, live], Duration::from_secs(2), 2);
    let mx = r.mx(&name("signed.test")).await.unwrap();
    assert_eq!(mx.security, Security::Secure);
    let only_dead = Resolver::new(vec![dead], Duration::from_millis(300), 2);
    assert!(only_dead.mx(&name("signed.test")).await.is_err());
}

/// What DANE says about `host`, reached through an MX answer of security `mx`.
async fn host(r: &Resolver, host: &str, mx: Security) -> Result<HostDane, DnsError> {
    let host = name(host);
    let addresses = r.addresses(&host).await?;
    dane::for_host(r, &host, mx, &addresses).await
}

#[tokio::test]
async fn dane_applies_only_along_a_secure_path() {
    let Some(r) = resolver() else { return };
    let secure = Security::Secure;
    match host(&r, "mx.signed.test", secure).await.unwrap() {
        HostDane::Usable(set) => {
            assert_eq!(set.base_domain(), "mx.signed.test");
            assert_eq!(set.usable.len(), 1, "PKIX-TA is not usable for SMTP");
            assert_eq!(set.published.len(), 2);
            assert!(set.published.iter().any(|p| p.starts_with("0 0 1 0202")));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        host(&r, "unusable.signed.test", secure).await.unwrap(),
        HostDane::Unusable(_)
    ));
    assert_eq!(
        host(&r, "notlsa.signed.test", secure).await.unwrap(),
        HostDane::None(NoDane::NoRecords)
    );
    // An insecure MX answer, insecure addresses (also behind a signed CNAME), insecure TLSA.
    assert_eq!(
        host(&r, "mx.signed.test", Security::Insecure)
            .await
            .unwrap(),
        HostDane::None(NoDane::InsecureMx)
    );
    let mx = r.mx(&name("mxplain.signed.test")).await.unwrap();
    assert_eq!(mx.security, Security::Secure);
    assert_eq!(
        host(&r, "mx.plain.test", mx.security).await.unwrap(),
        HostDane::None(NoDane::InsecureAddresses)
    );
    assert_eq!(
        host(&r, "into-plain.signed.test", secure).await.unwrap(),
        HostDane::None(NoDane::InsecureAddresses)
    );
    // Bogus TLSA records: no answer about the host's security at all.
    let e = host(&r, "mx.bogus.test", secure).await.unwrap_err();
    assert!(e.is_bogus(), "{e}");
}

#[tokio::test]
async fn the_tlsa_base_domain_follows_secure_cnames() {
    let Some(r) = resolver() else { return };
    let base = |d: HostDane| match d {
        HostDane::Usable(set) => set.base_domain(),
        other => panic!("{other:?}"),
    };
    // The alias's target has TLSA records: they are the host's (RFC 7672 2.2.3).
    assert_eq!(
        base(
            host(&r, "alias.signed.test", Security::Secure)
                .await
                .unwrap()
        ),
        "mx.signed.test"
    );
    // The target has none: the records at the alias itself.
    assert_eq!(
        base(
            host(&r, "alias2.signed.test", Security::Secure)
                .await
                .unwrap()
        ),
        "alias2.signed.test"
    );
    // The TLSA RRset reached through its own CNAME.
    assert_eq!(
        base(host(&r, "tc.signed.test", Security::Secure).await.unwrap()),
        "tc.signed.test"
    );
}

/// The resolver shipped for the Kubernetes sidecar (contrib/unbound/unbound.conf) starts as
/// written, only its port changed: its options exist in Debian's unbound, and the root trust
/// anchor it names is where dns-root-data puts it.
#[test]
fn the_shipped_sidecar_config_runs() {
    if !unbound::available() {
        return;
    }
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/unbound/unbound.conf"
    ))
    .unwrap();
    assert!(shipped.contains("\n  port: 53\n"));
    let u = Unbound::start_with("localhost.", |port| {
        shipped.replace("\n  port: 53\n", &format!("\n  port: {port}\n"))
    });
    assert!(u.addr.port() != 53);
}

/// check-config names the resolvers whose AD bit it believes, and warns about one that is not
/// on this host.
#[test]
fn check_config_warns_about_a_resolver_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.yaml");
    std::fs::write(
        &config,
        format!(
            "hostname: relay.test\nspool_dir: {}\nlisteners:\n  - address: \"127.0.0.1:2525\"\n\
             dns:\n  nameservers: [\"127.0.0.1:5353\", \"192.0.2.53\"]\n  dnssec: trust-ad\n",
            dir.path().join("spool").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dkim-relay"))
        .args(["check-config", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "dnssec: trust-ad, believing the AD bit of 127.0.0.1:5353, 192.0.2.53:53 (DANE: on)"
        ),
        "{stdout}"
    );
    assert!(stderr.contains("warning: dns.dnssec: trust-ad believes the AD bit of 192.0.2.53:53, which is not on this host"), "{stderr}");
    assert!(!stderr.contains("127.0.0.1:5353, which"), "{stderr}");
}

/// Next hops as delivery sees them: MX hosts in order, the domain itself without MX, null MX and
/// NXDOMAIN final, a bogus answer temporary; each with its security.
#[tokio::test]
async fn next_hops_keep_their_security() {
    let Some(r) = resolver() else { return };
    let hop = |h: &str| Hop {
        host: h.to_string(),
        port: 2525,
    };
    let h = secure_hop::resolve(&r, "two.signed.test", 2525)
        .await
        .unwrap();
    assert_eq!(
        h.hops,
        vec![hop("a.two.signed.test"), hop("b.two.signed.test")]
    );
    assert_eq!(h.mx, Security::Secure);
    let h = secure_hop::resolve(&r, "plain.test", 2525).await.unwrap();
    assert_eq!(
        (h.hops, h.mx),
        (vec![hop("mx.plain.test")], Security::Insecure)
    );
    // No MX, securely: the domain is its own host.
    let h = secure_hop::resolve(&r, "notlsa.signed.test", 2525)
        .await
        .unwrap();
    assert_eq!(
        (h.hops, h.mx),
        (vec![hop("notlsa.signed.test")], Security::Secure)
    );
    assert!(matches!(
        secure_hop::resolve(&r, "nullmx.signed.test", 25).await,
        Err(HopError::Permanent(e)) if e.contains("null MX")
    ));
    assert!(matches!(
        secure_hop::resolve(&r, "nothing.signed.test", 25).await,
        Err(HopError::Permanent(e)) if e.contains("no such domain")
    ));

    let a = secure_hop::addresses(&r, &hop("a.two.signed.test"))
        .await
        .unwrap();
    assert_eq!(a.addrs, vec!["127.0.0.12:2525".parse().unwrap()]);
    assert_eq!(a.answer.unwrap().security, Security::Secure);
    let literal = secure_hop::addresses(&r, &hop("[192.0.2.7]"))
        .await
        .unwrap();
    assert_eq!((literal.addrs.len(), literal.answer), (1, None));
    assert!(matches!(
        secure_hop::addresses(&r, &hop("mx2.bogus.test")).await,
        Err(HopError::Temporary(e)) if e.contains("DNSSEC bogus")
    ));
}

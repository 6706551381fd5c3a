//! The test DNS server answers real DNS through the relay's own resolver: MX, TXT with several
//! strings (and TCP fallback for big answers), A/AAAA, NXDOMAIN vs NODATA, SERVFAIL, and
//! changes to the zone seen at once.

use crate::dns_server;

use dns_server::DnsServer;
use mail_auth::dns::NoCache;
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::hickory_resolver::proto::rr::RecordType;
use mail_auth::{DnsError, Error};
use std::net::{Ipv4Addr, Ipv6Addr};

fn resolver(dns: &DnsServer) -> mail_auth::MessageAuthenticator {
    dkim_relay::resolver::build(Some(&[dns.addr()])).expect("resolver")
}

#[tokio::test]
async fn mx_txt_a_aaaa() {
    let dns = DnsServer::start();
    dns.add_mx("example.com", 20, "mx2.example.com");
    dns.add_mx("example.com", 10, "mx1.example.com");
    dns.add_a("mx1.example.com", Ipv4Addr::new(192, 0, 2, 1));
    dns.add_aaaa(
        "mx1.example.com",
        "2001:db8::1".parse::<Ipv6Addr>().unwrap(),
    );
    dns.add_txt(
        "example.com",
        vec![b"v=spf1 ".to_vec(), b"ip4:192.0.2.1 -all".to_vec()],
    );
    let r = resolver(&dns);

    let mx = r.mx_lookup("example.com", None::<&NoCache>).await.unwrap();
    let hosts: Vec<(u16, String)> = mx
        .records
        .iter()
        .flat_map(|m| m.exchanges.iter().map(|e| (m.preference, e.to_string())))
        .collect();
    assert_eq!(
        hosts,
        vec![
            (10, "mx1.example.com.".to_string()),
            (20, "mx2.example.com.".to_string())
        ]
    );

    // mail-auth joins the strings of one record.
    let txt = r.txt_raw_lookup("example.com").await.unwrap();
    assert_eq!(txt, b"v=spf1 ip4:192.0.2.1 -all");
    // The strings arrive separately on the wire.
    let lookup = r
        .resolver()
        .txt_lookup("example.com.")
        .await
        .expect("txt lookup");
    let strings: Vec<Vec<u8>> = lookup
        .answers()
        .iter()
        .filter_map(|rec| match &rec.data {
            mail_auth::hickory_resolver::proto::rr::RData::TXT(t) => {
                Some(t.txt_data.iter().map(|s| s.to_vec()).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        strings,
        vec![b"v=spf1 ".to_vec(), b"ip4:192.0.2.1 -all".to_vec()]
    );

    let a = r
        .ipv4_lookup("mx1.example.com", None::<&NoCache>)
        .await
        .unwrap();
    assert_eq!(&a.records[..], &[Ipv4Addr::new(192, 0, 2, 1)]);
    let aaaa = r
        .ipv6_lookup("mx1.example.com", None::<&NoCache>)
        .await
        .unwrap();
    assert_eq!(
        &aaaa.records[..],
        &["2001:db8::1".parse::<Ipv6Addr>().unwrap()]
    );
}

#[tokio::test]
async fn nxdomain_nodata_servfail() {
    let dns = DnsServer::start();
    dns.add_a("host.example.com", Ipv4Addr::new(192, 0, 2, 9));
    dns.add_txt_str("sel._domainkey.example.com", "v=DKIM1; p=");
    let r = resolver(&dns);

    match r.txt_raw_lookup("missing.example.com").await {
        Err(Error::Dns(DnsError::RecordNotFound(code))) => {
            assert_eq!(code, ResponseCode::NXDomain)
        }
        other => panic!("expected NXDOMAIN, got {other:?}"),
    }
    // The name exists, without TXT: NODATA (NOERROR).
    match r.txt_raw_lookup("host.example.com").await {
        Err(Error::Dns(DnsError::RecordNotFound(code))) => {
            assert_eq!(code, ResponseCode::NoError)
        }
        other => panic!("expected NODATA, got {other:?}"),
    }
    // An empty non-terminal is NODATA too, not NXDOMAIN.
    match r.txt_raw_lookup("_domainkey.example.com").await {
        Err(Error::Dns(DnsError::RecordNotFound(code))) => {
            assert_eq!(code, ResponseCode::NoError)
        }
        other => panic!("expected NODATA, got {other:?}"),
    }
    dns.fail("host.example.com");
    match r.ipv4_lookup("host.example.com", None::<&NoCache>).await {
        Err(Error::Dns(DnsError::Resolver(_))) => {}
        other => panic!("expected a resolver error, got {other:?}"),
    }
    dns.heal("host.example.com");
    assert!(r
        .ipv4_lookup("host.example.com", None::<&NoCache>)
        .await
        .is_ok());
}

#[tokio::test]
async fn big_answers_fall_back_to_tcp_and_changes_are_seen() {
    let dns = DnsServer::start();
    // Three records of ~700 bytes: over any UDP limit, so the answer is truncated and the
    // resolver must retry over TCP.
    for i in 0..3 {
        dns.add_txt_str("big.example.com", &format!("{i}{}", "x".repeat(700)));
    }
    let r = resolver(&dns);
    let lookup = r
        .resolver()
        .txt_lookup("big.example.com.")
        .await
        .expect("txt over tcp");
    assert_eq!(lookup.answers().len(), 3);

    dns.remove("big.example.com");
    dns.add_txt_str("big.example.com", "small");
    let txt = r.txt_raw_lookup("big.example.com").await.unwrap();
    assert_eq!(txt, b"small");
    dns.remove_type("big.example.com", RecordType::TXT);
    assert!(r.txt_raw_lookup("big.example.com").await.is_err());
    assert!(dns
        .queries()
        .iter()
        .any(|(n, t)| n.starts_with("big.example.com") && *t == RecordType::TXT));
}

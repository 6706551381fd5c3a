//! The DNS doctor as `serve` runs it: `doctor_loop` checks at once and then every
//! `dns.check_interval`, so a record deleted at the registrar turns its gauge to 0 on the next
//! pass; shutdown ends the loop.

use crate::dns_server;

use dkim_relay::config::Settings;
use dkim_relay::tools::dns_check::{doctor_loop, gauge_values, CheckResult};
use dkim_relay::tools::keygen::{keygen, KeygenAlgorithm};
use dns_server::DnsServer;
use std::path::Path;
use std::sync::Arc;

#[tokio::test]
async fn doctor_loop_sees_a_deleted_record_on_the_next_pass() {
    let dir = tempfile::tempdir().unwrap();
    let dns = DnsServer::start();
    let key = keygen("example.com", "s1", KeygenAlgorithm::Ed25519, dir.path()).unwrap();
    dns.add_txt_str(&key.record_name(), &key.value);
    dns.add_txt_str("example.com", "v=spf1 ip4:203.0.113.7 -all");
    dns.add_txt_str("_dmarc.example.com", "v=DMARC1; p=reject");
    let yaml = format!(
        "hostname: relay.example.com\npublic_addresses: [\"203.0.113.7\"]\nlisteners:\n  - address: \"127.0.0.1:2525\"\ndns:\n  nameservers: [\"{}\"]\n  check_interval: 1s\ndkim:\n  domains:\n    example.com:\n      - selector: s1\n        private_key: {}\n",
        dns.addr(),
        key.path.display()
    );
    let settings = Arc::new(Settings::parse(Path::new("t.yaml"), &yaml).expect("config"));
    let resolver = dkim_relay::resolver::build(settings.dns.nameservers.as_deref()).unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<CheckResult>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let looping = doctor_loop(
        || settings.clone(),
        &resolver,
        async {
            let _ = stop_rx.await;
        },
        |results: &[CheckResult]| {
            let _ = tx.send(results.to_vec());
        },
    );
    let driver = async {
        let first = gauge_values(&rx.recv().await.unwrap());
        assert_eq!(
            first,
            vec![
                ("example.com".into(), "dkim:s1".into(), 1),
                ("example.com".into(), "dmarc".into(), 1),
                ("example.com".into(), "spf".into(), 1),
            ]
        );
        dns.remove("_dmarc.example.com");
        let started = std::time::Instant::now();
        let second = gauge_values(&rx.recv().await.unwrap());
        assert!(started.elapsed() >= std::time::Duration::from_millis(500));
        assert!(second.contains(&("example.com".into(), "dmarc".into(), 0)));
        assert!(second.contains(&("example.com".into(), "dkim:s1".into(), 1)));
        let _ = stop_tx.send(());
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        tokio::join!(looping, driver)
    })
    .await
    .expect("doctor loop did not stop");
}

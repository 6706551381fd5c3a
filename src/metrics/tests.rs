use super::*;

/// Every metric family the relay exports: PRODUCT.md's list, then ours. A family added,
/// renamed or dropped in `Metrics` fails `every_metric_has_help_and_type` until this list (and
/// docs/operations.md) says so.
const NAMES: [&str; 29] = [
    "dkim_relay_connections_total",
    "dkim_relay_sessions_active",
    "dkim_relay_auth_failures_total",
    "dkim_relay_messages_received_total",
    "dkim_relay_messages_rejected_total",
    "dkim_relay_messages_signed_total",
    "dkim_relay_signing_seconds",
    "dkim_relay_message_size_bytes",
    "dkim_relay_deliveries_total",
    "dkim_relay_delivery_seconds",
    "dkim_relay_queue_messages",
    "dkim_relay_queue_oldest_age_seconds",
    "dkim_relay_tls_failures_total",
    "dkim_relay_dns_failures_total",
    "dkim_relay_dns_check_ok",
    "dkim_relay_self_verify_failures_total",
    "dkim_relay_config_reloads_total",
    "dkim_relay_build_info",
    "dkim_relay_next_hop_closed",
    "dkim_relay_delivery_probes_total",
    "dkim_relay_tls_policy_total",
    "dkim_relay_auth_hash_waiting",
    "dkim_relay_buffer_memory_bytes",
    "dkim_relay_overload_refusals_total",
    "dkim_relay_cluster_redis_up",
    "dkim_relay_cluster_decisions_total",
    "dkim_relay_cluster_redis_seconds",
    "dkim_relay_messages_reencoded_total",
    "dkim_relay_8bit_without_8bitmime_total",
];

#[test]
fn new_does_not_fail() {
    // Metrics::new() expects on this; it must hold for every build.
    Metrics::try_new().unwrap();
}

#[test]
fn every_metric_has_help_and_type() {
    let m = Metrics::new();
    // Series whose labels come from the config or the DNS doctor exist once set: a family
    // without series is not exported at all.
    m.init_config_labels(["[::]:587"], [("example.com", Algorithm::RsaSha256)]);
    m.set_dns_checks([("example.com".into(), "dkim:s1".into(), 1)]);
    let text = m.render();
    let families = |prefix: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|rest| rest.split(' ').next())
            .map(str::to_string)
            .collect()
    };
    let names: std::collections::BTreeSet<String> = NAMES.iter().map(|n| n.to_string()).collect();
    assert_eq!(families("# HELP "), names, "families with HELP:\n{text}");
    assert_eq!(families("# TYPE "), names, "families with TYPE");
}

#[test]
fn fixed_label_sets_start_at_zero() {
    let text = Metrics::new().render();
    for line in [
        r#"dkim_relay_deliveries_total{result="delivered"} 0"#,
        r#"dkim_relay_deliveries_total{result="deferred"} 0"#,
        r#"dkim_relay_deliveries_total{result="bounced"} 0"#,
        r#"dkim_relay_tls_failures_total{direction="inbound"} 0"#,
        r#"dkim_relay_tls_failures_total{direction="outbound"} 0"#,
        r#"dkim_relay_auth_failures_total{mechanism="plain"} 0"#,
        r#"dkim_relay_auth_failures_total{mechanism="login"} 0"#,
        r#"dkim_relay_messages_rejected_total{reason="too_many_recipients"} 0"#,
        r#"dkim_relay_messages_rejected_total{reason="bare_newline"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}");
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("dkim_relay_messages_rejected_total{"))
            .count(),
        RejectReason::ALL.len()
    );
    let version = env!("CARGO_PKG_VERSION");
    assert!(text.contains(&format!("dkim_relay_build_info{{version=\"{version}\"}} 1")));
}

#[test]
fn helpers_update_the_right_series() {
    let m = Metrics::new();
    m.init_config_labels(
        ["127.0.0.1:2525"],
        [("example.com", Algorithm::Ed25519Sha256)],
    );
    m.connection("127.0.0.1:2525");
    m.connection("127.0.0.1:2525");
    m.auth_failure(AuthMechanism::Login);
    m.rejected(RejectReason::SenderNotAllowed);
    m.signed("example.com", Algorithm::RsaSha256);
    m.deliveries(DeliveryResult::Deferred, 3);
    m.tls_failure(Direction::Outbound);
    m.set_dns_checks(
        ["spf", "dmarc"].map(|c| ("example.com".into(), c.into(), i64::from(c == "spf"))),
    );
    m.config_reload(false);
    m.signing_seconds.observe(0.0003);
    m.message_size_bytes.observe(5000.0);
    m.queue_messages.set(7);
    m.queue_oldest_age_seconds.set(12.5);
    let text = m.render();
    for line in [
        r#"dkim_relay_connections_total{listener="127.0.0.1:2525"} 2"#,
        r#"dkim_relay_auth_failures_total{mechanism="login"} 1"#,
        r#"dkim_relay_messages_rejected_total{reason="sender_not_allowed"} 1"#,
        r#"dkim_relay_messages_signed_total{algorithm="rsa-sha256",domain="example.com"} 1"#,
        r#"dkim_relay_messages_signed_total{algorithm="ed25519-sha256",domain="example.com"} 0"#,
        r#"dkim_relay_deliveries_total{result="deferred"} 3"#,
        r#"dkim_relay_tls_failures_total{direction="outbound"} 1"#,
        r#"dkim_relay_dns_check_ok{check="spf",domain="example.com"} 1"#,
        r#"dkim_relay_dns_check_ok{check="dmarc",domain="example.com"} 0"#,
        r#"dkim_relay_config_reloads_total{result="failure"} 1"#,
        r#"dkim_relay_signing_seconds_count 1"#,
        r#"dkim_relay_signing_seconds_bucket{le="0.0004"} 1"#,
        r#"dkim_relay_message_size_bytes_bucket{le="4096"} 0"#,
        r#"dkim_relay_message_size_bytes_bucket{le="16384"} 1"#,
        r#"dkim_relay_queue_messages 7"#,
        r#"dkim_relay_queue_oldest_age_seconds 12.5"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
}

#[test]
fn buckets_cover_the_documented_ranges() {
    let sign = exp_buckets(0.000_05, 2.0, 12);
    assert_eq!(sign[0], 0.000_05);
    assert!(*sign.last().unwrap() >= 0.05);
    let size = exp_buckets(1024.0, 4.0, 9);
    assert_eq!(size[0], 1024.0);
    assert_eq!(*size.last().unwrap(), 64.0 * 1024.0 * 1024.0);
}

#[test]
fn two_instances_do_not_share_state() {
    // Each Metrics has its own registry: tests (and a reload) can build as many as they like.
    let a = Metrics::new();
    let b = Metrics::new();
    a.messages_received_total.inc();
    assert!(a.render().contains("dkim_relay_messages_received_total 1"));
    assert!(b.render().contains("dkim_relay_messages_received_total 0"));
}

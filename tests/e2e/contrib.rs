//! The Grafana dashboard and the Prometheus alert rules in `contrib/` stay consistent with the
//! metrics the relay actually exports. (`promtool check rules` runs in .ci/promtool-check.sh.)

use dkim_relay::metrics::{Algorithm, Metrics};
use std::collections::BTreeSet;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Names of every exported family (HELP lines of a fully populated registry).
fn exported() -> BTreeSet<String> {
    let m = Metrics::new();
    m.init_config_labels(["l"], [("example.com", Algorithm::RsaSha256)]);
    m.set_dns_checks([("example.com".into(), "dkim:s1".into(), 1)]);
    m.render()
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

/// Every `dkim_relay_*` name used in `text`, with histogram series suffixes removed.
fn used(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("dkim_relay_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|n| n.ends_with("_seconds") || n.ends_with("_bytes"))
            })
            .unwrap_or(name);
        out.insert(name.to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn dashboard_has_the_panels_and_known_metrics() {
    let text = std::fs::read_to_string(format!("{ROOT}/contrib/grafana/dkim-relay.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dash["uid"], "dkim-relay");
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(dash["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(dash["__inputs"][0]["pluginId"], "prometheus");
    let panels = dash["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Throughput",
        "Rejects by reason",
        "Queue depth",
        "Oldest queued message",
        "Delivery results",
        "Signing latency",
        "AUTH failures",
        "DNS checks",
    ] {
        assert!(titles.contains(&want), "no panel {want:?} in {titles:?}");
    }
    for p in panels {
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{}", p["title"]);
        assert!(
            !p["targets"].as_array().unwrap().is_empty(),
            "{}",
            p["title"]
        );
    }
    let known = exported();
    for name in used(&text) {
        assert!(
            known.contains(&name),
            "dashboard uses unknown metric {name}"
        );
    }
    assert!(text.contains("histogram_quantile(0.99"));
}

#[test]
fn alert_rules_are_complete_and_use_known_metrics() {
    let text = std::fs::read_to_string(format!("{ROOT}/contrib/prometheus/alerts.yml")).unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let rules = doc["groups"][0]["rules"].as_sequence().unwrap();
    let mut names = Vec::new();
    for r in rules {
        let name = r["alert"].as_str().unwrap();
        names.push(name);
        assert!(r["expr"].as_str().is_some(), "{name}: no expr");
        assert!(
            matches!(
                r["labels"]["severity"].as_str(),
                Some("critical" | "warning" | "info")
            ),
            "{name}: severity"
        );
        for a in ["summary", "description"] {
            assert!(
                r["annotations"][a]
                    .as_str()
                    .is_some_and(|s| !s.trim().is_empty()),
                "{name}: no {a}"
            );
        }
    }
    for want in [
        "DkimRelayDown",
        "DkimRelayQueueOldestMessageOld",
        "DkimRelayBounceRateHigh",
        "DkimRelayDnsCheckFailing",
        "DkimRelayAuthFailureSpike",
        "DkimRelaySelfVerifyFailures",
    ] {
        assert!(names.contains(&want), "no alert {want}");
    }
    let known = exported();
    for name in used(&text) {
        assert!(known.contains(&name), "alerts use unknown metric {name}");
    }
}

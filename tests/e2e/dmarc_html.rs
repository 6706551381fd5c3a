//! `dmarc-report --format html` opened in a real headless Chromium (driven over the DevTools
//! protocol): the page makes no request and logs no console message, error or exception; per
//! domain, the outcome chart holds one bar per day of the reports (days without a report have
//! none), and the totals printed on the page are the JSON output's. A page that does fetch
//! something and logs an error is caught the same way, so the checks can fail.
//!
//! `DKIM_RELAY_SCREENSHOT_OUT=docs/dmarc-report.png` also writes the screenshot used in
//! docs/dns-setup.md.

use crate::chromium;
use crate::dmarc;

use chromium::Browser;
use dmarc::*;
use std::path::Path;

const DAY0: u64 = 1_766_880_000; // 2025-12-28 00:00 UTC

/// One record: source, count, whether DMARC passed (via the relay's signature), disposition,
/// and the auth results.
fn record(ip: &str, count: u64, pass: bool, disposition: &str, auth: &str) -> String {
    let r = if pass { "pass" } else { "fail" };
    format!(
        "<record><row><source_ip>{ip}</source_ip><count>{count}</count><policy_evaluated>\
         <disposition>{disposition}</disposition><dkim>{r}</dkim><spf>fail</spf></policy_evaluated></row>\
         <identifiers><header_from>example.com</header_from></identifiers><auth_results>{auth}</auth_results></record>"
    )
}

/// A week of example.com as receivers report it while the policy goes from none through
/// quarantine to reject: the relay's mail passes, a helpdesk with its own broken DKIM key fails
/// (legitimate-looking), forgers fail. No report for 2025-12-31.
fn week(dir: &Path) -> Vec<String> {
    let relay_sig = "<dkim><domain>example.com</domain><selector>dev2026r</selector><result>pass</result></dkim>";
    let helpdesk =
        "<dkim><domain>example.com</domain><selector>hd1</selector><result>fail</result></dkim>\
                    <spf><domain>helpdesk.example.net</domain><result>pass</result></spf>";
    let forger = "<spf><domain>example.com</domain><result>fail</result></spf>";
    let mut files = Vec::new();
    for day in [0u64, 1, 2, 4, 5, 6] {
        let policy = match day {
            0..=2 => "none",
            3..=4 => "quarantine",
            _ => "reject",
        };
        for (org, share) in [("google.com", 3), ("Outlook.com", 1)] {
            if org == "Outlook.com" && day % 2 == 1 {
                continue;
            }
            let begin = DAY0 + day * 86_400;
            let xml = format!(
                "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>{org}</org_name>\
                 <report_id>{org}-{day}</report_id><date_range><begin>{begin}</begin><end>{}</end></date_range>\
                 </report_metadata><policy_published><domain>example.com</domain><p>{policy}</p></policy_published>{}{}{}</feedback>",
                begin + 86_399,
                record(RELAY_IP, 40 * share + day * 5, true, "none", relay_sig),
                record("198.51.100.25", 6 * share, false, policy, helpdesk),
                record("192.0.2.66", (3 + day * 4) * share, false, policy, forger),
            );
            let path = dir.join(format!("{org}-{day}.xml"));
            std::fs::write(&path, xml).expect("write");
            files.push(path.display().to_string());
        }
    }
    files
}

/// The part of `text` from `start` to the next `end` after it.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("no {start:?}"));
    let rest = &text[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

fn total(section: &str, key: &str) -> u64 {
    let needle = format!("data-total=\"{key}\">");
    let at = section
        .find(&needle)
        .unwrap_or_else(|| panic!("no total {key}"))
        + needle.len();
    let digits: String = section[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("total {key}: {digits:?}"))
}

#[test]
fn the_page_renders_offline_with_one_bar_per_day_and_the_json_totals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut inputs = week(dir.path());
    inputs.push(fixture("mail/Maildir").display().to_string());
    let page = dir.path().join("report.html");
    let page_arg = page.display().to_string();
    let (_d, out) = run_with_config(&["--format", "html", "--out", &page_arg], &inputs);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (_d, out) = run_with_config(&["--format", "json"], &inputs);
    let v = json(&out);

    let Some(mut browser) = Browser::launch() else {
        return;
    };
    let run = browser.load(&format!("file://{}", page.display()), 2400);
    assert_eq!(
        run.requests,
        Vec::<String>::new(),
        "the page fetched something"
    );
    assert_eq!(
        run.problems,
        Vec::<String>::new(),
        "console messages or errors"
    );
    assert!(run.png.starts_with(b"\x89PNG") && run.png.len() > 20_000);
    if let Some(path) = std::env::var_os("DKIM_RELAY_SCREENSHOT_OUT") {
        // The docs show the first domain: its verdict and both charts.
        let top = browser.load(&format!("file://{}", page.display()), 1270);
        std::fs::write(path, &top.png).expect("write screenshot");
    }

    let domains = v["domains"].as_array().expect("domains");
    assert_eq!(domains.len(), 2);
    for d in domains {
        let name = d["domain"].as_str().expect("name");
        let section = between(&run.dom, &format!("data-domain=\"{name}\""), "</section>");
        let chart = between(section, "<svg class=\"chart outcomes\"", "</svg>");
        let days: Vec<&str> = chart
            .split("<g class=\"day\" data-day=\"")
            .skip(1)
            .map(|s| &s[..10])
            .collect();
        let json_days: Vec<&str> = d["days"]
            .as_array()
            .expect("days")
            .iter()
            .map(|x| x["day"].as_str().expect("day"))
            .collect();
        assert_eq!(days, json_days, "{name}: one bar per day of the reports");
        let failing = between(section, "<svg class=\"chart dispositions\"", "</svg>");
        assert_eq!(failing.matches("<g class=\"day\"").count(), json_days.len());
        for key in ["messages", "dmarc_pass"] {
            assert_eq!(
                total(section, key),
                d[key].as_u64().expect("n"),
                "{name} {key}"
            );
        }
        for key in ["relay_pass", "other_pass", "fail_legitimate", "fail_forged"] {
            assert_eq!(
                total(section, key),
                d["outcomes"][key].as_u64().expect("n"),
                "{name} {key}"
            );
        }
        for key in ["none", "quarantine", "reject"] {
            assert_eq!(
                total(section, &format!("failing_{key}")),
                d["failing_dispositions"][key].as_u64().expect("n"),
                "{name} {key}"
            );
        }
    }
    let com = &domains[0];
    assert_eq!(com["domain"], "example.com");
    // 2025-12-28..2026-01-03 without 2025-12-31, and the fixtures' 2026-01-01 joins its day.
    assert_eq!(com["days"].as_array().map(Vec::len), Some(6));
    assert!(com["failing_dispositions"]["reject"].as_u64().unwrap_or(0) > 0);

    // The checks can fail: a page that loads an image from the network and logs an error.
    let bad = dir.path().join("bad.html");
    std::fs::write(
        &bad,
        "<!DOCTYPE html><html><head><link rel=\"icon\" href=\"data:,\"></head><body>\
         <script>console.error('boom')</script><img src=\"http://192.0.2.1/x.png\"></body></html>",
    )
    .expect("write");
    let run = browser.load(&format!("file://{}", bad.display()), 600);
    assert!(
        run.requests.iter().any(|r| r.contains("192.0.2.1")),
        "{:?}",
        run.requests
    );
    assert!(
        run.problems.iter().any(|p| p.contains("boom")),
        "{:?}",
        run.problems
    );
}

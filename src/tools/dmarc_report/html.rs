//! `--format html`: one self-contained page (inline CSS and SVG; no script, font, image or
//! style sheet from anywhere, and a Content-Security-Policy that forbids them) answering, per
//! domain, "is my policy having an effect?": messages per day by outcome, what receivers did
//! with the failing mail, the sources table and the verdict. Everything that came from a
//! report is escaped.

use super::model::{DomainSummary, RelayIdentity, RunSummary, SourceKind};
use super::render::run_line;
use super::svg::{escape, legend, stacked_bars, Bar, Series};
use std::fmt::Write;

/// The outcome series, bottom to top: the keys are those of `Outcomes` in the JSON output.
const OUTCOMES: [Series; 4] = [
    Series {
        key: "relay_pass",
        label: "passes, through this relay",
        color: "#2e7d32",
    },
    Series {
        key: "other_pass",
        label: "passes, from other authorised senders",
        color: "#8bc34a",
    },
    Series {
        key: "fail_legitimate",
        label: "fails, looks legitimate",
        color: "#f9a825",
    },
    Series {
        key: "fail_forged",
        label: "fails, looks forged",
        color: "#c62828",
    },
];

/// What receivers did with failing mail: the keys are those of `FailingDispositions`.
const DISPOSITIONS: [Series; 3] = [
    Series {
        key: "none",
        label: "delivered anyway (none)",
        color: "#90a4ae",
    },
    Series {
        key: "quarantine",
        label: "quarantined (spam folder)",
        color: "#fb8c00",
    },
    Series {
        key: "reject",
        label: "rejected",
        color: "#6a1b9a",
    },
];

const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#222;max-width:980px;margin:24px auto;padding:0 16px}\
h1{font-size:22px}h2{font-size:19px;border-top:2px solid #ccc;padding-top:16px;margin-top:32px}h3{font-size:15px;margin:20px 0 6px}\
.verdict{padding:10px 14px;border-radius:6px;font-weight:600}.ready{background:#e8f5e9;border:1px solid #2e7d32}.not-ready{background:#fff3e0;border:1px solid #e65100}\
dl.totals{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:6px 16px;margin:8px 0}\
dl.totals div{background:#f5f5f5;border-radius:4px;padding:6px 10px}dt{font-size:12px;color:#555}dd{margin:0;font-size:18px;font-weight:600}\
.legend{list-style:none;padding:0;margin:4px 0 0;display:flex;flex-wrap:wrap;gap:4px 18px;font-size:12px}\
.swatch{display:inline-block;width:11px;height:11px;margin-right:5px;vertical-align:-1px;border-radius:2px}\
svg.chart{max-width:100%;height:auto}table{border-collapse:collapse;width:100%;font-size:13px}\
th,td{border-bottom:1px solid #e0e0e0;padding:4px 6px;text-align:left;vertical-align:top}td.n,th.n{text-align:right}\
tr.blocks td{background:#fff8e1}.note{color:#555}footer{margin-top:40px;color:#777;font-size:12px}";

/// The page.
pub fn render_html(domains: &[DomainSummary], relay: &RelayIdentity, run: &RunSummary) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let names: Vec<String> = domains.iter().map(|d| d.domain.clone()).collect();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"icon\" href=\"data:,\"><title>DMARC reports: {}</title><style>{STYLE}</style></head><body>\n",
        escape(&names.join(", "))
    );
    let _ = write!(
        out,
        "<h1>DMARC aggregate reports</h1><p class=\"run\">Read: {}</p>",
        escape(&run_line(run))
    );
    let addresses: Vec<String> = relay.addresses.iter().map(|a| a.to_string()).collect();
    let _ = write!(
        out,
        "<p>This relay: addresses {}; signs {}.</p>",
        escape(&list_or(&addresses, ", ", "unknown")),
        escape(&list_or(
            &relay
                .signing
                .iter()
                .map(|(d, s)| format!("{d} (s={})", s.join(", s=")))
                .collect::<Vec<_>>(),
            ", ",
            "nothing"
        ))
    );
    for note in &relay.notes {
        let _ = write!(out, "<p class=\"note\">Note: {}</p>", escape(note));
    }
    if domains.is_empty() {
        out.push_str("<p>No report could be read.</p>");
    }
    for d in domains {
        domain(&mut out, d);
    }
    out.push_str("<footer>Made by <code>dkim-relay dmarc-report</code>. Days are UTC; a report counts on the day holding the middle of its period.</footer>\n</body></html>\n");
    out
}

/// The items joined by `separator`, or `none` when there are none.
fn list_or(items: &[String], separator: &str, none: &str) -> String {
    if items.is_empty() {
        none.to_string()
    } else {
        items.join(separator)
    }
}

fn total(out: &mut String, key: &str, label: &str, value: u64) {
    let _ = write!(
        out,
        "<div><dt>{}</dt><dd data-total=\"{key}\">{value}</dd></div>",
        escape(label)
    );
}

fn domain(out: &mut String, d: &DomainSummary) {
    let name = escape(&d.domain);
    let _ = write!(
        out,
        "<section class=\"domain\" data-domain=\"{name}\"><h2>{name}</h2>"
    );
    let p = &d.policy;
    let policy: Vec<String> = [
        ("p", &p.p),
        ("sp", &p.sp),
        ("pct", &p.pct),
        ("np", &p.np),
        ("t", &p.testing),
    ]
    .iter()
    .filter_map(|(tag, v)| v.as_ref().map(|v| format!("{tag}={v}")))
    .collect();
    let period = match (&d.first_day, &d.last_day) {
        (Some(a), Some(b)) if a == b => format!(" — reports for {a}"),
        (Some(a), Some(b)) => format!(" — reports from {a} to {b}"),
        _ => String::new(),
    };
    let _ = write!(
        out,
        "<p>Published policy: {}{} ({} from {})</p>",
        escape(&list_or(&policy, " ", "not reported")),
        escape(&period),
        d.reports,
        escape(&d.reporters.join(", "))
    );
    let _ = write!(
        out,
        "<p class=\"verdict {}\">{}</p>",
        if d.verdict.ready {
            "ready"
        } else {
            "not-ready"
        },
        // The actions follow under "Verdict"; the banner needs no dangling "Fix first:".
        escape(d.verdict.summary.trim_end_matches(" Fix first:"))
    );

    out.push_str("<h3>Messages per day, by outcome</h3><dl class=\"totals\">");
    total(out, "messages", "messages", d.messages);
    total(out, "dmarc_pass", "pass DMARC", d.dmarc_pass);
    let o = &d.outcomes;
    for (s, v) in
        OUTCOMES
            .iter()
            .zip([o.relay_pass, o.other_pass, o.fail_legitimate, o.fail_forged])
    {
        total(out, s.key, s.label, v);
    }
    out.push_str("</dl>");
    let bars: Vec<Bar> = d
        .days
        .iter()
        .map(|day| Bar {
            day: day.day.clone(),
            values: vec![
                day.outcomes.relay_pass,
                day.outcomes.other_pass,
                day.outcomes.fail_legitimate,
                day.outcomes.fail_forged,
            ],
        })
        .collect();
    out.push_str(&stacked_bars(
        "outcomes",
        &format!("Messages per day for {}, by outcome", d.domain),
        &OUTCOMES,
        &bars,
    ));
    out.push_str(&legend(&OUTCOMES));

    out.push_str(
        "<h3>What receivers did with the mail that failed DMARC</h3><dl class=\"totals\">",
    );
    let f = &d.failing_dispositions;
    for (s, v) in DISPOSITIONS.iter().zip([f.none, f.quarantine, f.reject]) {
        total(out, &format!("failing_{}", s.key), s.label, v);
    }
    out.push_str("</dl>");
    let bars: Vec<Bar> = d
        .days
        .iter()
        .map(|day| Bar {
            day: day.day.clone(),
            values: vec![
                day.failing_dispositions.none,
                day.failing_dispositions.quarantine,
                day.failing_dispositions.reject,
            ],
        })
        .collect();
    out.push_str(&stacked_bars(
        "dispositions",
        &format!(
            "Failing messages per day for {}, by what receivers did",
            d.domain
        ),
        &DISPOSITIONS,
        &bars,
    ));
    out.push_str(&legend(&DISPOSITIONS));

    sources(out, d);

    out.push_str("<h3>Verdict</h3>");
    if !d.verdict.actions.is_empty() {
        out.push_str("<p>Fix first:</p><ul class=\"actions\">");
        for a in &d.verdict.actions {
            let _ = write!(out, "<li>{}</li>", escape(a));
        }
        out.push_str("</ul>");
    }
    out.push_str("<ul class=\"notes\">");
    for n in &d.verdict.notes {
        let _ = write!(out, "<li class=\"note\">{}</li>", escape(n));
    }
    out.push_str("</ul></section>\n");
}

fn sources(out: &mut String, d: &DomainSummary) {
    out.push_str(
        "<h3>Sources</h3><table class=\"sources\"><thead><tr><th>source</th><th class=\"n\">messages</th>\
         <th class=\"n\">DMARC pass</th><th class=\"n\">DKIM aligned</th><th class=\"n\">SPF aligned</th>\
         <th>what it is</th><th>seen</th></tr></thead><tbody>",
    );
    for s in &d.sources {
        let mut seen = Vec::new();
        if !s.header_from.is_empty() {
            seen.push(format!("From {}", s.header_from.join(", ")));
        }
        for sig in &s.dkim {
            seen.push(format!(
                "DKIM d={} s={}{}: pass {}, fail {}",
                sig.domain,
                sig.selector,
                if sig.relay { " (relay)" } else { "" },
                sig.pass,
                sig.fail
            ));
        }
        for spf in &s.spf {
            seen.push(format!(
                "SPF {}: pass {}, fail {}",
                spf.domain, spf.pass, spf.fail
            ));
        }
        let mut what = escape(s.kind.label());
        if s.kind != SourceKind::ThisRelay && !s.kind.blocks() {
            let _ = write!(
                what,
                "<br><span class=\"note\">{}</span>",
                escape(&s.advice)
            );
        }
        let _ = write!(
            out,
            "<tr{}><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{what}</td><td>{}</td></tr>",
            if s.kind.blocks() { " class=\"blocks\"" } else { "" },
            escape(&s.ip.to_string()),
            s.messages,
            s.dmarc_pass,
            s.dkim_aligned_pass,
            s.spf_aligned_pass,
            seen.iter().map(|x| escape(x)).collect::<Vec<_>>().join("<br>")
        );
    }
    out.push_str("</tbody></table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::dmarc_report::{analyze, parse_report};

    #[test]
    fn report_text_is_escaped_everywhere() {
        let xml = "<feedback><report_metadata><org_name>&lt;script&gt;alert(1)&lt;/script&gt;</org_name>\
            <report_id>1</report_id><date_range><begin>1767225600</begin><end>1767311999</end></date_range></report_metadata>\
            <policy_published><domain>evil\"&lt;b&gt;.example</domain><p>none</p></policy_published>\
            <record><row><source_ip>192.0.2.1</source_ip><count>2</count><policy_evaluated><disposition>none</disposition>\
            <dkim>fail</dkim><spf>fail</spf></policy_evaluated></row><identifiers><header_from>x&lt;img src=x&gt;</header_from></identifiers>\
            <auth_results><dkim><domain>a'b.example</domain><selector>&lt;s&gt;</selector><result>pass</result></dkim></auth_results></record></feedback>";
        let report = parse_report(xml).expect("report");
        let relay = RelayIdentity::default();
        let page = render_html(&analyze(&[report], &relay), &relay, &RunSummary::default());
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
        assert!(
            page.contains("data-domain=\"evil&quot;&lt;b&gt;.example\""),
            "{page}"
        );
        assert!(page.contains("a&#39;b.example"), "{page}");
        assert_eq!(
            page.matches("<g class=\"day\"").count(),
            2,
            "one bar in each chart"
        );
    }
}

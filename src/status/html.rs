//! The status page as HTML for a person: one self-contained document (its only style is
//! inline, no script, no image, no font, nothing fetched), laid out to read on a phone, and
//! served with a Content-Security-Policy that allows nothing but that one stylesheet — so even
//! a mistake here could not run a script. Everything that came from a client (addresses) or a
//! remote server (SMTP replies, DNS records in the doctor's messages) goes through [`esc`].

use super::{QueuedMessage, Snapshot};
use crate::config::units::format_size;
use crate::smtp::date::age as ago;
use crate::spool::RecipientState;
use crate::tools::dns_check::Status;
use std::fmt::Write as _;

const CSS: &str = "\
:root{color-scheme:light dark;--ok:#1a7f37;--warn:#9a6700;--fail:#cf222e;--mute:#6e7781;--line:#d0d7de}\
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:60rem;padding:.75rem}\
h1{font-size:1.3rem;margin:.2rem 0}\
h2{font-size:1.1rem;margin:1.4rem 0 .5rem;border-bottom:1px solid var(--line)}\
h3{font-size:1rem;margin:.8rem 0 .3rem}\
p{margin:.3rem 0}\
.meta{color:var(--mute);font-size:.85rem}\
.counts{display:grid;grid-template-columns:repeat(auto-fit,minmax(6.5rem,1fr));gap:.5rem}\
.counts div{border:1px solid var(--line);border-radius:.4rem;padding:.4rem .6rem}\
.counts b{display:block;font-size:1.4rem}\
table{border-collapse:collapse;width:100%}\
td,th{text-align:left;vertical-align:top;padding:.3rem .4rem;border-bottom:1px solid var(--line);overflow-wrap:break-word}\
th,td code{white-space:nowrap}\
td.d{overflow-wrap:anywhere}\
.msg{border:1px solid var(--line);border-radius:.4rem;padding:.5rem .6rem;margin:.5rem 0}\
.rcpt{margin:.4rem 0 0}\
code,.reply{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem;overflow-wrap:anywhere}\
.reply{white-space:pre-wrap;display:block;background:rgba(127,127,127,.12);padding:.25rem .4rem;border-radius:.3rem;margin-top:.2rem}\
.ok{color:var(--ok)}.warn{color:var(--warn)}.fail{color:var(--fail)}\
.st{font-weight:600;white-space:nowrap}";

/// The response header fields of the HTML page: a policy that allows exactly the inline
/// stylesheet (by its hash) and nothing else, no caching, no sniffing, no referrer, no framing.
pub fn headers() -> Vec<(&'static str, String)> {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, CSS.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    vec![
        (
            "content-security-policy",
            format!(
                "default-src 'none'; style-src 'sha256-{hash}'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
            ),
        ),
        ("x-content-type-options", "nosniff".to_string()),
        ("referrer-policy", "no-referrer".to_string()),
        ("x-frame-options", "DENY".to_string()),
        ("cache-control", "no-store".to_string()),
    ]
}

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Controls (a NUL or ESC in a reply) are shown as nothing harmful.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn date(unix: i64) -> String {
    crate::smtp::date::rfc5322_date(unix)
}

/// The whole page.
pub fn render(s: &Snapshot) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let host = esc(&s.hostname);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><link rel=\"icon\" href=\"data:,\">\
         <title>dkim-relay status: {host}</title><style>{CSS}</style></head><body>\n"
    );
    header(&mut h, s);
    counts(&mut h, s);
    queue(&mut h, s);
    dns(&mut h, s);
    signing(&mut h, s);
    h.push_str(
        "<footer><p class=\"meta\">Read-only: nothing on this page changes the relay. \
         Reload for fresh figures.</p></footer>\n</body></html>\n",
    );
    h
}

fn header(h: &mut String, s: &Snapshot) {
    let _ = write!(
        h,
        "<header><h1>dkim-relay on {}</h1><p class=\"meta\">version {} · up {} · as of {} · \
         <a href=\"?format=json\">JSON</a></p>",
        esc(&s.hostname),
        esc(s.version),
        ago(s.uptime_seconds),
        esc(&date(s.generated_at)),
    );
    let min = s.spool.min_free_bytes;
    match s.spool.free_bytes {
        Some(free) if s.spool.short => {
            let _ = write!(
                h,
                "<p class=\"fail\">Spool short of space: {} free, below the {} it must keep \
                 (limits.spool_min_free). New mail gets 452 4.3.1 and /readyz answers 503 until \
                 space is freed.</p>",
                format_size(free),
                format_size(min)
            );
        }
        Some(free) if min > 0 => {
            let _ = write!(
                h,
                "<p>Spool: {} free (keeps at least {}).</p>",
                format_size(free),
                format_size(min)
            );
        }
        Some(free) => {
            let _ = write!(h, "<p>Spool: {} free.</p>", format_size(free));
        }
        None => h.push_str("<p class=\"warn\">Spool: free space unknown (statvfs failed).</p>"),
    }
    h.push_str("</header>\n");
}

fn counts(h: &mut String, s: &Snapshot) {
    let w = &s.last_hour;
    if w.seconds >= super::ring::WINDOW_SECS - 60 {
        h.push_str("<section><h2>Last hour</h2><div class=\"counts\">");
    } else {
        let _ = write!(
            h,
            "<section><h2>Since the start, {} ago</h2><div class=\"counts\">",
            ago(w.seconds)
        );
    }
    let c = &w.counts;
    for (n, label, class) in [
        (c.accepted, "accepted", ""),
        (c.delivered, "delivered", ""),
        (c.deferred, "deferred", "warn"),
        (c.bounced, "bounced", "fail"),
        (c.rejected, "rejected", "warn"),
    ] {
        let class = if n > 0 && !class.is_empty() {
            format!(" class=\"{class}\"")
        } else {
            String::new()
        };
        let _ = write!(h, "<div><b{class}>{n}</b>{label}</div>");
    }
    h.push_str(
        "</div><p class=\"meta\">Messages accepted (250) and rejected; deliveries per \
         recipient.</p></section>\n",
    );
}

fn queue(h: &mut String, s: &Snapshot) {
    let q = &s.queue;
    h.push_str("<section><h2>Queue</h2>");
    let Some(oldest) = q.oldest_age_seconds.filter(|_| q.messages > 0) else {
        h.push_str("<p>The queue is empty.</p></section>\n");
        return;
    };
    let _ = write!(
        h,
        "<p>{} message(s); the oldest is {} old.",
        q.messages,
        ago(oldest)
    );
    if q.messages > q.oldest.len() {
        let _ = write!(h, " The {} oldest:", q.oldest.len());
    }
    h.push_str("</p>");
    for m in &q.oldest {
        message(h, m, s.generated_at);
    }
    h.push_str("</section>\n");
}

fn message(h: &mut String, m: &QueuedMessage, now: i64) {
    let sender = if m.sender.is_empty() {
        "&lt;&gt; (a bounce)".to_string()
    } else {
        format!("<code>{}</code>", esc(&m.sender))
    };
    let _ = write!(
        h,
        "<div class=\"msg\"><div><code>{}</code> · {} old · {} · from {}</div>",
        esc(&m.queue_id),
        ago(m.age_seconds),
        format_size(m.size),
        sender
    );
    for r in &m.recipients {
        let (state, class) = match r.state {
            RecipientState::Pending => ("pending", "warn"),
            RecipientState::Delivered => ("delivered", "ok"),
            RecipientState::Failed => ("failed", "fail"),
            RecipientState::Expired => ("expired", "fail"),
        };
        let _ = write!(
            h,
            "<div class=\"rcpt\"><code>{}</code> <span class=\"st {class}\">{state}</span>",
            esc(&r.address)
        );
        if r.attempts > 0 {
            let _ = write!(h, " · {} attempt(s)", r.attempts);
        }
        if let Some(w) = &r.waiting_for {
            let _ = write!(
                h,
                " · waiting for {}, closed {} ago",
                esc(&w.host),
                ago((now - w.closed_since).max(0))
            );
        }
        if let Some(next) = r.next_attempt {
            let what = if r.waiting_for.is_some() {
                "probe"
            } else {
                "next"
            };
            if next > now {
                let _ = write!(h, " · {what} in {}", ago(next - now));
            } else {
                let _ = write!(h, " · {what} due now");
            }
        }
        if let Some(reply) = &r.last_reply {
            let _ = write!(h, "<span class=\"reply\">{}</span>", esc(reply));
        }
        h.push_str("</div>");
    }
    h.push_str("</div>\n");
}

fn dns(h: &mut String, s: &Snapshot) {
    let d = &s.dns;
    h.push_str("<section><h2>DNS doctor</h2>");
    if !d.enabled {
        h.push_str(
            "<p>Off (<code>dns.check_interval: 0s</code>); <code>dkim-relay dns-check</code> \
             checks on demand.</p></section>\n",
        );
        return;
    }
    let every =
        crate::config::units::format_duration(std::time::Duration::from_secs(d.interval_seconds));
    let Some(at) = d.checked_at else {
        let _ = writeln!(
            h,
            "<p>No result yet (checks at start, then every {every}).</p></section>"
        );
        return;
    };
    let _ = write!(
        h,
        "<p class=\"meta\">Checked {} ago, every {every}.</p>",
        ago(s.generated_at - at)
    );
    let mut domains: Vec<&str> = Vec::new();
    for r in &d.results {
        if !domains.contains(&r.domain.as_str()) {
            domains.push(&r.domain);
        }
    }
    for domain in domains {
        let _ = write!(
            h,
            "<h3>{}</h3><table><tr><th>Check</th><th>Result</th><th>Details</th></tr>",
            esc(domain)
        );
        for r in d.results.iter().filter(|r| r.domain == domain) {
            let class = match r.status {
                Status::Ok => "ok",
                Status::Warn => "warn",
                Status::Fail => "fail",
            };
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td class=\"st {class}\">{}</td><td class=\"d\">{}</td></tr>",
                esc(&r.check.label()),
                r.status,
                esc(&r.message)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section>\n");
}

fn signing(h: &mut String, s: &Snapshot) {
    h.push_str("<section><h2>Signing</h2>");
    if s.signing.is_empty() {
        h.push_str("<p>No signing domain is configured.</p>");
    }
    let mut domains: Vec<&str> = Vec::new();
    for sel in &s.signing {
        if !domains.contains(&sel.domain.as_str()) {
            domains.push(&sel.domain);
        }
    }
    for domain in domains {
        let _ = write!(
            h,
            "<h3>{}</h3><table><tr><th>Selector</th><th>Key</th><th>State</th></tr>",
            esc(domain)
        );
        for sel in s.signing.iter().filter(|x| x.domain == domain) {
            let class = if sel.signing { "ok" } else { "meta" };
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td class=\"d {class}\">{}</td></tr>",
                esc(&sel.selector),
                sel.algorithm.unwrap_or(""),
                esc(&sel.state)
            );
        }
        h.push_str("</table>");
    }
    for p in &s.problems {
        let _ = write!(h, "<p class=\"warn\">{}</p>", esc(p));
    }
    h.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_controls() {
        assert_eq!(
            esc("451 <script>alert('x')</script> & \"q\"\u{1b}[31m"),
            "451 &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;\u{FFFD}[31m"
        );
    }

    #[test]
    fn the_policy_names_the_stylesheet_it_allows() {
        let h = headers();
        let csp = &h
            .iter()
            .find(|(n, _)| *n == "content-security-policy")
            .unwrap()
            .1;
        assert!(csp.starts_with("default-src 'none'; style-src 'sha256-"));
        assert!(!csp.contains("unsafe"));
    }
}

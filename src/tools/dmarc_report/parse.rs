//! One DMARC aggregate report, XML text → [`Report`]: RFC 7489 appendix C and its RFC 9990
//! (DMARCbis) successor, as Google, Microsoft, Yahoo and the long tail of reporters send them.
//!
//! Streaming over quick-xml events, no DOM. Elements are matched by *local* name, so namespaced
//! reports (`<feedback xmlns="urn:ietf:params:xml:ns:dmarc-2.0">`, or a `dmarc:` prefix) read
//! like plain ones. Lenient where reporters are sloppy: unknown elements, missing optional ones,
//! any element order, empty `<reason>`s, upper-case values, wrapper elements around the
//! `<feedback>`, unescaped `&` and `<` in text, and stray tags (an unescaped `<addr@host>` inside
//! `<email>`: an end tag closes every element opened since its start tag). Strict where the
//! numbers come from: a record without a valid source IP or count is left out and named in
//! [`Report::problems`]; a document without a `<feedback>`, or cut short, is an error.

use super::model::{normalize_domain, DkimAuth, Record, Report, SpfAuth};
use quick_xml::events::Event;
use quick_xml::Reader;
use std::borrow::Cow;
use std::net::IpAddr;

/// Deeper nesting than any report has (5 levels): refuse before the element stack grows.
pub const MAX_DEPTH: usize = 32;
/// Bytes of text kept per element. Every value in a report is short; more is ignored so that
/// one enormous text node cannot take memory.
const MAX_TEXT: usize = 4096;

/// Why a document is not a usable report.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not well-formed XML (at byte {position}): {message}")]
    Xml { position: u64, message: String },
    #[error("not a DMARC aggregate report: {0}")]
    NotAReport(String),
    #[error("truncated: the document ends inside <{0}>")]
    Truncated(String),
}

/// Parse one report document.
pub fn parse_report(text: &str) -> Result<Report, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = escape_stray_lt(text);
    let text = text.as_ref();
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    // Stray tags are closed by hand (see `Elements::close`), so quick-xml must not reject them.
    config.check_end_names = false;
    config.allow_unmatched_ends = true;
    config.allow_dangling_amp = true;

    // The open elements of the <feedback>: local name and the text collected directly inside.
    let mut stack = Elements::default();
    // Elements around the <feedback> (wrappers some reporters and archivers add): names only.
    let mut outer: Vec<String> = Vec::new();
    let mut first_outer: Option<String> = None;
    let mut seen_root = false;
    let mut builder = Builder::default();
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            // Cut inside a tag: say truncated, the usual cause (a partial download or save).
            Err(_) if reader.buffer_position() >= text.len() as u64 && !stack.is_empty() => {
                return Err(ParseError::Truncated(stack.path.clone()));
            }
            Err(e) => {
                return Err(ParseError::Xml {
                    position: reader.error_position(),
                    message: e.to_string(),
                })
            }
        };
        match event {
            Event::Start(e) => {
                let name = local_name(e.local_name().as_ref());
                if stack.len() + outer.len() >= MAX_DEPTH {
                    return Err(ParseError::NotAReport(format!(
                        "elements nested deeper than {MAX_DEPTH} levels"
                    )));
                }
                if stack.is_empty() {
                    if name != "feedback" {
                        first_outer.get_or_insert_with(|| name.clone());
                        outer.push(name);
                        continue;
                    }
                    if seen_root {
                        return Err(ParseError::NotAReport(
                            "a second <feedback> in one document".to_string(),
                        ));
                    }
                    seen_root = true;
                }
                builder.open(&stack.path, &name);
                stack.push(name);
            }
            Event::End(e) => {
                let name = local_name(e.local_name().as_ref());
                if stack.is_empty() {
                    if let Some(at) = outer.iter().rposition(|n| *n == name) {
                        outer.truncate(at);
                    }
                } else {
                    stack.close(&name, &mut builder);
                }
            }
            Event::Text(t) => stack.push_text(&t),
            Event::CData(t) => stack.push_text(&t),
            Event::GeneralRef(r) => {
                let resolved = match &*r {
                    "amp" => "&".to_string(),
                    "lt" => "<".to_string(),
                    "gt" => ">".to_string(),
                    "quot" => "\"".to_string(),
                    "apos" => "'".to_string(),
                    other => match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        // Unknown entities are kept as written: values stay recognisable and
                        // nothing is expanded (no entity-expansion bombs).
                        _ => format!("&{other};"),
                    },
                };
                stack.push_text(&resolved);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(ParseError::Truncated(stack.path));
    }
    if !seen_root {
        return Err(ParseError::NotAReport(match first_outer {
            Some(top) => format!("no <feedback> element in it (its top-level element is <{top}>)"),
            None => "no <feedback> element (is this an XML DMARC aggregate report?)".to_string(),
        }));
    }
    builder.finish()
}

/// Escape each `<` that cannot start markup (`a < b`, `1<2`, `<b c</e>`): reporters write free
/// text unescaped, and quick-xml would read it as a tag that swallows the element's end tag.
/// A `<` starts markup when a name, `/`, `!` or `?` follows and a `>` comes before any other
/// `<`; comments, CDATA and processing instructions are copied untouched. Borrowed unless
/// something had to be escaped.
fn escape_stray_lt(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut at = 0;
    while let Some(found) = memchr::memchr(b'<', &bytes[at..]) {
        let lt = at + found;
        let rest = &bytes[lt..];
        let skip_to = |end: &[u8]| {
            memchr::memmem::find(rest, end).map_or(bytes.len(), |e| lt + e + end.len())
        };
        if rest.starts_with(b"<!--") {
            at = skip_to(b"-->");
            continue;
        }
        if rest.starts_with(b"<![CDATA[") {
            at = skip_to(b"]]>");
            continue;
        }
        if rest.starts_with(b"<?") {
            at = skip_to(b"?>");
            continue;
        }
        let starts_name = rest
            .get(1)
            .is_some_and(|&b| b.is_ascii_alphabetic() || b"_:/!".contains(&b) || b >= 0x80);
        let closes_first = match memchr::memchr2(b'<', b'>', &rest[1..]) {
            Some(i) => rest[1 + i] == b'>',
            // Cut short inside a tag: left for the parser to call truncated.
            None => true,
        };
        if !(starts_name && closes_first) {
            let buf = out.get_or_insert_with(|| String::with_capacity(text.len() + 16));
            buf.push_str(&text[copied..lt]);
            buf.push_str("&lt;");
            copied = lt + 1;
        }
        at = lt + 1;
    }
    match out {
        Some(mut buf) => {
            buf.push_str(&text[copied..]);
            Cow::Owned(buf)
        }
        None => Cow::Borrowed(text),
    }
}

fn local_name(raw: &str) -> String {
    raw.to_ascii_lowercase()
}

/// The open elements: local name, the text directly inside, and the `a/b/c` path of them all
/// (kept as one string so that matching a field costs no allocation).
#[derive(Default)]
struct Elements {
    open: Vec<(String, String)>,
    path: String,
}

impl Elements {
    fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    fn len(&self) -> usize {
        self.open.len()
    }

    fn push(&mut self, name: String) {
        if !self.open.is_empty() {
            self.path.push('/');
        }
        self.path.push_str(&name);
        self.open.push((name, String::new()));
    }

    fn push_text(&mut self, text: &str) {
        if let Some((_, buf)) = self.open.last_mut() {
            if buf.len() < MAX_TEXT {
                let room = MAX_TEXT - buf.len();
                let mut cut = text.len().min(room);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                buf.push_str(&text[..cut]);
            }
        }
    }

    /// An end tag closes its element and every element opened inside it that was never
    /// closed. An end tag with no open element of its name is ignored.
    fn close(&mut self, name: &str, builder: &mut Builder) {
        let Some(at) = self.open.iter().rposition(|(n, _)| n == name) else {
            return;
        };
        while self.open.len() > at {
            let Some((closed, text)) = self.open.pop() else {
                break;
            };
            let parent_len = self
                .path
                .len()
                .saturating_sub(closed.len() + usize::from(!self.open.is_empty()));
            self.path.truncate(parent_len);
            builder.close(&self.path, &closed, text.trim());
        }
    }
}

/// Record fields as found, before they are checked.
#[derive(Default)]
struct RecordDraft {
    source_ip: Option<String>,
    count: Option<String>,
    disposition: String,
    dkim: String,
    spf: String,
    reasons: Vec<String>,
    header_from: String,
    envelope_from: String,
    dkim_auth: Vec<DkimAuth>,
    spf_auth: Vec<SpfAuth>,
}

impl RecordDraft {
    fn finish(self, number: usize) -> Result<Record, String> {
        let ip_text = self
            .source_ip
            .ok_or_else(|| format!("record {number}: no <source_ip>"))?;
        let source_ip: IpAddr = ip_text.parse().map_err(|_| {
            format!("record {number}: <source_ip> {ip_text:?} is not an IP address")
        })?;
        let count_text = self
            .count
            .ok_or_else(|| format!("record {number}: no <count>"))?;
        let count: u64 = count_text.parse().map_err(|_| {
            if !count_text.is_empty() && count_text.bytes().all(|b| b.is_ascii_digit()) {
                format!(
                    "record {number}: <count> {count_text} is too large to be a number of messages"
                )
            } else {
                format!("record {number}: <count> {count_text:?} is not a number of messages")
            }
        })?;
        Ok(Record {
            source_ip,
            count,
            disposition: self.disposition,
            dkim_aligned: self.dkim == "pass",
            spf_aligned: self.spf == "pass",
            reasons: self.reasons,
            header_from: normalize_domain(&self.header_from),
            envelope_from: normalize_domain(&self.envelope_from),
            // Usually one or two each: no room kept for more (a report may hold 100,000 records).
            dkim: shrunk(self.dkim_auth),
            spf: shrunk(self.spf_auth),
        })
    }
}

fn shrunk<T>(mut list: Vec<T>) -> Vec<T> {
    list.shrink_to_fit();
    list
}

#[derive(Default)]
struct Builder {
    report: Report,
    record: Option<RecordDraft>,
    records_seen: usize,
}

impl Builder {
    fn open(&mut self, parent: &str, name: &str) {
        match (parent, name) {
            ("feedback", "record") => self.record = Some(RecordDraft::default()),
            ("feedback/record/auth_results", "dkim") => {
                if let Some(r) = &mut self.record {
                    r.dkim_auth.push(DkimAuth::default());
                }
            }
            ("feedback/record/auth_results", "spf") => {
                if let Some(r) = &mut self.record {
                    r.spf_auth.push(SpfAuth::default());
                }
            }
            _ => {}
        }
    }

    fn close(&mut self, parent: &str, name: &str, text: &str) {
        let lower = || text.to_ascii_lowercase();
        let policy = &mut self.report.policy;
        match (parent, name) {
            ("feedback/report_metadata", "org_name") => self.report.org_name = text.to_string(),
            ("feedback/report_metadata", "report_id") => self.report.report_id = text.to_string(),
            ("feedback/report_metadata/date_range", "begin") => {
                self.report.begin = text.parse().ok()
            }
            ("feedback/report_metadata/date_range", "end") => self.report.end = text.parse().ok(),
            ("feedback/policy_published", "domain") => policy.domain = normalize_domain(text),
            ("feedback/policy_published", "p") => policy.p = Some(lower()),
            ("feedback/policy_published", "sp") => policy.sp = Some(lower()),
            ("feedback/policy_published", "pct") => policy.pct = Some(lower()),
            ("feedback/policy_published", "adkim") => policy.adkim = Some(lower()),
            ("feedback/policy_published", "aspf") => policy.aspf = Some(lower()),
            ("feedback/policy_published", "np") => policy.np = Some(lower()),
            ("feedback/policy_published", "testing") => policy.testing = Some(lower()),
            ("feedback", "record") => {
                self.records_seen += 1;
                if let Some(draft) = self.record.take() {
                    match draft.finish(self.records_seen) {
                        Ok(r) => self.report.records.push(r),
                        Err(e) => self.report.problems.push(e),
                    }
                }
            }
            _ => {
                if let Some(r) = &mut self.record {
                    record_field(r, parent, name, text);
                }
            }
        }
    }

    fn finish(self) -> Result<Report, ParseError> {
        if self.report.policy.domain.is_empty() {
            return Err(ParseError::NotAReport(
                "no <policy_published><domain>: cannot tell which domain it is about".to_string(),
            ));
        }
        Ok(self.report)
    }
}

fn record_field(r: &mut RecordDraft, parent: &str, name: &str, text: &str) {
    let lower = text.to_ascii_lowercase();
    match (parent, name) {
        ("feedback/record/row", "source_ip") => r.source_ip = Some(text.to_string()),
        ("feedback/record/row", "count") => r.count = Some(text.to_string()),
        ("feedback/record/row/policy_evaluated", "disposition") => r.disposition = lower,
        ("feedback/record/row/policy_evaluated", "dkim") => r.dkim = lower,
        ("feedback/record/row/policy_evaluated", "spf") => r.spf = lower,
        ("feedback/record/row/policy_evaluated/reason", "type") if !lower.is_empty() => {
            r.reasons.push(lower)
        }
        ("feedback/record/row/policy_evaluated/reason", "comment")
            if lower.contains("arc=pass") =>
        {
            r.reasons.push("arc=pass".to_string())
        }
        ("feedback/record/identifiers", "header_from") => r.header_from = lower,
        ("feedback/record/identifiers", "envelope_from") => r.envelope_from = lower,
        ("feedback/record/auth_results/dkim", field) => {
            if let Some(d) = r.dkim_auth.last_mut() {
                match field {
                    "domain" => d.domain = normalize_domain(text),
                    "selector" => d.selector = lower,
                    "result" => d.result = lower,
                    _ => {}
                }
            }
        }
        ("feedback/record/auth_results/spf", field) => {
            if let Some(s) = r.spf_auth.last_mut() {
                match field {
                    "domain" => s.domain = normalize_domain(text),
                    "scope" => s.scope = lower,
                    "result" => s.result = lower,
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"<?xml version="1.0"?>
<feedback>
  <report_metadata><org_name>google.com</org_name><report_id>1</report_id>
    <date_range><begin>1700000000</begin><end>1700086399</end></date_range></report_metadata>
  <policy_published><domain>Example.COM.</domain><p>none</p></policy_published>
  <record>
    <row><source_ip>192.0.2.1</source_ip><count>7</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated></row>
    <identifiers><header_from>example.com</header_from></identifiers>
    <auth_results><dkim><domain>example.com</domain><selector/><result>pass</result></dkim></auth_results>
  </record>
</feedback>"#;

    #[test]
    fn reads_a_minimal_report() {
        let r = parse_report(MINIMAL).unwrap();
        assert_eq!(r.org_name, "google.com");
        assert_eq!(r.policy.domain, "example.com");
        assert_eq!(r.begin, Some(1_700_000_000));
        assert_eq!(r.records.len(), 1);
        let rec = &r.records[0];
        assert_eq!(rec.count, 7);
        assert!(rec.dkim_aligned && !rec.spf_aligned && rec.dmarc_pass());
        assert_eq!(rec.dkim[0].selector, "");
    }

    #[test]
    fn entities_and_cdata_are_text() {
        let xml = MINIMAL.replace(
            "<org_name>google.com</org_name>",
            "<org_name>A &amp; B &#x43;<![CDATA[<d>]]></org_name>",
        );
        assert_eq!(parse_report(&xml).unwrap().org_name, "A & B C<d>");
    }

    #[test]
    fn a_stray_tag_inside_an_element_is_closed_with_it() {
        let xml = MINIMAL.replace(
            "<report_id>1</report_id>",
            "<email><bad@example.net></email><report_id>1</report_id>",
        );
        assert_eq!(parse_report(&xml).unwrap().records.len(), 1);
    }

    #[test]
    fn a_bad_record_is_left_out_and_named() {
        let xml = MINIMAL.replace("<count>7</count>", "<count>-3</count>");
        let r = parse_report(&xml).unwrap();
        assert!(r.records.is_empty());
        assert_eq!(
            r.problems,
            vec!["record 1: <count> \"-3\" is not a number of messages"]
        );
        let xml = MINIMAL.replace("<count>7</count>", "<count>99999999999999999999999</count>");
        assert!(parse_report(&xml).unwrap().problems[0].contains("too large"));
    }

    #[test]
    fn refuses_what_is_not_a_report() {
        for (text, want) in [
            ("hello", "no <feedback>"),
            ("<html><body/></html>", "top-level element is <html>"),
            (&MINIMAL[..MINIMAL.len() / 2], "truncated"),
            (
                "<feedback><record></record></feedback>",
                "no <policy_published>",
            ),
        ] {
            let e = parse_report(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let deep = format!("<feedback>{}", "<a>".repeat(100));
        assert!(parse_report(&deep)
            .unwrap_err()
            .to_string()
            .contains("deeper"));
    }

    #[test]
    fn a_wrapper_around_the_feedback_is_looked_through() {
        let body = MINIMAL.replace("<?xml version=\"1.0\"?>", "");
        let xml = format!(
            "<?xml version=\"1.0\"?><report xmlns:x=\"urn:x\"><x:meta>archived</x:meta>{body}</report>"
        );
        let r = parse_report(&xml).unwrap();
        assert_eq!((r.org_name.as_str(), r.records.len()), ("google.com", 1));
        let twice = format!("<reports>{body}{body}</reports>");
        assert!(parse_report(&twice)
            .unwrap_err()
            .to_string()
            .contains("a second <feedback>"));
    }

    #[test]
    fn unescaped_ampersands_and_angle_brackets_in_text_are_text() {
        let xml = MINIMAL
            .replace(
                "<org_name>google.com</org_name>",
                "<org_name>AT&T Mail & Co <1< x</org_name><extra_contact_info>a <b c</extra_contact_info>",
            )
            .replace("<p>none</p>", "<p>NONE</p><!-- a < b --><![CDATA[ <<< ]]>");
        let r = parse_report(&xml).unwrap();
        assert_eq!(r.org_name, "AT&T Mail & Co <1< x");
        assert_eq!(r.report_id, "1");
        assert_eq!(r.policy.p.as_deref(), Some("none"));
        assert_eq!(r.records.len(), 1);
        assert_eq!(escape_stray_lt("<a>x</a>"), Cow::Borrowed("<a>x</a>"));
    }

    #[test]
    fn upper_case_values_and_missing_optional_elements() {
        let xml = r#"<feedback><report_metadata><org_name>Mail.RU</org_name></report_metadata>
            <policy_published><domain>example.com</domain></policy_published>
            <record><row><source_ip>192.0.2.9</source_ip><count>3</count>
              <policy_evaluated><disposition>Reject</disposition><dkim>FAIL</dkim><spf>PASS</spf></policy_evaluated></row>
            </record></feedback>"#;
        let r = parse_report(xml).unwrap();
        assert_eq!(
            (r.report_id.as_str(), r.begin, r.policy.p.clone()),
            ("", None, None)
        );
        let rec = &r.records[0];
        assert_eq!(rec.disposition, "reject");
        assert!(rec.spf_aligned && !rec.dkim_aligned && rec.dmarc_pass());
        assert!(rec.dkim.is_empty() && rec.spf.is_empty() && rec.header_from.is_empty());
    }

    #[test]
    fn rfc9990_policy_fields() {
        let xml = MINIMAL
            .replace("<feedback>", "<feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\"><version>1.0</version>")
            .replace(
                "<p>none</p>",
                "<p>reject</p><np>quarantine</np><testing>Y</testing><discovery_method>treewalk</discovery_method>",
            )
            .replace("<disposition>none</disposition>", "<disposition>pass</disposition>")
            .replace("</row>", "</row><extension><x>1</x></extension>");
        let r = parse_report(&xml).unwrap();
        assert_eq!(r.policy.np.as_deref(), Some("quarantine"));
        assert_eq!(r.policy.testing.as_deref(), Some("y"));
        assert_eq!(r.records[0].disposition, "pass");
    }
}

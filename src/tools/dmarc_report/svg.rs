//! Stacked bar charts as inline SVG, drawn by hand: one bar per day, one coloured segment per
//! series, a y axis with round ticks, day labels under at most a dozen bars, a `<title>` on
//! every segment (the browser's tooltip). Pure string building; every text from a report is
//! escaped by the caller's [`escape`]. No script, no font, nothing fetched.

use std::fmt::Write;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 36.0;

/// One series of a chart: what its segments are called and how they look.
pub struct Series {
    /// The CSS class of its segments and the key its total has in the JSON output.
    pub key: &'static str,
    pub label: &'static str,
    pub color: &'static str,
}

/// One bar: a day and one value per series, in the order of the series.
pub struct Bar {
    pub day: String,
    pub values: Vec<u64>,
}

/// The status page's escaping: entities for `&<>"'`, and U+FFFD for control characters, which
/// a report (remote input) may carry as well as an SMTP reply.
pub use crate::status::html::esc as escape;

/// The smallest 1, 2 or 5 × 10ⁿ at or above `max` (at least 1): the top of the y axis.
fn nice_ceiling(max: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            let v = step.saturating_mul(m);
            if v >= max || v == u64::MAX {
                return v.max(1);
            }
        }
        step = step.saturating_mul(10);
    }
}

/// A stacked bar chart. `class` names the chart (for CSS and tests), `label` is read out by
/// screen readers.
pub fn stacked_bars(class: &str, label: &str, series: &[Series], bars: &[Bar]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="chart {class}" role="img" aria-label="{}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">"#,
        escape(label)
    );
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let totals: Vec<u64> = bars
        .iter()
        .map(|b| b.values.iter().fold(0u64, |n, v| n.saturating_add(*v)))
        .collect();
    let top = nice_ceiling(totals.iter().copied().max().unwrap_or(0));
    // The y axis: 0, a quarter, half, three quarters, all of `top`, with grid lines.
    for i in 0..=4u64 {
        let value = top / 4 * i + if i == 4 { top % 4 } else { 0 };
        let y = TOP + plot_h - plot_h * value as f64 / top as f64;
        let _ = write!(
            out,
            r##"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text class="tick" x="{}" y="{:.1}" text-anchor="end" font-size="11">{value}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0
        );
    }
    if bars.is_empty() {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">No dated reports.</text>"#,
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
    }
    let slot = plot_w / bars.len().max(1) as f64;
    let bar_w = (slot * 0.7).max(1.0);
    // Day labels under at most a dozen bars, evenly spread, always the first and the last.
    let every = bars.len().div_ceil(12).max(1);
    for (i, (bar, total)) in bars.iter().zip(&totals).enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let day = escape(&bar.day);
        let _ = write!(
            out,
            r#"<g class="day" data-day="{day}" data-total="{total}">"#
        );
        let mut y = TOP + plot_h;
        for (s, value) in series.iter().zip(&bar.values) {
            if *value == 0 {
                continue;
            }
            let h = plot_h * *value as f64 / top as f64;
            y -= h;
            let _ = write!(
                out,
                r#"<rect class="{}" data-value="{value}" x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}" fill="{}"><title>{day}: {value} {}</title></rect>"#,
                s.key,
                s.color,
                escape(s.label)
            );
        }
        out.push_str("</g>");
        if i % every == 0 || i + 1 == bars.len() {
            let label = bar.day.get(5..).unwrap_or(&bar.day);
            let _ = write!(
                out,
                r#"<text class="day-label" x="{:.1}" y="{}" text-anchor="middle" font-size="11">{}</text>"#,
                x + bar_w / 2.0,
                TOP + plot_h + 16.0,
                escape(label)
            );
        }
    }
    let _ = write!(
        out,
        r##"<line class="axis" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#555"/></svg>"##,
        LEFT + plot_w,
        y = TOP + plot_h
    );
    out
}

/// The legend of a chart: a colour swatch and the label of each series.
pub fn legend(series: &[Series]) -> String {
    let mut out = String::from(r#"<ul class="legend">"#);
    for s in series {
        let _ = write!(
            out,
            r#"<li><span class="swatch" style="background:{}"></span>{}</li>"#,
            s.color,
            escape(s.label)
        );
    }
    out.push_str("</ul>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERIES: [Series; 2] = [
        Series {
            key: "a",
            label: "A & a",
            color: "#111",
        },
        Series {
            key: "b",
            label: "B",
            color: "#222",
        },
    ];

    #[test]
    fn one_group_per_day_segments_stacked_up_to_scale() {
        let bars = vec![
            Bar {
                day: "2026-01-01".into(),
                values: vec![30, 10],
            },
            Bar {
                day: "2026-01-02<x>".into(),
                values: vec![0, 50],
            },
        ];
        let svg = stacked_bars("outcomes", "Messages \"per\" day", &SERIES, &bars);
        assert_eq!(svg.matches(r#"<g class="day""#).count(), 2);
        assert!(
            svg.contains(r#"data-day="2026-01-01" data-total="40""#),
            "{svg}"
        );
        // Escaped wherever report text lands; the empty segment is not drawn.
        assert!(svg.contains(r#"data-day="2026-01-02&lt;x&gt;""#), "{svg}");
        assert!(
            svg.contains("aria-label=\"Messages &quot;per&quot; day\""),
            "{svg}"
        );
        assert!(
            svg.contains("<title>2026-01-01: 30 A &amp; a</title>"),
            "{svg}"
        );
        assert_eq!(svg.matches("<rect").count(), 3);
        // Axis top 50: the 50-message segment is the full plot height (212), 30 is 3/5 of it.
        assert!(svg.contains(r#"data-value="50" x="#), "{svg}");
        assert!(svg.contains(r#"height="212.0""#), "{svg}");
        assert!(svg.contains(r#"height="127.2""#), "{svg}");
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn scales_and_empty_charts() {
        assert_eq!(
            [0, 1, 3, 7, 10, 11, 150, 999_999].map(nice_ceiling),
            [1, 1, 5, 10, 10, 20, 200, 1_000_000]
        );
        assert_eq!(nice_ceiling(u64::MAX), u64::MAX);
        let svg = stacked_bars("x", "x", &SERIES, &[]);
        assert!(svg.contains("No dated reports."));
        let many: Vec<Bar> = (0..100)
            .map(|i| Bar {
                day: format!("2026-{i:05}"),
                values: vec![u64::MAX, u64::MAX],
            })
            .collect();
        let svg = stacked_bars("x", "x", &SERIES, &many);
        assert_eq!(svg.matches(r#"<g class="day""#).count(), 100);
        assert!(svg.matches(r#"class="day-label""#).count() <= 13);
    }
}

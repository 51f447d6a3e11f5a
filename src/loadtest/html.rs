//! `report.html`: one self-contained page (inline SVG and CSS, no script, nothing
//! fetched) with what people look at before they read tables: throughput, errors and
//! latency over time per request name with the threshold lines on them, the server's
//! figures, the chaos faults as shaded bands, the audit's verdict and the summary table.

use super::report::RunSummary;
use super::timeseries::{ALL, Row};
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub(super) const WIDTH: f64 = 760.0;
pub(super) const HEIGHT: f64 = 220.0;
/// Room for the axes' labels.
pub(super) const LEFT: f64 = 56.0;
pub(super) const BOTTOM: f64 = 28.0;
pub(super) const TOP: f64 = 24.0;
pub(super) const RIGHT: f64 = 12.0;
pub(super) const COLORS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

/// One line of a chart: its label, color and points (seconds, value).
struct Line<'a> {
    label: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

/// A dashed horizontal line (a threshold).
struct Limit {
    label: String,
    y: f64,
}

/// A shaded span of time (a fault).
struct Band {
    label: String,
    from: f64,
    to: f64,
}

pub fn render(s: &RunSummary, rows: &[Row]) -> String {
    let mut by_name: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by_name.entry(r.name.as_str()).or_default().push(r);
    }
    let end = rows
        .iter()
        .map(|r| r.t_s + 1.0)
        .fold(s.duration_s, f64::max);
    let bands: Vec<Band> = s
        .chaos
        .iter()
        .map(|f| Band {
            label: format!("{} {}", f.fault, f.subject),
            from: f.injected_at_s,
            to: f.lifted_at_s + f.recovered_after_s.unwrap_or(0.0),
        })
        .collect();
    let verdict = if s.passed { "PASSED" } else { "FAILED" };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>paytool {} {}</title><style>{CSS}</style></head><body>\n\
         <h1>{} <span class=\"{}\">{verdict}</span></h1>\n<p>{}</p>\n",
        esc(&s.profile),
        esc(&s.run_id),
        esc(&s.run_id),
        verdict.to_lowercase(),
        esc(&s.target),
    );
    if let Some(why) = &s.aborted {
        let _ = writeln!(h, "<p class=\"failed\">{}</p>", esc(why));
    }
    let all = by_name.get(ALL).cloned().unwrap_or_default();
    let _ = writeln!(h, "<h2>All requests</h2><div class=\"charts\">");
    h.push_str(&chart(
        "throughput (requests/s)",
        &[
            line("all", COLORS[0], &all, |r| r.rps),
            line("failed", COLORS[3], &all, |r| {
                if r.requests == 0 {
                    0.0
                } else {
                    r.rps * r.failed as f64 / r.requests as f64
                }
            }),
        ],
        &limits(s, ALL, &["rps_min"]),
        &bands,
        end,
    ));
    h.push_str(&chart(
        "error rate",
        &[line("failed ÷ all", COLORS[3], &all, |r| {
            if r.requests == 0 {
                0.0
            } else {
                r.failed as f64 / r.requests as f64
            }
        })],
        &limits(s, ALL, &["error_rate_max"]),
        &bands,
        end,
    ));
    h.push_str(&latency_chart(s, ALL, &all, &bands, end));
    let server: Vec<&Row> = all
        .iter()
        .copied()
        .filter(|r| r.batch_size_mean.is_some() || r.queue_depth_max.is_some())
        .collect();
    if !server.is_empty() {
        h.push_str(&chart(
            "server: group-commit batch and write queue",
            &[
                line("mean batch (writes)", COLORS[2], &server, |r| {
                    r.batch_size_mean.unwrap_or(0.0)
                }),
                line("queue depth", COLORS[4], &server, |r| {
                    r.queue_depth_max.unwrap_or(0.0)
                }),
            ],
            &[],
            &bands,
            end,
        ));
    }
    let cached: Vec<&Row> = all
        .iter()
        .copied()
        .filter(|r| r.cache_hit_ratio.is_some())
        .collect();
    if !cached.is_empty() {
        h.push_str(&chart(
            "cache hit ratio",
            &[line("hits ÷ lookups", COLORS[2], &cached, |r| {
                r.cache_hit_ratio.unwrap_or(0.0)
            })],
            &[],
            &bands,
            end,
        ));
    }
    h.push_str("</div>\n<h2>Per request name</h2><div class=\"charts\">\n");
    for (name, rows) in by_name.iter().filter(|(n, _)| **n != ALL) {
        h.push_str(&latency_chart(s, name, rows, &bands, end));
    }
    h.push_str("</div>\n");
    table(&mut h, s);
    h.push_str("</body></html>\n");
    h
}

fn latency_chart(s: &RunSummary, scope: &str, rows: &[&Row], bands: &[Band], end: f64) -> String {
    chart(
        &format!("{scope}: latency (ms)"),
        &[
            line("p50", COLORS[0], rows, |r| r.p50_ms),
            line("p95", COLORS[1], rows, |r| r.p95_ms),
            line("p99", COLORS[3], rows, |r| r.p99_ms),
        ],
        &limits(
            s,
            scope,
            &[
                "p50_ms_max",
                "p90_ms_max",
                "p95_ms_max",
                "p99_ms_max",
                "p999_ms_max",
                "max_ms_max",
            ],
        ),
        bands,
        end,
    )
}

fn line<'a>(label: &'a str, color: &'a str, rows: &[&Row], y: impl Fn(&Row) -> f64) -> Line<'a> {
    Line {
        label,
        color,
        points: rows.iter().map(|r| (r.t_s + 0.5, y(r))).collect(),
    }
}

/// The run's thresholds of `scope` among `rules`, as lines to draw.
fn limits(s: &RunSummary, scope: &str, rules: &[&str]) -> Vec<Limit> {
    s.thresholds
        .iter()
        .filter(|t| t.scope == scope && rules.contains(&t.rule.as_str()))
        .map(|t| Limit {
            label: format!("{} {}", t.rule, t.limit),
            y: t.limit,
        })
        .collect()
}

fn chart(title: &str, lines: &[Line], limits: &[Limit], bands: &[Band], end: f64) -> String {
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(limits.iter().map(|l| l.y))
        .fold(0.0_f64, f64::max)
        .max(1e-9)
        * 1.1;
    let x_max = end.max(1.0);
    let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |t: f64| LEFT + t / x_max * w;
    let y = |v: f64| TOP + h - v / y_max * h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<figure><svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"{t}\"><title>{t}</title><text x=\"{LEFT}\" y=\"16\" class=\"title\">{t}</text>",
        t = esc(title)
    );
    for b in bands {
        let _ = write!(
            svg,
            "<rect class=\"fault\" x=\"{:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{h}\"><title>{}</title></rect>",
            x(b.from),
            (x(b.to) - x(b.from)).max(1.0),
            esc(&b.label)
        );
    }
    // Axes, with the top value and the end time labelled.
    let _ = write!(
        svg,
        "<path class=\"axis\" d=\"M{LEFT} {TOP} V{:.1} H{:.1}\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>\
         <text x=\"{LEFT}\" y=\"{:.1}\" class=\"tick\">0 s</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{:.0} s</text>",
        TOP + h,
        LEFT + w,
        LEFT - 4.0,
        TOP + 8.0,
        number(y_max / 1.1),
        TOP + h + 16.0,
        LEFT + w,
        TOP + h + 16.0,
        x_max
    );
    for l in limits {
        let yy = y(l.y);
        let _ = write!(
            svg,
            "<path class=\"limit\" d=\"M{LEFT} {yy:.1} H{:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            LEFT + w,
            LEFT + w,
            yy - 3.0,
            esc(&l.label),
        );
    }
    for (i, l) in lines.iter().enumerate() {
        if l.points.is_empty() {
            continue;
        }
        let d: Vec<String> = l
            .points
            .iter()
            .enumerate()
            .map(|(j, (t, v))| {
                format!(
                    "{}{:.1} {:.1}",
                    if j == 0 { 'M' } else { 'L' },
                    x(*t),
                    y(*v)
                )
            })
            .collect();
        let _ = write!(
            svg,
            "<path class=\"series\" stroke=\"{}\" d=\"{}\"><title>{}</title></path>\
             <text x=\"{:.1}\" y=\"16\" class=\"legend\" fill=\"{}\">{}</text>",
            l.color,
            d.join(" "),
            esc(l.label),
            // Right-aligned, clear of the title.
            WIDTH - RIGHT - (lines.len() - i) as f64 * 130.0,
            l.color,
            esc(l.label)
        );
    }
    svg.push_str("</svg></figure>\n");
    svg
}

fn table(h: &mut String, s: &RunSummary) {
    h.push_str(
        "<h2>Summary</h2><table><tr><th>request</th><th>count</th><th>rps</th><th>p50 ms</th>\
         <th>p95 ms</th><th>p99 ms</th><th>max ms</th><th>errors</th></tr>\n",
    );
    for r in s.requests.iter().chain(std::iter::once(&s.total)) {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({:.2}%)</td></tr>",
            esc(&r.name),
            r.count,
            r.rps,
            r.p50_ms,
            r.p95_ms,
            r.p99_ms,
            r.max_ms,
            r.errors,
            r.error_rate * 100.0
        );
    }
    h.push_str("</table>\n");
    if !s.thresholds.is_empty() {
        h.push_str("<h2>Thresholds</h2><table><tr><th>rule</th><th>limit</th><th>actual</th><th>result</th></tr>\n");
        for t in &s.thresholds {
            let _ = writeln!(
                h,
                "<tr><td>{} {}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                esc(&t.scope),
                esc(&t.rule),
                t.limit,
                t.actual.map_or("no samples".into(), |a| format!("{a:.3}")),
                if t.passed { "passed" } else { "failed" },
                if t.passed { "pass" } else { "FAIL" }
            );
        }
        h.push_str("</table>\n");
    }
    if let Some(a) = &s.audit {
        let _ = writeln!(
            h,
            "<h2>Money audit: <span class=\"{}\">{}</span></h2><p>{} acknowledged payments checked.</p><ul>",
            if a.ok { "passed" } else { "failed" },
            if a.ok { "clean" } else { "FAILED" },
            a.acknowledged_payments
        );
        for c in &a.checks {
            let _ = writeln!(
                h,
                "<li class=\"{}\">{} ({} violation(s))</li>",
                if c.ok { "passed" } else { "failed" },
                esc(&c.name),
                c.violation_count
            );
        }
        h.push_str("</ul>\n");
    }
    if !s.chaos.is_empty() {
        h.push_str("<h2>Faults</h2><table><tr><th>fault</th><th>on</th><th>at s</th><th>lifted s</th><th>requests</th><th>failed</th><th>p99 ms</th><th>recovered after</th></tr>\n");
        for f in &s.chaos {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td></tr>",
                esc(&f.fault),
                esc(&f.subject),
                f.injected_at_s,
                f.lifted_at_s,
                f.requests,
                f.failed,
                f.p99_ms,
                match (&f.error, f.recovered_after_s) {
                    (Some(e), _) => format!("FAILED: {}", esc(e)),
                    (None, Some(r)) => format!("{r:.1} s"),
                    (None, None) => "not within the run".into(),
                }
            );
        }
        h.push_str("</table>\n");
    }
}

/// A value for an axis label: short, without trailing noise.
pub(super) fn number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) const CSS: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222}\
h1 span.passed,.passed{color:#2a7d2a}h1 span.failed,.failed{color:#b00020}\
.charts{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}\
svg.chart{width:760px;height:220px;border:1px solid #ddd;background:#fff}\
.axis{stroke:#888;fill:none}.series{fill:none;stroke-width:1.6}\
.limit{stroke:#b00020;stroke-dasharray:5 4;fill:none}.fault{fill:#f4a261;opacity:.25}\
.title{font-size:13px;font-weight:600}.tick,.legend{font-size:11px}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::report::fixtures;

    #[test]
    fn the_page_holds_a_chart_per_name_with_its_threshold_lines_and_no_script() {
        let mut s = fixtures::summary(
            vec![fixtures::request("POST /v1/payments", 12.0, 0.0)],
            100.0,
            true,
        );
        s.thresholds
            .push(crate::loadtest::thresholds::ThresholdResult {
                scope: "POST /v1/payments".into(),
                rule: "p99_ms_max".into(),
                limit: 50.0,
                actual: Some(12.0),
                passed: true,
            });
        let row = |t: f64, name: &str| Row {
            t_s: t,
            name: name.into(),
            requests: 100,
            ok: 99,
            failed: 1,
            rps: 100.0,
            p50_ms: 2.0,
            p95_ms: 8.0,
            p99_ms: 12.0,
            ..Row::default()
        };
        let rows = vec![
            row(0.0, "POST /v1/payments"),
            row(0.0, ALL),
            row(1.0, "POST /v1/payments"),
            row(1.0, ALL),
        ];
        let page = render(&s, &rows);
        assert!(page.contains("POST /v1/payments: latency (ms)"));
        assert!(
            page.contains("class=\"limit\""),
            "the p99 threshold is drawn"
        );
        assert!(page.contains("p99_ms_max 50"));
        assert!(page.matches("class=\"series\"").count() >= 6);
        assert!(!page.contains("<script"), "no script");
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "nothing fetched"
        );
    }
}

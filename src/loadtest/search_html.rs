//! `search.html` for a `--find-max` run: the capacity search's steps as a chart (each
//! step's offered rate beside the successful rate it got, passed or failed, and its p99)
//! and a table, in the same self-contained style as `report.html`.

use super::find_max::{FindMax, Step};
use super::html::{BOTTOM, COLORS, CSS, HEIGHT, LEFT, RIGHT, TOP, WIDTH, esc, number};
use std::fmt::Write as _;

pub const SEARCH_HTML_FILE: &str = "search.html";

const PASSED: &str = "#2a7d2a";
const FAILED: &str = "#b00020";

pub fn render(r: &FindMax) -> String {
    let steps: Vec<&Step> = r.steps.iter().chain(&r.confirmation).collect();
    let mut h = String::new();
    let answer = match (r.best_rate_per_s, r.confirmed()) {
        (Some(rate), true) => format!("{rate:.0}/s, confirmed"),
        (Some(rate), false) => format!("{rate:.0}/s, not confirmed"),
        (None, _) => "no rate passed".to_string(),
    };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>paytool find-max {p}</title><style>{CSS}</style></head><body>\n\
         <h1>{p}: <span class=\"{class}\">{a}</span></h1>\n\
         <p>{n} steps of {t:.0} s ({w:.0} s warm-up each), {c} connections</p>\n<div class=\"charts\">",
        p = esc(&r.profile),
        class = if r.confirmed() { "passed" } else { "failed" },
        a = esc(&answer),
        n = steps.len(),
        t = r.step_time_s,
        w = r.warmup_s,
        c = r.connections,
    );
    h.push_str(&chart(
        "offered and successful requests/s per step",
        &steps,
        &[
            ("offered", COLORS[0], &|s: &Step| s.rate_per_s),
            ("successful", COLORS[2], &|s: &Step| s.achieved_rps),
        ],
        r.best_rate_per_s,
    ));
    h.push_str(&chart(
        "p99 latency per step (ms)",
        &steps,
        &[("p99", COLORS[1], &|s: &Step| s.p99_ms)],
        None,
    ));
    h.push_str("</div>\n<table><tr><th>step</th><th>offered/s</th><th>successful/s</th><th>p99 ms</th><th>errors</th><th>verdict</th></tr>\n");
    for s in &steps {
        let _ = writeln!(
            h,
            "<tr><td><a href=\"{d}/report.html\">{d}</a></td><td>{:.0}</td><td>{:.0}</td><td>{}</td><td>{:.2}%</td><td class=\"{}\">{}</td></tr>",
            s.rate_per_s,
            s.achieved_rps,
            number(s.p99_ms),
            s.error_rate * 100.0,
            if s.passed { "passed" } else { "failed" },
            if s.passed {
                "passed".to_string()
            } else {
                esc(&s.failed.join("; "))
            },
            d = esc(&s.dir),
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

type Series<'a> = (&'a str, &'a str, &'a dyn Fn(&Step) -> f64);

/// Steps along x in the order they ran; each series a line through its steps, each
/// point green (passed) or red (failed); `best` as a dashed line.
fn chart(title: &str, steps: &[&Step], series: &[Series], best: Option<f64>) -> String {
    let y_max = steps
        .iter()
        .flat_map(|s| series.iter().map(move |(_, _, f)| f(s)))
        .chain(best)
        .fold(0.0_f64, f64::max)
        .max(1e-9)
        * 1.1;
    let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |i: usize| LEFT + (i as f64 + 0.5) / steps.len().max(1) as f64 * w;
    let y = |v: f64| TOP + h - v / y_max * h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<figure><svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"{t}\"><title>{t}</title><text x=\"{LEFT}\" y=\"16\" class=\"title\">{t}</text>\
         <path class=\"axis\" d=\"M{LEFT} {TOP} V{:.1} H{:.1}\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
        TOP + h,
        LEFT + w,
        LEFT - 4.0,
        TOP + 8.0,
        number(y_max / 1.1),
        t = esc(title)
    );
    for (i, s) in steps.iter().enumerate() {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
            x(i),
            TOP + h + 16.0,
            if s.dir.starts_with("confirm") {
                "confirm".to_string()
            } else {
                s.index.to_string()
            }
        );
    }
    if let Some(b) = best {
        let _ = write!(
            svg,
            "<path class=\"limit\" d=\"M{LEFT} {yy:.1} H{:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">best {}/s</text>",
            LEFT + w,
            LEFT + w,
            y(b) - 3.0,
            number(b),
            yy = y(b),
        );
    }
    for (k, (label, color, value)) in series.iter().enumerate() {
        let d: Vec<String> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "{}{:.1} {:.1}",
                    if i == 0 { 'M' } else { 'L' },
                    x(i),
                    y(value(s))
                )
            })
            .collect();
        let _ = write!(
            svg,
            "<path class=\"series\" stroke=\"{color}\" d=\"{}\"><title>{}</title></path>\
             <text x=\"{:.1}\" y=\"16\" class=\"legend\" fill=\"{color}\">{}</text>",
            d.join(" "),
            esc(label),
            WIDTH - RIGHT - (series.len() - k) as f64 * 110.0,
            esc(label)
        );
        for (i, s) in steps.iter().enumerate() {
            let _ = write!(
                svg,
                "<circle class=\"step\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{}\"><title>step {}: {label} {}</title></circle>",
                x(i),
                y(value(s)),
                if s.passed { PASSED } else { FAILED },
                esc(&s.dir),
                number(value(s)),
            );
        }
    }
    svg.push_str("</svg></figure>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(index: usize, rate: f64, passed: bool) -> Step {
        Step {
            index,
            rate_per_s: rate,
            passed,
            dir: format!("step-{index:02}-{rate:.0}-per-s"),
            achieved_rps: if passed { rate } else { rate * 0.7 },
            p99_ms: if passed { 4.0 } else { 400.0 },
            error_rate: if passed { 0.0 } else { 0.2 },
            failed: if passed {
                vec![]
            } else {
                vec!["p99 < 50ms".into()]
            },
        }
    }

    #[test]
    fn every_step_is_a_point_coloured_by_its_verdict() {
        let mut confirm = step(4, 2000.0, true);
        confirm.dir = "confirm-2000-per-s".into();
        let r = FindMax {
            profile: "open-checkout".into(),
            best_rate_per_s: Some(2000.0),
            best_achieved_rps: Some(1990.0),
            best_step_dir: Some("step-02-2000-per-s".into()),
            step_time_s: 10.0,
            warmup_s: 2.0,
            connections: 64,
            steps: vec![
                step(1, 1000.0, true),
                step(2, 2000.0, true),
                step(3, 4000.0, false),
            ],
            confirmation: Some(confirm),
        };
        let page = render(&r);
        // Two charts: offered + successful (2 series x 4 steps) and p99 (1 x 4).
        assert_eq!(page.matches("<circle").count(), 12, "{page}");
        assert_eq!(page.matches(&format!("fill=\"{FAILED}\"")).count(), 3);
        assert!(page.contains("2000/s, confirmed") && page.contains(">confirm</text>"));
        assert!(page.contains("p99 &lt; 50ms") && !page.contains("<script"));
    }
}

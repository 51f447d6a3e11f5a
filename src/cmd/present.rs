//! Tables and verdict lines shared by `loadtest` and `report`.

use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use paytool::loadtest::report::RunSummary;
use paytool::loadtest::summary::RequestRow;

pub fn requests_table(s: &RunSummary) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "request", "count", "rps", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors",
    ]);
    for r in s.requests.iter().chain(std::iter::once(&s.total)) {
        t.add_row(row(r));
    }
    for i in 1..8 {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

fn row(r: &RequestRow) -> Vec<Cell> {
    vec![
        Cell::new(&r.name),
        Cell::new(r.count),
        Cell::new(format!("{:.1}", r.rps)),
        Cell::new(r.p50_ms),
        Cell::new(r.p95_ms),
        Cell::new(r.p99_ms),
        Cell::new(r.max_ms),
        Cell::new(format!("{} ({:.2}%)", r.errors, r.error_rate * 100.0)),
    ]
}

pub fn print_summary(s: &RunSummary) {
    println!("{}", requests_table(s));
    if !s.thresholds.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header(["threshold", "limit", "actual", "result"]);
        for th in &s.thresholds {
            t.add_row([
                format!("{} {}", th.scope, th.rule),
                th.limit.to_string(),
                th.actual
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "no samples".into()),
                if th.passed {
                    "pass".into()
                } else {
                    "FAIL".into()
                },
            ]);
        }
        println!("{t}");
    }
    if let Some(a) = &s.audit {
        println!(
            "money audit over {} acknowledged payments: {}{}",
            a.acknowledged_payments,
            if a.ok { "clean" } else { "FAILED" },
            s.audit_s.map_or(String::new(), |t| format!(" ({t:.1} s)"))
        );
        for c in a.checks.iter().filter(|c| !c.ok) {
            println!("  FAIL {} ({} violation(s))", c.name, c.violation_count);
            for v in c.violations.iter().take(10) {
                println!("    - {v}");
            }
        }
    }
    if !s.chaos.is_empty() {
        println!("{}", chaos_table(s));
    }
    if s.co_backfilled > 0 {
        println!(
            "coordinated-omission mitigation ({}): {} synthetic requests backfilled into the figures above",
            s.co_mitigation.as_str(),
            s.co_backfilled
        );
    }
    println!("target: {}", s.target);
    if let Some(line) = s.instances_line() {
        println!("{line}");
    }
    if let Some(o) = &s.open_model {
        println!("open model: {}", o.describe());
    }
    if let Some(f) = &s.server {
        println!(
            "server: {} group commits, mean batch {} writes, write queue depth up to {}",
            f.commit_batches, f.commit_batch_size_mean, f.write_queue_depth_max
        );
        if let Some(c) = &f.cache {
            println!(
                "cache: {} hits, {} misses ({:.1}% hits){}",
                c.hits,
                c.misses,
                c.hit_ratio * 100.0,
                if c.breaker_opened {
                    "; the breaker opened (Redis unreachable or slow): served from the store"
                } else {
                    ""
                }
            );
        }
    }
}

/// Each injected fault, what the load saw from it to its recovery, and how long that took.
pub fn chaos_table(s: &RunSummary) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "fault",
        "on",
        "at s",
        "lifted s",
        "requests",
        "failed",
        "p99 ms",
        "max ms",
        "recovered after",
    ]);
    for f in &s.chaos {
        let recovered = match (&f.error, f.recovered_after_s) {
            (Some(e), _) => format!("FAILED: {e}"),
            (None, Some(r)) => format!("{r:.1} s"),
            (None, None) => "not within the run".into(),
        };
        t.add_row([
            f.fault.clone(),
            f.subject.clone(),
            format!("{:.1}", f.injected_at_s),
            format!("{:.1}", f.lifted_at_s),
            f.requests.to_string(),
            f.failed.to_string(),
            format!("{:.0}", f.p99_ms),
            format!("{:.0}", f.max_ms),
            recovered,
        ]);
    }
    for i in 2..9 {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

pub fn verdict(s: &RunSummary) -> String {
    let failed: Vec<String> = s
        .failed_thresholds()
        .map(|t| format!("{} {}", t.scope, t.rule))
        .chain(
            s.audit
                .iter()
                .filter(|a| !a.ok)
                .map(|_| "money audit".to_string()),
        )
        .chain(
            s.chaos
                .iter()
                .filter(|f| !f.ok())
                .map(|f| format!("chaos step {} on {}", f.fault, f.subject)),
        )
        .collect();
    if let Some(why) = &s.aborted {
        return format!("FAILED: {} ({why})", failed.join(", "));
    }
    if s.passed {
        let audit = match &s.audit {
            Some(a) => format!(
                ", money audit clean over {} payments",
                a.acknowledged_payments
            ),
            None => ", audit off".into(),
        };
        let chaos = match s.chaos.len() {
            0 => String::new(),
            n => format!(", {n} fault(s) injected and ridden out"),
        };
        format!(
            "PASSED: {} threshold(s) met{audit}{chaos}",
            s.thresholds.len()
        )
    } else {
        format!("FAILED: {}", failed.join(", "))
    }
}

//! `[thresholds]` checked into a gate: rules over all requests or one request name,
//! written as keys (`p99_ms_max = 2.5`) or as text (`rules = ["p99 < 2.5ms"]`), a warm-up
//! they ignore (`after`), and whether a failing rule stops the run early (`abort_on_fail`
//! after `delay`).

use super::{ProfileError, duration, invalid};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// One scope's rules as written; `gate::check` makes them a `Gate`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Failed requests / all requests, 0.0 to 1.0.
    #[serde(
        default,
        deserialize_with = "named::error_rate_max",
        skip_serializing_if = "Option::is_none"
    )]
    pub error_rate_max: Option<f64>,
    /// Latency ceilings in ms (fractions allowed: 2.5), of successful requests unless
    /// `latency_of = "all"`.
    #[serde(
        default,
        deserialize_with = "named::p50_ms_max",
        skip_serializing_if = "Option::is_none"
    )]
    pub p50_ms_max: Option<f64>,
    #[serde(
        default,
        deserialize_with = "named::p90_ms_max",
        skip_serializing_if = "Option::is_none"
    )]
    pub p90_ms_max: Option<f64>,
    #[serde(
        default,
        deserialize_with = "named::p95_ms_max",
        skip_serializing_if = "Option::is_none"
    )]
    pub p95_ms_max: Option<f64>,
    #[serde(
        default,
        deserialize_with = "named::p99_ms_max",
        skip_serializing_if = "Option::is_none"
    )]
    pub p99_ms_max: Option<f64>,
    #[serde(
        default,
        deserialize_with = "named::p999_ms_max",
        skip_serializing_if = "Option::is_none"
    )]
    pub p999_ms_max: Option<f64>,
    #[serde(
        default,
        deserialize_with = "named::max_ms_max",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_ms_max: Option<f64>,
    /// Successful requests a second.
    #[serde(
        default,
        deserialize_with = "named::rps_min",
        skip_serializing_if = "Option::is_none"
    )]
    pub rps_min: Option<f64>,
    /// Open model, over all requests: arrivals sent late ÷ sent, and arrivals dropped.
    #[serde(
        default,
        deserialize_with = "named::late_rate_max",
        skip_serializing_if = "Option::is_none"
    )]
    pub late_rate_max: Option<f64>,
    #[serde(
        default,
        deserialize_with = "named::dropped_max",
        skip_serializing_if = "Option::is_none"
    )]
    pub dropped_max: Option<u64>,
    /// Which requests the latency rules count: "successes" (the default) or "all".
    #[serde(
        default,
        deserialize_with = "named::latency_of",
        skip_serializing_if = "Option::is_none"
    )]
    pub latency_of: Option<LatencyOf>,
    /// Rules as text: "p99 < 2.5ms", "error_rate < 1%", "rps > 500".
    #[serde(
        default,
        deserialize_with = "named::rules",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub rules: Vec<String>,
}

/// `Limits` is flattened, and serde reads a flattened table from a buffer without
/// positions, so toml points its error at the table's header only: the message names
/// the key instead.
mod named {
    use super::LatencyOf;
    use serde::de::{Deserialize, Deserializer, Error};

    fn named<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
        key: &str,
    ) -> Result<T, D::Error> {
        T::deserialize(d).map_err(|e| D::Error::custom(format!("`{key}`: {e}")))
    }

    macro_rules! keys {
        ($($key:ident: $t:ty),* $(,)?) => {$(
            pub fn $key<'de, D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
                named(d, stringify!($key))
            }
        )*};
    }

    keys!(
        error_rate_max: Option<f64>,
        p50_ms_max: Option<f64>,
        p90_ms_max: Option<f64>,
        p95_ms_max: Option<f64>,
        p99_ms_max: Option<f64>,
        p999_ms_max: Option<f64>,
        max_ms_max: Option<f64>,
        rps_min: Option<f64>,
        late_rate_max: Option<f64>,
        dropped_max: Option<u64>,
        latency_of: Option<LatencyOf>,
        rules: Vec<String>,
    );
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsSection {
    /// Over all requests.
    #[serde(flatten)]
    pub all: Limits,
    /// A warm-up every rule ignores: "5s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Stop the run as soon as a rule fails (every report is still written).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort_on_fail: bool,
    /// With abort_on_fail: judge nothing before this much of the run has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// Per request name, as the summary table shows it ("POST /v1/payments").
    #[serde(default)]
    pub request: Vec<RequestLimits>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLimits {
    pub name: String,
    #[serde(flatten)]
    pub limits: Limits,
}

/// What a rule measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// A latency quantile (0.5 ... 0.999), or the slowest (1.0), in ms.
    Latency(f64),
    /// Failed requests ÷ requests.
    ErrorRate,
    /// Successful requests a second.
    Rps,
    /// Open model: arrivals sent late ÷ arrivals sent (All only).
    LateRate,
    /// Open model: arrivals dropped (All only).
    Dropped,
}

/// Which requests a latency rule counts: successes only (the default, as k6's
/// `expected_response:true`), or every request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LatencyOf {
    #[default]
    Successes,
    All,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// The rule's stable name: "p99_ms_max", "error_rate_max", "rps_min" ... (the
    /// limit is never part of it, so a JUnit test keeps its name when a limit changes).
    pub key: &'static str,
    pub metric: Metric,
    pub limit: f64,
    /// `<` or `>` rather than `<=` or `>=` (rules written as text may say either).
    pub strict: bool,
    pub latency_of: LatencyOf,
}

impl Rule {
    /// Whether `actual` keeps the rule.
    pub fn kept(&self, actual: f64) -> bool {
        let at_least = matches!(self.metric, Metric::Rps);
        match (at_least, self.strict) {
            (false, false) => actual <= self.limit,
            (false, true) => actual < self.limit,
            (true, false) => actual >= self.limit,
            (true, true) => actual > self.limit,
        }
    }
}

/// "All", or one request name as the summary table shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Scoped {
    pub scope: String,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gate {
    pub scopes: Vec<Scoped>,
    /// The warm-up every rule ignores.
    pub after: Duration,
    /// Stop the run as soon as a rule fails, once this much of it has passed.
    pub abort_after: Option<Duration>,
}

pub const ALL: &str = "All";

/// The keys a `[thresholds]` table (or `--threshold KEY=VALUE`) may set.
pub const KEYS: [&str; 12] = [
    "error_rate_max",
    "p50_ms_max",
    "p90_ms_max",
    "p95_ms_max",
    "p99_ms_max",
    "p999_ms_max",
    "max_ms_max",
    "rps_min",
    "late_rate_max",
    "dropped_max",
    "latency_of",
    "rules",
];

fn key_metric(key: &str) -> Option<(&'static str, Metric)> {
    Some(match key {
        "error_rate_max" => ("error_rate_max", Metric::ErrorRate),
        "p50_ms_max" => ("p50_ms_max", Metric::Latency(0.5)),
        "p90_ms_max" => ("p90_ms_max", Metric::Latency(0.9)),
        "p95_ms_max" => ("p95_ms_max", Metric::Latency(0.95)),
        "p99_ms_max" => ("p99_ms_max", Metric::Latency(0.99)),
        "p999_ms_max" => ("p999_ms_max", Metric::Latency(0.999)),
        "max_ms_max" => ("max_ms_max", Metric::Latency(1.0)),
        "rps_min" => ("rps_min", Metric::Rps),
        "late_rate_max" => ("late_rate_max", Metric::LateRate),
        "dropped_max" => ("dropped_max", Metric::Dropped),
        _ => return None,
    })
}

/// The metric a rule's text names: "p99", "p99.9", "max", "error_rate", "rps" ...
fn text_metric(name: &str) -> Option<&'static str> {
    Some(match name {
        "p50" | "med" => "p50_ms_max",
        "p90" => "p90_ms_max",
        "p95" => "p95_ms_max",
        "p99" => "p99_ms_max",
        "p99.9" | "p999" => "p999_ms_max",
        "max" => "max_ms_max",
        "error_rate" => "error_rate_max",
        "rps" => "rps_min",
        "late_rate" => "late_rate_max",
        "dropped" => "dropped_max",
        _ => return None,
    })
}

/// Check `[thresholds]` against what the run is: `open_model` allows the late and
/// dropped rules, `run` bounds the warm-up and the abort delay.
pub fn check(
    t: &ThresholdsSection,
    open_model: bool,
    run: Duration,
    path: &Path,
) -> Result<Gate, ProfileError> {
    let mut scopes = vec![Scoped {
        scope: ALL.into(),
        rules: rules(&t.all, "thresholds", open_model, true, path)?,
    }];
    for (i, r) in t.request.iter().enumerate() {
        let key = format!("thresholds.request[{i}] ({})", r.name);
        scopes.push(Scoped {
            scope: r.name.clone(),
            rules: rules(&r.limits, &key, open_model, false, path)?,
        });
    }
    let after = match &t.after {
        Some(v) => duration(path, "thresholds.after", v)?,
        None => Duration::ZERO,
    };
    if !after.is_zero() && after >= run {
        return Err(invalid(
            path,
            "thresholds.after",
            format!(
                "is {after:?}: it must end before the load does ({run:?}), or nothing is checked"
            ),
        ));
    }
    let delay = match &t.delay {
        Some(v) => Some(duration(path, "thresholds.delay", v)?),
        None => None,
    };
    if delay.is_some() && !t.abort_on_fail {
        return Err(invalid(
            path,
            "thresholds.delay",
            "only applies with abort_on_fail = true",
        ));
    }
    Ok(Gate {
        scopes,
        after,
        abort_after: t
            .abort_on_fail
            .then(|| delay.unwrap_or(Duration::ZERO).max(after)),
    })
}

fn rules(
    l: &Limits,
    table: &str,
    open_model: bool,
    all: bool,
    path: &Path,
) -> Result<Vec<Rule>, ProfileError> {
    let latency_of = l.latency_of.unwrap_or_default();
    let mut out = Vec::new();
    let keyed: [(&str, Option<f64>); 10] = [
        ("error_rate_max", l.error_rate_max),
        ("p50_ms_max", l.p50_ms_max),
        ("p90_ms_max", l.p90_ms_max),
        ("p95_ms_max", l.p95_ms_max),
        ("p99_ms_max", l.p99_ms_max),
        ("p999_ms_max", l.p999_ms_max),
        ("max_ms_max", l.max_ms_max),
        ("rps_min", l.rps_min),
        ("late_rate_max", l.late_rate_max),
        ("dropped_max", l.dropped_max.map(|d| d as f64)),
    ];
    for (key, limit) in keyed {
        let Some(limit) = limit else { continue };
        let (key, metric) = key_metric(key).expect("a known key");
        out.push(checked(
            Rule {
                key,
                metric,
                limit,
                strict: false,
                latency_of,
            },
            &format!("{table}.{key}"),
            open_model,
            all,
            path,
        )?);
    }
    for (i, text) in l.rules.iter().enumerate() {
        let at = format!("{table}.rules[{i}]");
        let rule = parse_rule(text, latency_of)
            .map_err(|m| invalid(path, &at, format!("is {text:?}: {m}")))?;
        out.push(checked(rule, &at, open_model, all, path)?);
    }
    Ok(out)
}

/// A rule's limit in range, and a rule that applies where it is.
fn checked(
    rule: Rule,
    at: &str,
    open_model: bool,
    all: bool,
    path: &Path,
) -> Result<Rule, ProfileError> {
    let bad = |m: String| Err(invalid(path, at, m));
    let l = rule.limit;
    if !l.is_finite() || l < 0.0 {
        return bad(format!("is {l}: it must be 0 or more"));
    }
    match rule.metric {
        Metric::ErrorRate | Metric::LateRate if l > 1.0 => bad(format!(
            "is {l}: a fraction from 0.0 to 1.0 (or a percentage, in a rule's text)"
        )),
        Metric::LateRate | Metric::Dropped if !open_model => bad(
            "applies to the open model only (load.rate): there is no schedule to be late on".into(),
        ),
        Metric::LateRate | Metric::Dropped if !all => {
            bad("applies over all requests only ([thresholds], not a request's)".into())
        }
        _ => Ok(rule),
    }
}

/// "p99 < 2.5ms", "p99.9 <= 10ms", "max < 1s", "error_rate < 1%", "rps > 500",
/// "late_rate < 0.05", "dropped <= 0".
pub fn parse_rule(text: &str, latency_of: LatencyOf) -> Result<Rule, String> {
    let text = text.trim();
    let (name, rest) = text
        .split_once(['<', '>'])
        .ok_or("expected METRIC < LIMIT, e.g. \"p99 < 2.5ms\" or \"rps > 500\"")?;
    let op = &text[name.len()..name.len() + 1];
    let (strict, value) = match rest.strip_prefix('=') {
        Some(v) => (false, v),
        None => (true, rest),
    };
    let name = name.trim();
    let key = text_metric(name).ok_or_else(|| {
        format!("{name:?} is not a metric: use p50, p90, p95, p99, p99.9, max, error_rate, rps, late_rate or dropped")
    })?;
    let (key, metric) = key_metric(key).expect("a known key");
    let at_least = matches!(metric, Metric::Rps);
    if at_least != (op == ">") {
        return Err(format!(
            "{name} takes {}",
            if at_least {
                "a floor: rps > N"
            } else {
                "a ceiling: METRIC < LIMIT"
            }
        ));
    }
    let value = value.trim();
    let limit = match metric {
        Metric::Latency(_) => match value.parse::<f64>() {
            Ok(ms) => ms,
            Err(_) => humantime::parse_duration(value)
                .map(|d| d.as_secs_f64() * 1000.0)
                .map_err(|e| format!("{value:?}: {e}; write a time such as 2.5ms, 1s or 800us"))?,
        },
        Metric::ErrorRate | Metric::LateRate => match value.strip_suffix('%') {
            Some(pct) => pct.trim().parse::<f64>().map(|p| p / 100.0),
            None => value.parse::<f64>(),
        }
        .map_err(|_| format!("{value:?}: a fraction (0.01) or a percentage (1%)"))?,
        Metric::Rps | Metric::Dropped => value
            .parse::<f64>()
            .map_err(|_| format!("{value:?}: a number"))?,
    };
    Ok(Rule {
        key,
        metric,
        limit,
        strict,
        latency_of,
    })
}

/// `--threshold KEY=VALUE` (or a rule's text) into `limits`.
pub fn apply_override(limits: &mut Limits, rule: &str) -> Result<(), String> {
    let Some((key, value)) = rule
        .split_once('=')
        .filter(|(k, _)| !k.ends_with(['<', '>']))
    else {
        parse_rule(rule, LatencyOf::Successes)?;
        limits.rules.push(rule.trim().to_string());
        return Ok(());
    };
    let (key, value) = (key.trim(), value.trim());
    let number = || {
        value
            .parse::<f64>()
            .map_err(|_| format!("{value:?} is not a number"))
    };
    match key {
        "error_rate_max" => limits.error_rate_max = Some(number()?),
        "p50_ms_max" => limits.p50_ms_max = Some(number()?),
        "p90_ms_max" => limits.p90_ms_max = Some(number()?),
        "p95_ms_max" => limits.p95_ms_max = Some(number()?),
        "p99_ms_max" => limits.p99_ms_max = Some(number()?),
        "p999_ms_max" => limits.p999_ms_max = Some(number()?),
        "max_ms_max" => limits.max_ms_max = Some(number()?),
        "rps_min" => limits.rps_min = Some(number()?),
        "late_rate_max" => limits.late_rate_max = Some(number()?),
        "dropped_max" => {
            limits.dropped_max = Some(
                value
                    .parse()
                    .map_err(|_| format!("{value:?} is not a whole number"))?,
            )
        }
        "latency_of" => {
            limits.latency_of = Some(match value {
                "successes" => LatencyOf::Successes,
                "all" => LatencyOf::All,
                _ => return Err(format!("{value:?}: \"successes\" or \"all\"")),
            })
        }
        _ => {
            return Err(format!(
                "KEY must be one of {}, or write a rule such as \"p99 < 2.5ms\"",
                KEYS[..KEYS.len() - 1].join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_as_people_write_them() {
        let r = parse_rule("p99 < 2.5ms", LatencyOf::Successes).unwrap();
        assert_eq!(
            (r.key, r.metric, r.limit, r.strict),
            ("p99_ms_max", Metric::Latency(0.99), 2.5, true)
        );
        assert!(r.kept(2.4) && !r.kept(2.5));
        let r = parse_rule("p99.9<=1s", LatencyOf::All).unwrap();
        assert_eq!(
            (r.key, r.limit, r.strict, r.latency_of),
            ("p999_ms_max", 1000.0, false, LatencyOf::All)
        );
        assert!(r.kept(1000.0));
        assert_eq!(
            parse_rule("error_rate < 1%", LatencyOf::Successes)
                .unwrap()
                .limit,
            0.01
        );
        let rps = parse_rule("rps >= 500", LatencyOf::Successes).unwrap();
        assert!(rps.kept(500.0) && !rps.kept(499.9));
        assert_eq!(
            parse_rule("max < 800us", LatencyOf::Successes)
                .unwrap()
                .limit,
            0.8
        );
        for (bad, says) in [
            ("p99 > 5ms", "a ceiling"),
            ("rps < 5", "a floor"),
            ("p98 < 5ms", "\"p98\" is not a metric"),
            ("p99 < soon", "a time such as"),
            ("p99 = 5", "expected METRIC < LIMIT"),
        ] {
            let e = parse_rule(bad, LatencyOf::Successes).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn overrides_take_keys_and_rules() {
        let mut l = Limits::default();
        apply_override(&mut l, "p99_ms_max=2.5").unwrap();
        apply_override(&mut l, "p90 < 1ms").unwrap();
        apply_override(&mut l, "rps >= 10").unwrap();
        assert_eq!(l.p99_ms_max, Some(2.5));
        assert_eq!(l.rules, vec!["p90 < 1ms", "rps >= 10"]);
        assert!(
            apply_override(&mut l, "p98_ms_max=1")
                .unwrap_err()
                .contains("KEY must be one of")
        );
    }

    #[test]
    fn a_gate_is_checked_against_the_run() {
        let path = Path::new("p.toml");
        let run = Duration::from_secs(20);
        let mut t = ThresholdsSection::default();
        t.all.rules = vec!["late_rate < 1%".into()];
        let e = check(&t, false, run, path).unwrap_err().to_string();
        assert!(
            e.contains("`thresholds.rules[0]` applies to the open model only"),
            "{e}"
        );
        assert_eq!(
            check(&t, true, run, path).unwrap().scopes[0].rules[0].limit,
            0.01
        );
        t.all.rules.clear();
        t.after = Some("30s".into());
        let e = check(&t, false, run, path).unwrap_err().to_string();
        assert!(e.contains("`thresholds.after` is 30s"), "{e}");
        t.after = Some("5s".into());
        t.delay = Some("2s".into());
        let e = check(&t, false, run, path).unwrap_err().to_string();
        assert!(
            e.contains("`thresholds.delay` only applies with abort_on_fail"),
            "{e}"
        );
        t.abort_on_fail = true;
        // The abort waits for the warm-up too.
        assert_eq!(
            check(&t, false, run, path).unwrap().abort_after,
            Some(Duration::from_secs(5))
        );
        t.all.error_rate_max = Some(2.0);
        let e = check(&t, false, run, path).unwrap_err().to_string();
        assert!(e.contains("`thresholds.error_rate_max` is 2"), "{e}");
    }
}

//! Property tests of the profile and layout parsers: whatever the text, each answers Ok
//! or an error, never a panic; and a shipped profile with one value made wrong (a wrong
//! type, an out-of-range number, an empty or huge value, an unknown key) is refused with
//! an error that names that key.
//!
//! Seeds are fixed and failure persistence is off (`failure_persistence: None`): CI runs
//! in a fresh clone, where a regressions file would be written and never read, and a
//! fixed seed makes every run try the same cases, so a red CI reproduces locally. A case
//! that once failed is kept as a plain #[test] at the end. To explore further, run with
//! `PROPTEST_RNG_SEED=<n>` (and `PROPTEST_CASES=<n>`).

use super::{load, scale, shards};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// Enough cases to reach every key of every seed a few times, few enough that the
/// whole file runs in seconds on 2 cores.
const CASES: u32 = 256;

fn config() -> ProptestConfig {
    let from_env = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            from_env.cases
        } else {
            CASES
        },
        rng_seed: match from_env.rng_seed {
            RngSeed::Random => RngSeed::Fixed(20_261_128),
            seed => seed,
        },
        failure_persistence: None,
        ..from_env
    }
}

const LOAD_SEEDS: &[(&str, &str)] = &[
    ("ci-gate", include_str!("../../profiles/ci-gate.toml")),
    (
        "open-checkout",
        include_str!("../../profiles/open-checkout.toml"),
    ),
    ("peak", include_str!("../../profiles/peak.toml")),
    (
        "retry-storm",
        include_str!("../../profiles/retry-storm.toml"),
    ),
    (
        "sharded-smoke",
        include_str!("../../profiles/sharded-smoke.toml"),
    ),
    ("smoke", include_str!("../../profiles/smoke.toml")),
    ("soak", include_str!("../../profiles/soak.toml")),
];

/// sharded-smoke reads this one from `shards/` beside it.
const LAYOUT_TWO: &str = include_str!("../../profiles/shards/two.toml");

const LAYOUT_SEEDS: &[(&str, &str)] = &[
    ("one", include_str!("../../profiles/shards/one.toml")),
    ("two", LAYOUT_TWO),
    ("three", include_str!("../../profiles/shards/three.toml")),
    ("four", include_str!("../../profiles/shards/four.toml")),
];

const SCALE_SEEDS: &[(&str, &str)] = &[
    (
        "payment-api-group",
        include_str!("../../profiles/scale/payment-api-group.toml"),
    ),
    (
        "payment-api-autoscaled",
        include_str!("../../profiles/scale/payment-api-autoscaled.toml"),
    ),
];

/// The parsers read files: each case gets its own directory (the tests run in parallel),
/// with the layout a load profile may name.
fn write_case(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("shards")).unwrap();
    std::fs::write(dir.path().join("shards/two.toml"), LAYOUT_TWO).unwrap();
    let path = dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

fn load_profile(bytes: &[u8]) -> Result<(), String> {
    let (_dir, path) = write_case("fuzz", bytes);
    load::load(&path, &load::Overrides::default())
        .map(drop)
        .map_err(|e| e.to_string())
}

fn load_scale(bytes: &[u8]) -> Result<(), String> {
    let (_dir, path) = write_case("fuzz", bytes);
    scale::load(&path).map(drop).map_err(|e| e.to_string())
}

/// Layouts are also read from text (the one the shards record); no variable is set, so
/// each URL is its default.
fn load_layout(text: &str) -> Result<(), String> {
    shards::from_text(Path::new("fuzz.toml"), text, &|_| None)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A key's place in a document, as the parsers' messages write it: `load.users`,
/// `policies[1].target`.
#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

fn show(path: &[Seg]) -> String {
    show_labelled(path, None)
}

/// `show`, with each entry of an array of tables that has a name labelled by it, as the
/// thresholds' checks write them: `thresholds.request[0] (POST /v1/payments).p99_ms_max`.
fn show_labelled(path: &[Seg], doc: Option<&Table>) -> String {
    let mut out = String::new();
    for (n, seg) in path.iter().enumerate() {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => {
                out.push_str(&format!("[{i}]"));
                let entry = doc.map(|d| table_at(&mut d.clone(), &path[..=n]).clone());
                if let Some(Value::String(name)) = entry.as_ref().and_then(|t| t.get("name")) {
                    out.push_str(&format!(" ({name})"));
                }
            }
        }
    }
    out
}

/// Every value that is not a table (arrays of tables are walked into), and every table,
/// with their paths.
fn walk(table: &Table, at: Vec<Seg>, leaves: &mut Vec<Vec<Seg>>, tables: &mut Vec<Vec<Seg>>) {
    tables.push(at.clone());
    for (key, value) in table {
        let mut here = at.clone();
        here.push(Seg::Key(key.clone()));
        match value {
            Value::Table(t) => walk(t, here, leaves, tables),
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_table) => {
                for (i, item) in items.iter().enumerate() {
                    let mut at_i = here.clone();
                    at_i.push(Seg::Index(i));
                    walk(item.as_table().unwrap(), at_i, leaves, tables);
                }
            }
            _ => leaves.push(here),
        }
    }
}

fn table_at<'a>(doc: &'a mut Table, path: &[Seg]) -> &'a mut Table {
    fn value_at<'a>(v: &'a mut Value, path: &[Seg]) -> &'a mut Value {
        match path.split_first() {
            None => v,
            Some((Seg::Key(k), rest)) => value_at(v.get_mut(k.as_str()).unwrap(), rest),
            Some((Seg::Index(i), rest)) => value_at(v.get_mut(*i).unwrap(), rest),
        }
    }
    match path.split_first() {
        None => doc,
        Some((Seg::Key(k), rest)) => value_at(doc.get_mut(k).unwrap(), rest)
            .as_table_mut()
            .unwrap(),
        Some((Seg::Index(_), _)) => unreachable!("a document is a table"),
    }
}

/// What one mutation did: the key at fault and the text to parse.
#[derive(Debug)]
struct Mutated {
    key: String,
    /// `key` as the thresholds' checks write it.
    labelled: String,
    leaf: String,
    /// The keys of a table written as the value: one of them may be the one at fault
    /// (`[merchants.skew] a = 0` is an unknown variant `a`).
    inner: Vec<String>,
    text: String,
}

/// Set one leaf of `seed` to `value`, or (`unknown`) add a key it does not have to one of
/// its tables.
fn mutate(seed: &str, pick: prop::sample::Index, unknown: Option<String>, wrong: Wrong) -> Mutated {
    let mut doc: Table = toml::from_str(seed).unwrap();
    let (mut leaves, mut tables) = (Vec::new(), Vec::new());
    walk(&doc, Vec::new(), &mut leaves, &mut tables);
    let mut path = match &unknown {
        Some(_) => pick.get(&tables).clone(),
        None => pick.get(&leaves).clone(),
    };
    let leaf = match unknown {
        Some(name) => {
            let name = if table_at(&mut doc, &path).contains_key(&name) {
                format!("{name}_unknown")
            } else {
                name
            };
            path.push(Seg::Key(name.clone()));
            name
        }
        None => match path.last() {
            Some(Seg::Key(k)) => k.clone(),
            _ => unreachable!("a leaf is a key"),
        },
    };
    let (parent, _) = path.split_at(path.len() - 1);
    let value = match (wrong.same_type, table_at(&mut doc, parent).get(&leaf)) {
        (true, Some(Value::Integer(_))) => Value::Integer(wrong.int),
        (true, Some(Value::Float(_))) => Value::Float(wrong.float),
        (true, Some(Value::String(_))) => Value::String(wrong.string),
        (true, Some(Value::Array(_))) => Value::Array(vec![Value::String(wrong.string)]),
        _ => wrong.other,
    };
    let inner = value
        .as_table()
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    table_at(&mut doc, parent).insert(leaf.clone(), value);
    Mutated {
        key: show(&path),
        labelled: show_labelled(&path, Some(&doc)),
        leaf,
        inner,
        text: toml::to_string(&doc).unwrap(),
    }
}

/// Whether an error names `m.key` in one of the forms the parsers write: the checks'
/// `` `load.users` is 0: ... `` (the key in full), serde's `` unknown field `x` `` (the
/// key's own name), or toml's snippet of the line at fault (`12 | users = "x"`, or the
/// `[load.users]` header a table written there becomes).
fn names_key(err: &str, m: &Mutated) -> bool {
    // A cross-entry check (a gap between `ranges`) names the array of tables.
    let array = m.key.rfind('[').map(|i| format!("`{}`", &m.key[..i]));
    err.contains(&m.key)
        || err.contains(&m.labelled)
        || array.is_some_and(|a| err.contains(&a))
        || std::iter::once(&m.leaf).chain(&m.inner).any(|leaf| {
            err.contains(&format!("`{leaf}`"))
                || err.lines().any(|line| {
                    line.split_once(" | ").is_some_and(|(n, code)| {
                        n.trim().parse::<usize>().is_ok() && line_names(code, leaf)
                    })
                })
        })
}

/// Whether a line of TOML (`key = value` or a `[table.key]` header) ends at `leaf`: read
/// as TOML, so that a quoted key counts as the key it spells.
fn line_names(code: &str, leaf: &str) -> bool {
    let Ok(mut table) = toml::from_str::<Table>(code) else {
        return false;
    };
    loop {
        let Some((key, value)) = table.into_iter().next() else {
            return false;
        };
        match value {
            Value::Table(inner) if !inner.is_empty() => table = inner,
            _ => return key == leaf,
        }
    }
}

fn small_table() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z]{1,6}", any::<i64>().prop_map(Value::Integer), 0..3)
        .prop_map(|m| Value::Table(m.into_iter().collect()))
}

/// Values a hand (or a template) gets wrong: another type, or the same type with a
/// number at or past a bound, empty, huge, or text that looks almost right.
#[derive(Clone, Debug)]
struct Wrong {
    /// Keep the key's type (so that the checks after parsing are reached), or use `other`.
    same_type: bool,
    int: i64,
    float: f64,
    string: String,
    other: Value,
}

fn ints() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(-1),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(i64::from(i32::MAX) + 1),
        Just(i64::from(u32::MAX) + 1),
        -10i64..2000,
        any::<i64>(),
    ]
}

fn floats() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-0.5),
        Just(1e300),
        any::<f64>()
    ]
}

fn strings() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("x".repeat(5000)),
        Just("${".into()),
        "[0-9]{1,25}(ns|ms|s|m|h|d|w|y|/s)?",
        "[0-9]{1,5}-[0-9]{1,5}",
        any::<String>(),
    ]
}

fn wrong() -> impl Strategy<Value = Wrong> {
    let other = prop_oneof![
        any::<bool>().prop_map(Value::Boolean),
        ints().prop_map(Value::Integer),
        floats().prop_map(Value::Float),
        strings().prop_map(Value::String),
        Just(Value::Array(Vec::new())),
        prop::collection::vec(any::<i64>().prop_map(Value::Integer), 1..3).prop_map(Value::Array),
        small_table(),
    ];
    (any::<bool>(), ints(), floats(), strings(), other).prop_map(
        |(same_type, int, float, string, other)| Wrong {
            same_type,
            int,
            float,
            string,
            other,
        },
    )
}

/// One of `seeds` with one value made wrong, or a key added.
fn mutation(
    seeds: &'static [(&'static str, &'static str)],
) -> impl Strategy<Value = (&'static str, Mutated)> {
    (
        prop::sample::select(seeds),
        any::<prop::sample::Index>(),
        unknown_key(),
        wrong(),
    )
        .prop_map(|((name, seed), pick, unknown, wrong)| (name, mutate(seed, pick, unknown, wrong)))
}

/// A mutated seed parses, or its error names the key.
fn refused_naming(
    seed: &str,
    m: &Mutated,
    parsed: Result<(), String>,
) -> Result<(), TestCaseError> {
    if let Err(e) = parsed {
        prop_assert!(
            names_key(&e, m),
            "{} of {seed}: {e}\n---\n{}",
            m.key,
            m.text
        );
    }
    Ok(())
}

/// An added key: a plain name or anything.
fn unknown_key() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        1 => "[a-z_]{1,12}".prop_map(Some),
        1 => any::<String>().prop_map(Some),
    ]
}

/// A seed with a piece cut out and something else put in: text that is almost TOML.
fn splice(seeds: &'static [(&'static str, &'static str)]) -> impl Strategy<Value = String> {
    (
        prop::sample::select(seeds),
        any::<prop::sample::Index>(),
        0usize..40,
        any::<String>(),
    )
        .prop_map(|((_, seed), at, cut, junk)| {
            let chars: Vec<char> = seed.chars().collect();
            let start = at.index(chars.len());
            let end = (start + cut).min(chars.len());
            let mut out: String = chars[..start].iter().collect();
            out.push_str(&junk);
            out.extend(&chars[end..]);
            out
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn load_profiles_never_panic(text in any::<String>(), bytes in any::<Vec<u8>>(),
                                 spliced in splice(LOAD_SEEDS)) {
        let _ = load_profile(text.as_bytes());
        let _ = load_profile(&bytes);
        let _ = load_profile(spliced.as_bytes());
    }

    #[test]
    fn scale_profiles_never_panic(text in any::<String>(), bytes in any::<Vec<u8>>(),
                                  spliced in splice(SCALE_SEEDS)) {
        let _ = load_scale(text.as_bytes());
        let _ = load_scale(&bytes);
        let _ = load_scale(spliced.as_bytes());
    }

    #[test]
    fn layouts_never_panic(text in any::<String>(), spliced in splice(LAYOUT_SEEDS)) {
        let _ = load_layout(&text);
        let _ = load_layout(&spliced);
    }

    #[test]
    fn a_wrong_load_value_is_refused_naming_its_key((seed, m) in mutation(LOAD_SEEDS)) {
        refused_naming(seed, &m, load_profile(m.text.as_bytes()))?;
    }

    #[test]
    fn a_wrong_scale_value_is_refused_naming_its_key((seed, m) in mutation(SCALE_SEEDS)) {
        refused_naming(seed, &m, load_scale(m.text.as_bytes()))?;
    }

    #[test]
    fn a_wrong_layout_value_is_refused_naming_its_key((seed, m) in mutation(LAYOUT_SEEDS)) {
        refused_naming(seed, &m, load_layout(&m.text))?;
    }

    /// Goose's "users,time;users,time" with any numbers and units, huge ones included.
    #[test]
    fn any_test_plan_is_checked_naming_its_key(
        steps in prop::collection::vec(
            (prop_oneof![0u64..50, any::<u64>()],
             prop_oneof![0u64..100, any::<u64>()],
             prop::sample::select(vec!["ns", "ms", "s", "m", "h", "d", "w", "y", ""])),
            0..5),
    ) {
        let plan: Vec<String> = steps.iter().map(|(u, n, unit)| format!("{u},{n}{unit}")).collect();
        let soak = LOAD_SEEDS.iter().find(|(name, _)| *name == "soak").unwrap().1;
        let text = soak.replace("\"32,1m;32,30m;0,30s\"", &format!("{:?}", plan.join(";")));
        if let Err(e) = load_profile(text.as_bytes()) {
            prop_assert!(e.contains("`load.test_plan`") || e.contains("`load.users`"), "{e}");
        }
    }
}

// Cases the properties found, kept as they were found.

#[test]
fn a_test_plan_of_huge_steps_is_refused_not_overflowed() {
    let soak = LOAD_SEEDS
        .iter()
        .find(|(name, _)| *name == "soak")
        .unwrap()
        .1;
    let text = soak.replace(
        "\"32,1m;32,30m;0,30s\"",
        "\"1,18446744073709551615s;1,18446744073709551615s\"",
    );
    let err = load_profile(text.as_bytes()).unwrap_err();
    assert!(
        err.contains("`load.test_plan` must total at most 24h"),
        "{err}"
    );
}

#[test]
fn a_wrong_type_in_thresholds_names_the_key() {
    let smoke = LOAD_SEEDS
        .iter()
        .find(|(name, _)| *name == "smoke")
        .unwrap()
        .1;
    for (from, to, key) in [
        ("p99_ms_max = 1000", "p99_ms_max = \"1s\"", "`p99_ms_max`"),
        (
            "error_rate_max = 0.0\n",
            "error_rate_max = false\n",
            "`error_rate_max`",
        ),
    ] {
        let err = load_profile(smoke.replace(from, to).as_bytes()).unwrap_err();
        assert!(err.contains(key), "{err}");
    }
}

#[test]
fn a_desired_size_outside_the_bounds_names_them() {
    let text = SCALE_SEEDS[0].1.replace("max = 10", "max = 1");
    let err = load_scale(text.as_bytes()).unwrap_err();
    assert!(err.contains("[group.min 1, group.max 1]"), "{err}");
}

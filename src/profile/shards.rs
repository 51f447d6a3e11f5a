//! Shard layouts (profiles/shards/*.toml): named PostgreSQL shards and the bucket ranges
//! each owns, as Vitess maps keyspace-id ranges and Citus shard groups. `LayoutFile` is
//! the file as written; `Layout` is it checked: every one of the fixed buckets owned by
//! exactly one known shard. A bad layout is refused here, before anything changes.

use super::ProfileError;
use crate::ids::BUCKETS;
use crate::secrets::DbUrl;
pub use crate::store::layout::{Layout, Range, Shard};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// Most shards a layout may name: enough for any single deployment we test, small
/// enough that a fan-out over all shards (audit, status) stays cheap.
pub const LAYOUT_SHARDS_MAX: usize = 256;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutFile {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Bumped by whoever edits the layout; recorded in every shard by `shard apply`.
    pub version: u64,
    /// Logical buckets; fixed at 1,024 (changing it would move every merchant).
    pub buckets: u32,
    pub shards: BTreeMap<String, ShardSection>,
    /// Which shard owns which buckets.
    #[serde(rename = "ranges")]
    pub ranges: Vec<RangeSection>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSection {
    /// A PostgreSQL URL; `${VAR}` and `${VAR:-default}` are read from the environment.
    pub url: String,
    /// Read replicas (hot standbys) of this shard, URLs as `url`.
    #[serde(default)]
    pub replicas: Vec<String>,
}

/// Most read replicas one shard may list.
pub const REPLICAS_MAX: usize = 4;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RangeSection {
    /// Inclusive, "0-511", or one bucket, "7".
    pub buckets: String,
    pub shard: String,
}

/// Read and check a layout, reading `${VAR}`s from the process environment.
pub fn load(path: &Path) -> Result<Layout, ProfileError> {
    load_with(path, &|var| std::env::var(var).ok())
}

/// Read and check a layout, reading `${VAR}`s through `env` (paytool passes the URLs of
/// PostgreSQL servers it spawned this way).
pub fn load_with(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Layout, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    from_text(path, &text, env)
}

/// Read and check the layout text the shards record (`shard apply`, `shard move`), as an
/// API instance does to follow a move.
pub fn from_recorded(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Layout, String> {
    from_text(Path::new("(the layout recorded in the shards)"), text, env)
        .map_err(|e| e.to_string())
}

/// Read and check a layout from its text; `origin` names it in errors (a file, or the
/// shards that recorded it).
pub fn from_text(
    origin: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Layout, ProfileError> {
    let file: LayoutFile = toml::from_str(text).map_err(|e| ProfileError::Parse {
        path: origin.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let mut layout = check(origin, file, env)?;
    layout.text = text.to_string();
    Ok(layout)
}

fn invalid(path: &Path, key: &str, message: impl Into<String>) -> ProfileError {
    ProfileError::Invalid {
        path: path.to_path_buf(),
        key: key.to_string(),
        message: message.into(),
    }
}

pub fn check(
    path: &Path,
    file: LayoutFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Layout, ProfileError> {
    if file.buckets != u32::from(BUCKETS) {
        return Err(invalid(
            path,
            "buckets",
            format!(
                "is {}, but the bucket count is fixed at {BUCKETS}: changing it would move every merchant",
                file.buckets
            ),
        ));
    }
    if file.shards.is_empty() || file.shards.len() > LAYOUT_SHARDS_MAX {
        return Err(invalid(
            path,
            "shards",
            format!(
                "names {} shards; a layout names 1 to {LAYOUT_SHARDS_MAX}",
                file.shards.len()
            ),
        ));
    }
    let mut shards = Vec::with_capacity(file.shards.len());
    for (name, section) in &file.shards {
        let key = format!("shards.{name}.url");
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid(
                path,
                &format!("shards.{name}"),
                "a shard name is letters, digits, _ and -",
            ));
        }
        let url = interpolate(&section.url, env).map_err(|m| invalid(path, &key, m))?;
        let url = DbUrl::parse(&url).map_err(|m| invalid(path, &key, m))?;
        if section.replicas.len() > REPLICAS_MAX {
            return Err(invalid(
                path,
                &format!("shards.{name}.replicas"),
                format!(
                    "lists {}: at most {REPLICAS_MAX} a shard",
                    section.replicas.len()
                ),
            ));
        }
        let mut replicas = Vec::with_capacity(section.replicas.len());
        for (i, r) in section.replicas.iter().enumerate() {
            let key = format!("shards.{name}.replicas[{i}]");
            let r = interpolate(r, env).map_err(|m| invalid(path, &key, m))?;
            replicas.push(DbUrl::parse(&r).map_err(|m| invalid(path, &key, m))?);
        }
        shards.push(Shard {
            name: name.clone(),
            url,
            replicas,
        });
    }
    let mut ranges = Vec::with_capacity(file.ranges.len());
    for (i, r) in file.ranges.iter().enumerate() {
        let key = format!("ranges[{i}]");
        let shard = shards
            .iter()
            .position(|s| s.name == r.shard)
            .ok_or_else(|| {
                let known: Vec<&str> = shards.iter().map(|s| s.name.as_str()).collect();
                invalid(
                    path,
                    &format!("{key}.shard"),
                    format!(
                        "names {:?}, which is not a shard; known: {}",
                        r.shard,
                        known.join(", ")
                    ),
                )
            })?;
        let (first, last) =
            parse_range(&r.buckets).map_err(|m| invalid(path, &format!("{key}.buckets"), m))?;
        ranges.push(Range { first, last, shard });
    }
    ranges.sort_by_key(|r| r.first);
    let mut next = 0u32;
    for r in &ranges {
        let shown = format!("buckets {}-{}", r.first, r.last);
        match u32::from(r.first).cmp(&next) {
            std::cmp::Ordering::Greater => {
                return Err(invalid(
                    path,
                    "ranges",
                    format!(
                        "leave buckets {next}-{} without a shard (a gap before {shown})",
                        r.first - 1
                    ),
                ));
            }
            std::cmp::Ordering::Less => {
                return Err(invalid(
                    path,
                    "ranges",
                    format!(
                        "overlap: {shown} starts inside a range that already covers up to {}",
                        next - 1
                    ),
                ));
            }
            std::cmp::Ordering::Equal => next = u32::from(r.last) + 1,
        }
    }
    if next != u32::from(BUCKETS) {
        return Err(invalid(
            path,
            "ranges",
            format!(
                "leave buckets {next}-{} without a shard (a gap at the end)",
                BUCKETS - 1
            ),
        ));
    }
    for (i, s) in shards.iter().enumerate() {
        if !ranges.iter().any(|r| r.shard == i) {
            return Err(invalid(
                path,
                &format!("shards.{}", s.name),
                "owns no buckets: give it a range or remove it",
            ));
        }
    }
    // Adjacent ranges of one shard are one range.
    let mut merged: Vec<Range> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(m) if m.shard == r.shard && m.last + 1 == r.first => m.last = r.last,
            _ => merged.push(r),
        }
    }
    let digest = digest(&shards, &merged);
    Ok(Layout {
        name: file.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default()
        }),
        source: path.to_path_buf(),
        version: file.version,
        shards,
        ranges: merged,
        text: String::new(),
        digest,
    })
}

fn digest(shards: &[Shard], ranges: &[Range]) -> String {
    let mut h = Sha256::new();
    for r in ranges {
        h.update(format!("{}-{}={};", r.first, r.last, shards[r.shard].name));
    }
    hex::encode(h.finalize())
}

fn parse_range(text: &str) -> Result<(u16, u16), String> {
    let bucket = |s: &str| -> Result<u16, String> {
        let n: u32 = s
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a bucket range like \"0-511\""))?;
        if n >= u32::from(BUCKETS) {
            return Err(format!(
                "bucket {n} is out of range: buckets are 0 to {}",
                BUCKETS - 1
            ));
        }
        Ok(n as u16)
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (bucket(a)?, bucket(b)?),
        None => {
            let b = bucket(text)?;
            (b, b)
        }
    };
    if first > last {
        return Err(format!("{text:?} runs backwards"));
    }
    Ok((first, last))
}

/// `${VAR}` and `${VAR:-default}`, as a shell does; a missing variable without a
/// default is an error naming it.
pub fn interpolate(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("has an unclosed ${{ in {text:?}"))?;
        let inner = &after[..end];
        let (var, default) = match inner.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (inner, None),
        };
        if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "has ${{{inner}}}, which is not an environment variable name"
            ));
        }
        match (env(var), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "needs the environment variable {var}, which is not set"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(text: &str) -> Result<Layout, String> {
        let file: LayoutFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let env =
            |v: &str| (v == "PG_A").then(|| "postgres://u:hunter2@127.0.0.1:5432/a".to_string());
        check(Path::new("l.toml"), file, &env).map_err(|e| e.to_string())
    }

    const SHARDS: &str = r#"
version = 1
buckets = 1024
[shards.a]
url = "${PG_A}"
[shards.b]
url = "${PG_B:-postgres://127.0.0.1:5433/b}"
"#;

    fn with(ranges: &[(&str, &str)]) -> String {
        let mut t = SHARDS.to_string();
        for (b, s) in ranges {
            t.push_str(&format!("[[ranges]]\nbuckets = \"{b}\"\nshard = \"{s}\"\n"));
        }
        t
    }

    #[test]
    fn a_good_layout_maps_every_bucket() {
        let l = layout(&with(&[("512-1023", "b"), ("0-511", "a")])).unwrap();
        assert_eq!(
            (l.owner(0), l.owner(511), l.owner(512), l.owner(1023)),
            (0, 0, 1, 1)
        );
        assert_eq!(l.shards[1].url.redacted(), "postgres://127.0.0.1:5433/b");
        assert!(
            !format!("{l:?}").contains("hunter2"),
            "the password leaked into Debug"
        );
        // The digest follows the bucket map, not the URLs or the order written.
        let again = layout(&with(&[
            ("0-255", "a"),
            ("256-511", "a"),
            ("512-1023", "b"),
        ]))
        .unwrap();
        assert_eq!(l.digest, again.digest);
        let moved = layout(&with(&[("0-510", "a"), ("511-1023", "b")])).unwrap();
        assert_ne!(l.digest, moved.digest);
    }

    #[test]
    fn bad_layouts_are_refused_naming_the_problem() {
        let cases = [
            (
                with(&[("0-500", "a"), ("512-1023", "b")]),
                "`ranges` leave buckets 501-511 without a shard",
            ),
            (
                with(&[("0-511", "a"), ("500-1023", "b")]),
                "`ranges` overlap: buckets 500-1023",
            ),
            (
                with(&[("0-511", "a"), ("512-1000", "b")]),
                "buckets 1001-1023 without a shard (a gap at the end)",
            ),
            (
                with(&[("0-511", "a"), ("512-1023", "c")]),
                "`ranges[1].shard` names \"c\", which is not a shard; known: a, b",
            ),
            (with(&[("0-1023", "a")]), "`shards.b` owns no buckets"),
            (with(&[("0-1024", "a")]), "bucket 1024 is out of range"),
            (with(&[("9-3", "a")]), "runs backwards"),
            (
                with(&[("0-511", "a"), ("512-1023", "b")]).replace("1024", "2048"),
                "`buckets` is 2048, but the bucket count is fixed at 1024",
            ),
            (
                with(&[("0-511", "a"), ("512-1023", "b")]).replace("${PG_A}", "${PG_NOPE}"),
                "`shards.a.url` needs the environment variable PG_NOPE",
            ),
            (
                with(&[("0-511", "a"), ("512-1023", "b")]).replace("${PG_A}", "mysql://x"),
                "`shards.a.url`",
            ),
            (
                with(&[("0-511", "a"), ("512-1023", "b")])
                    .replace("url = \"${PG_A}\"", "url = \"${PG_A}\"\nreplicas = [\"${PG_A}\", \"x\"]"),
                "`shards.a.replicas[1]`",
            ),
            (
                with(&[("0-511", "a"), ("512-1023", "b")]).replace(
                    "url = \"${PG_A}\"",
                    "url = \"${PG_A}\"\nreplicas = [\"${PG_A}\", \"${PG_A}\", \"${PG_A}\", \"${PG_A}\", \"${PG_A}\"]",
                ),
                "`shards.a.replicas` lists 5: at most 4",
            ),
        ];
        for (text, want) in cases {
            let err = layout(&text).unwrap_err();
            assert!(err.contains(want), "wanted {want:?} in {err:?}");
            assert!(err.contains("l.toml"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn interpolation_reads_variables_and_defaults() {
        let env = |v: &str| (v == "X").then(|| "1".to_string());
        assert_eq!(interpolate("a${X}b${Y:-2}c", &env).unwrap(), "a1b2c");
        assert!(interpolate("${Y}", &env).unwrap_err().contains("Y"));
        assert!(interpolate("${X", &env).is_err());
    }

    #[test]
    fn the_shipped_layouts_are_good() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/shards");
        for (name, shards) in [("one", 1), ("two", 2), ("three", 3), ("four", 4)] {
            let l = load_with(&dir.join(format!("{name}.toml")), &|_| None).unwrap();
            assert_eq!((l.name.as_str(), l.shards.len()), (name, shards));
            let sizes: Vec<u32> = l
                .ranges
                .iter()
                .map(|r| u32::from(r.last - r.first) + 1)
                .collect();
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                "{sizes:?}"
            );
        }
    }
}

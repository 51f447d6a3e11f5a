//! A load profile's sharded target: `[target] layout = "shards/two.toml"`, `instances`,
//! and where the shards' PostgreSQL comes from. Checked when the profile is read, so a
//! bad layout (or a layout `spawn` could not point at its own servers) exits 2 before
//! any server starts.

use super::shards::{self, Layout, LayoutFile};
use super::{ProfileError, read_toml};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Most API instances a load test spawns on one layout: enough to show that requests
/// spread over instances work, few enough that their connection pools stay well under
/// a spawned PostgreSQL's connection limit.
pub const INSTANCES_MAX: usize = 16;

/// Where a layout's PostgreSQL servers come from.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PostgresMode {
    /// The layout's URLs as they resolve from the environment; the shards must already
    /// be set up with `paytool shard apply` (a load test never migrates a database it
    /// did not create).
    #[default]
    Existing,
    /// One throwaway server per shard under the run dir, each shard's
    /// `${PAYTOOL_SHARD_<NAME>_URL}` pointed at its own, stopped when the run ends.
    Spawn,
}

impl PostgresMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PostgresMode::Existing => "existing",
            PostgresMode::Spawn => "spawn",
        }
    }
}

/// A checked layout target.
#[derive(Clone, Debug)]
pub struct LayoutTarget {
    /// The layout file, absolute (a relative `layout` is read from the profile's directory).
    pub path: PathBuf,
    pub postgres: PostgresMode,
    /// The file's text: resolved again with the spawned servers' URLs, and recorded in
    /// the shards.
    text: String,
    /// Shard names, in the layout's order.
    pub shards: Vec<String>,
    /// The layout's name.
    pub name: String,
    /// Synchronous standbys to clone for each spawned shard (`target.replicas`).
    pub replicas: usize,
}

/// The variable a shard's URL is read from: `PAYTOOL_SHARD_S0_URL` for shard `s0`, as
/// the shipped layouts write it.
pub fn shard_url_var(shard: &str) -> String {
    format!(
        "PAYTOOL_SHARD_{}_URL",
        shard.to_ascii_uppercase().replace('-', "_")
    )
}

/// Stands in for a spawned server's URL while the profile is checked.
const PLACEHOLDER_URL: &str = "postgres://postgres@127.0.0.1:1/paytool";

impl LayoutTarget {
    /// Read and check `layout` (relative to `profile`'s directory). `key` names it in errors.
    pub fn load(
        profile: &Path,
        key: &str,
        layout: &Path,
        postgres: PostgresMode,
    ) -> Result<LayoutTarget, ProfileError> {
        let relative = profile.parent().unwrap_or(Path::new("")).join(layout);
        let path = std::path::absolute(&relative).unwrap_or(relative);
        if !path.is_file() {
            return Err(ProfileError::Invalid {
                path: profile.to_path_buf(),
                key: key.to_string(),
                message: format!(
                    "is {:?}: no such file ({}); a layout is read from the profile's directory",
                    layout.display(),
                    path.display()
                ),
            });
        }
        let file: LayoutFile = read_toml(&path)?;
        let text = std::fs::read_to_string(&path).map_err(|source| ProfileError::Read {
            path: path.clone(),
            source,
        })?;
        if postgres == PostgresMode::Spawn {
            spawn_can_point(&path, &file)?;
        }
        let target = LayoutTarget {
            path,
            postgres,
            shards: file.shards.keys().cloned().collect(),
            name: String::new(),
            text,
            replicas: 0,
        };
        // Checked now with what the run will use (placeholders for spawned servers).
        let checked = match postgres {
            PostgresMode::Existing => target.resolve_from_env()?,
            PostgresMode::Spawn => {
                target.resolve_spawned(&vec![PLACEHOLDER_URL.to_string(); target.shards.len()])?
            }
        };
        Ok(LayoutTarget {
            name: checked.name,
            ..target
        })
    }

    /// The layout with each shard's URL from the process environment.
    pub fn resolve_from_env(&self) -> Result<Layout, ProfileError> {
        shards::from_text(&self.path, &self.text, &|var| std::env::var(var).ok())
    }

    /// The layout with shard `i`'s URL `urls[i]` (in `shards`' order). Nothing else is
    /// read from the environment: a spawned run is hermetic.
    pub fn resolve_spawned(&self, urls: &[String]) -> Result<Layout, ProfileError> {
        assert_eq!(urls.len(), self.shards.len(), "one URL per shard");
        let env = |var: &str| {
            self.shards
                .iter()
                .position(|s| shard_url_var(s) == var)
                .map(|i| urls[i].clone())
        };
        shards::from_text(&self.path, &self.text, &env)
    }
}

/// `spawn` points `${PAYTOOL_SHARD_<NAME>_URL}` at each shard's server, so each shard's
/// URL must be exactly that variable (a default is fine): a URL written out would send
/// the load test to a real database instead.
fn spawn_can_point(path: &Path, file: &LayoutFile) -> Result<(), ProfileError> {
    const MARK: &str = "\u{1}spawned\u{1}";
    for (name, section) in &file.shards {
        let var = shard_url_var(name);
        let resolved = shards::interpolate(&section.url, &|v| (v == var).then(|| MARK.into()));
        if resolved.as_deref() != Ok(MARK) {
            return Err(ProfileError::Invalid {
                path: path.to_path_buf(),
                key: format!("shards.{name}.url"),
                message: format!(
                    "must be \"${{{var}}}\" (a default may follow :-) for a profile with postgres = \"spawn\", which points that variable at the server it starts"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const LAYOUT: &str = r#"
version = 1
buckets = 1024
[shards.s0]
url = "${PAYTOOL_SHARD_S0_URL:-postgres://postgres@127.0.0.1:5432/a}"
[shards.hot-1]
url = "${PAYTOOL_SHARD_HOT_1_URL}"
[[ranges]]
buckets = "0-511"
shard = "s0"
[[ranges]]
buckets = "512-1023"
shard = "hot-1"
"#;

    #[test]
    fn spawn_points_each_shard_at_its_own_server() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "l.toml", LAYOUT);
        let profile = dir.path().join("p.toml");
        let t = LayoutTarget::load(
            &profile,
            "target.layout",
            Path::new("l.toml"),
            PostgresMode::Spawn,
        )
        .unwrap();
        assert_eq!(t.name, "l");
        assert_eq!(t.shards, ["hot-1", "s0"]);
        let l = t
            .resolve_spawned(&[
                "postgres://x@127.0.0.1:7/h".into(),
                "postgres://x@127.0.0.1:8/s".into(),
            ])
            .unwrap();
        let urls: Vec<(&str, &str)> = l
            .shards
            .iter()
            .map(|s| (s.name.as_str(), s.url.expose()))
            .collect();
        assert!(
            urls.contains(&("hot-1", "postgres://x@127.0.0.1:7/h")),
            "{urls:?}"
        );
        assert!(
            urls.contains(&("s0", "postgres://x@127.0.0.1:8/s")),
            "{urls:?}"
        );
    }

    #[test]
    fn bad_layout_targets_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("p.toml");
        let written_out = LAYOUT.replace("${PAYTOOL_SHARD_HOT_1_URL}", "postgres://prod/db");
        write(dir.path(), "out.toml", &written_out);
        let cases = [
            (
                "missing.toml",
                PostgresMode::Spawn,
                "`target.layout` is \"missing.toml\": no such file",
            ),
            (
                "out.toml",
                PostgresMode::Spawn,
                "`shards.hot-1.url` must be \"${PAYTOOL_SHARD_HOT_1_URL}\"",
            ),
        ];
        for (file, mode, want) in cases {
            let err = LayoutTarget::load(&profile, "target.layout", Path::new(file), mode)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "wanted {want:?} in {err:?}");
        }
        assert_eq!(shard_url_var("hot-1"), "PAYTOOL_SHARD_HOT_1_URL");
    }
}

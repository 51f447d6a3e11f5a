//! The PostgreSQL side of a layout target: with `postgres = "spawn"`, one throwaway
//! server per shard under the run dir, each with the shard's database, and the layout
//! applied to them; with `"existing"`, the layout's URLs as the environment resolves
//! them, used as they are (their shards were set up with `paytool shard apply`).

use super::LoadtestError;
use crate::profile::layout_target::{LayoutTarget, PostgresMode};
use crate::services::postgres::{LocalPostgres, Settings};
use crate::store::layout::Layout;
use crate::store::postgres::{LayoutParser, layout_ops};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Each spawned server holds one shard, in a database of this name.
const SPAWNED_DATABASE: &str = "paytool";

/// A layout ready for the API instances, and the servers started for it (stopped when
/// dropped; stop them after the instances).
pub struct Shards {
    pub layout: Layout,
    /// How the instances read the layout the shards record when a `shard move` grows it:
    /// with the same environment the run's layout was resolved with.
    pub follow: LayoutParser,
    pub servers: Vec<LocalPostgres>,
    /// Each spawned shard's standbys (`target.replicas`), in `servers`' order.
    pub standbys: Vec<Vec<LocalPostgres>>,
    /// Where the spawned servers keep their files, if any were spawned.
    pub dir: Option<PathBuf>,
    /// The layout file, and the shard URL variables it is resolved with (the spawned
    /// servers'; none for `existing`, which reads the environment): what an instance
    /// run as a process opens.
    pub file: PathBuf,
    pub env: Vec<(String, String)>,
}

/// Resolve `target` into a layout the API can open, spawning servers under `dir` when
/// the profile asks for them.
pub async fn prepare(target: &LayoutTarget, dir: &Path) -> Result<Shards, LoadtestError> {
    if target.postgres == PostgresMode::Existing {
        let layout = target
            .resolve_from_env()
            .map_err(|e| LoadtestError::Config(e.to_string()))?;
        return Ok(Shards {
            layout,
            follow: LayoutParser(Arc::new(|text| {
                crate::profile::shards::from_recorded(text, &|var| std::env::var(var).ok())
            })),
            servers: Vec::new(),
            standbys: Vec::new(),
            dir: None,
            file: target.path.clone(),
            env: Vec::new(),
        });
    }
    // initdb and start take a second or two each: start every shard's server at once.
    let mut starting = tokio::task::JoinSet::new();
    for (i, name) in target.shards.iter().enumerate() {
        let root = dir.join(name);
        let name = name.clone();
        starting.spawn_blocking(move || {
            let server = LocalPostgres::start(&root, &Settings::default())
                .and_then(|s| s.create_database(SPAWNED_DATABASE).map(|()| s));
            (i, name, server)
        });
    }
    let mut servers: Vec<Option<LocalPostgres>> = target.shards.iter().map(|_| None).collect();
    let mut failed = Vec::new();
    while let Some(done) = starting.join_next().await {
        match done {
            Ok((i, _, Ok(server))) => servers[i] = Some(server),
            Ok((_, name, Err(e))) => failed.push((name, e.to_string())),
            Err(e) => failed.push(("?".into(), e.to_string())),
        }
    }
    if !failed.is_empty() {
        // The ones that did start stop as `servers` drops.
        return Err(LoadtestError::Start(start_failures(failed)));
    }
    let servers: Vec<LocalPostgres> = servers.into_iter().flatten().collect();
    let standbys = clone_standbys(&servers, &target.shards, target.replicas, dir).await?;
    // Every host of the shard, the primary first; libpq's `read-write` picks whichever
    // takes writes, so after a promotion the API reconnects to the new primary itself.
    let urls: Vec<String> = servers
        .iter()
        .zip(&standbys)
        .map(|(primary, standbys)| {
            let hosts: Vec<&LocalPostgres> = std::iter::once(primary).chain(standbys).collect();
            crate::services::postgres::url_across(&hosts, SPAWNED_DATABASE)
        })
        .collect();
    let mut layout = target
        .resolve_spawned(&urls)
        .map_err(|e| LoadtestError::Start(e.to_string()))?;
    // The standbys take reads too (see store::postgres::replicas), in this process and
    // in the instances run as processes, through a copy of the layout that lists them.
    let replica_urls: Vec<Vec<String>> = standbys
        .iter()
        .map(|s| s.iter().map(|r| r.url(SPAWNED_DATABASE)).collect())
        .collect();
    let mut file = target.path.clone();
    if target.replicas > 0 {
        for (shard, urls) in layout.shards.iter_mut().zip(&replica_urls) {
            shard.replicas = urls
                .iter()
                .map(|u| crate::secrets::DbUrl::parse(u))
                .collect::<Result<_, _>>()
                .map_err(LoadtestError::Start)?;
        }
        file = dir.join("layout-with-replicas.toml");
        write_with_replicas(&target.path, &file, &target.shards, &replica_urls)?;
    }
    layout_ops::apply(&layout, &[]).await.map_err(|e| {
        LoadtestError::Start(format!(
            "applying layout {} to the spawned shards: {e}",
            layout.name
        ))
    })?;
    let by_var: Vec<(String, String)> = target
        .shards
        .iter()
        .zip(&urls)
        .map(|(name, url)| {
            (
                crate::profile::layout_target::shard_url_var(name),
                url.clone(),
            )
        })
        .collect();
    let env = by_var.clone();
    Ok(Shards {
        layout,
        file,
        env,
        follow: LayoutParser(Arc::new(move |text| {
            let env = |var: &str| {
                by_var
                    .iter()
                    .find(|(v, _)| v == var)
                    .map(|(_, u)| u.clone())
            };
            crate::profile::shards::from_recorded(text, &env)
        })),
        servers,
        standbys,
        dir: Some(dir.to_path_buf()),
    })
}

/// `replicas` standbys of each primary (a base backup each; the shards at once), and then
/// each primary waits for one of its standbys before it acknowledges a commit.
async fn clone_standbys(
    primaries: &[LocalPostgres],
    shards: &[String],
    replicas: usize,
    dir: &Path,
) -> Result<Vec<Vec<LocalPostgres>>, LoadtestError> {
    let mut all: Vec<Vec<LocalPostgres>> = primaries.iter().map(|_| Vec::new()).collect();
    if replicas == 0 {
        return Ok(all);
    }
    let mut cloning = tokio::task::JoinSet::new();
    for (i, (primary, shard)) in primaries.iter().zip(shards).enumerate() {
        let (upstream, shard, dir) = (primary.upstream(), shard.clone(), dir.to_path_buf());
        cloning.spawn_blocking(move || {
            let mut standbys = Vec::with_capacity(replicas);
            let mut names = Vec::with_capacity(replicas);
            for k in 0..replicas {
                let name = standby_name(&shard, k);
                let root = dir.join(format!("{shard}-standby{k}"));
                match LocalPostgres::start_standby(&upstream, &root, &name) {
                    Ok(s) => standbys.push(s),
                    Err(e) => return (i, shard, Err(format!("cloning a standby: {e}"))),
                }
                names.push(name);
            }
            // After the clones: a standby copies the primary's settings, and one that
            // required a standby would wait forever for one once promoted.
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            match upstream.require_standby(&names) {
                Ok(()) => (i, shard, Ok(standbys)),
                Err(e) => (
                    i,
                    shard,
                    Err(format!("making commits wait for a standby: {e}")),
                ),
            }
        });
    }
    let mut failed = Vec::new();
    while let Some(done) = cloning.join_next().await {
        match done {
            Ok((i, _, Ok(standbys))) => all[i] = standbys,
            Ok((_, shard, Err(e))) => failed.push((shard, e)),
            Err(e) => failed.push(("?".into(), e.to_string())),
        }
    }
    if !failed.is_empty() {
        return Err(LoadtestError::Start(start_failures(failed)));
    }
    Ok(all)
}

/// `layout` with each shard's `replicas` set to the standbys' URLs, written to `to`.
fn write_with_replicas(
    layout: &Path,
    to: &Path,
    shards: &[String],
    replicas: &[Vec<String>],
) -> Result<(), LoadtestError> {
    let io = |e: std::io::Error| LoadtestError::Start(format!("{}: {e}", to.display()));
    let text = std::fs::read_to_string(layout)
        .map_err(|e| LoadtestError::Start(format!("{}: {e}", layout.display())))?;
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|e| LoadtestError::Start(format!("{}: {e}", layout.display())))?;
    let Some(toml::Value::Table(sections)) = table.get_mut("shards") else {
        return Err(LoadtestError::Start(format!(
            "{}: no [shards] to add replicas to",
            layout.display()
        )));
    };
    for (name, urls) in shards.iter().zip(replicas) {
        if let Some(toml::Value::Table(shard)) = sections.get_mut(name) {
            let urls = urls.iter().cloned().map(toml::Value::String).collect();
            shard.insert("replicas".into(), toml::Value::Array(urls));
        }
    }
    let text = toml::to_string(&table).map_err(|e| LoadtestError::Start(e.to_string()))?;
    std::fs::write(to, text).map_err(io)
}

/// A standby's `application_name`: an identifier made of the shard's name.
fn standby_name(shard: &str, k: usize) -> String {
    let shard: String = shard
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{shard}_standby{k}")
}

/// One line for the servers that did not start, each reason once ("not installed" is
/// the same for every shard, and should say what to install once).
fn start_failures(mut failed: Vec<(String, String)>) -> String {
    failed.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    let mut parts: Vec<(Vec<String>, String)> = Vec::new();
    for (shard, reason) in failed {
        match parts.last_mut() {
            Some((shards, r)) if *r == reason => shards.push(shard),
            _ => parts.push((vec![shard], reason)),
        }
    }
    let parts: Vec<String> = parts
        .into_iter()
        .map(|(shards, reason)| format!("shard(s) {}: {reason}", shards.join(", ")))
        .collect();
    format!("starting PostgreSQL for {}", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::postgres::PostgresError;

    #[test]
    fn the_copy_of_a_layout_lists_each_shards_standbys_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/shards/two.toml");
        let copy = dir.path().join("with-replicas.toml");
        let replicas = vec![
            vec!["postgres://postgres@127.0.0.1:7001/paytool".to_string()],
            vec!["postgres://postgres@127.0.0.1:7002/paytool".to_string()],
        ];
        write_with_replicas(&shipped, &copy, &["s0".into(), "s1".into()], &replicas).unwrap();
        let env = |var: &str| (var.ends_with("_URL")).then(|| "postgres://h:1/db".to_string());
        let layout = crate::profile::shards::load_with(&copy, &env).unwrap();
        let original = crate::profile::shards::load_with(&shipped, &env).unwrap();
        assert_eq!(layout.digest, original.digest, "the same bucket map");
        for (shard, urls) in layout.shards.iter().zip(&replicas) {
            let listed: Vec<String> = shard
                .replicas
                .iter()
                .map(|u| u.expose().to_string())
                .collect();
            assert_eq!(&listed, urls, "shard {}", shard.name);
        }
    }

    #[test]
    fn a_missing_postgresql_is_said_once_with_what_to_install() {
        let missing = PostgresError::NotInstalled.to_string();
        let line = start_failures(vec![
            ("s1".into(), missing.clone()),
            ("s0".into(), missing),
            ("s2".into(), "initdb failed".into()),
        ]);
        assert!(
            line.starts_with(
                "starting PostgreSQL for shard(s) s0, s1: PostgreSQL is not installed"
            ),
            "{line}"
        );
        assert!(line.ends_with("; shard(s) s2: initdb failed"), "{line}");
        assert_eq!(
            line.matches("apt-get install -y postgresql").count(),
            1,
            "{line}"
        );
    }
}

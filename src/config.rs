//! The optional TOML config file. Precedence: flag, then `PAYTOOL_*` env var, then this
//! file, then the built-in default.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: `{key}` {message}")]
    Invalid {
        origin: String,
        key: &'static str,
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub serve: ServeSection,
}

/// `[serve]`: the same names as `paytool serve`'s flags, with underscores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSection {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub shards: Option<usize>,
    pub layout: Option<PathBuf>,
    pub admin_token: Option<String>,
    pub batch_max: Option<usize>,
    pub queue_max: Option<usize>,
    pub body_limit_bytes: Option<usize>,
    pub write_timeout_ms: Option<u64>,
    /// e.g. "24h"
    pub idempotency_retention: Option<String>,
    /// e.g. "30s"
    pub header_timeout: Option<String>,
    /// e.g. "2s": on SIGTERM, /readyz answers 503 this long before the listener closes.
    pub drain_delay: Option<String>,
    /// e.g. "1s": a read replica further behind takes no reads.
    pub replica_max_lag: Option<String>,
    /// e.g. "100/s"
    pub rate_limit: Option<String>,
    pub rate_burst: Option<u32>,
    /// A Redis URL: the cache in front of the store.
    pub redis: Option<String>,
    pub redis_prefix: Option<String>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }
}

/// Check that `value` lies in `range`, naming where it came from and its key.
pub fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    origin: &str,
    key: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            origin: origin.to_string(),
            key,
            message: format!(
                "is {value}; it must be {} to {}",
                range.start(),
                range.end()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let dir = std::env::temp_dir().join(format!("paytool-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("paytool.toml");
        std::fs::write(&path, "[serve]\nshards = 2\nshardz = 3\n").unwrap();
        let err = ConfigFile::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("paytool.toml") && err.contains("shardz"),
            "{err}"
        );
        std::fs::write(&path, "[serve]\nshards = 2\n").unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap().serve.shards, Some(2));
    }
}

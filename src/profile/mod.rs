//! TOML profiles, parsed strictly: an unknown key or a bad value is refused before
//! anything starts, naming the file, the key and what is allowed.

pub mod chaos;
pub mod gate;
pub mod layout_target;
pub mod load;
pub mod scale;
pub mod segment;
pub mod shards;

#[cfg(test)]
mod fuzz_tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profile {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("profile {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("profile {path}: `{key}` {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// Read and deserialize a TOML file, with the file named in every error.
pub fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ProfileError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

/// A `ProfileError` naming the file and the key at fault.
pub(super) fn invalid(path: &Path, key: &str, message: impl Into<String>) -> ProfileError {
    ProfileError::Invalid {
        path: path.to_path_buf(),
        key: key.to_string(),
        message: message.into(),
    }
}

/// A duration such as "500ms" or "2m", or an error naming the key.
pub(super) fn duration(path: &Path, key: &str, value: &str) -> Result<Duration, ProfileError> {
    humantime::parse_duration(value.trim()).map_err(|e| {
        invalid(
            path,
            key,
            format!("is {value:?}: {e}; write a duration such as \"500ms\", \"15s\", \"2m\""),
        )
    })
}

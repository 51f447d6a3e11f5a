//! Secrets: API keys (shown once, stored as SHA-256), the admin token and the keyed
//! fingerprint secret, generated into the data dir with 0600 permissions.

use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A secret string whose Debug does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    hex::encode(buf)
}

pub fn new_api_key() -> Secret {
    Secret(format!("sk_test_{}", random_hex(24)))
}

/// API keys are long random strings, so a fast hash is enough (no password hashing on
/// the hot path: see BASELINE.md's CPU budget).
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Read the secret at `path`, or generate one there (0600) on first start.
pub fn load_or_create(path: &Path, generate: impl FnOnce() -> String) -> std::io::Result<Secret> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Secret(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let value = generate();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            writeln!(f, "{value}")?;
            f.sync_all()?;
            Ok(Secret(value))
        }
        Err(e) => Err(e),
    }
}

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

/// A new secret key for `merchant_id` (`mer_` + 32 hex digits). The key carries the
/// merchant's id, as `sk_test_<id digits>_<random>`, so any API instance can find the
/// one shard that holds the merchant without asking every shard, and a key that names
/// no merchant is refused without a query. The id is not a secret; the 24 random bytes
/// are.
pub fn new_api_key(merchant_id: &str) -> Secret {
    let digits = merchant_id.strip_prefix("mer_").unwrap_or(merchant_id);
    Secret(format!("sk_test_{digits}_{}", random_hex(24)))
}

/// The merchant id a key made by `new_api_key` names; None for any other shape.
pub fn merchant_id_in_key(key: &str) -> Option<String> {
    let rest = key.strip_prefix("sk_test_")?;
    let (digits, random) = rest.split_once('_')?;
    let id = format!("mer_{digits}");
    (crate::ids::is_id(&id, "mer") && random.len() == 48).then_some(id)
}

/// Whether two secret hashes are equal, in time that does not depend on where they
/// differ: no secret's hash is ever compared with `==`.
pub fn same_hash(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
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

/// A PostgreSQL connection URL. It may hold a password, so Debug and Display show it
/// with the password masked; only `expose` gives the whole string, to the driver.
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl(String);

impl DbUrl {
    /// Accepts `postgres://` / `postgresql://` URLs and libpq's `key=value` strings.
    pub fn parse(text: &str) -> Result<DbUrl, String> {
        let url = DbUrl(text.trim().to_string());
        let is_url = url.0.starts_with("postgres://") || url.0.starts_with("postgresql://");
        let is_keywords = !url.0.contains("://") && url.0.contains('=');
        if !is_url && !is_keywords {
            return Err(format!(
                "is {:?}: a PostgreSQL URL starts with postgres:// (or is libpq's key=value form)",
                url.redacted()
            ));
        }
        Ok(url)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        let s = &self.0;
        if let Some(scheme_end) = s.find("://") {
            let authority_start = scheme_end + 3;
            let authority_end = s[authority_start..]
                .find(['/', '?'])
                .map_or(s.len(), |i| authority_start + i);
            let authority = &s[authority_start..authority_end];
            let mut out = s[..authority_start].to_string();
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split(':').next().unwrap_or("");
                    let masked = if userinfo.contains(':') { ":***" } else { "" };
                    out.push_str(&format!("{user}{masked}@{host}"));
                }
                None => out.push_str(authority),
            }
            out.push_str(&mask_password_param(&s[authority_end..], '&'));
            out
        } else {
            mask_password_param(s, ' ')
        }
    }
}

/// Masks `password=...` in a query string (`&`-separated) or keyword list (spaces).
fn mask_password_param(text: &str, separator: char) -> String {
    text.split(separator)
        .map(|part| {
            let (prefix, kv) = match part.strip_prefix('?') {
                Some(rest) => ("?", rest),
                None => ("", part),
            };
            match kv.split_once('=') {
                Some((k, _)) if k.trim() == "password" => format!("{prefix}{k}=***"),
                _ => part.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(&separator.to_string())
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbUrl({})", self.redacted())
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod db_url_tests {
    use super::DbUrl;

    #[test]
    fn passwords_never_show() {
        let cases = [
            (
                "postgres://app:s3cret@db:5432/pay?sslmode=disable",
                "postgres://app:***@db:5432/pay?sslmode=disable",
            ),
            ("postgresql://app@db/pay", "postgresql://app@db/pay"),
            (
                "postgres://db/pay?user=a&password=s3cret",
                "postgres://db/pay?user=a&password=***",
            ),
            (
                "host=db user=app password=s3cret dbname=pay",
                "host=db user=app password=*** dbname=pay",
            ),
        ];
        for (url, shown) in cases {
            let u = DbUrl::parse(url).unwrap();
            assert_eq!(u.redacted(), shown);
            assert!(!format!("{u:?} {u}").contains("s3cret"));
            assert_eq!(u.expose(), url);
        }
        let err = DbUrl::parse("mysql://root:s3cret@db").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
    }
}

#[cfg(test)]
mod same_hash_tests {
    #[test]
    fn equal_only_when_every_byte_is() {
        let a = super::hash_key("sk_test_a");
        let mut b = a;
        assert!(super::same_hash(&a, &b));
        for i in [0, 15, 31] {
            b[i] ^= 1;
            assert!(!super::same_hash(&a, &b), "byte {i}");
            b[i] ^= 1;
        }
    }
}

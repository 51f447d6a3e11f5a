//! `paytool cache verify`: walk paytool's keys (or a sample) and compare each entry with
//! the store, read-only. What it reports:
//! - a **mismatch**: an entry the API would serve that differs from the store (a payment's
//!   fields, a stored answer, a key the merchant no longer accepts), or one it cannot read;
//! - a **stale** entry: one for something the store no longer has (a pruned idempotency
//!   key, a merchant or payment gone);
//! - **dead** key entries (of an older key generation: the API never serves them) are
//!   counted, not reported.
//!
//! A live API changes the store and marks entries changed while this runs, so every finding is
//! read again, Redis and store, after `RECHECK_DELAY`; only what still differs is reported.

use super::admin::{Admin, AdminError};
use super::entries::{CHANGED, CachedAnswer, CachedMerchant, CachedPayment};
use super::keys::Keys;
use crate::ids::now_ms;
use crate::store::export::{Export, ExportError};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// How long a finding waits before it is read again: longer than a write's commit-to-
/// delete gap in the API, so a change in flight is not reported.
pub const RECHECK_DELAY: Duration = Duration::from_millis(200);
/// Findings listed at most; the counts are always whole.
pub const FINDINGS_SHOWN_MAX: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] ExportError),
    #[error(transparent)]
    Redis(#[from] AdminError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    Mismatch,
    Stale,
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub key: String,
    pub problem: Problem,
    pub detail: String,
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Entries compared with the store, by kind (`key`, `idem`, `pay`).
    pub checked: BTreeMap<String, u64>,
    pub mismatches: u64,
    pub stale: u64,
    /// Key entries of an older key generation, never served.
    pub dead: u64,
    /// Keys under the prefix that are not entries (`gen`, a payment's `CHANGED` mark) or
    /// not paytool's format.
    pub skipped: u64,
    /// The first findings, at most `FINDINGS_SHOWN_MAX`.
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.mismatches == 0 && self.stale == 0
    }

    pub fn total_checked(&self) -> u64 {
        self.checked.values().sum()
    }
}

/// A key split into its merchant and what follows: `pay:<id>`, `idem:<key>`, `key:<hex>`.
fn parse(key: &str) -> Option<(&str, &str, &str)> {
    let open = key.find('{')?;
    let close = open + key[open..].find("}:")?;
    let merchant = &key[open + 1..close];
    let rest = &key[close + 2..];
    let (kind, name) = rest.split_once(':')?;
    Some((merchant, kind, name))
}

/// The fields two JSON objects disagree on, as `field: cache X, store Y`.
fn differences<T: Serialize>(cache: &T, store: &T) -> String {
    let (a, b) = (
        serde_json::to_value(cache).unwrap_or_default(),
        serde_json::to_value(store).unwrap_or_default(),
    );
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return "differs".into();
    };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| {
            format!(
                "{k}: cache {v}, store {}",
                b.get(k).unwrap_or(&serde_json::Value::Null)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What one batch of keys found: findings, dead entries, and the kinds checked.
#[derive(Default)]
struct Checked {
    findings: Vec<Finding>,
    dead: u64,
    skipped: u64,
    kinds: Vec<&'static str>,
}

/// Compare one batch of keys with the store.
async fn check(
    admin: &Admin,
    export: &dyn Export,
    keys: &Keys,
    batch: &[String],
) -> Result<Checked, VerifyError> {
    let mut conn = admin.connection();
    let values: Vec<Option<Vec<u8>>> = if batch.is_empty() {
        Vec::new()
    } else {
        redis::cmd("MGET")
            .arg(batch)
            .query_async(&mut conn)
            .await
            .map_err(|e| admin.failed(e))?
    };
    let mut out = Checked::default();
    let mut payments: Vec<(usize, String, String, CachedPayment)> = Vec::new();
    let mut answers: Vec<(usize, String, String, CachedAnswer)> = Vec::new();
    let mut api_keys: Vec<(usize, [u8; 32], CachedMerchant)> = Vec::new();
    let unreadable = |key: &str, what: &str| Finding {
        key: key.to_string(),
        problem: Problem::Mismatch,
        detail: format!("not a readable {what} entry"),
    };
    for (i, (key, value)) in batch.iter().zip(values).enumerate() {
        // Gone since the SCAN (expired or deleted): nothing to compare.
        let Some(value) = value else { continue };
        // A change through the API in the last seconds: not an entry.
        if value == CHANGED {
            out.skipped += 1;
            continue;
        }
        match parse(key) {
            Some((merchant, "pay", id)) => {
                out.kinds.push("pay");
                match serde_json::from_slice::<CachedPayment>(&value) {
                    Ok(p) => payments.push((i, merchant.to_string(), id.to_string(), p)),
                    Err(_) => out.findings.push(unreadable(key, "payment")),
                }
            }
            Some((merchant, "idem", name)) => {
                out.kinds.push("idem");
                match serde_json::from_slice::<CachedAnswer>(&value) {
                    Ok(a) => answers.push((i, merchant.to_string(), name.to_string(), a)),
                    Err(_) => out.findings.push(unreadable(key, "idempotency")),
                }
            }
            Some((_, "key", hash)) => {
                out.kinds.push("key");
                let hash = hex::decode(hash)
                    .ok()
                    .and_then(|h| <[u8; 32]>::try_from(h).ok());
                match (hash, serde_json::from_slice::<CachedMerchant>(&value)) {
                    (Some(h), Ok(m)) => api_keys.push((i, h, m)),
                    _ => out.findings.push(unreadable(key, "API key")),
                }
            }
            _ => out.skipped += 1,
        }
    }

    let found = export
        .payments(
            payments
                .iter()
                .map(|(_, m, id, _)| (m.clone(), id.clone()))
                .collect(),
        )
        .await?;
    // Looked up by the key's merchant and id, not the entry's: an entry holding another
    // merchant's payment is a mismatch.
    for ((i, _, _, cached), stored) in payments.iter().zip(found) {
        let key = &batch[*i];
        match stored {
            None => out.findings.push(Finding {
                key: key.clone(),
                problem: Problem::Stale,
                detail: "the store has no such payment".into(),
            }),
            Some(p) => {
                let stored = CachedPayment::of(&p);
                if *cached != stored {
                    out.findings.push(Finding {
                        key: key.clone(),
                        problem: Problem::Mismatch,
                        detail: differences(cached, &stored),
                    });
                }
            }
        }
    }

    let found = export
        .answers(
            answers
                .iter()
                .map(|(_, m, k, _)| (m.clone(), k.clone()))
                .collect(),
        )
        .await?;
    for ((i, _, _, cached), stored) in answers.iter().zip(found) {
        let key = &batch[*i];
        let detail = match stored {
            None => Some((
                Problem::Stale,
                "the store has no such key (pruned?)".to_string(),
            )),
            Some(a) if cached.fingerprint != hex::encode(a.fingerprint) => Some((
                Problem::Mismatch,
                "another request's fingerprint".to_string(),
            )),
            Some(a) if cached.status != a.status => Some((
                Problem::Mismatch,
                format!("status: cache {}, store {}", cached.status, a.status),
            )),
            Some(a) if cached.body.as_bytes() != a.body.as_slice() => {
                Some((Problem::Mismatch, "the body differs".to_string()))
            }
            Some(_) => None,
        };
        if let Some((problem, detail)) = detail {
            out.findings.push(Finding {
                key: key.clone(),
                problem,
                detail,
            });
        }
    }

    if !api_keys.is_empty() {
        let generations: Vec<Option<u64>> = redis::cmd("MGET")
            .arg(
                api_keys
                    .iter()
                    .map(|(_, _, m)| keys.generation(&m.id))
                    .collect::<Vec<_>>(),
            )
            .query_async(&mut conn)
            .await
            .map_err(|e| admin.failed(e))?;
        let live: Vec<&(usize, [u8; 32], CachedMerchant)> = api_keys
            .iter()
            .zip(generations)
            .filter_map(|(k, g)| (k.2.generation == g.unwrap_or(0)).then_some(k))
            .collect();
        out.dead += (api_keys.len() - live.len()) as u64;
        let found = export
            .merchants(live.iter().map(|(_, _, m)| m.id.clone()).collect())
            .await?;
        let now = now_ms();
        for ((i, hash, cached), stored) in live.into_iter().zip(found) {
            let key = &batch[*i];
            let detail = match stored {
                None => Some((Problem::Stale, "the store has no such merchant".to_string())),
                Some(s) if !s.accepts(hash, now) => Some((
                    Problem::Mismatch,
                    "the merchant no longer accepts this key (rolled while Redis was unreachable?)"
                        .to_string(),
                )),
                Some(s) => {
                    let stored = CachedMerchant::of(&s.merchant, cached.generation);
                    // `shard` is each instance's own index: not compared.
                    let same = stored.id == cached.id
                        && stored.name == cached.name
                        && stored.bucket == cached.bucket
                        && stored.created_ms == cached.created_ms;
                    (!same).then(|| (Problem::Mismatch, differences(cached, &stored)))
                }
            };
            if let Some((problem, detail)) = detail {
                out.findings.push(Finding {
                    key: key.clone(),
                    problem,
                    detail,
                });
            }
        }
    }
    Ok(out)
}

/// Walk paytool's keys (all, or the first `sample` SCAN returns: SCAN's order is the hash
/// table's, so a sample is spread over the keyspace); `progress` hears the count checked.
/// SCAN may return a key twice while Redis resizes its table (keys written meanwhile),
/// so on a busy Redis the counts can run a little over; a finding is listed once.
/// On a layout, each key is looked up on the shard that owned its bucket when verify
/// started: a `shard move` switching buckets meanwhile makes their entries read as stale.
pub async fn verify(
    admin: &mut Admin,
    export: &dyn Export,
    prefix: &str,
    sample: Option<u64>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<VerifyReport, VerifyError> {
    let keys = Keys::new(prefix);
    let mut report = VerifyReport::default();
    let mut suspects: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    let mut seen = 0u64;
    loop {
        let (next, mut batch) = admin.scan_step(cursor).await?;
        if let Some(max) = sample {
            batch.truncate(max.saturating_sub(seen) as usize);
        }
        seen += batch.len() as u64;
        let found = check(admin, export, &keys, &batch).await?;
        for kind in found.kinds {
            *report.checked.entry(kind.to_string()).or_default() += 1;
        }
        report.dead += found.dead;
        report.skipped += found.skipped;
        suspects.extend(found.findings.into_iter().map(|f| f.key));
        progress(report.total_checked());
        if next == 0 || sample.is_some_and(|max| seen >= max) {
            break;
        }
        cursor = next;
    }
    // Read every suspect again, after the API had time to finish what it was doing.
    if !suspects.is_empty() {
        tokio::time::sleep(RECHECK_DELAY).await;
    }
    let mut by_key: HashMap<String, Finding> = HashMap::new();
    for chunk in suspects.chunks(super::admin::SCAN_BATCH) {
        for f in check(admin, export, &keys, chunk).await?.findings {
            by_key.insert(f.key.clone(), f);
        }
    }
    let mut findings: Vec<Finding> = by_key.into_values().collect();
    findings.sort_by(|a, b| a.key.cmp(&b.key));
    report.mismatches = findings
        .iter()
        .filter(|f| f.problem == Problem::Mismatch)
        .count() as u64;
    report.stale = findings.len() as u64 - report.mismatches;
    findings.truncate(FINDINGS_SHOWN_MAX);
    report.findings = findings;
    Ok(report)
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_split_into_merchant_kind_and_name() {
        assert_eq!(
            super::parse("paytool:{mer_1}:pay:pay_2"),
            Some(("mer_1", "pay", "pay_2"))
        );
        assert_eq!(
            super::parse("p:{mer_1}:idem:a:b"),
            Some(("mer_1", "idem", "a:b"))
        );
        assert_eq!(super::parse("paytool:{mer_1}:gen"), None);
        assert_eq!(super::parse("paytool:odd"), None);
    }

    #[test]
    fn differences_name_each_field_with_both_values() {
        let a = serde_json::json!({"status": "succeeded", "amount": 5});
        let b = serde_json::json!({"status": "canceled", "amount": 5});
        assert_eq!(
            super::differences(&a, &b),
            "status: cache \"succeeded\", store \"canceled\""
        );
    }
}

//! Read-only access to a store's rows, for tools that run beside a live API
//! (`paytool cache seed` and `cache verify`): no writer, no pruner, no lock taken, so
//! running one never slows or changes the API's store. Whole tables stream through a
//! bounded channel (memory stays flat however big the store is); lookups come in batches.

use super::{BoxFuture, Merchant, StoreError};
use crate::ledger::Payment;
use crate::secrets::same_hash;
use tokio::sync::mpsc;

/// Rows in flight between a store's reader and whoever consumes them.
pub const EXPORT_QUEUE_ROWS: usize = 4_096;

/// A key hash a merchant's key lookups accept: the current key (no expiry), or the one
/// before the last roll until it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedKey {
    pub hash: [u8; 32],
    pub expires_ms: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct MerchantKeys {
    pub merchant: Merchant,
    /// Only keys still accepted when read (an expired previous key is left out).
    pub keys: Vec<AcceptedKey>,
}

impl MerchantKeys {
    /// Build from the stored columns, dropping a previous key that has expired.
    pub fn of(
        merchant: Merchant,
        current: [u8; 32],
        previous: Option<([u8; 32], i64)>,
        now_ms: i64,
    ) -> MerchantKeys {
        let mut keys = vec![AcceptedKey {
            hash: current,
            expires_ms: None,
        }];
        if let Some((hash, until)) = previous.filter(|(_, until)| *until > now_ms) {
            keys.push(AcceptedKey {
                hash,
                expires_ms: Some(until),
            });
        }
        MerchantKeys { merchant, keys }
    }

    pub fn accepts(&self, hash: &[u8; 32], now_ms: i64) -> bool {
        self.keys
            .iter()
            .any(|k| same_hash(&k.hash, hash) && k.expires_ms.is_none_or(|until| until > now_ms))
    }
}

/// An idempotent answer as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAnswer {
    pub fingerprint: [u8; 32],
    pub status: u16,
    pub body: Vec<u8>,
}

/// One row of a streamed store.
#[derive(Debug)]
pub enum Row {
    Merchant(MerchantKeys),
    Payment(Payment),
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The data dir or layout cannot be read at all (missing, not paytool's, a shard down).
    #[error("{0}")]
    Open(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A store opened read-only: `sqlite::export::SqliteExport` (a data dir) or
/// `postgres::export::PgExport` (every shard of a layout).
pub trait Export: Send + Sync {
    /// Every merchant, then every payment created at or after `since_ms`, into `tx`.
    /// Returns early, without error, when the receiver is dropped.
    fn stream(
        &self,
        since_ms: i64,
        tx: mpsc::Sender<Row>,
    ) -> BoxFuture<'_, Result<(), ExportError>>;

    /// Each merchant with its accepted keys, in the order asked.
    fn merchants(
        &self,
        ids: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<Option<MerchantKeys>>, ExportError>>;

    /// Each (merchant id, payment id)'s payment, in the order asked.
    fn payments(
        &self,
        ids: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<Vec<Option<Payment>>, ExportError>>;

    /// Each (merchant id, Idempotency-Key)'s stored answer, in the order asked.
    fn answers(
        &self,
        keys: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<Vec<Option<StoredAnswer>>, ExportError>>;

    /// Where `stream` reads each shard's payments, when that is not simply the store.
    fn payments_read_from(&self) -> Vec<ReadFrom> {
        Vec::new()
    }
}

/// Where one shard's payments are streamed from: its primary, or a read replica that was
/// within the lag bound when the export opened.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReadFrom {
    pub shard: String,
    /// "primary", or the replica's URL (password hidden).
    pub from: String,
    /// The replica's lag when it was picked (0: caught up); None for the primary.
    pub lag_ms: Option<f64>,
    /// Read replicas the layout lists for the shard.
    pub replicas_listed: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merchant() -> Merchant {
        Merchant {
            id: "mer_1".into(),
            name: "m".into(),
            bucket: 1,
            shard: 0,
            created_ms: 0,
        }
    }

    #[test]
    fn a_previous_key_is_accepted_only_until_it_expires() {
        let keys = MerchantKeys::of(merchant(), [1; 32], Some(([2; 32], 1_000)), 500);
        assert!(keys.accepts(&[1; 32], 500));
        assert!(keys.accepts(&[2; 32], 999));
        assert!(!keys.accepts(&[2; 32], 1_000));
        assert!(!keys.accepts(&[3; 32], 0));
        let expired = MerchantKeys::of(merchant(), [1; 32], Some(([2; 32], 1_000)), 1_000);
        assert_eq!(expired.keys.len(), 1);
    }
}

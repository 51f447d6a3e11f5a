//! The embedded store read-only (`store::export`): the catalog and every shard file
//! opened with SQLITE_OPEN_READ_ONLY, so a live API's writer never waits on it (WAL
//! readers do not block the writer).

use super::answers::{self, Render};
use super::rows::{PAYMENT_COLUMNS, load_payment, payment_from_row};
use super::schema;
use crate::ids::{bucket_of, now_ms, shard_of_bucket};
use crate::ledger::Payment;
use crate::store::export::{Export, ExportError, MerchantKeys, Row, StoredAnswer};
use crate::store::{BoxFuture, Merchant, StoreError, key_hash};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

pub(super) const MERCHANT_COLUMNS: &str =
    "id, name, bucket, created_ms, key_hash, previous_key_hash, previous_key_expires_ms";

pub struct SqliteExport {
    catalog: Arc<Mutex<Connection>>,
    shards: Vec<Arc<Mutex<Connection>>>,
    /// Renders kept answers again (the store keeps what they showed, not their bodies).
    render: Render,
}

/// A merchant row read with `MERCHANT_COLUMNS`: the merchant, its key hash, and the key
/// before the last roll with when it stops working (expired or not).
pub(super) type MerchantRow = (Merchant, [u8; 32], Option<([u8; 32], i64)>);

pub(super) fn merchant_row(
    r: &rusqlite::Row<'_>,
    shards: usize,
) -> Result<MerchantRow, StoreError> {
    let bucket: u16 = r.get(2)?;
    let merchant = Merchant {
        id: r.get(0)?,
        name: r.get(1)?,
        bucket,
        shard: shard_of_bucket(bucket, shards),
        created_ms: r.get(3)?,
    };
    let previous = match (r.get::<_, Option<Vec<u8>>>(5)?, r.get::<_, Option<i64>>(6)?) {
        (Some(h), Some(until)) => Some((key_hash(h)?, until)),
        _ => None,
    };
    Ok((merchant, key_hash(r.get(4)?)?, previous))
}

fn merchant_from_row(r: &rusqlite::Row<'_>, shards: usize) -> Result<MerchantKeys, StoreError> {
    let (merchant, current, previous) = merchant_row(r, shards)?;
    Ok(MerchantKeys::of(merchant, current, previous, now_ms()))
}

/// Run `f` on a connection off the async runtime.
async fn blocking<T: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ExportError> {
    let conn = Arc::clone(conn);
    tokio::task::spawn_blocking(move || f(&conn.lock().unwrap_or_else(|p| p.into_inner())))
        .await
        .map_err(|e| StoreError::Internal(format!("read task failed: {e}")))?
        .map_err(ExportError::from)
}

impl SqliteExport {
    /// `render` is the API's: answers are kept as the rows they showed and rendered again.
    pub fn open(data_dir: &Path, render: Render) -> Result<SqliteExport, ExportError> {
        let path = data_dir.join("catalog.db");
        if !path.is_file() {
            return Err(ExportError::Open(format!(
                "{} is not a paytool data dir: it has no catalog.db",
                data_dir.display()
            )));
        }
        let open = |p: &Path| {
            schema::open_reader(p)
                .map(|c| Arc::new(Mutex::new(c)))
                .map_err(|e| ExportError::Open(format!("{}: {e}", p.display())))
        };
        let catalog = open(&path)?;
        let shards: usize = {
            let c = catalog.lock().unwrap_or_else(|p| p.into_inner());
            c.query_row("SELECT value FROM meta WHERE key = 'shards'", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()
            .map_err(|e| ExportError::Open(format!("{}: {e}", path.display())))?
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                ExportError::Open(format!("{}: no shard count recorded", path.display()))
            })?
        };
        let shards = (0..shards)
            .map(|i| open(&data_dir.join(format!("shard-{i:03}.db"))))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, shard) in shards.iter().enumerate() {
            // Read-only, so it cannot upgrade a shard written by an earlier release the
            // way `serve` does (schema::upgrade_shard): it says so instead.
            let c = shard.lock().unwrap_or_else(|p| p.into_inner());
            let upgraded = schema::has_table(&c, "idempotency_keys")
                .map_err(|e| ExportError::Open(format!("shard {i}: {e}")))?;
            if !upgraded {
                return Err(ExportError::Open(format!(
                    "{} was written by an earlier paytool: start `paytool serve` on {} once \
                     to upgrade it, then run this again",
                    data_dir.join(format!("shard-{i:03}.db")).display(),
                    data_dir.display()
                )));
            }
        }
        Ok(SqliteExport {
            catalog,
            shards,
            render,
        })
    }

    /// Per shard file, one blocking task for that file's share of the batch.
    async fn by_shard<T: Send + 'static>(
        &self,
        keys: Vec<(String, String)>,
        read: impl Fn(&Connection, &str, &str) -> Result<Option<T>, StoreError> + Send + Copy + 'static,
    ) -> Result<Vec<Option<T>>, ExportError> {
        let n = self.shards.len();
        let mut out: Vec<Option<T>> = (0..keys.len()).map(|_| None).collect();
        let mut per_shard: Vec<Vec<(usize, String, String)>> = vec![Vec::new(); n];
        for (i, (merchant, id)) in keys.into_iter().enumerate() {
            per_shard[shard_of_bucket(bucket_of(&merchant), n)].push((i, merchant, id));
        }
        for (shard, wanted) in self.shards.iter().zip(per_shard) {
            if wanted.is_empty() {
                continue;
            }
            let found = blocking(shard, move |c| {
                wanted
                    .into_iter()
                    .map(|(i, m, id)| Ok((i, read(c, &m, &id)?)))
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .await?;
            for (i, v) in found {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

fn load_answer(
    c: &Connection,
    merchant: &str,
    key: &str,
    render: Render,
) -> Result<Option<StoredAnswer>, StoreError> {
    let Some(kept) = answers::find(c, merchant, key)? else {
        return Ok(None);
    };
    let fingerprint =
        kept.fingerprint.clone().try_into().map_err(|_| {
            StoreError::Internal("a stored request fingerprint is not 32 bytes".into())
        })?;
    let status = kept.status;
    Ok(Some(StoredAnswer {
        fingerprint,
        status,
        body: kept.body(c, merchant, render)?,
    }))
}

impl Export for SqliteExport {
    fn stream(
        &self,
        since_ms: i64,
        tx: mpsc::Sender<Row>,
    ) -> BoxFuture<'_, Result<(), ExportError>> {
        Box::pin(async move {
            let n = self.shards.len();
            let out = tx.clone();
            blocking(&self.catalog, move |c| {
                let mut stmt = c.prepare(&format!("SELECT {MERCHANT_COLUMNS} FROM merchants"))?;
                let mut rows = stmt.query([])?;
                while let Some(r) = rows.next()? {
                    if out
                        .blocking_send(Row::Merchant(merchant_from_row(r, n)?))
                        .is_err()
                    {
                        break;
                    }
                }
                Ok(())
            })
            .await?;
            for shard in &self.shards {
                let out = tx.clone();
                blocking(shard, move |c| {
                    let mut stmt = c.prepare(&format!(
                        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE created_ms >= ?1"
                    ))?;
                    let mut rows = stmt.query(params![since_ms])?;
                    while let Some(r) = rows.next()? {
                        if out
                            .blocking_send(Row::Payment(payment_from_row(r)??))
                            .is_err()
                        {
                            break;
                        }
                    }
                    Ok(())
                })
                .await?;
            }
            Ok(())
        })
    }

    fn merchants(
        &self,
        ids: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<Option<MerchantKeys>>, ExportError>> {
        Box::pin(async move {
            let n = self.shards.len();
            blocking(&self.catalog, move |c| {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {MERCHANT_COLUMNS} FROM merchants WHERE id = ?1"
                ))?;
                ids.iter()
                    .map(|id| {
                        let mut rows = stmt.query(params![id])?;
                        rows.next()?.map(|r| merchant_from_row(r, n)).transpose()
                    })
                    .collect()
            })
            .await
        })
    }

    fn payments(
        &self,
        ids: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<Vec<Option<Payment>>, ExportError>> {
        Box::pin(self.by_shard(ids, load_payment))
    }

    fn answers(
        &self,
        keys: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<Vec<Option<StoredAnswer>>, ExportError>> {
        let render = self.render;
        Box::pin(self.by_shard(keys, move |c, m, k| load_answer(c, m, k, render)))
    }
}

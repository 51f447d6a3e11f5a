//! A layout's shards read-only (`store::export`): only buckets a shard owns, so a
//! move's copy on its way in or out is never read twice. Whole tables stream row by row
//! (`query_raw`: the socket holds back the server, so memory stays flat); a batch of
//! lookups is sent to each shard at once, pipelined on its one connection.

use super::layout_ops::connect_all;
use super::replicas::{FreshReplica, fresh_replica};
use super::rows::{KeptAnswer, payment_from_row, store_error};
use super::sql;
use crate::ids::{BUCKETS, bucket_of, now_ms};
use crate::ledger::Payment;
use crate::store::export::{Export, ExportError, MerchantKeys, ReadFrom, Row, StoredAnswer};
use crate::store::layout::Layout;
use crate::store::shown::Render;
use crate::store::{BoxFuture, Merchant, StoreError, key_hash};
use futures_util::{TryStreamExt, future::try_join_all, pin_mut};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::{Client, Statement};

struct Shard {
    name: String,
    client: Client,
    /// A read replica `stream` reads payments from instead of `client`.
    payments_replica: Option<FreshReplica>,
    replicas_listed: usize,
    merchant: Statement,
    payment: Statement,
    answer: Statement,
}

pub struct PgExport {
    shards: Vec<Shard>,
    /// Renders kept answers again (the store keeps what they showed, not their bodies).
    render: Render,
    /// Each bucket's owner, an index into `shards`, as read at open.
    owners: Vec<Option<usize>>,
}

fn merchant_keys(
    id: String,
    bucket: u16,
    shard: usize,
    r: &tokio_postgres::Row,
) -> Result<MerchantKeys, StoreError> {
    let bad = |e: tokio_postgres::Error| StoreError::Internal(format!("merchant row: {e}"));
    let merchant = Merchant {
        id,
        name: r.try_get(0).map_err(bad)?,
        bucket,
        shard,
        created_ms: r.try_get(4).map_err(bad)?,
    };
    let previous = match (
        r.try_get::<_, Option<Vec<u8>>>(2).map_err(bad)?,
        r.try_get::<_, Option<i64>>(3).map_err(bad)?,
    ) {
        (Some(h), Some(until)) => Some((key_hash(h)?, until)),
        _ => None,
    };
    Ok(MerchantKeys::of(
        merchant,
        key_hash(r.try_get(1).map_err(bad)?)?,
        previous,
        now_ms(),
    ))
}

impl PgExport {
    /// `replica_max_lag`: `stream` reads a shard's payments from a replica the layout
    /// lists when one is within this of its primary at open (zero: primaries only).
    /// Merchants and their keys always come from the primary, and so do lookups (`cache
    /// verify` judges the cache against the store as it is now). `render` is the API's.
    pub async fn open(
        layout: &Layout,
        replica_max_lag: Duration,
        render: Render,
    ) -> Result<PgExport, ExportError> {
        let all = connect_all(layout, &[])
            .await
            .map_err(|e| ExportError::Open(e.to_string()))?;
        let mut shards = Vec::with_capacity(all.clients.len());
        let mut owners = vec![None; BUCKETS as usize];
        for (i, (client, s)) in all.clients.into_iter().zip(all.shards).enumerate() {
            let payments_replica =
                fresh_replica(&s.name, &s.replicas, &client, replica_max_lag).await;
            let q = |e: tokio_postgres::Error| ExportError::from(store_error(&s.name, &e));
            for r in client
                .query("SELECT bucket FROM paytool_buckets", &[])
                .await
                .map_err(q)?
            {
                owners[r.get::<_, i16>(0) as usize] = Some(i);
            }
            shards.push(Shard {
                merchant: client.prepare(sql::MERCHANT).await.map_err(q)?,
                payment: client.prepare(&sql::payment()).await.map_err(q)?,
                answer: client.prepare(&sql::answer()).await.map_err(q)?,
                client,
                payments_replica,
                replicas_listed: s.replicas.len(),
                name: s.name,
            });
        }
        Ok(PgExport {
            shards,
            render,
            owners,
        })
    }

    /// Each key's owner shard, or None for a bucket no shard owns.
    fn owner(&self, merchant: &str) -> Option<(u16, usize)> {
        let bucket = bucket_of(merchant);
        self.owners[bucket as usize].map(|i| (bucket, i))
    }

    /// One row per (merchant, name), from `statement` with ($bucket, $merchant, $name) on
    /// the merchant's shard; all sent at once.
    async fn lookup<T>(
        &self,
        keys: Vec<(String, String)>,
        statement: fn(&Shard) -> &Statement,
        read: impl Fn(&tokio_postgres::Row) -> Result<T, StoreError> + Copy,
    ) -> Result<Vec<Option<T>>, ExportError> {
        try_join_all(keys.into_iter().map(|(merchant, name)| async move {
            let Some((bucket, i)) = self.owner(&merchant) else {
                return Ok(None);
            };
            let s = &self.shards[i];
            let row = s
                .client
                .query_opt(statement(s), &[&(bucket as i16), &merchant, &name])
                .await
                .map_err(|e| store_error(&s.name, &e))?;
            row.map(|r| read(&r)).transpose().map_err(ExportError::from)
        }))
        .await
    }
}

fn answer_from_row(r: &tokio_postgres::Row, render: Render) -> Result<StoredAnswer, StoreError> {
    let kept = KeptAnswer::from_row(r)?;
    Ok(StoredAnswer {
        body: kept.body(render)?,
        fingerprint: kept.fingerprint.try_into().map_err(|_| {
            StoreError::Internal("a stored request fingerprint is not 32 bytes".into())
        })?,
        status: kept.status,
    })
}

impl Export for PgExport {
    fn stream(
        &self,
        since_ms: i64,
        tx: mpsc::Sender<Row>,
    ) -> BoxFuture<'_, Result<(), ExportError>> {
        Box::pin(async move {
            for (i, s) in self.shards.iter().enumerate() {
                let q = |e: tokio_postgres::Error| ExportError::from(store_error(&s.name, &e));
                let merchants = s
                    .client
                    .query_raw(sql::EXPORT_MERCHANTS, std::iter::empty::<i64>())
                    .await
                    .map_err(q)?;
                pin_mut!(merchants);
                while let Some(r) = merchants.try_next().await.map_err(q)? {
                    let bucket = r.get::<_, i16>(5) as u16;
                    let keys = merchant_keys(r.get(6), bucket, i, &r)?;
                    if tx.send(Row::Merchant(keys)).await.is_err() {
                        return Ok(());
                    }
                }
                let reader = s.payments_replica.as_ref().map_or(&s.client, |r| &r.client);
                let payments = reader
                    .query_raw(&sql::export_payments(), [since_ms])
                    .await
                    .map_err(q)?;
                pin_mut!(payments);
                while let Some(r) = payments.try_next().await.map_err(q)? {
                    if tx.send(Row::Payment(payment_from_row(&r)?)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })
    }

    fn merchants(
        &self,
        ids: Vec<String>,
    ) -> BoxFuture<'_, Result<Vec<Option<MerchantKeys>>, ExportError>> {
        Box::pin(try_join_all(ids.into_iter().map(|id| async move {
            let Some((bucket, i)) = self.owner(&id) else {
                return Ok(None);
            };
            let s = &self.shards[i];
            let row = s
                .client
                .query_opt(&s.merchant, &[&(bucket as i16), &id])
                .await
                .map_err(|e| store_error(&s.name, &e))?;
            row.map(|r| merchant_keys(id, bucket, i, &r))
                .transpose()
                .map_err(ExportError::from)
        })))
    }

    fn payments(
        &self,
        ids: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<Vec<Option<Payment>>, ExportError>> {
        Box::pin(self.lookup(ids, |s| &s.payment, payment_from_row))
    }

    fn answers(
        &self,
        keys: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<Vec<Option<StoredAnswer>>, ExportError>> {
        let render = self.render;
        Box::pin(self.lookup(keys, |s| &s.answer, move |r| answer_from_row(r, render)))
    }

    fn payments_read_from(&self) -> Vec<ReadFrom> {
        self.shards
            .iter()
            .map(|s| ReadFrom {
                shard: s.name.clone(),
                from: s
                    .payments_replica
                    .as_ref()
                    .map_or("primary".into(), |r| r.url.clone()),
                lag_ms: s.payments_replica.as_ref().map(|r| r.lag_ms),
                replicas_listed: s.replicas_listed,
            })
            .collect()
    }
}

//! `paytool cache seed`: warm Redis from the store before traffic arrives. The store is
//! streamed read-only (`store::export`, bounded queue), and each batch of rows becomes one
//! pipeline of SETs, a few pipelines in flight at once on one connection, so memory
//! stays flat and Redis, not round trips, sets the pace. Entries are exactly what the API
//! caches (`entries.rs`), with the same TTLs, and payments are written only where no
//! entry is (as the API fills them): a seeded entry is no staler than one the API filled.

use super::admin::{Admin, AdminError};
use super::entries::{CHANGED_TTL, CachedMerchant, CachedPayment, KEY_TTL, PAYMENT_TTL, jittered};
use super::keys::Keys;
use crate::ids::now_ms;
use crate::store::export::{EXPORT_QUEUE_ROWS, Export, ExportError, ReadFrom, Row};
use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use std::io::Write;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Rows turned into one pipeline.
pub const SEED_BATCH: usize = 1_000;
/// The most a read replica the seed takes payments from may lag (`--replica-max-lag` is
/// capped here). A payment changed through the API keeps a `CHANGED` mark for
/// `CHANGED_TTL`, and the seed's older copy must still meet that mark when its SET NX
/// arrives: a copy read from a replica this far behind leaves half the mark's life for
/// the seed's own read-to-write time, where a copy from the primary has all of it.
/// API keys are never read from a replica: a key rolled a moment ago must not be seeded
/// back to life.
pub const SEED_REPLICA_LAG_MAX: Duration = Duration::from_nanos(CHANGED_TTL.as_nanos() as u64 / 2);
/// Pipelines sent and not yet answered, at most: enough to keep Redis busy while the
/// next batch is read and encoded.
pub const SEED_PIPELINES_IN_FLIGHT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Store(#[from] ExportError),
    #[error(transparent)]
    Redis(#[from] AdminError),
    #[error("writing {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

/// Where the entries go.
pub enum Sink {
    Redis(Admin),
    /// Count what would be written, write nothing.
    DryRun,
    /// The same commands in Redis's protocol, for `redis-cli --pipe` (a bastion, a
    /// benchmark against the same keys and values).
    File {
        path: String,
        out: std::io::BufWriter<std::fs::File>,
    },
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SeedSummary {
    pub merchants: u64,
    pub payments: u64,
    /// Entries written (or, with --dry-run, that would be): one per accepted API key and
    /// one per payment.
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
    pub elapsed_s: f64,
    pub keys_per_s: f64,
    pub dry_run: bool,
    /// Where each shard's payments were read (PostgreSQL layouts).
    pub payments_read_from: Vec<ReadFrom>,
}

/// One batch's commands, and what they count for.
struct Batch {
    pipe: redis::Pipeline,
    merchants: u64,
    payments: u64,
    keys: u64,
    bytes: u64,
}

/// SET with a TTL; `only_if_absent` as the API's fills (NX): a payment the API changed
/// while the seed read it keeps its `CHANGED` mark, not the seed's older copy.
fn set(b: &mut Batch, key: String, value: Vec<u8>, ttl_ms: u64, only_if_absent: bool) {
    b.bytes += (key.len() + value.len()) as u64;
    b.keys += 1;
    let cmd = b.pipe.cmd("SET").arg(key).arg(value).arg("PX").arg(ttl_ms);
    if only_if_absent {
        cmd.arg("NX");
    }
    cmd.ignore();
}

/// The key generations of the batch's merchants, in order (0 where none is set).
async fn generations(
    conn: Option<&mut MultiplexedConnection>,
    keys: &Keys,
    rows: &[Row],
) -> Result<Vec<u64>, redis::RedisError> {
    let names: Vec<String> = rows
        .iter()
        .filter_map(|r| match r {
            Row::Merchant(m) => Some(keys.generation(&m.merchant.id)),
            Row::Payment(_) => None,
        })
        .collect();
    let Some(conn) = conn else {
        return Ok(vec![0; names.len()]);
    };
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let found: Vec<Option<u64>> = redis::cmd("MGET").arg(&names).query_async(conn).await?;
    Ok(found.into_iter().map(|g| g.unwrap_or(0)).collect())
}

/// A batch of rows as SETs. Key entries are tagged with the generation read just now, so
/// a key rolled while the seed runs is dead on arrival (the roll increments it) or, if
/// the roll fell between the store read and this read, lives at most `KEY_TTL`, the
/// bound the API itself keeps.
fn encode(rows: Vec<Row>, generations: &[u64], keys: &Keys) -> Batch {
    let mut b = Batch {
        pipe: redis::pipe(),
        merchants: 0,
        payments: 0,
        keys: 0,
        bytes: 0,
    };
    let now = now_ms();
    let mut g = generations.iter();
    for row in rows {
        match row {
            Row::Merchant(m) => {
                b.merchants += 1;
                let generation = g.next().copied().unwrap_or(0);
                let value = serde_json::to_vec(&CachedMerchant::of(&m.merchant, generation))
                    .expect("a merchant entry serializes");
                for k in &m.keys {
                    // A key in its grace period lives no longer than the grace.
                    let ttl = k.expires_ms.map_or(jittered(KEY_TTL), |until| {
                        jittered(KEY_TTL).min((until - now).max(1) as u64)
                    });
                    set(
                        &mut b,
                        keys.api_key(&m.merchant.id, &k.hash),
                        value.clone(),
                        ttl,
                        false,
                    );
                }
            }
            Row::Payment(p) => {
                b.payments += 1;
                let value =
                    serde_json::to_vec(&CachedPayment::of(&p)).expect("a payment serializes");
                set(
                    &mut b,
                    keys.payment(&p.merchant_id, &p.id),
                    value,
                    jittered(PAYMENT_TTL),
                    true,
                );
            }
        }
    }
    b
}

/// Stream the store into the sink; `progress` hears the running totals after each batch.
pub async fn seed(
    export: &dyn Export,
    sink: Sink,
    prefix: &str,
    since_ms: i64,
    progress: &(dyn Fn(&SeedSummary) + Sync),
) -> Result<SeedSummary, SeedError> {
    let keys = Keys::new(prefix);
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel::<Row>(EXPORT_QUEUE_ROWS);
    let mut total = SeedSummary {
        dry_run: matches!(sink, Sink::DryRun),
        payments_read_from: export.payments_read_from(),
        ..Default::default()
    };
    let (mut conn, url, mut file) = match sink {
        Sink::Redis(admin) => (Some(admin.connection()), admin.url().to_string(), None),
        Sink::DryRun => (None, String::new(), None),
        Sink::File { path, out } => (None, String::new(), Some((path, out))),
    };
    let failed = |e: redis::RedisError| {
        SeedError::Redis(AdminError::Redis {
            url: url.clone(),
            message: e.to_string(),
        })
    };
    let written = |path: &str, source| SeedError::File {
        path: path.to_string(),
        source,
    };
    let consume = async {
        let mut in_flight = FuturesUnordered::new();
        loop {
            let mut batch_rows = Vec::with_capacity(SEED_BATCH);
            if rx.recv_many(&mut batch_rows, SEED_BATCH).await == 0 {
                break;
            }
            let gens = generations(conn.as_mut(), &keys, &batch_rows)
                .await
                .map_err(failed)?;
            let batch = encode(batch_rows, &gens, &keys);
            total.merchants += batch.merchants;
            total.payments += batch.payments;
            total.keys += batch.keys;
            total.bytes += batch.bytes;
            if let Some(c) = &conn {
                let mut c = c.clone();
                in_flight.push(async move { batch.pipe.query_async::<()>(&mut c).await });
                if in_flight.len() >= SEED_PIPELINES_IN_FLIGHT
                    && let Some(done) = in_flight.next().await
                {
                    done.map_err(failed)?;
                }
            } else if let Some((path, out)) = &mut file {
                out.write_all(&batch.pipe.get_packed_pipeline())
                    .map_err(|e| written(path, e))?;
            }
            let elapsed = started.elapsed().as_secs_f64();
            total.elapsed_s = elapsed;
            progress(&total);
        }
        while let Some(done) = in_flight.next().await {
            done.map_err(failed)?;
        }
        Ok::<(), SeedError>(())
    };
    let (streamed, consumed) = tokio::join!(export.stream(since_ms, tx), consume);
    consumed?;
    streamed?;
    if let Some((path, out)) = &mut file {
        out.flush().map_err(|e| written(path, e))?;
    }
    total.elapsed_s = started.elapsed().as_secs_f64();
    total.keys_per_s =
        total.keys as f64 / total.elapsed_s.max(Duration::from_millis(1).as_secs_f64());
    Ok(total)
}

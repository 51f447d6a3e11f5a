//! `paytool shard move`: the bucket ranges whose owner differs between the shards'
//! records and a layout move to their new owner while the API keeps taking payments.
//!
//! Per range, each phase journaled on the source before its work starts:
//! 1. copying: PostgreSQL logical replication with a row filter copies the range to the
//!    target (`replicate`);
//! 2. catching up: changes stream until a mark written on the source reaches the target
//!    within `CATCH_UP_READY`;
//! 3. verifying: a short write fence on the range (`fence`), the mark waited for, a
//!    snapshot of each side taken, the fence lifted; then row counts and checksums of
//!    both snapshots compared, and the ledger audit run over the range on the target;
//! 4. switching: a second short fence, the mark waited for, a snapshot of the target,
//!    and the source gives the range away in one transaction with the journal's
//!    `switched` (only while its fence's lease holds); the target then takes it;
//! 5. switched: the stream is stopped, the source's (now frozen) copy compared again with
//!    the target's snapshot at the switch, the ledger audit run again;
//! 6. cleaning: the source's copy deleted in bounded batches.
//!
//! A move killed anywhere is finished by running it again: before `switched` it starts
//! over from the copy (kept if the subscription survived), from `switched` on it
//! finishes the clean-up. A fence a dead move held ends with its lease.

pub mod clean;
pub mod fence;
pub mod journal;
pub mod replicate;

use super::audit::{Scope, audit_shard};
use super::layout_ops::{self, Connected, LayoutOpError, data_in};
use super::schema;
use super::writer::connect;
use crate::ids::now_ms;
use crate::store::layout::{Layout, Shard};
pub use journal::{Entry, Phase};
use replicate::TableSum;
use serde::Serialize;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// The initial copy of one range, at most.
pub const COPY_TIMEOUT: Duration = Duration::from_secs(3_600);
/// Catching up after the copy, at most.
pub const CATCH_UP_MAX: Duration = Duration::from_secs(600);
/// A mark that crosses to the target this fast means little is left to apply: fence.
pub const CATCH_UP_READY: Duration = Duration::from_millis(200);
/// Inside a fence, the longest wait for the mark before the fence is lifted and the move
/// goes back to catching up. Well inside `fence::FENCE_LEASE`.
pub const FENCE_CATCH_UP_MAX: Duration = Duration::from_millis(800);
/// Fences given up (the target was too slow behind one) before the move stops.
pub const FENCE_ATTEMPTS_MAX: usize = 5;
/// How long the test hook `--test-pause-in` holds a move still, at most.
pub const PAUSE_MAX: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error(transparent)]
    Layout(#[from] LayoutOpError),
    #[error("{what}: {}", super::rows::pg_message(source))]
    Query {
        what: String,
        source: tokio_postgres::Error,
    },
    #[error(
        "shard {shard}: wal_level is {level}; moving buckets away from it needs wal_level = logical (postgresql.conf, then restart)"
    )]
    NotLogical { shard: String, level: String },
    #[error("connecting to shard {shard}: {reason}")]
    Connect { shard: String, reason: String },
    #[error("buckets {first}-{last}: {detail}")]
    OwnershipChanged {
        first: u16,
        last: u16,
        detail: String,
    },
    #[error(
        "buckets {first}-{last} ({source_shard} -> {target}) are part of an unfinished move to another layout (digest {digest}, phase {phase}); finish it with that layout (the shards record it: `paytool shard status`), then move again"
    )]
    OtherLayout {
        first: u16,
        last: u16,
        source_shard: String,
        target: String,
        digest: String,
        phase: String,
    },
    #[error("the move journal: {0}")]
    Journal(String),
    #[error("buckets {first}-{last}: the copy did not finish within {waited:?} ({detail})")]
    CopyTimeout {
        first: u16,
        last: u16,
        waited: Duration,
        detail: String,
    },
    #[error("buckets {first}-{last}: the target did not catch up within {waited:?}")]
    CatchUpTimeout {
        first: u16,
        last: u16,
        waited: Duration,
    },
    #[error(
        "buckets {first}-{last}: the target did not catch up behind a fence {FENCE_ATTEMPTS_MAX} times (each fence lifted after {FENCE_CATCH_UP_MAX:?})"
    )]
    FenceTimeout { first: u16, last: u16 },
    #[error("buckets {first}-{last}: verification {when} failed: {detail}")]
    Verify {
        first: u16,
        last: u16,
        when: &'static str,
        detail: String,
    },
}

/// A failed statement as the move's error, saying what it was doing.
fn query(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> MoveError {
    let what = what.into();
    move |source| MoveError::Query { what, source }
}

/// What a move reports as it goes, for the command's progress bars.
#[derive(Clone, Debug)]
pub enum Event {
    Phase,
    Copied { rows: u64, total: u64, errors: i64 },
    Lag { mark_ms: u64, wal_bytes: i64 },
    Fence { ms: u64, switched: bool },
    Cleaned { rows: u64 },
}

pub trait Progress: Send + Sync {
    fn event(&self, entry: &Entry, event: Event);
}

/// How to run a move.
#[derive(Clone, Debug, Default)]
pub struct MoveOptions {
    /// A test hook: stop still in this phase (at its riskiest point) for `PAUSE_MAX`, so
    /// a test can kill the move there. The journal's `error` says when it is paused.
    pub pause_in: Option<Phase>,
}

/// One range the move will make (or resume).
#[derive(Clone, Debug, Serialize)]
pub struct PlannedRange {
    pub first: u16,
    pub last: u16,
    pub source: String,
    pub target: String,
    pub rows: u64,
    pub bytes: u64,
    /// The phase it resumes from, for a move already under way.
    pub resumes: Option<Phase>,
}

#[derive(Debug, Serialize)]
pub struct MovePlan {
    pub layout: String,
    pub version: u64,
    pub digest: String,
    pub ranges: Vec<PlannedRange>,
    /// Ranges no shard owns yet: given to their owner with no copy.
    pub unowned: Vec<(u16, u16, String)>,
    /// The fence a merchant in a moving range should see, from durable commits timed now
    /// on the source and the target (each fence is a few of them), not counting the time
    /// to apply what was written just before it. Bounded by the lease either way.
    pub expected_fence_ms: f64,
    pub fence_bound_ms: u64,
}

impl MovePlan {
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty() && self.unowned.is_empty()
    }
}

/// What one range's move did.
#[derive(Debug, Serialize)]
pub struct RangeReport {
    pub first: u16,
    pub last: u16,
    pub source: String,
    pub target: String,
    pub rows: i64,
    /// Where this run took it up: `copying` for a new move.
    pub resumed_from: Phase,
    pub copy_seconds: Option<f64>,
    pub copy_rows_per_s: Option<f64>,
    /// Every write fence held on the range, in ms (the last is the switch's).
    pub fences_ms: Vec<u64>,
    /// Row counts and checksums that agreed on both sides before the switch.
    pub checked_before_switch: Vec<TableSum>,
    /// Whether the source's copy was compared again with the target as of the switch (a
    /// run that resumes after the switch cannot: it was checked before).
    pub checked_after_switch: bool,
    /// Payments the ledger audit checked over the range on the target.
    pub audited_payments: u64,
    pub cleaned_rows: u64,
}

#[derive(Debug, Serialize)]
pub struct MoveReport {
    pub layout: String,
    pub version: u64,
    pub digest: String,
    pub ranges: Vec<RangeReport>,
    pub unowned: Vec<(u16, u16, String)>,
    pub fence_ms_max: u64,
    pub seconds: f64,
}

/// One move's connections, options and progress.
struct Ctx<'a> {
    layout: &'a Layout,
    all: Connected,
    options: &'a MoveOptions,
    progress: &'a dyn Progress,
}

impl Ctx<'_> {
    fn client(&self, shard: &str) -> Result<&Client, MoveError> {
        self.all
            .index(shard)
            .map(|i| &self.all.clients[i])
            .ok_or_else(|| {
                MoveError::Journal(format!(
                    "shard {shard} is not in layout {}",
                    self.layout.name
                ))
            })
    }

    /// The test hook: hold still here, saying so in the journal.
    async fn pause(&self, entry: &mut Entry, here: Phase) -> Result<(), MoveError> {
        if self.options.pause_in == Some(here) {
            entry.error = Some(format!("paused in {} (test hook)", here.as_str()));
            journal::update(self.client(&entry.source)?, entry).await?;
            tokio::time::sleep(PAUSE_MAX).await;
            entry.error = None;
        }
        Ok(())
    }

    /// Record the next phase before its work starts.
    async fn advance(&self, entry: &mut Entry, to: Phase) -> Result<(), MoveError> {
        entry.phase = to;
        entry.error = None;
        journal::update(self.client(&entry.source)?, entry).await?;
        self.progress.event(entry, Event::Phase);
        Ok(())
    }
}

/// Per bucket: the move that should happen (from, to), by the shards' records and the
/// layout, and the unfinished moves journaled on the shards.
struct Wanted {
    changes: Vec<layout_ops::OwnerChange>,
    unfinished: Vec<Entry>,
}

async fn wanted(layout: &Layout, all: &Connected) -> Result<Wanted, MoveError> {
    let plan = layout_ops::plan_connected(layout, all).await?;
    let mut unfinished = Vec::new();
    for (i, c) in all.clients.iter().enumerate() {
        let migrated = schema::applied(c).await.map_err(query(format!(
            "shard {}: reading migrations",
            all.shards[i].name
        )))?;
        // A shard without the journal's migration has no move under way.
        if migrated.contains(&2) {
            unfinished.extend(journal::unfinished(c).await?);
        }
    }
    for e in &unfinished {
        if e.layout_digest != layout.digest {
            return Err(MoveError::OtherLayout {
                first: e.first,
                last: e.last,
                source_shard: e.source.clone(),
                target: e.target.clone(),
                digest: e.layout_digest[..12.min(e.layout_digest.len())].to_string(),
                phase: e.phase.as_str().to_string(),
            });
        }
    }
    // Buckets an unfinished move covers are its, not a new move's.
    let covered = |b: u16| unfinished.iter().any(|e| (e.first..=e.last).contains(&b));
    let mut changes = Vec::new();
    for c in plan.owner_changes {
        let mut b = c.first;
        while b <= c.last {
            if covered(b) {
                b += 1;
                continue;
            }
            let mut last = b;
            while last < c.last && !covered(last + 1) {
                last += 1;
            }
            changes.push(layout_ops::OwnerChange {
                first: b,
                last,
                from: c.from.clone(),
                to: c.to.clone(),
                rows: 0,
                bytes: 0,
            });
            b = last + 1;
        }
    }
    for c in &mut changes {
        if let Some(from) = &c.from {
            let i = all.index(from).expect("a connected shard");
            let (rows, bytes) = data_in(&all.clients[i], c.first, c.last)
                .await
                .map_err(query(format!("shard {from}: counting rows")))?;
            (c.rows, c.bytes) = (rows, bytes);
        }
    }
    Ok(Wanted {
        changes,
        unfinished,
    })
}

/// What `run` would do, without changing anything.
pub async fn plan(layout: &Layout, extra: &[Shard]) -> Result<MovePlan, MoveError> {
    let all = layout_ops::connect_all(layout, extra).await?;
    let w = wanted(layout, &all).await?;
    let mut ranges: Vec<PlannedRange> = w
        .unfinished
        .iter()
        .map(|e| PlannedRange {
            first: e.first,
            last: e.last,
            source: e.source.clone(),
            target: e.target.clone(),
            rows: e.rows.max(0) as u64,
            bytes: 0,
            resumes: Some(e.phase),
        })
        .collect();
    let mut unowned = Vec::new();
    for c in &w.changes {
        match &c.from {
            Some(from) => ranges.push(PlannedRange {
                first: c.first,
                last: c.last,
                source: from.clone(),
                target: c.to.clone(),
                rows: c.rows,
                bytes: c.bytes,
                resumes: None,
            }),
            None => unowned.push((c.first, c.last, c.to.clone())),
        }
    }
    ranges.sort_by_key(|r| r.first);
    // The switch's fence: three durable commits on the source (the fence, the mark, the
    // switch), two on the target (the mark applied, the take), a snapshot round trip
    // and the mark's polling; measured here with an idle machine's commits.
    let mut expected_fence_ms = 0.0f64;
    for r in &ranges {
        let s = commit_ms(&all.clients[known(&all, &r.source)?]).await?;
        let t = commit_ms(&all.clients[known(&all, &r.target)?]).await?;
        expected_fence_ms =
            expected_fence_ms.max(3.0 * s + 3.0 * t + fence::MARK_POLL.as_secs_f64() * 1e3);
    }
    Ok(MovePlan {
        layout: layout.name.clone(),
        version: layout.version,
        digest: layout.digest.clone(),
        ranges,
        unowned,
        expected_fence_ms,
        fence_bound_ms: fence::FENCE_LEASE.as_millis() as u64,
    })
}

/// A shard a move names (from the layout or an earlier move's journal) among those
/// connected; a journal naming another is refused, not trusted.
fn known(all: &Connected, shard: &str) -> Result<usize, MoveError> {
    all.index(shard).ok_or_else(|| {
        MoveError::Journal(format!(
            "a move names shard {shard}, which neither this layout nor the one the shards record has"
        ))
    })
}

/// The median of three durable commits (a transaction that takes a transaction id, so
/// its commit waits for the WAL flush, as the fence's statements do), in ms.
async fn commit_ms(c: &Client) -> Result<f64, MoveError> {
    let mut took = Vec::with_capacity(3);
    for _ in 0..3 {
        let t = Instant::now();
        c.batch_execute("BEGIN; SELECT txid_current(); COMMIT")
            .await
            .map_err(query("timing a commit"))?;
        took.push(t.elapsed().as_secs_f64() * 1e3);
    }
    took.sort_by(f64::total_cmp);
    Ok(took[1])
}

/// Move every range whose owner differs between the shards' records and `layout`, and
/// finish any move of this layout that was under way. A second run after a finished
/// one finds nothing to do.
pub async fn run(
    layout: &Layout,
    extra: &[Shard],
    options: &MoveOptions,
    progress: &dyn Progress,
) -> Result<MoveReport, MoveError> {
    let started = Instant::now();
    let mut all = layout_ops::connect_all(layout, extra).await?;
    layout_ops::lock_owners(&all).await?;
    let names: Vec<String> = all.shards.iter().map(|s| s.name.clone()).collect();
    for (i, c) in all.clients.iter_mut().enumerate() {
        schema::migrate(c)
            .await
            .map_err(query(format!("shard {}: migrating", names[i])))?;
    }
    layout_ops::share_fingerprint_key(&all).await?;
    let w = wanted(layout, &all).await?;
    for source in w
        .changes
        .iter()
        .filter_map(|c| c.from.as_ref())
        .chain(w.unfinished.iter().map(|e| &e.source))
    {
        let c = &all.clients[known(&all, source)?];
        let level: String = c
            .query_one("SHOW wal_level", &[])
            .await
            .map_err(query(format!("shard {source}: reading wal_level")))?
            .get(0);
        if level != "logical" {
            return Err(MoveError::NotLogical {
                shard: source.clone(),
                level,
            });
        }
    }
    // Recorded first, so that API instances started on an older layout can find the
    // shards this one adds as soon as a range switches to one of them.
    layout_ops::record_layout(layout, &all).await?;
    let ctx = Ctx {
        layout,
        all,
        options,
        progress,
    };
    let mut report = MoveReport {
        layout: layout.name.clone(),
        version: layout.version,
        digest: layout.digest.clone(),
        ranges: Vec::new(),
        unowned: Vec::new(),
        fence_ms_max: 0,
        seconds: 0.0,
    };
    let mut entries = w.unfinished;
    for c in &w.changes {
        match &c.from {
            None => {
                take(ctx.client(&c.to)?, c.first, c.last).await?;
                report.unowned.push((c.first, c.last, c.to.clone()));
            }
            Some(from) => {
                let now = now_ms();
                let entry = Entry {
                    id: format!("mv_{}_{}_{now}", c.first, c.last),
                    first: c.first,
                    last: c.last,
                    source: from.clone(),
                    target: c.to.clone(),
                    layout_digest: layout.digest.clone(),
                    phase: Phase::Queued,
                    rows: c.rows as i64,
                    fence_ms_max: None,
                    error: None,
                    started_ms: now,
                    updated_ms: now,
                };
                journal::insert(ctx.client(from)?, &entry).await?;
                entries.push(entry);
            }
        }
    }
    entries.sort_by_key(|e| e.first);
    for e in &entries {
        progress.event(e, Event::Phase);
    }
    for mut entry in entries {
        let mut r = RangeReport {
            first: entry.first,
            last: entry.last,
            source: entry.source.clone(),
            target: entry.target.clone(),
            rows: entry.rows,
            resumed_from: entry.phase,
            copy_seconds: None,
            copy_rows_per_s: None,
            fences_ms: Vec::new(),
            checked_before_switch: Vec::new(),
            checked_after_switch: false,
            audited_payments: 0,
            cleaned_rows: 0,
        };
        let result = move_range(&ctx, &mut entry, &mut r).await;
        report.fence_ms_max = report
            .fence_ms_max
            .max(r.fences_ms.iter().copied().max().unwrap_or(0));
        if let Err(e) = result {
            // Said in the journal too, for `shard status`; best effort (the shard may be
            // the one that went away).
            entry.error = Some(e.to_string());
            if let Ok(c) = ctx.client(&entry.source) {
                let _ = journal::update(c, &mut entry).await;
            }
            return Err(e);
        }
        report.ranges.push(r);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Give buckets `first..=last` to `target`, unfenced (idempotent).
async fn take(target: &Client, first: u16, last: u16) -> Result<(), MoveError> {
    target
        .execute(
            "INSERT INTO paytool_buckets (bucket) SELECT generate_series($1::int4, $2::int4)::int2 \
             ON CONFLICT (bucket) DO UPDATE SET fenced_until_ms = NULL",
            &[&i32::from(first), &i32::from(last)],
        )
        .await
        .map_err(query("giving the range to the target"))?;
    Ok(())
}

/// A second connection to a shard, opened before a fence (so the fence does not wait
/// for it) and turned into a snapshot inside it by `begin_snapshot`.
async fn second_connection(all: &Connected, shard: &str) -> Result<Client, MoveError> {
    let i = known(all, shard)?;
    let c = connect(&all.shards[i].url, shard)
        .await
        .map_err(|e| MoveError::Connect {
            shard: shard.to_string(),
            reason: e.to_string(),
        })?;
    Ok(c)
}

/// A read-only REPEATABLE READ transaction whose snapshot is taken now: the shard as of
/// this instant, however long it is read afterwards.
async fn begin_snapshot(c: &Client) -> Result<(), MoveError> {
    c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1")
        .await
        .map_err(query("taking a snapshot"))
}

/// Tables whose count or checksum differ, said plainly.
fn differences(a: &[TableSum], b: &[TableSum]) -> Option<String> {
    let diff: Vec<String> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| {
            format!(
                "{}: source {} rows ({}), target {} rows ({})",
                x.table,
                x.rows,
                &x.md5[..8.min(x.md5.len())],
                y.rows,
                &y.md5[..8.min(y.md5.len())]
            )
        })
        .collect();
    (!diff.is_empty()).then(|| diff.join("; "))
}

/// The ledger audit over the range on the target; its payments, or what failed.
async fn audit_range(all: &Connected, entry: &Entry) -> Result<u64, MoveError> {
    let mut c = second_connection(all, &entry.target).await?;
    let audit = audit_shard(&mut c, 0, Scope::Buckets(entry.first, entry.last))
        .await
        .map_err(query(format!("shard {}: the ledger audit", entry.target)))?;
    let failed: Vec<String> = audit
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.violations.join(", ")))
        .collect();
    if !failed.is_empty() {
        return Err(MoveError::Verify {
            first: entry.first,
            last: entry.last,
            when: "by the ledger audit on the target",
            detail: failed.join("; "),
        });
    }
    Ok(audit.payments)
}

async fn move_range(
    ctx: &Ctx<'_>,
    entry: &mut Entry,
    r: &mut RangeReport,
) -> Result<(), MoveError> {
    let (first, last) = (entry.first, entry.last);
    let source = ctx.client(&entry.source)?;
    let target = ctx.client(&entry.target)?;
    let source_url = ctx.all.shards[ctx.all.index(&entry.source).expect("checked")]
        .url
        .clone();
    // Before the switch, every phase starts again from the copy (kept if it survived).
    if !entry.phase.switched() && entry.phase > Phase::Copying {
        ctx.advance(entry, Phase::Copying).await?;
    }
    if entry.phase == Phase::Switched
        && entry
            .error
            .as_deref()
            .is_some_and(|e| e.contains("after the switch"))
    {
        return Err(MoveError::Verify {
            first,
            last,
            when: "after the switch (an earlier run)",
            detail: format!(
                "{}; the source's copy is kept for inspection",
                entry.error.clone().unwrap_or_default()
            ),
        });
    }
    let mut fence_failures = 0;
    let mut target_at_switch: Option<Client> = None;
    loop {
        match entry.phase {
            Phase::Queued => ctx.advance(entry, Phase::Copying).await?,
            Phase::Copying => {
                if !replicate::subscribed(target, first, last).await? {
                    // Nothing of an earlier, abandoned copy may be left in the way.
                    clean::delete_range(target, &entry.target, first, last, &|_| {}).await?;
                }
                let copy_started = Instant::now();
                replicate::start(source, target, source_url.expose(), first, last).await?;
                ctx.pause(entry, Phase::Copying).await?;
                wait_copied(ctx, entry, source, target).await?;
                let seconds = copy_started.elapsed().as_secs_f64();
                r.copy_seconds = Some(seconds);
                r.copy_rows_per_s = Some(entry.rows as f64 / seconds.max(1e-6));
                ctx.advance(entry, Phase::CatchingUp).await?;
            }
            Phase::CatchingUp => {
                ctx.pause(entry, Phase::CatchingUp).await?;
                catch_up(ctx, entry, source, target).await?;
                ctx.advance(entry, Phase::Verifying).await?;
            }
            Phase::Verifying => {
                let (at_source, at_target) = (
                    second_connection(&ctx.all, &entry.source).await?,
                    second_connection(&ctx.all, &entry.target).await?,
                );
                let fenced = Instant::now();
                fence::fence(source, first, last).await?;
                let caught =
                    fence::mark_and_wait(source, target, first, FENCE_CATCH_UP_MAX).await?;
                if caught.is_some() {
                    tokio::try_join!(begin_snapshot(&at_source), begin_snapshot(&at_target))?;
                    ctx.pause(entry, Phase::Verifying).await?;
                }
                fence::unfence(source, first, last).await?;
                record_fence(ctx, entry, r, fenced.elapsed(), false).await?;
                if caught.is_none() {
                    fence_failures += 1;
                    if fence_failures >= FENCE_ATTEMPTS_MAX {
                        return Err(MoveError::FenceTimeout { first, last });
                    }
                    ctx.advance(entry, Phase::CatchingUp).await?;
                    continue;
                }
                let (a, b) = tokio::try_join!(
                    replicate::checksums(&at_source, first, last),
                    replicate::checksums(&at_target, first, last)
                )?;
                if let Some(detail) = differences(&a, &b) {
                    // The copy is wrong: thrown away, so the next run copies afresh.
                    replicate::stop(source, target, first, last).await?;
                    clean::delete_range(target, &entry.target, first, last, &|_| {}).await?;
                    entry.phase = Phase::Copying;
                    return Err(MoveError::Verify {
                        first,
                        last,
                        when: "before the switch (the copy was discarded; run again to copy afresh)",
                        detail,
                    });
                }
                r.checked_before_switch = a;
                r.audited_payments = audit_range(&ctx.all, entry).await?;
                ctx.advance(entry, Phase::Switching).await?;
            }
            Phase::Switching => {
                let at_target = second_connection(&ctx.all, &entry.target).await?;
                let fenced = Instant::now();
                fence::fence(source, first, last).await?;
                let caught =
                    fence::mark_and_wait(source, target, first, FENCE_CATCH_UP_MAX).await?;
                let switched = match caught {
                    Some(_) => {
                        begin_snapshot(&at_target).await?;
                        ctx.pause(entry, Phase::Switching).await?;
                        switch(source, entry).await?
                    }
                    None => false,
                };
                if switched {
                    ctx.pause(entry, Phase::Switched).await?;
                    take(target, first, last).await?;
                    record_fence(ctx, entry, r, fenced.elapsed(), true).await?;
                    target_at_switch = Some(at_target);
                    ctx.progress.event(entry, Event::Phase);
                    continue;
                }
                // The target was too slow behind the fence, or the lease ran out first.
                fence::unfence(source, first, last).await?;
                record_fence(ctx, entry, r, fenced.elapsed(), false).await?;
                fence_failures += 1;
                if fence_failures >= FENCE_ATTEMPTS_MAX {
                    return Err(MoveError::FenceTimeout { first, last });
                }
                ctx.advance(entry, Phase::CatchingUp).await?;
            }
            Phase::Switched => {
                take(target, first, last).await?;
                replicate::stop(source, target, first, last).await?;
                if let Some(at_target) = target_at_switch.take() {
                    // Nobody writes the source's copy now: it is what the target had at the
                    // switch, or the move lost or doubled something.
                    let (a, b) = tokio::try_join!(
                        replicate::checksums(source, first, last),
                        replicate::checksums(&at_target, first, last)
                    )?;
                    if let Some(detail) = differences(&a, &b) {
                        return Err(MoveError::Verify {
                            first,
                            last,
                            when: "after the switch",
                            detail: format!("{detail}; the source's copy is kept for inspection"),
                        });
                    }
                    r.checked_after_switch = true;
                }
                r.audited_payments = audit_range(&ctx.all, entry).await?;
                ctx.advance(entry, Phase::Cleaning).await?;
            }
            Phase::Cleaning => {
                let shown = entry.clone();
                r.cleaned_rows = clean::delete_range(source, &entry.source, first, last, &|rows| {
                    ctx.progress.event(&shown, Event::Cleaned { rows })
                })
                .await?;
                // The target keeps the rows; only the marks were the move's own.
                target
                    .execute(
                        "DELETE FROM paytool_move_marks WHERE bucket BETWEEN $1 AND $2",
                        &[&(first as i16), &(last as i16)],
                    )
                    .await
                    .map_err(query("deleting the target's marks"))?;
                ctx.advance(entry, Phase::Done).await?;
            }
            Phase::Done => return Ok(()),
        }
    }
}

async fn record_fence(
    ctx: &Ctx<'_>,
    entry: &mut Entry,
    r: &mut RangeReport,
    held: Duration,
    switched: bool,
) -> Result<(), MoveError> {
    let ms = held.as_millis() as u64;
    r.fences_ms.push(ms);
    entry.fence_ms_max = Some(entry.fence_ms_max.unwrap_or(0).max(ms as i64));
    ctx.progress.event(entry, Event::Fence { ms, switched });
    Ok(())
}

/// The switch, on the source: give the range away and journal `switched`, in one
/// transaction, only while this move's fence holds (its lease may have run out while the
/// move stood still: then writes may have been taken since the mark, and the move goes
/// back to catching up). True when switched.
async fn switch(source: &Client, entry: &mut Entry) -> Result<bool, MoveError> {
    let (first, last) = (entry.first as i16, entry.last as i16);
    source
        .batch_execute("BEGIN")
        .await
        .map_err(query("starting the switch"))?;
    let given = source
        .execute(
            concat!(
                "DELETE FROM paytool_buckets WHERE bucket BETWEEN $1 AND $2 AND fenced_until_ms > ",
                super::sql::db_now_ms!()
            ),
            &[&first, &last],
        )
        .await
        .map_err(query("switching the range's owner"))?;
    if given != u64::from(entry.last - entry.first) + 1 {
        source
            .batch_execute("ROLLBACK")
            .await
            .map_err(query("rolling back the switch"))?;
        return Ok(false);
    }
    let before = entry.phase;
    entry.phase = Phase::Switched;
    if let Err(e) = journal::update(source, entry).await {
        entry.phase = before;
        let _ = source.batch_execute("ROLLBACK").await;
        return Err(e);
    }
    source
        .batch_execute("COMMIT")
        .await
        .map_err(query("committing the switch"))?;
    Ok(true)
}

async fn wait_copied(
    ctx: &Ctx<'_>,
    entry: &Entry,
    source: &Client,
    target: &Client,
) -> Result<(), MoveError> {
    let (first, last) = (entry.first, entry.last);
    // Rows per table on the source, to count tables whose copy is done.
    let mut per_table = Vec::new();
    for table in replicate::replicated() {
        let n: i64 = source
            .query_one(
                &format!("SELECT COUNT(*) FROM {table} WHERE bucket BETWEEN $1 AND $2"),
                &[&(first as i16), &(last as i16)],
            )
            .await
            .map_err(query(format!("counting {table}")))?
            .get(0);
        per_table.push((table, n.max(0) as u64));
    }
    let total: u64 = per_table.iter().map(|(_, n)| n).sum();
    let started = Instant::now();
    loop {
        let p = replicate::copy_progress(target, first, last).await?;
        let done: u64 = per_table
            .iter()
            .filter(|(t, _)| p.tables_done.iter().any(|d| d == t))
            .map(|(_, n)| n)
            .sum();
        ctx.progress.event(
            entry,
            Event::Copied {
                rows: (done + p.rows_in_flight).min(total),
                total,
                errors: p.errors,
            },
        );
        if p.done() {
            return Ok(());
        }
        if started.elapsed() > COPY_TIMEOUT {
            return Err(MoveError::CopyTimeout {
                first,
                last,
                waited: COPY_TIMEOUT,
                detail: format!(
                    "{} of {} tables copied, {} worker errors (the target's log says why)",
                    p.tables_done.len(),
                    replicate::replicated().count(),
                    p.errors
                ),
            });
        }
        tokio::time::sleep(replicate::POLL_INTERVAL).await;
    }
}

async fn catch_up(
    ctx: &Ctx<'_>,
    entry: &Entry,
    source: &Client,
    target: &Client,
) -> Result<(), MoveError> {
    let started = Instant::now();
    loop {
        let left = CATCH_UP_MAX.saturating_sub(started.elapsed());
        let took = fence::mark_and_wait(source, target, entry.first, left).await?;
        let wal_bytes = replicate::lag_bytes(source, entry.first, entry.last).await?;
        let Some(took) = took else {
            return Err(MoveError::CatchUpTimeout {
                first: entry.first,
                last: entry.last,
                waited: CATCH_UP_MAX,
            });
        };
        ctx.progress.event(
            entry,
            Event::Lag {
                mark_ms: took.as_millis() as u64,
                wal_bytes,
            },
        );
        if took < CATCH_UP_READY {
            return Ok(());
        }
    }
}

/// Every shard's unfinished moves, for `shard status` (a shard that cannot be read is
/// skipped: status reports it unreachable).
pub async fn in_progress(clients: &[Option<Client>]) -> Vec<Entry> {
    let mut out = Vec::new();
    for c in clients.iter().flatten() {
        let migrated = schema::applied(c).await.unwrap_or_default();
        if migrated.contains(&2) {
            out.extend(journal::unfinished(c).await.unwrap_or_default());
        }
    }
    out.sort_by_key(|e| e.first);
    out
}

//! The open model (what Goose lacks): requests arrive at scheduled times, as k6's
//! arrival-rate executors and wrk2 do, whatever the answers are doing. Latency counts from
//! the scheduled time, so a stall shows up as latency instead of as fewer requests
//! (no coordinated omission), and arrivals that could not be sent on time are counted.
//!
//! A pool of `connections` workers, each with one HTTP/1.1 keep-alive connection
//! (`wire.rs`), takes the next arrival when free, waits for its due time, sends it,
//! and hands the sample to the one Goose user running this schedule, which records it in
//! paytool's histograms and, when Goose's reports are asked for, in Goose's metrics as a
//! custom request (so Goose's reports include it). With several API
//! instances, worker `w` connects to instance `w % n`, as a layer-4 balancer would.

use super::wire;
use crate::profile::load::ArrivalRate;
use crate::profile::segment::Segment;
use crate::scenarios::Scenario;
use crate::scenarios::client::{Call, Client, JourneyResult, Method, Reply, judge};
use crate::scenarios::context::RunContext;
use crate::scenarios::live::LiveStats;
use goose::goose::{Transaction, TransactionFunction};
use goose::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// An arrival sent this long after its due time was not sent on time.
pub const LATE_AFTER: Duration = Duration::from_millis(10);
/// Samples waiting for the recorder; workers wait when it is full.
const SAMPLES_QUEUED_MAX: usize = 65_536;
/// The schedule starts this long after its Goose user, once Goose has reset its metrics
/// (it does when all users are launched; with `no_reset_metrics` it prints to stdout).
const START_DELAY: Duration = Duration::from_secs(1);
/// How long a call that is not the schedule's waits before returning to Goose.
const IDLE: Duration = Duration::from_millis(200);

/// Goose's run time for a schedule: the start delay and the schedule, nothing more.
/// Goose waits for a running transaction when its run time ends, so the last journeys
/// finish inside the schedule's transaction; each of their requests is bounded by the
/// request timeout, so no padding is needed and none is added.
pub fn goose_run_time(arrival: &ArrivalRate) -> Duration {
    START_DELAY + arrival.run_time
}

pub struct OpenModel {
    pub arrival: ArrivalRate,
    /// `--segment I/N`: only the arrivals i with i mod N = I - 1, at their due times
    /// in the whole schedule.
    pub segment: Option<Segment>,
    pub mix: Vec<(Scenario, usize)>,
    pub timeout: Duration,
    /// For https instances.
    pub tls: Option<wire::Tls>,
    /// Goose's reports are asked for (`report.formats`): feed Goose's metrics too. They
    /// cost about 5% of the generator's CPU on /healthz, for reports nobody reads else.
    goose_reports: bool,
    /// Connections (workers) now; grows up to `arrival.connections_max`.
    pub pool: AtomicUsize,
    /// Workers in the middle of a journey.
    busy: AtomicUsize,
    /// How many times the pool grew.
    pub grew: AtomicU64,
    pub sent: AtomicU64,
    pub late: AtomicU64,
    /// Arrivals not sent at all: due longer ago than the request timeout.
    pub dropped: AtomicU64,
    started: AtomicBool,
    /// A Poisson schedule's arrivals so far, in the whole schedule's count (a running
    /// sum of exponential gaps; see `next_due`).
    poisson_count: std::sync::Mutex<f64>,
    pub done: AtomicBool,
    /// From the first due time to the last answer.
    pub elapsed_ms: AtomicU64,
    /// How late sends were, for the lag percentiles.
    pub lag: LiveStats,
}

impl OpenModel {
    pub fn new(
        arrival: ArrivalRate,
        segment: Option<Segment>,
        mix: Vec<(Scenario, usize)>,
        timeout: Duration,
        tls: Option<wire::Tls>,
        goose_reports: bool,
    ) -> Self {
        OpenModel {
            goose_reports,
            pool: AtomicUsize::new(arrival.connections),
            arrival,
            segment,
            mix,
            timeout,
            tls,
            busy: AtomicUsize::new(0),
            grew: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            late: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            started: AtomicBool::new(false),
            poisson_count: std::sync::Mutex::new(0.0),
            done: AtomicBool::new(false),
            elapsed_ms: AtomicU64::new(0),
            lag: LiveStats::default(),
        }
    }

    /// The arrivals this process sends: the whole schedule, or its segment's share.
    pub fn scheduled(&self) -> u64 {
        let total = self.arrival.total();
        self.segment.map_or(total, |s| s.share(total))
    }

    /// When this process's next arrival is due, from the start; None when the schedule
    /// is over. Even arrivals are dealt out by index; Poisson ones come from a running
    /// sum of exponential gaps in the schedule's count, N times as long for one of N
    /// segments, so the N independent streams together are one Poisson stream at the
    /// whole rate (and a ramp stays a ramp: the count maps to time through `due_at`).
    fn next_due(&self, next: &AtomicU64) -> Option<Duration> {
        let total = self.arrival.total();
        if !self.arrival.poisson {
            let i = self.arrival_index(next.fetch_add(1, Ordering::Relaxed));
            return (i < total).then(|| self.arrival.due(i));
        }
        let scale = self.segment.map_or(1.0, |s| s.of as f64);
        // 1 - U is in (0, 1]: its logarithm is finite.
        let gap = -(1.0 - rand::random::<f64>()).ln() * scale;
        let mut count = self.poisson_count.lock().unwrap_or_else(|p| p.into_inner());
        *count += gap;
        (*count < total as f64).then(|| self.arrival.due_at(*count))
    }

    /// The k-th arrival this process sends, as an index into the whole schedule.
    fn arrival_index(&self, k: u64) -> u64 {
        match self.segment {
            Some(s) => (s.index - 1) as u64 + k * s.of as u64,
            None => k,
        }
    }

    fn pick(&self) -> Scenario {
        let total: usize = self.mix.iter().map(|(_, w)| w).sum();
        let mut x = rand::random::<u32>() as usize % total.max(1);
        for (scenario, w) in &self.mix {
            if x < *w {
                return *scenario;
            }
            x -= w;
        }
        self.mix[0].0
    }

    /// One more worker, when the pool is below its ceiling.
    fn grow(
        self: &Arc<Self>,
        ctx: &Arc<RunContext>,
        next: &Arc<AtomicU64>,
        start: Instant,
        tx: &mpsc::Sender<Sample>,
    ) {
        let ceiling = self.arrival.connections_max;
        let Ok(slot) = self
            .pool
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                (p < ceiling).then_some(p + 1)
            })
        else {
            return;
        };
        self.grew.fetch_add(1, Ordering::Relaxed);
        // Detached: it holds a sender, so the recorder waits for it as for the others.
        tokio::spawn(worker(
            slot,
            ctx.clone(),
            self.clone(),
            next.clone(),
            start,
            tx.clone(),
        ));
    }

    /// The schedule as the one transaction of the one Goose user.
    pub fn transaction(self: Arc<Self>, ctx: Arc<RunContext>) -> Transaction {
        let schedule: TransactionFunction = Arc::new(move |user: &mut GooseUser| {
            let (open, ctx) = (self.clone(), ctx.clone());
            Box::pin(async move { run(user, open, ctx).await })
        });
        Transaction::new(schedule).set_name("arrivals")
    }
}

struct Sample {
    method: Method,
    name: &'static str,
    latency: Duration,
    status: Option<u16>,
    ok: bool,
    error: Option<String>,
}

/// Run the whole schedule once, recording every sample (in Goose's metrics too when its
/// reports are asked for).
async fn run(
    user: &mut GooseUser,
    open: Arc<OpenModel>,
    ctx: Arc<RunContext>,
) -> TransactionResult {
    // Goose keeps its user going until the run time ends, calling this again when it
    // returns; the schedule must run exactly once, so every later call idles.
    if open.started.swap(true, Ordering::AcqRel) {
        tokio::time::sleep(IDLE).await;
        return Ok(());
    }
    let (tx, mut rx) = mpsc::channel::<Sample>(SAMPLES_QUEUED_MAX);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + START_DELAY;
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..open.arrival.connections {
        workers.spawn(worker(
            w,
            ctx.clone(),
            open.clone(),
            next.clone(),
            start,
            tx.clone(),
        ));
    }
    drop(tx);
    while let Some(s) = rx.recv().await {
        ctx.record(s.method.as_str(), s.name, s.latency, s.ok, s.status);
        if !open.goose_reports {
            continue;
        }
        user.record_custom_request_duration(
            s.method.as_str(),
            s.name,
            s.latency,
            s.ok,
            s.status,
            s.error.as_deref(),
        )
        .await?;
    }
    while workers.join_next().await.is_some() {}
    open.elapsed_ms
        .store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    open.done.store(true, Ordering::Release);
    Ok(())
}

async fn worker(
    slot: usize,
    ctx: Arc<RunContext>,
    open: Arc<OpenModel>,
    next: Arc<AtomicU64>,
    start: Instant,
    tx: mpsc::Sender<Sample>,
) {
    let mut connection = None;
    loop {
        let Some(due) = open.next_due(&next) else {
            return;
        };
        let due = start + due;
        let mut now = Instant::now();
        // A timer only when it is early: behind schedule, the next arrival is already due.
        if due > now {
            tokio::time::sleep_until(due.into()).await;
            now = Instant::now();
        }
        let lag = now.saturating_duration_since(due);
        open.lag.record(lag, lag <= LATE_AFTER);
        if lag > LATE_AFTER {
            open.late.fetch_add(1, Ordering::Relaxed);
            // Late with every other connection busy: the pool is too small for the rate
            // (k6's "insufficient VUs"); grow it by one, up to connections_max.
            if open.busy.load(Ordering::Relaxed) + 1 >= open.pool.load(Ordering::Relaxed) {
                open.grow(&ctx, &next, start, &tx);
            }
        }
        let scenario = open.pick();
        if lag > open.timeout {
            // Past its own timeout before it could even be sent: dropped, and counted as a
            // failed request, so an overloaded target cannot pass by being slow to ask.
            open.dropped.fetch_add(1, Ordering::Relaxed);
            let (method, name) = scenario.first_request();
            let sample = Sample {
                method,
                name,
                latency: lag,
                status: None,
                ok: false,
                error: Some("dropped: due longer ago than the request timeout".into()),
            };
            if tx.send(sample).await.is_err() {
                return;
            }
            continue;
        }
        open.sent.fetch_add(1, Ordering::Relaxed);
        open.busy.fetch_add(1, Ordering::Relaxed);
        let mut client = ArrivalClient {
            ctx: &ctx,
            open: &open,
            instance: slot,
            connection: &mut connection,
            due: Some(due),
            samples: &tx,
        };
        // The journey's own requests are bounded by the timeout; its errors are samples.
        let _ = scenario.run(&mut client, &ctx).await;
        open.busy.fetch_sub(1, Ordering::Relaxed);
        if tx.is_closed() {
            return;
        }
    }
}

/// One arrival's client: the worker's keep-alive connection (opened on first use or
/// after a failure), every answer judged as the Goose client judges it. The first
/// request's latency counts from the arrival's due time, the rest from their own send;
/// each ends with the answer's last byte (judging it and logging it are not timed).
struct ArrivalClient<'a> {
    ctx: &'a RunContext,
    open: &'a OpenModel,
    /// The instance this worker's connection goes to.
    instance: usize,
    connection: &'a mut Option<wire::Connection>,
    due: Option<Instant>,
    samples: &'a mpsc::Sender<Sample>,
}

impl ArrivalClient<'_> {
    async fn record(&mut self, call: &Call, latency: Duration, reply: &Reply) -> JourneyResult {
        let sample = Sample {
            method: call.method,
            name: call.name,
            latency,
            status: reply.status,
            ok: reply.ok,
            error: reply.error.clone(),
        };
        self.samples
            .send(sample)
            .await
            .map_err(|_| Box::new(TransactionError::Custom("the run has ended".into())))
    }
}

fn reply_of(call: &Call, done: &wire::Exchanged) -> Reply {
    let mut reply = match &done.answer {
        Some((status, bytes)) => judge(call.expect, Some(*status), bytes),
        None => judge(call.expect, None, &[]),
    };
    reply.unsent = done.unsent;
    reply
}

impl Client for ArrivalClient<'_> {
    async fn send(&mut self, call: Call) -> JourneyResult<Reply> {
        let started = self.due.take().unwrap_or_else(Instant::now);
        let endpoint = self.ctx.instances.endpoint(self.instance);
        self.ctx.instances.sent_to(self.instance);
        let key = call.merchant.map(|m| self.ctx.merchants[m].key.as_str());
        let timeout = call.timeout.unwrap_or(self.open.timeout);
        let done = wire::exchange(
            endpoint,
            self.open.tls.as_ref(),
            self.connection,
            key,
            &call,
            timeout,
        )
        .await;
        let reply = reply_of(&call, &done);
        self.record(&call, done.finished.duration_since(started), &reply)
            .await?;
        Ok(reply)
    }

    async fn send_concurrently(&mut self, calls: Vec<Call>) -> JourneyResult<Vec<Reply>> {
        let started = self.due.take().unwrap_or_else(Instant::now);
        let mut tasks = tokio::task::JoinSet::new();
        for (i, call) in calls.iter().cloned().enumerate() {
            // Each on a connection of its own, so a balancer could send each anywhere.
            let instance = self.ctx.instances.next();
            self.ctx.instances.sent_to(instance);
            let endpoint = self.ctx.instances.endpoint(instance).clone();
            let key = call.merchant.map(|m| self.ctx.merchants[m].key.clone());
            let (tls, timeout) = (
                self.open.tls.clone(),
                call.timeout.unwrap_or(self.open.timeout),
            );
            tasks.spawn(async move {
                let mut connection = None;
                let done = wire::exchange(
                    &endpoint,
                    tls.as_ref(),
                    &mut connection,
                    key.as_deref(),
                    &call,
                    timeout,
                )
                .await;
                (i, done)
            });
        }
        let mut exchanged: Vec<Option<wire::Exchanged>> = calls.iter().map(|_| None).collect();
        while let Some(done) = tasks.join_next().await {
            if let Ok((i, done)) = done {
                exchanged[i] = Some(done);
            }
        }
        let mut replies = Vec::with_capacity(calls.len());
        for (call, done) in calls.iter().zip(exchanged) {
            let done = done.unwrap_or(wire::Exchanged {
                answer: None,
                unsent: false,
                finished: Instant::now(),
            });
            let reply = reply_of(call, &done);
            self.record(call, done.finished.duration_since(started), &reply)
                .await?;
            replies.push(reply);
        }
        Ok(replies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(poisson: bool, segment: Option<Segment>) -> Vec<Duration> {
        let arrival = ArrivalRate {
            start_per_s: 1000.0,
            end_per_s: 1000.0,
            run_time: Duration::from_secs(2),
            connections: 1,
            connections_max: 1,
            poisson,
        };
        let open = OpenModel::new(
            arrival,
            segment,
            vec![],
            Duration::from_secs(1),
            None,
            false,
        );
        let next = AtomicU64::new(0);
        std::iter::from_fn(|| open.next_due(&next)).collect()
    }

    #[test]
    fn poisson_arrivals_keep_the_rate_with_random_gaps() {
        let even = schedule(false, None);
        assert_eq!(even.len(), 2000);
        let random = schedule(true, None);
        // 2000 expected; the count's standard deviation is about 45.
        assert!((1700..=2300).contains(&random.len()), "{}", random.len());
        assert!(random.windows(2).all(|w| w[0] <= w[1]), "in time order");
        let gaps: Vec<f64> = random
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
        // Exponential gaps: the spread is about the mean (even ones have none).
        assert!(
            (0.0008..0.0012).contains(&mean) && sd > 0.5 * mean,
            "{mean} {sd}"
        );
        // Three segments' streams together keep the whole rate.
        let together: usize = (1..=3)
            .map(|i| schedule(true, Some(Segment { index: i, of: 3 })).len())
            .sum();
        assert!((1600..=2400).contains(&together), "{together}");
    }
}

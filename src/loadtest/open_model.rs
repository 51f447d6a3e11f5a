//! The open model (what Goose lacks): requests arrive at scheduled times, as k6's
//! arrival-rate executors and wrk2 do, whatever the answers are doing. Latency counts from
//! the scheduled time, so a stall shows up as latency instead of as fewer requests
//! (no coordinated omission), and arrivals that could not be sent on time are counted.
//!
//! A pool of `connections` workers, each with one HTTP/1.1 keep-alive connection on a
//! lean hyper client, takes the next arrival when free, waits for its due time, sends it,
//! and hands the sample to the one Goose user running this schedule, which records it in
//! Goose's metrics as a custom request (so Goose's reports include it).

use super::context::{RunContext, current};
use super::live::LiveStats;
use crate::profile::load::ArrivalRate;
use crate::scenarios::{APPROVED_CARD, FAILING_CARDS, names, payment_body};
use bytes::Bytes;
use goose::prelude::*;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Goose's run time for a schedule: all of it, plus the last answers' timeout, plus slack.
pub fn goose_run_time(arrival: &ArrivalRate, timeout: Duration) -> Duration {
    let _ = timeout;
    START_DELAY + arrival.run_time
}

pub struct OpenModel {
    pub authority: String,
    pub arrival: ArrivalRate,
    pub mix: Vec<(&'static str, usize)>,
    pub timeout: Duration,
    pub sent: AtomicU64,
    pub late: AtomicU64,
    /// Arrivals not sent at all: due longer ago than the request timeout.
    pub dropped: AtomicU64,
    started: AtomicBool,
    pub done: AtomicBool,
    /// From the first due time to the last answer.
    pub elapsed_ms: AtomicU64,
    /// How late sends were, for the lag percentiles.
    pub lag: LiveStats,
}

impl OpenModel {
    pub fn new(
        base_url: &str,
        arrival: ArrivalRate,
        mix: Vec<(&'static str, usize)>,
        timeout: Duration,
    ) -> Self {
        let authority = base_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        OpenModel {
            authority,
            arrival,
            mix,
            timeout,
            sent: AtomicU64::new(0),
            late: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            started: AtomicBool::new(false),
            done: AtomicBool::new(false),
            elapsed_ms: AtomicU64::new(0),
            lag: LiveStats::default(),
        }
    }

    fn pick(&self) -> &'static str {
        let total: usize = self.mix.iter().map(|(_, w)| w).sum();
        let mut x = rand::random::<u32>() as usize % total.max(1);
        for (name, w) in &self.mix {
            if x < *w {
                return name;
            }
            x -= w;
        }
        self.mix[0].0
    }
}

struct Sample {
    method: &'static str,
    name: &'static str,
    latency: Duration,
    status: Option<u16>,
    ok: bool,
}

/// The one transaction of the one Goose user: run the whole schedule, record every sample.
pub async fn run(user: &mut GooseUser) -> TransactionResult {
    let ctx = current();
    let Some(open) = ctx.open.clone() else {
        return Err(Box::new(TransactionError::Custom(
            "no arrival schedule installed".into(),
        )));
    };
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
    for _ in 0..open.arrival.connections {
        workers.spawn(worker(
            ctx.clone(),
            open.clone(),
            next.clone(),
            start,
            tx.clone(),
        ));
    }
    drop(tx);
    while let Some(s) = rx.recv().await {
        ctx.live.record(s.latency, s.ok);
        let error = (!s.ok).then_some(if s.status.is_some() {
            "unexpected status"
        } else {
            "no answer"
        });
        user.record_custom_request_duration(s.method, s.name, s.latency, s.ok, s.status, error)
            .await?;
    }
    while workers.join_next().await.is_some() {}
    open.elapsed_ms
        .store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    open.done.store(true, Ordering::Release);
    Ok(())
}

async fn connect(authority: &str) -> Option<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(authority).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

async fn worker(
    ctx: Arc<RunContext>,
    open: Arc<OpenModel>,
    next: Arc<AtomicU64>,
    start: Instant,
    tx: mpsc::Sender<Sample>,
) {
    let total = open.arrival.total();
    let mut sender = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            return;
        }
        let due = start + open.arrival.due(i);
        tokio::time::sleep_until(due.into()).await;
        let lag = Instant::now().saturating_duration_since(due);
        open.lag.record(lag, lag <= LATE_AFTER);
        if lag > LATE_AFTER {
            open.late.fetch_add(1, Ordering::Relaxed);
        }
        let kind = open.pick();
        if lag > open.timeout {
            // Past its own timeout before it could even be sent: dropped, and counted as a
            // failed request, so an overloaded target cannot pass by being slow to ask.
            open.dropped.fetch_add(1, Ordering::Relaxed);
            let (method, name, _) = request_name(kind);
            let sample = Sample {
                method,
                name,
                latency: lag,
                status: None,
                ok: false,
            };
            if tx.send(sample).await.is_err() {
                return;
            }
            continue;
        }
        open.sent.fetch_add(1, Ordering::Relaxed);
        let (method, name, sample_status, ok) = match send(&ctx, &open, &mut sender, kind).await {
            Some((method, name, status, ok)) => (method, name, Some(status), ok),
            None => {
                sender = None;
                let (method, name, _) = request_name(kind);
                (method, name, None, false)
            }
        };
        let sample = Sample {
            method,
            name,
            latency: due.elapsed(),
            status: sample_status,
            ok,
        };
        if tx.send(sample).await.is_err() {
            return;
        }
    }
}

/// (method, request name, path) of a single-request scenario.
fn request_name(kind: &str) -> (&'static str, &'static str, &'static str) {
    match kind {
        "checkout" => ("POST", names::PAYMENTS, names::PAYMENTS),
        "declines" => ("POST", names::DECLINE, names::PAYMENTS),
        "browse" => ("GET", names::BALANCE, names::BALANCE),
        _ => ("GET", "/healthz", "/healthz"),
    }
}

/// One request on this worker's connection (opened on first use or after a failure).
/// None when the connection failed or the answer did not come in time.
async fn send(
    ctx: &RunContext,
    open: &OpenModel,
    sender: &mut Option<SendRequest<Full<Bytes>>>,
    kind: &str,
) -> Option<(&'static str, &'static str, u16, bool)> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = Some(connect(&open.authority).await?);
    }
    let s = sender.as_mut()?;
    s.ready().await.ok()?;
    let (method, name, path) = request_name(kind);
    let merchant = ctx.pick_merchant();
    let uri = format!("http://{}{path}", open.authority);
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header(hyper::header::HOST, open.authority.as_str());
    let mut key = None;
    let body = if method == "POST" {
        let k = ctx.new_key();
        builder = builder
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", ctx.merchants[merchant].key),
            )
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", k.as_str());
        key = Some(k);
        let card = if kind == "declines" {
            FAILING_CARDS[rand::random::<u32>() as usize % FAILING_CARDS.len()]
        } else {
            APPROVED_CARD
        };
        Bytes::from(serde_json::to_vec(&payment_body(true, card)).ok()?)
    } else {
        if kind == "browse" {
            builder = builder.header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", ctx.merchants[merchant].key),
            );
        }
        Bytes::new()
    };
    let request = builder.body(Full::new(body)).ok()?;
    let response = tokio::time::timeout(open.timeout, async {
        let response = s.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, bytes))
    })
    .await
    .ok()??;
    let (status, bytes) = response;
    let ok = match kind {
        "declines" => status == 402,
        _ => (200..300).contains(&status),
    };
    // Log what the API acknowledged, for the money audit.
    if let Some(k) = key
        && (status == 200 || status == 402)
        && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
    {
        let payment = if status == 402 {
            &v["error"]["payment"]
        } else {
            &v
        };
        ctx.acks.created(merchant, &k, payment);
    }
    Some((method, name, status, ok))
}

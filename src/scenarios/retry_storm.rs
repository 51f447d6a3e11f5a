//! Retry storm: the same Idempotency-Key sent concurrently, and again after a client
//! timeout, as a real client retries. Every completed answer must name the same payment.
//! The reference API makes a same-key request wait for the first to commit and replays
//! it; an API that answers `409 idempotency_key_in_use` instead is retried here.

use super::{APPROVED_CARD, ctx, names, payment_body};
use crate::loadtest::context::RunContext;
use goose::prelude::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const CONCURRENT_SENDS: usize = 4;
const RETRIES_MAX: usize = 5;
/// Short enough that the first try often times out while the server still commits it.
const IMPATIENT_TIMEOUT: Duration = Duration::from_millis(2);

pub async fn run(user: &mut GooseUser) -> TransactionResult {
    let ctx = ctx();
    let merchant = ctx.pick_merchant();
    let key = ctx.new_key();
    let body = payment_body(true, APPROVED_CARD);
    let send_one = |user: &GooseUser, timeout| send(user, &ctx, merchant, &key, &body, timeout);
    // A burst of the same request, plus an impatient one that gives up early.
    let mut tries = Vec::with_capacity(CONCURRENT_SENDS + 1);
    for _ in 0..CONCURRENT_SENDS {
        tries.push(send_one(user, None)?);
    }
    tries.push(send_one(user, Some(IMPATIENT_TIMEOUT))?);
    let mut answers = Vec::new();
    let mut unanswered = 0;
    let impatient = tries.len() - 1;
    for (i, t) in tries.into_iter().enumerate() {
        let (elapsed, answer) = t
            .await
            .map_err(|e| Box::new(TransactionError::Custom(e.to_string())))?;
        let status = answer.as_ref().map(|a| a.0);
        if i == impatient {
            // Giving up early is this client's choice, not the server's failure.
            ctx.live.record(elapsed, true);
            user.record_custom_request_duration(
                "POST",
                names::RETRY_IMPATIENT,
                elapsed,
                true,
                status,
                None,
            )
            .await?;
        } else {
            record(user, &ctx, elapsed, status).await?;
        }
        match answer {
            Some((200, body)) => answers.push(body),
            _ => unanswered += 1,
        }
    }
    // Retry what did not complete (timeouts, 409 in use), as a client would, bounded.
    for attempt in 0..RETRIES_MAX {
        if unanswered == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
        let (elapsed, answer) = send_one(user, None)?
            .await
            .map_err(|e| Box::new(TransactionError::Custom(e.to_string())))?;
        record(user, &ctx, elapsed, answer.as_ref().map(|a| a.0)).await?;
        if let Some((200, body)) = answer {
            answers.push(body);
            unanswered -= 1;
        }
    }
    let ids: Vec<&str> = answers.iter().filter_map(|a| a["id"].as_str()).collect();
    if let Some(first) = answers.first() {
        ctx.acks.created(merchant, &key, first);
    }
    if ids.windows(2).any(|w| w[0] != w[1]) {
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        ctx.storm_violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!(
                "key {key:?} was answered with {} different payments: {}",
                distinct.len(),
                distinct.join(", ")
            ));
    }
    Ok(())
}

type Answer = (Duration, Option<(u16, Value)>);

/// Send one try on its own task, so that several are in flight at once.
fn send(
    user: &GooseUser,
    ctx: &RunContext,
    merchant: usize,
    key: &str,
    body: &Value,
    timeout: Option<Duration>,
) -> Result<tokio::task::JoinHandle<Answer>, Box<TransactionError>> {
    let mut b = user
        .get_request_builder(&GooseMethod::Post, names::PAYMENTS)?
        .bearer_auth(&ctx.merchants[merchant].key)
        .header("Idempotency-Key", key)
        .json(body);
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    Ok(tokio::spawn(async move {
        let started = Instant::now();
        let answer = match b.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                Some((status, r.json::<Value>().await.unwrap_or(Value::Null)))
            }
            Err(_) => None,
        };
        (started.elapsed(), answer)
    }))
}

async fn record(
    user: &mut GooseUser,
    ctx: &RunContext,
    elapsed: Duration,
    status: Option<u16>,
) -> TransactionResult {
    let ok = status == Some(200);
    ctx.live.record(elapsed, ok);
    let error = match status {
        None => Some("no answer (timeout)"),
        Some(200) => None,
        Some(_) => Some("unexpected status"),
    };
    user.record_custom_request_duration("POST", names::RETRY, elapsed, ok, status, error)
        .await
}

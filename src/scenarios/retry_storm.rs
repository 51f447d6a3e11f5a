//! Retry storm: the same Idempotency-Key sent concurrently, and again after a client
//! timeout, as a real client retries. Every completed answer must name the same payment.
//! The reference API makes a same-key request wait for the first to commit and replays
//! it; an API that answers `409 idempotency_key_in_use` instead is retried here.

use super::client::{Client, Expect, JourneyResult, Shape};
use super::context::RunContext;
use super::replies::PaymentSeen;
use super::{APPROVED_CARD, names, new_create, payment_body};
use std::time::Duration;

const CONCURRENT_SENDS: usize = 4;
const RETRIES_MAX: usize = 5;
/// The first retry's back-off; each next one doubles it (5, 10, 20, 40, 80 ms).
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
/// Short enough that the first try often times out while the server still commits it.
const IMPATIENT_TIMEOUT: Duration = Duration::from_millis(2);

pub async fn run<C: Client>(client: &mut C, ctx: &RunContext) -> JourneyResult {
    let (merchant, key, attempt) = new_create(ctx, names::RETRY, payment_body(true, APPROVED_CARD));
    let attempt = attempt.expect(Expect::Success(Shape::Payment));
    // A burst of the same request, plus an impatient one that gives up early: giving up
    // is this client's choice, not the server's failure, so any outcome is a success.
    let mut burst = vec![attempt.clone(); CONCURRENT_SENDS];
    let mut impatient = attempt.clone().timeout(IMPATIENT_TIMEOUT);
    impatient.name = names::RETRY_IMPATIENT;
    impatient.expect = Expect::Anything(Shape::Payment);
    burst.push(impatient);
    let replies = client.send_concurrently(burst).await?;
    let mut answers: Vec<PaymentSeen> = Vec::new();
    let mut unanswered = 0;
    for reply in &replies {
        match reply.payment() {
            Some(p) => answers.push(p.clone()),
            None => unanswered += 1,
        }
    }
    // Retry what did not complete (timeouts, 409 in use), as a client would, bounded.
    for retry in 0..RETRIES_MAX as u32 {
        if unanswered == 0 {
            break;
        }
        tokio::time::sleep(BACKOFF_FIRST * 2u32.pow(retry)).await;
        if let Some(p) = client.send(attempt.clone()).await?.payment() {
            answers.push(p.clone());
            unanswered -= 1;
        }
    }
    ctx.acks.answers_logged(answers.len() as u64);
    if let Some(first) = answers.first() {
        ctx.acks.created(merchant, &key, first);
        ctx.unanswered.answered(&key);
    }
    let mut distinct: Vec<String> = answers.iter().map(|a| a.id.to_string()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() > 1 {
        ctx.storm_violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!(
                "key {:?} was answered with {} different payments: {}",
                key.as_str(),
                distinct.len(),
                distinct.join(", ")
            ));
    }
    Ok(())
}

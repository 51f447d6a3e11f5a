//! Declines and processor errors from the test cards: a 402 is the expected answer,
//! and the failed payment it carries is logged like any acknowledged payment.

use super::acks::SentCreate;
use super::client::{Call, Client, Expect, JourneyResult, Shape};
use super::context::RunContext;
use super::{FAILING_CARDS, names, payment_body};

pub async fn run<C: Client>(client: &mut C, ctx: &RunContext) -> JourneyResult {
    let merchant = ctx.pick_merchant();
    let key = ctx.new_key();
    let card = FAILING_CARDS[rand::random::<u32>() as usize % FAILING_CARDS.len()];
    let body = payment_body(true, card);
    ctx.unanswered.sent(SentCreate {
        merchant,
        key: key.clone(),
        body: body.clone(),
    });
    let call = Call::post(
        names::PAYMENTS,
        names::DECLINE,
        merchant,
        key.as_str().into(),
        body,
    )
    .expect(Expect::Status(402, Shape::DeclinedPayment));
    let reply = client.send(call).await?;
    if reply.made_nothing() {
        ctx.unanswered.answered(&key);
    }
    if let Some(p) = reply.payment() {
        ctx.acks.created(merchant, &key, p);
        ctx.acks.answers_logged(1);
        ctx.unanswered.answered(&key);
    }
    Ok(())
}

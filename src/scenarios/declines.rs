//! Declines and processor errors from the test cards: a 402 is the expected answer,
//! and the failed payment it carries is logged like any acknowledged payment.

use super::client::{Client, Expect, JourneyResult, Shape};
use super::context::RunContext;
use super::{FAILING_CARDS, logged_create, names, new_create, payment_body};

pub async fn run<C: Client>(client: &mut C, ctx: &RunContext) -> JourneyResult {
    let card = FAILING_CARDS[rand::random::<u32>() as usize % FAILING_CARDS.len()];
    let (merchant, key, call) = new_create(ctx, names::DECLINE, payment_body(true, card));
    let reply = client
        .send(call.expect(Expect::Status(402, Shape::DeclinedPayment)))
        .await?;
    logged_create(ctx, merchant, &key, &reply);
    Ok(())
}

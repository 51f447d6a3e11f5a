//! Declines and processor errors from the test cards: a 402 is the expected answer,
//! and the failed payment it carries is logged like any acknowledged payment.

use super::{Call, FAILING_CARDS, ctx, names, payment_body, send};
use goose::prelude::*;

pub async fn run(user: &mut GooseUser) -> TransactionResult {
    let ctx = ctx();
    let merchant = ctx.pick_merchant();
    let key = ctx.new_key();
    let card = FAILING_CARDS[rand::random::<u32>() as usize % FAILING_CARDS.len()];
    let reply = send(
        user,
        &ctx,
        Call {
            method: GooseMethod::Post,
            path: names::PAYMENTS.into(),
            name: names::DECLINE,
            merchant,
            key: Some(key.clone()),
            body: Some(payment_body(true, card)),
            ok: |s| s == 402,
        },
    )
    .await?;
    if reply.status == 402 {
        ctx.acks
            .created(merchant, &key, &reply.body["error"]["payment"]);
    }
    Ok(())
}

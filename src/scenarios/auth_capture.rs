//! Authorize now, capture later: usually in full, sometimes in part (the rest released).

use super::acks::Pending;
use super::client::{Client, JourneyResult};
use super::context::RunContext;
use super::{change_payment, create_payment};

pub async fn run<C: Client>(client: &mut C, ctx: &RunContext) -> JourneyResult {
    let Some((merchant, payment)) = create_payment(client, ctx, false).await? else {
        return Ok(());
    };
    let amount = if rand::random::<u32>() % 3 == 0 {
        (payment.amount * 3 / 4).max(1)
    } else {
        payment.amount
    };
    change_payment(
        client,
        ctx,
        merchant,
        &payment.id,
        Pending::Capture { amount },
    )
    .await?;
    Ok(())
}

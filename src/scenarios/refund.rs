//! Refund: pay, then refund part, then the rest.

use super::acks::Pending;
use super::client::{Client, JourneyResult};
use super::context::RunContext;
use super::{change_payment, create_payment};

pub async fn run<C: Client>(client: &mut C, ctx: &RunContext) -> JourneyResult {
    let Some((merchant, payment)) = create_payment(client, ctx, true).await? else {
        return Ok(());
    };
    let captured = payment.amount_captured;
    let part = captured / 2;
    let id = &payment.id;
    if part > 0
        && !change_payment(client, ctx, merchant, id, Pending::Refund { amount: part }).await?
    {
        return Ok(());
    }
    let rest = Pending::Refund {
        amount: captured - part,
    };
    change_payment(client, ctx, merchant, id, rest).await?;
    Ok(())
}

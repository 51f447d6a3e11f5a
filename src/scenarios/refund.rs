//! Refund: pay, then refund part, then the rest.

use super::{change_payment, create_payment, ctx};
use crate::loadtest::acks::Pending;
use goose::prelude::*;

pub async fn run(user: &mut GooseUser) -> TransactionResult {
    let ctx = ctx();
    let Some((merchant, payment)) = create_payment(user, &ctx, true).await? else {
        return Ok(());
    };
    let (Some(id), Some(captured)) = (payment["id"].as_str(), payment["amount_captured"].as_u64())
    else {
        return Ok(());
    };
    let part = captured / 2;
    if part > 0
        && change_payment(user, &ctx, merchant, id, Pending::Refund { amount: part })
            .await?
            .is_none()
    {
        return Ok(());
    }
    change_payment(
        user,
        &ctx,
        merchant,
        id,
        Pending::Refund {
            amount: captured - part,
        },
    )
    .await?;
    Ok(())
}

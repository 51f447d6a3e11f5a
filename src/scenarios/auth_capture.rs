//! Authorize now, capture later: usually in full, sometimes in part (the rest released).

use super::{change_payment, create_payment, ctx};
use crate::loadtest::acks::Pending;
use goose::prelude::*;

pub async fn run(user: &mut GooseUser) -> TransactionResult {
    let ctx = ctx();
    let Some((merchant, payment)) = create_payment(user, &ctx, false).await? else {
        return Ok(());
    };
    let (Some(id), Some(amount)) = (payment["id"].as_str(), payment["amount"].as_u64()) else {
        return Ok(());
    };
    let amount = if rand::random::<u32>() % 3 == 0 {
        (amount * 3 / 4).max(1)
    } else {
        amount
    };
    change_payment(user, &ctx, merchant, id, Pending::Capture { amount }).await?;
    Ok(())
}

//! Cancel: authorize, then release the hold.

use super::{change_payment, create_payment, ctx};
use crate::loadtest::acks::Pending;
use goose::prelude::*;

pub async fn run(user: &mut GooseUser) -> TransactionResult {
    let ctx = ctx();
    let Some((merchant, payment)) = create_payment(user, &ctx, false).await? else {
        return Ok(());
    };
    if let Some(id) = payment["id"].as_str() {
        change_payment(user, &ctx, merchant, id, Pending::Cancel).await?;
    }
    Ok(())
}

//! Checkout: one request authorizes and captures.

use super::{create_payment, ctx};
use goose::prelude::*;

pub async fn run(user: &mut GooseUser) -> TransactionResult {
    let ctx = ctx();
    create_payment(user, &ctx, true).await?;
    Ok(())
}

//! Checkout: one request authorizes and captures.

use super::client::{Client, JourneyResult};
use super::context::RunContext;
use super::create_payment;

pub async fn run<C: Client>(client: &mut C, ctx: &RunContext) -> JourneyResult {
    create_payment(client, ctx, true).await?;
    Ok(())
}

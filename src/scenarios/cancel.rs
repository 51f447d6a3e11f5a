//! Cancel: authorize, then release the hold.

use super::acks::Pending;
use super::client::{Client, JourneyResult};
use super::context::RunContext;
use super::{change_payment, create_payment};

pub async fn run<C: Client>(client: &mut C, ctx: &RunContext) -> JourneyResult {
    let Some((merchant, payment)) = create_payment(client, ctx, false).await? else {
        return Ok(());
    };
    change_payment(client, ctx, merchant, &payment.id, Pending::Cancel).await?;
    Ok(())
}

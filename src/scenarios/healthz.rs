//! Healthz: the cheapest request there is. For measuring the load generator itself
//! against wrk on the same endpoint, not the payment path.

use super::client::{Call, Client, Expect, JourneyResult, Shape};
use super::context::RunContext;
use super::names;

pub async fn run<C: Client>(client: &mut C, _ctx: &RunContext) -> JourneyResult {
    let call = Call::get(names::HEALTHZ, names::HEALTHZ, None).expect(Expect::Success(Shape::Any));
    client.send(call).await?;
    Ok(())
}

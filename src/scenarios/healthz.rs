//! Healthz: the cheapest request there is. For measuring the load generator itself
//! against wrk on the same endpoint, not the payment path.

use super::ctx;
use goose::prelude::*;
use std::time::Instant;

pub async fn run(user: &mut GooseUser) -> TransactionResult {
    let ctx = ctx();
    let started = Instant::now();
    let goose = user.get("/healthz").await?;
    ctx.live.record(started.elapsed(), goose.request.success);
    Ok(())
}

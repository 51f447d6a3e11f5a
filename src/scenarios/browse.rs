//! Browse: the balance, a page of payments, the next page, one payment.

use super::client::{Body, Call, Client, Expect, JourneyResult, Shape};
use super::context::RunContext;
use super::names;

const PAGE_LIMIT: usize = 10;

pub async fn run<C: Client>(client: &mut C, ctx: &RunContext) -> JourneyResult {
    let merchant = Some(ctx.pick_merchant());
    client
        .send(Call::get(names::BALANCE, names::BALANCE, merchant))
        .await?;
    let list = |path: String| {
        Call::get(path, names::PAYMENTS, merchant).expect(Expect::Success(Shape::Page))
    };
    let first = client
        .send(list(format!("/v1/payments?limit={PAGE_LIMIT}")))
        .await?;
    let Body::Page(page) = first.body else {
        return Ok(());
    };
    if page.has_more
        && let Some(last) = page.data.last()
    {
        let path = format!("/v1/payments?limit={PAGE_LIMIT}&starting_after={}", last.id);
        client.send(list(path)).await?;
    }
    if let Some(one) = page.data.first() {
        let call = Call::get(format!("/v1/payments/{}", one.id), names::PAYMENT, merchant)
            .expect(Expect::Success(Shape::Payment));
        client.send(call).await?;
    }
    Ok(())
}

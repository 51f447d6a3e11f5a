//! Browse: the balance, a page of payments, the next page, one payment.

use super::{Call, ctx, is_2xx, names, send};
use goose::prelude::*;

pub async fn run(user: &mut GooseUser) -> TransactionResult {
    let ctx = ctx();
    let merchant = ctx.pick_merchant();
    let get = |path: String, name: &'static str| Call {
        method: GooseMethod::Get,
        path,
        name,
        merchant,
        key: None,
        body: None,
        ok: is_2xx,
    };
    send(user, &ctx, get(names::BALANCE.into(), names::BALANCE)).await?;
    let page = send(
        user,
        &ctx,
        get("/v1/payments?limit=10".into(), names::PAYMENTS),
    )
    .await?;
    let data = page.body["data"].as_array().cloned().unwrap_or_default();
    if page.body["has_more"] == true
        && let Some(last) = data.last().and_then(|p| p["id"].as_str())
    {
        let path = format!("/v1/payments?limit=10&starting_after={last}");
        send(user, &ctx, get(path, names::PAYMENTS)).await?;
    }
    if let Some(first) = data.first().and_then(|p| p["id"].as_str()) {
        send(
            user,
            &ctx,
            get(format!("/v1/payments/{first}"), names::PAYMENT),
        )
        .await?;
    }
    Ok(())
}

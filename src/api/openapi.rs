//! The OpenAPI document, generated from the handlers' and types' annotations.

use super::{admin, error, payments, types};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "paytool reference payment API", description = "Stripe-shaped payments with idempotency keys and a double-entry ledger."),
    paths(
        payments::create_payment, payments::capture_payment, payments::cancel_payment,
        payments::refund_payment, payments::get_payment, payments::list_payments,
        payments::get_balance, admin::create_merchant, admin::roll_key, admin::audit, admin::lookup,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail, error::ErrorType, types::PaymentObject)),
    modifiers(&Security),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = || SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer));
        components.add_security_scheme("api_key", bearer());
        components.add_security_scheme("admin_token", bearer());
    }
}

pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}

//! The OpenAPI document, generated from the handlers' and types' annotations, then
//! refined with what annotations cannot say: the bounds the handlers check (taken from
//! the same constants), the answers every route shares, and the rules that span fields
//! (an amount's maximum depends on its currency, an expiry on today's date). The document
//! must describe exactly what the API accepts and answers: schemathesis
//! (scripts/fuzz_api.sh) checks it both ways.

use super::admin::{
    KEYED_PAGE_LIMIT_MAX, LOOKUP_BATCH_MAX, MERCHANT_NAME_LEN_MAX, ROLL_GRACE_MAX_S,
};
use super::extract::IDEMPOTENCY_KEY_LEN_MAX;
use super::payments::LIST_LIMIT_MAX;
use super::{admin, error, payments, types};
use crate::ledger::Currency;
use serde_json::{Map, Value, json};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "paytool reference payment API", description = "Stripe-shaped payments with idempotency keys and a double-entry ledger."),
    paths(
        payments::create_payment, payments::capture_payment, payments::cancel_payment,
        payments::refund_payment, payments::get_payment, payments::list_payments,
        payments::get_balance, admin::create_merchant, admin::roll_key, admin::audit, admin::lookup,
        admin::payments_with_key_prefix,
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
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
    refine(&mut doc, payments::current_year_month());
    serde_json::to_string_pretty(&doc).expect("the OpenAPI document serializes")
}

/// What `new_id(prefix)` makes (crate::ids::is_id).
fn id_pattern(prefix: &str) -> String {
    format!("^{prefix}_[0-9a-f]{{32}}$")
}

/// Unicode White_Space, as Rust's `str::trim` strips it (regex engines' `\s` differ).
const WHITESPACE: &str = r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

fn refine(doc: &mut Value, (year, month): (u16, u8)) {
    shared_answers(doc);
    let pay_id = id_pattern("pay");
    for (path, op) in operations(doc) {
        // These handlers take an empty body as "no parameters" (extract::OptionalBody).
        if OPTIONAL_BODY.contains(&path.as_str()) {
            op["requestBody"]["required"] = json!(false);
        }
        let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
            continue;
        };
        for p in params {
            let schema = match (p["in"].as_str(), p["name"].as_str()) {
                (Some("header"), Some("Idempotency-Key")) => {
                    let said = p["description"].as_str().unwrap_or_default();
                    p["description"] = json!(format!(
                        "{said} 1 to {IDEMPOTENCY_KEY_LEN_MAX} visible ASCII characters holding no card number; the same key with another request is refused with 400 `idempotency_key_reused`."
                    ));
                    // Visible ASCII, no spaces.
                    json!({"type": "string", "minLength": 1,
                        "maxLength": IDEMPOTENCY_KEY_LEN_MAX, "pattern": "^[!-~]+$"})
                }
                // Any other text is answered 404, as an unknown id is.
                (Some("path"), Some("id")) if path.starts_with("/v1/admin/merchants/") => {
                    json!({"type": "string", "pattern": id_pattern("mer")})
                }
                (Some("path"), Some("id")) => json!({"type": "string", "pattern": pay_id}),
                (Some("query"), Some("limit")) if path == "/v1/admin/payments" => {
                    json!({"type": "integer", "minimum": 1, "maximum": KEYED_PAGE_LIMIT_MAX})
                }
                (Some("query"), Some("limit")) => {
                    json!({"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX})
                }
                (Some("query"), Some("key_prefix")) => {
                    json!({"type": "string", "minLength": 1,
                        "maxLength": IDEMPOTENCY_KEY_LEN_MAX, "pattern": "^[!-~]+$"})
                }
                (Some("query"), Some("starting_after")) => {
                    json!({"type": "string", "pattern": pay_id})
                }
                _ => continue,
            };
            p["schema"] = schema;
        }
    }
    // A created merchant's id is what a key roll takes (its path is not under /v1/merchants,
    // so a client or fuzzer cannot guess the link).
    doc["paths"]["/v1/merchants"]["post"]["responses"]["201"]["links"] = json!({
        "RollKey": {"operationId": "roll_key", "parameters": {"id": "$response.body#/id"}},
    });
    let amount_max = Currency::all()
        .filter_map(|c| Currency::parse(c).ok())
        .map(Currency::amount_max_minor)
        .max()
        .expect("currencies");
    let schemas = &mut doc["components"]["schemas"];
    // Requests.
    let create = &mut schemas["CreatePaymentRequest"];
    create["properties"]["amount"]["minimum"] = json!(1);
    create["properties"]["currency"]["enum"] = json!(Currency::all().collect::<Vec<_>>());
    // The largest amount is 100 million major units less one minor unit: its minor units
    // depend on the currency's exponent.
    let mut by_max: Vec<(u64, Vec<&str>)> = Vec::new();
    for code in Currency::all() {
        let max = Currency::parse(code).expect("listed").amount_max_minor();
        match by_max.iter_mut().find(|(m, _)| *m == max) {
            Some((_, codes)) => codes.push(code),
            None => by_max.push((max, vec![code])),
        }
    }
    create["anyOf"] = by_max
        .into_iter()
        .map(|(max, codes)| {
            json!({"properties": {"currency": {"enum": codes}, "amount": {"maximum": max}}})
        })
        .collect();
    let card = &mut schemas["CardInput"];
    // 12 to 19 digits, spaces and dashes anywhere; the Luhn check is the format's.
    card["properties"]["number"]["pattern"] = json!("^[ -]*([0-9][ -]*){12,19}$");
    card["properties"]["number"]["format"] = json!("card-number");
    card["properties"]["number"]["description"] = json!(
        "12 to 19 digits passing the Luhn check (format `card-number`), spaces and dashes allowed anywhere; otherwise 400 `invalid_number`"
    );
    card["properties"]["exp_month"]["minimum"] = json!(1);
    card["properties"]["exp_month"]["maximum"] = json!(12);
    card["properties"]["exp_year"]["maximum"] = json!(u16::MAX);
    // Not expired: a later year, or this year from this month on (this document is made
    // when the server starts).
    card["anyOf"] = json!([
        {"properties": {"exp_year": {"minimum": year + 1}}},
        {"properties": {"exp_year": {"const": year}, "exp_month": {"minimum": month}}},
    ]);
    card["description"] = json!(format!(
        "{} Not expired: a card expiring before {year}-{month:02} is refused with 400 `expired_card`.",
        card["description"].as_str().unwrap_or_default()
    ));
    for name in ["CaptureRequest", "RefundRequest"] {
        let amount = &mut schemas[name]["properties"]["amount"];
        amount["minimum"] = json!(1);
        amount["maximum"] = json!(amount_max);
    }
    let expires = &mut schemas["RollKeyRequest"]["properties"]["expires_in"];
    expires["minimum"] = json!(0);
    expires["maximum"] = json!(ROLL_GRACE_MAX_S);
    // 1 to 200 characters once leading and trailing whitespace is trimmed, no NUL.
    let w = WHITESPACE;
    let inner = MERCHANT_NAME_LEN_MAX - 2;
    schemas["CreateMerchantRequest"]["properties"]["name"]["pattern"] = json!(format!(
        r"^[{w}]*[^{w}\u0000]([^\u0000]{{0,{inner}}}[^{w}\u0000])?[{w}]*$"
    ));
    schemas["LookupRequest"]["properties"]["payments"]["maxItems"] = json!(LOOKUP_BATCH_MAX);
    schemas["LookupItem"]["properties"]["id"]["pattern"] = json!(pay_id);
    // Answers.
    let currency = json!({"type": "string", "enum": Currency::all().collect::<Vec<_>>()});
    let constant = |v: &str| json!({"type": "string", "enum": [v]});
    let object = |schema: &mut Value, name: &str, id: Option<&str>| {
        schema["properties"]["object"] = constant(name);
        if let Some(prefix) = id {
            schema["properties"]["id"]["pattern"] = json!(id_pattern(prefix));
        }
    };
    let p = &mut schemas["PaymentObject"];
    object(p, "payment", Some("pay"));
    p["properties"]["currency"] = currency.clone();
    let r = &mut schemas["RefundObject"];
    object(r, "refund", Some("re"));
    r["properties"]["payment"]["pattern"] = json!(pay_id);
    r["properties"]["amount"]["minimum"] = json!(1);
    r["properties"]["currency"] = currency.clone();
    r["properties"]["status"] = constant("succeeded");
    let c = &mut schemas["CardObject"]["properties"];
    c["brand"]["enum"] = json!(["visa", "mastercard", "amex", "discover", "unknown"]);
    c["last4"]["pattern"] = json!("^[0-9]{4}$");
    c["fingerprint"]["pattern"] = json!("^[0-9a-f]{24}$");
    object(&mut schemas["PaymentList"], "list", None);
    schemas["PaymentList"]["properties"]["url"] = constant("/v1/payments");
    object(&mut schemas["BalanceObject"], "balance", None);
    schemas["BalanceAmount"]["properties"]["currency"] = currency;
    let m = &mut schemas["MerchantCreated"];
    object(m, "merchant", Some("mer"));
    m["properties"]["secret_key"]["pattern"] = json!("^sk_test_");
}

const OPTIONAL_BODY: &[&str] = &[
    "/v1/payments/{id}/capture",
    "/v1/payments/{id}/cancel",
    "/v1/payments/{id}/refunds",
    "/v1/admin/merchants/{id}/roll_key",
];

/// Every operation of the document with its path, mutably.
fn operations(doc: &mut Value) -> impl Iterator<Item = (&String, &mut Value)> {
    doc["paths"]
        .as_object_mut()
        .expect("paths")
        .iter_mut()
        .flat_map(|(path, item)| {
            let ops = item.as_object_mut().expect("a path item").values_mut();
            ops.map(move |op| (path, op))
        })
}

/// What any route may answer besides its own: 401 without a valid credential; a merchant
/// route's 429 over its rate limit; for a route that reads a body, 400 for a bad one, 408
/// for one that did not arrive in time and 413 for one too large; 503 when the store asks
/// to retry later; 500 for an internal error.
fn shared_answers(doc: &mut Value) {
    let error = |description: &str, headers: Value| {
        let mut answer = json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        });
        if !headers.is_null() {
            answer["headers"] = headers;
        }
        answer
    };
    let seconds = |description: &str| {
        json!({"required": true, "description": description,
            "schema": {"type": "integer", "minimum": 0}})
    };
    let retry_after = || seconds("Seconds to wait before retrying");
    for (_, op) in operations(doc) {
        let merchant = op["security"][0].get("api_key").is_some();
        let body = op.get("requestBody").is_some();
        let responses: &mut Map<String, Value> =
            op["responses"].as_object_mut().expect("responses");
        let mut add = |status: &str, answer: Value| {
            responses.entry(status).or_insert(answer);
        };
        let who = if merchant {
            "an API key"
        } else {
            "the admin token"
        };
        add(
            "401",
            error(
                &format!("No bearer token, or not {who} that works"),
                Value::Null,
            ),
        );
        if merchant {
            add(
                "429",
                error(
                    "Over the merchant's rate limit (`serve --rate-limit`): retry after `Retry-After`",
                    json!({
                        "Retry-After": retry_after(),
                        "RateLimit-Limit": seconds("Requests a second the merchant may send"),
                        "RateLimit-Remaining": seconds("Always 0 on a 429"),
                        "RateLimit-Reset": seconds("Seconds until a request is allowed again"),
                    }),
                ),
            );
        }
        if body {
            add(
                "400",
                error(
                    "Bad input: `error.param` names the field or header",
                    Value::Null,
                ),
            );
            add("408", error("The body did not arrive in time", Value::Null));
            add(
                "413",
                error(
                    "The body is larger than `serve --body-limit-bytes`",
                    Value::Null,
                ),
            );
        }
        add(
            "503",
            error(
                "Retry after `Retry-After`: the store is busy, overloaded, moving, unwritable or down, or a write did not commit in time (resend it with the same Idempotency-Key); nothing is lost by retrying",
                json!({"Retry-After": retry_after()}),
            ),
        );
        add(
            "500",
            error("Internal error, logged for the operator", Value::Null),
        );
    }
}

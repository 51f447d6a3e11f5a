//! The payment API's happy paths and its promises: authorize, capture (full and partial),
//! cancel, refunds, reads, lists, balances, test cards, no card number kept or shown,
//! merchant isolation, and the operational endpoints.

use crate::support::{
    Auth, Merchant, Req, Server, case, conflict, create, declined, get, invalid, not_found, on,
    pay_with, payment_body,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;

pub fn payment_with_card(amount: i64, currency: &str, capture: bool, number: &str) -> Value {
    let mut body = payment_body(amount, currency, capture);
    body["card"]["number"] = json!(number);
    body
}

pub async fn balance_of(server: &Server, merchant: &Merchant, currency: &str) -> (i64, i64) {
    let body = server.ok(merchant, &get("/v1/balance")).await;
    assert_eq!(body["object"], "balance");
    let pick = |side: &str| {
        body[side]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["currency"] == currency)
            .map(|l| l["amount"].as_i64().unwrap())
            .unwrap_or(0)
    };
    (pick("pending"), pick("available"))
}

/// A fresh server with one merchant, named `name`.
async fn one_merchant(name: &str) -> (Server, Merchant) {
    let server = Server::start();
    let merchant = server.create_merchant(name).await;
    (server, merchant)
}

pub async fn assert_audit_ok(server: &Server) -> Value {
    let audit = server.audit().await;
    assert_eq!(audit["ok"], true, "{audit:#}");
    audit
}

/// The merchant's usd balance ends at `(pending, available)`, and the ledger audits clean.
async fn assert_usd_settled(server: &Server, merchant: &Merchant, balance: (i64, i64)) {
    assert_eq!(balance_of(server, merchant, "usd").await, balance);
    assert_audit_ok(server).await;
}

/// `GET path` with no `Authorization` header.
fn anonymous(path: &str) -> Req {
    get(path).auth(Auth::Anonymous)
}

/// Every field `want` names is in `payment` with that value, `null` for null or absent;
/// a field whose wanted value is an object is checked the same way, field by field, so
/// `payment` may hold more fields than `want` names.
fn assert_fields(payment: &Value, want: &Value) {
    fn check(path: &str, got: &Value, want: &Value, payment: &Value) {
        match want.as_object() {
            Some(fields) => {
                for (field, want) in fields {
                    check(&format!("{path}.{field}"), &got[field], want, payment);
                }
            }
            None => assert_eq!(got, want, "{path}: {payment:#}"),
        }
    }
    check("", payment, want, payment);
}

fn id(body: &Value) -> String {
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {body:#}"))
        .to_string()
}

#[tokio::test]
async fn authorize_then_partial_capture_releases_the_rest() {
    let (server, m) = one_merchant("partial").await;

    let (status, auth) = server.pay(&m, "auth-1", 1000, false).await;
    assert_eq!(status, StatusCode::OK, "{auth:#}");
    let authorized = json!({
        "object": "payment", "status": "requires_capture", "currency": "usd",
        "amount": 1000, "amount_capturable": 1000, "amount_captured": 0,
        "card": { "brand": "visa", "last4": "4242" }, "failure_code": null,
    });
    assert_fields(&auth, &authorized);
    assert_eq!(balance_of(&server, &m, "usd").await, (1000, 0));

    let pay_id = id(&auth);
    let capture = on(&pay_id, "capture").body(json!({ "amount": 600 }));
    let captured = server.ok(&m, &capture).await;
    let partly_captured = json!({
        "id": pay_id, "status": "succeeded",
        "amount": 1000, "amount_captured": 600, "amount_capturable": 0,
    });
    assert_fields(&captured, &partly_captured);
    // The 400 not captured is released: nothing stays pending.
    assert_usd_settled(&server, &m, (0, 600)).await;
}

#[tokio::test]
async fn capture_true_is_one_step_and_cancel_releases_the_hold() {
    let (server, m) = one_merchant("one-step").await;

    let (status, paid) = server.pay(&m, "now", 2500, true).await;
    assert_eq!(status, StatusCode::OK, "{paid:#}");
    let captured =
        json!({ "status": "succeeded", "amount_captured": 2500, "amount_capturable": 0 });
    assert_fields(&paid, &captured);
    assert_eq!(balance_of(&server, &m, "usd").await, (0, 2500));

    let held = server.held(&m, "hold", 700).await;
    assert_eq!(balance_of(&server, &m, "usd").await, (700, 2500));
    let canceled = server.ok(&m, &on(&held, "cancel")).await;
    let released = json!({ "status": "canceled", "amount_captured": 0, "amount_capturable": 0 });
    assert_fields(&canceled, &released);
    assert_usd_settled(&server, &m, (0, 2500)).await;
}

#[tokio::test]
async fn cancel_of_the_only_payment_leaves_a_zero_balance() {
    let (server, m) = one_merchant("cancel").await;
    let held = server.held(&m, "hold", 1234).await;
    assert_eq!(balance_of(&server, &m, "usd").await, (1234, 0));
    // An empty JSON object is accepted as "no parameters" too.
    let cancel = on(&held, "cancel").body(json!({}));
    let canceled = server.ok(&m, &cancel).await;
    assert_eq!(canceled["status"], "canceled");
    assert_usd_settled(&server, &m, (0, 0)).await;
}

#[tokio::test]
async fn partial_refunds_never_exceed_what_was_captured() {
    let (server, m) = one_merchant("refunds").await;
    let (_, paid) = server.pay(&m, "paid", 1000, true).await;
    let pay_id = id(&paid);
    let refund = |amount: i64| on(&pay_id, "refunds").body(json!({ "amount": amount }));

    let mut refund_ids = HashSet::new();
    for amount in [300, 300] {
        let refund = server.ok(&m, &refund(amount)).await;
        let succeeded = json!({
            "object": "refund", "payment": pay_id, "amount": amount,
            "currency": "usd", "status": "succeeded",
        });
        assert_fields(&refund, &succeeded);
        assert!(refund_ids.insert(id(&refund)), "refund ids repeat");
    }
    assert_eq!(balance_of(&server, &m, "usd").await, (0, 400));

    // 400 remains: 500 is too much, and nothing changes.
    let too_much = case(
        "500 of 400",
        refund(500),
        invalid("amount_too_large", "amount"),
    );
    server.check(&m, [too_much]).await;
    assert_eq!(balance_of(&server, &m, "usd").await, (0, 400));

    // Without an amount, a refund takes all that remains.
    let rest = server.ok(&m, &on(&pay_id, "refunds")).await;
    assert_eq!(rest["amount"], 400);

    // Once nothing remains, any refund is a state conflict, not a bad amount.
    let refunded = conflict("payment_already_refunded");
    server
        .check(
            &m,
            [
                case("1 more", refund(1), refunded),
                case("the rest again", on(&pay_id, "refunds"), refunded),
            ],
        )
        .await;

    let got = server.ok(&m, &get(format!("/v1/payments/{pay_id}"))).await;
    let all_refunded =
        json!({ "status": "succeeded", "amount_captured": 1000, "amount_refunded": 1000 });
    assert_fields(&got, &all_refunded);
    assert_usd_settled(&server, &m, (0, 0)).await;
}

/// Refunds sent all at once share the writer's batches, some applied and some refused
/// in the same transaction: the balance moves by those applied alone (the writer folds a
/// batch's balance changes only from requests it kept).
#[tokio::test]
async fn concurrent_refunds_move_the_balance_only_by_those_that_succeed() {
    const REFUNDS: usize = 24;
    let (server, m) = one_merchant("concurrent refunds").await;
    let (_, paid) = server.pay(&m, "paid", 1000, true).await;
    let pay_id = id(&paid);
    let requests: Vec<Req> = (0..REFUNDS)
        .map(|i| {
            on(&pay_id, "refunds")
                .body(json!({ "amount": 100 }))
                .key(format!("refund-{i}"))
        })
        .collect();
    let answers = futures_util::future::join_all(requests.iter().map(|r| server.send(&m, r))).await;
    let ok = answers
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::OK)
        .count();
    for (status, text, _) in &answers {
        assert!(
            *status == StatusCode::OK || status.is_client_error(),
            "{status}: {text}"
        );
    }
    assert_eq!(ok, 10, "ten refunds of 100 fit in 1000");
    assert_usd_settled(&server, &m, (0, 0)).await;
}

#[tokio::test]
async fn get_returns_what_create_returned() {
    let (server, m) = one_merchant("get").await;
    let created = server
        .ok(&m, &create(payment_body(4200, "usd", false)).key("g"))
        .await;
    let (status, text, headers) = server
        .send(&m, &get(format!("/v1/payments/{}", id(&created))))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), created);
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.get("idempotent-replayed").is_none());
    assert_audit_ok(&server).await;
}

#[tokio::test]
async fn list_pages_newest_first_without_duplicates() {
    let (server, m) = one_merchant("list").await;
    let mut created = Vec::new();
    for i in 0..5 {
        let (status, body) = server.pay(&m, &format!("l-{i}"), 100 + i, i % 2 == 0).await;
        assert_eq!(status, StatusCode::OK);
        created.push(id(&body));
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let mut seen = Vec::new();
    let mut has_more_seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/payments?limit=2&starting_after={c}"),
            None => "/v1/payments?limit=2".to_string(),
        };
        let page = server.ok(&m, &get(path)).await;
        assert_eq!(page["object"], "list");
        assert_eq!(page["url"], "/v1/payments");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(id));
        let has_more = page["has_more"].as_bool().unwrap();
        has_more_seen.push(has_more);
        if !has_more {
            break;
        }
        cursor = seen.last().cloned();
        assert!(has_more_seen.len() < 10, "pagination does not end");
    }
    assert_eq!(has_more_seen, [true, true, false]);
    assert_eq!(seen, newest_first);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len());

    // Default limit covers all five; a cursor at the oldest gives an empty last page.
    let all = server.ok(&m, &get("/v1/payments")).await;
    let all: Vec<String> = all["data"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(all, newest_first);
    let oldest = get(format!("/v1/payments?starting_after={}", created[0]));
    let empty = server.ok(&m, &oldest).await;
    assert_eq!(empty["data"], json!([]));
    assert_eq!(empty["has_more"], false);
    assert_audit_ok(&server).await;
}

#[tokio::test]
async fn balance_is_per_currency_in_minor_units() {
    let (server, m) = one_merchant("fx").await;
    // usd: 2 decimals, jpy: 0, kwd: 3. Amounts are minor units whatever the exponent.
    let flows = [
        ("usd", 1999, true),
        ("jpy", 500, false),
        ("jpy", 1200, true),
        ("kwd", 12_345, true),
        ("kwd", 2_000, false),
    ];
    for (i, (currency, amount, capture)) in flows.into_iter().enumerate() {
        let flow = create(payment_body(amount, currency, capture)).key(format!("fx-{i}"));
        let body = server.ok(&m, &flow).await;
        assert_eq!(body["currency"], currency);
        assert_eq!(body["amount"], amount);
    }
    assert_eq!(balance_of(&server, &m, "usd").await, (0, 1999));
    assert_eq!(balance_of(&server, &m, "jpy").await, (500, 1200));
    assert_eq!(balance_of(&server, &m, "kwd").await, (2_000, 12_345));

    let body = server.ok(&m, &get("/v1/balance")).await;
    let currencies = |side: &str| -> Vec<String> {
        body[side]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["currency"].as_str().unwrap().to_string())
            .collect()
    };
    // One line per currency used, sorted by code, nothing for currencies never used.
    assert_eq!(currencies("pending"), ["jpy", "kwd", "usd"]);
    assert_eq!(currencies("available"), ["jpy", "kwd", "usd"]);

    // Another merchant's balance is empty.
    let other = server.create_merchant("fx-other").await;
    let body = server.ok(&other, &get("/v1/balance")).await;
    assert_eq!(
        body,
        json!({ "object": "balance", "pending": [], "available": [] })
    );
    assert_audit_ok(&server).await;
}

#[tokio::test]
async fn declined_cards_are_402_with_the_failed_payment() {
    let (server, m) = one_merchant("declines").await;
    for (number, decline_code) in [
        ("4000000000000002", "generic_decline"),
        ("4000000000009995", "insufficient_funds"),
    ] {
        let card = create(payment_with_card(900, "usd", true, number));
        let err = server
            .refused(&m, &case(decline_code, card, declined("card_declined")))
            .await;
        assert_eq!(err["error"]["decline_code"], decline_code);
        let payment = &err["error"]["payment"];
        let failed = json!({
            "object": "payment", "status": "failed", "failure_code": decline_code,
            "amount_captured": 0, "card": { "last4": &number[12..] },
        });
        assert_fields(payment, &failed);
        // The failed payment was recorded and can be read back.
        let got = server
            .ok(&m, &get(format!("/v1/payments/{}", id(payment))))
            .await;
        assert_eq!(&got, payment);
    }

    let card = create(payment_with_card(900, "usd", false, "4000000000000119"));
    let processor = case("processor", card, declined("processing_error"));
    let err = server.refused(&m, &processor).await;
    assert!(err["error"].get("decline_code").is_none(), "{err:#}");
    assert_eq!(err["error"]["payment"]["status"], "failed");
    assert_eq!(err["error"]["payment"]["failure_code"], "processing_error");

    // Failed payments move no money, but they are listed.
    assert_eq!(balance_of(&server, &m, "usd").await, (0, 0));
    let list = server.ok(&m, &get("/v1/payments")).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
    assert_audit_ok(&server).await;
}

const PANS: &[&str] = &["4242424242424242", "5555555555554444", "4000000000000002"];

fn assert_no_pan(what: &str, text: &str) {
    for pan in PANS {
        assert!(!text.contains(pan), "{what} contains the card number {pan}");
    }
    assert!(
        !text.contains("5555 5555 5555 4444"),
        "{what} contains the spaced card number"
    );
}

/// Every file in the data dir, byte for byte (the WAL included).
/// Every file under `dir`: the SQLite files, or on the PostgreSQL backend the server's
/// own data files, WAL and log.
fn assert_no_pan_on_disk(dir: &std::path::Path) {
    fn walk(dir: &std::path::Path, files: &mut usize) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.is_file() {
                *files += 1;
                let bytes = std::fs::read(&path).unwrap();
                assert_no_pan(
                    &path.display().to_string(),
                    &String::from_utf8_lossy(&bytes),
                );
            }
        }
    }
    let mut files = 0;
    walk(dir, &mut files);
    assert!(files > 0, "no files in {}", dir.display());
}

#[tokio::test]
async fn the_card_number_is_never_shown_or_stored() {
    let (mut server, m) = one_merchant("pan").await;
    let mut bodies = Vec::new();

    let first = create(payment_body(5000, "usd", false)).key("pan-1");
    let (status, text, _) = server.send(&m, &first).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let pay_id = id(&serde_json::from_str(&text).unwrap());
    bodies.push(text);
    let spaced = payment_with_card(100, "usd", true, "5555 5555 5555 4444");
    let declined = payment_with_card(100, "usd", true, "4000000000000002");
    let amount = |amount: i64| json!({ "amount": amount });
    let requests = [
        // The replay, the spaced number, a decline, validation errors echoing input.
        first.clone(),
        create(spaced).key("pan-2"),
        create(declined).key("pan-3"),
        create(pay_with("card.exp_month", json!(13))).key("pan-4"),
        create(pay_with("card.pan", json!("4242424242424242"))).key("pan-5"),
        on(&pay_id, "capture").body(amount(4000)),
        on(&pay_id, "refunds").body(amount(1000)),
        get(format!("/v1/payments/{pay_id}")),
        get("/v1/payments"),
        get("/v1/balance"),
    ];
    for req in requests {
        let (status, text, _) = server.send(&m, &req).await;
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{req:?}: {text}");
        bodies.push(text);
    }
    let (_, metrics, _) = server.send(&m, &anonymous("/metrics")).await;
    bodies.push(metrics);
    let audit = assert_audit_ok(&server).await;
    bodies.push(audit.to_string());
    for (i, text) in bodies.iter().enumerate() {
        assert_no_pan(&format!("response {i}"), text);
    }
    // The last four digits are what is kept.
    assert!(bodies[0].contains("\"last4\":\"4242\""), "{}", bodies[0]);

    // On disk, while running (the WAL holds the recent writes) and after a clean stop.
    assert_no_pan_on_disk(server.data_dir());
    assert!(server.terminate().success());
    assert_no_pan_on_disk(server.data_dir());
}

#[tokio::test]
async fn merchants_cannot_see_or_touch_each_others_payments() {
    let server = Server::start();
    let a = server.create_merchant("alice").await;
    let b = server.create_merchant("bob").await;
    let (_, a_held) = server.pay(&a, "same-key", 800, false).await;
    let (_, a_paid) = server.pay(&a, "a-paid", 900, true).await;
    let (_, b_paid) = server.pay(&b, "b-paid", 300, true).await;
    let a_held_id = id(&a_held);
    let a_paid_id = id(&a_paid);

    // Another merchant's payment is simply not there: 404, never 403.
    let amount = json!({ "amount": 100 });
    let missing = not_found("id");
    server
        .check(
            &b,
            [
                case("read", get(format!("/v1/payments/{a_held_id}")), missing),
                case(
                    "capture",
                    on(&a_held_id, "capture").body(amount.clone()),
                    missing,
                ),
                case("cancel", on(&a_held_id, "cancel"), missing),
                case(
                    "refund some",
                    on(&a_paid_id, "refunds").body(amount),
                    missing,
                ),
                case("refund all", on(&a_paid_id, "refunds"), missing),
            ],
        )
        .await;

    // A's payments are untouched.
    let read = |id: &str| get(format!("/v1/payments/{id}"));
    assert_eq!(server.ok(&a, &read(&a_held_id)).await, a_held);
    let got = server.ok(&a, &read(&a_paid_id)).await;
    assert_eq!(got["amount_refunded"], 0);
    assert_eq!(balance_of(&server, &a, "usd").await, (800, 900));
    assert_eq!(balance_of(&server, &b, "usd").await, (0, 300));

    let ids_of =
        |list: &Value| -> Vec<String> { list["data"].as_array().unwrap().iter().map(id).collect() };
    let a_list = server.ok(&a, &get("/v1/payments")).await;
    assert_eq!(ids_of(&a_list), [a_paid_id.clone(), a_held_id.clone()]);
    let b_list = server.ok(&b, &get("/v1/payments")).await;
    assert_eq!(ids_of(&b_list), [id(&b_paid)]);
    // A cursor naming another merchant's payment pages B's own list, nothing of A's.
    let b_list = server
        .ok(&b, &get(format!("/v1/payments?starting_after={a_paid_id}")))
        .await;
    assert!(
        ids_of(&b_list).iter().all(|i| *i == id(&b_paid)),
        "{b_list:#}"
    );
    assert_audit_ok(&server).await;
}

#[tokio::test]
async fn health_ready_metrics_and_openapi() {
    let (server, m) = one_merchant("ops").await;
    // A write first, so there is a request of each kind to count.
    let (status, _) = server.pay(&m, "ops-1", 100, true).await;
    assert_eq!(status, StatusCode::OK);

    let (status, text, _) = server.send(&m, &anonymous("/healthz")).await;
    assert_eq!((status, text.trim()), (StatusCode::OK, "ok"));
    let (status, text, _) = server.send(&m, &anonymous("/readyz")).await;
    assert_eq!((status, text.trim()), (StatusCode::OK, "ready"));

    let (status, text, _) = server.send(&m, &anonymous("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("paytool_http_requests_total"),
        "/metrics lacks paytool_http_requests_total:\n{text}"
    );
    // Requests are labelled by the route template, not the raw path.
    assert!(
        text.contains("route=\"/v1/payments\""),
        "no /v1/payments route label:\n{text}"
    );

    let (status, text, headers) = server.send(&m, &anonymous("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/json");
    let doc: Value = serde_json::from_str(&text).expect("/openapi.json is JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')));
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/v1/payments",
        "/v1/payments/{id}",
        "/v1/payments/{id}/capture",
        "/v1/payments/{id}/cancel",
        "/v1/payments/{id}/refunds",
        "/v1/balance",
    ] {
        assert!(paths.contains_key(path), "openapi lacks {path}");
    }
    assert!(paths["/v1/payments"].get("post").is_some());
    assert!(paths["/v1/payments"].get("get").is_some());
    // Every merchant route documents what any of them may answer: an unknown key, the
    // rate limit, and a store that asks to retry later.
    for (path, method) in [
        ("/v1/payments", "post"),
        ("/v1/payments", "get"),
        ("/v1/payments/{id}", "get"),
        ("/v1/payments/{id}/capture", "post"),
        ("/v1/payments/{id}/cancel", "post"),
        ("/v1/payments/{id}/refunds", "post"),
        ("/v1/balance", "get"),
    ] {
        let responses = &paths[path][method]["responses"];
        for status in ["401", "429", "503"] {
            assert!(
                responses.get(status).is_some(),
                "{method} {path} lacks {status}"
            );
        }
    }
    // A change without an Idempotency-Key is refused: the document says it is required.
    let params = paths["/v1/payments/{id}/refunds"]["post"]["parameters"]
        .as_array()
        .unwrap();
    let key = params
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .unwrap();
    assert_eq!(key["required"], true, "{key}");
    let components = doc["components"].as_object().expect("components");
    assert!(components["schemas"].get("ErrorBody").is_some());
    assert!(components["securitySchemes"].get("api_key").is_some());
    assert_audit_ok(&server).await;
}

#[tokio::test]
async fn metrics_show_the_group_commit() {
    let (server, m) = one_merchant("commit-metrics").await;
    for i in 0..3 {
        let (status, _) = server.pay(&m, &format!("cm-{i}"), 100, true).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, text, _) = server.send(&m, &anonymous("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    for name in [
        "paytool_group_commit_batch_size",
        "paytool_group_commit_seconds",
        "paytool_write_queue_depth",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    // The writer that committed those payments reports, from its own connection, that a
    // commit waits for the disk (SQLite synchronous=FULL in WAL mode; PostgreSQL
    // synchronous_commit=on and fsync=on), and no writer says otherwise.
    let durable: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("paytool_store_durable{"))
        .collect();
    assert!(
        !durable.is_empty(),
        "/metrics lacks paytool_store_durable:\n{text}"
    );
    for line in durable {
        assert!(
            line.ends_with(" 1"),
            "a writer that does not wait for the disk: {line}"
        );
    }
}

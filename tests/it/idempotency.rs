//! Idempotency keys: a retry with the same key and body gets the first answer back, byte
//! for byte, and never a second payment; a key reused for another request is refused.

use crate::api::{assert_audit_ok, payment_with_card};
use crate::support::{
    Merchant, Req, Server, case, conflict, create, get, invalid, named, on, payment_body, reused,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

fn replayed(headers: &reqwest::header::HeaderMap) -> bool {
    match headers.get("idempotent-replayed") {
        Some(v) => {
            assert_eq!(v, "true");
            true
        }
        None => false,
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// Send `req`, which carries its key, for the first time: answered with `status` and not
/// marked as a replay. The answer's text.
async fn fresh(server: &Server, m: &Merchant, req: &Req, status: StatusCode) -> String {
    let (got, text, headers) = server.send(m, req).await;
    assert_eq!(got, status, "{req:?}: {text}");
    assert!(
        !replayed(&headers),
        "{req:?}: a first request is not a replay"
    );
    text
}

/// Send `req` again: the `first` answer comes back, marked as a replay, byte for byte.
async fn replay(server: &Server, m: &Merchant, req: &Req, status: StatusCode, first: &str) {
    let (got, text, headers) = server.send(m, req).await;
    assert_eq!(got, status, "{req:?}: {text}");
    assert!(replayed(&headers), "{req:?}: the replay is marked");
    assert_eq!(text, first, "{req:?}: the replay is byte-identical");
}

/// `req` once, then `times` replays of it; the first answer's text.
async fn replays(
    server: &Server,
    m: &Merchant,
    req: &Req,
    status: StatusCode,
    times: usize,
) -> String {
    let first = fresh(server, m, req, status).await;
    for _ in 0..times {
        replay(server, m, req, status, &first).await;
    }
    first
}

#[tokio::test]
async fn same_key_same_body_replays_byte_for_byte() {
    let server = Server::start();
    let m = server.create_merchant("replay").await;
    let req = create(payment_body(1500, "usd", true)).key("order-1");
    let first = replays(&server, &m, &req, StatusCode::OK, 2).await;
    // The same body with keys in another order and other whitespace is the same request.
    let reordered = r#"{ "capture": true, "card": {"exp_year": 2034, "exp_month": 12, "number": "4242424242424242"}, "currency": "usd", "amount": 1500 }"#;
    let again = create(reordered).key("order-1");
    replay(&server, &m, &again, StatusCode::OK, &first).await;

    let list = server.ok(&m, &get("/v1/payments")).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let balance = server.ok(&m, &get("/v1/balance")).await;
    assert_eq!(
        balance["available"],
        json!([{ "amount": 1500, "currency": "usd" }])
    );
    let audit = assert_audit_ok(&server).await;
    assert_eq!(audit["payments"], 1);
}

#[tokio::test]
async fn same_key_different_request_is_refused() {
    let server = Server::start();
    let m = server.create_merchant("reuse").await;
    let req = create(payment_body(1500, "usd", true)).key("order-2");
    let first = fresh(&server, &m, &req, StatusCode::OK).await;

    let mut other_card = payment_body(1500, "usd", true);
    other_card["card"]["number"] = json!("5555555555554444");
    let mut other_expiry = payment_body(1500, "usd", true);
    other_expiry["card"]["exp_year"] = json!(2035);
    let reuse = |name: &str, body: Value| case(name, create(body).key("order-2"), reused());
    server
        .check(
            &m,
            [
                reuse("another amount", payment_body(1501, "usd", true)),
                reuse("another currency", payment_body(1500, "eur", true)),
                reuse("another capture", payment_body(1500, "usd", false)),
                reuse("another card", other_card),
                reuse("another expiry", other_expiry),
            ],
        )
        .await;
    // The original is intact and still replays.
    replay(&server, &m, &req, StatusCode::OK, &first).await;
    assert_eq!(assert_audit_ok(&server).await["payments"], 1);
}

#[tokio::test]
async fn keys_are_scoped_per_merchant() {
    let server = Server::start_args(&["--shards", "2"]);
    let a = server.create_merchant("a").await;
    let b = server.create_merchant("b").await;
    let shared = create(payment_body(100, "usd", true)).key("shared");
    let pay_a = parse(&fresh(&server, &a, &shared, StatusCode::OK).await);
    let pay_b = parse(&fresh(&server, &b, &shared, StatusCode::OK).await);
    assert_ne!(pay_a["id"], pay_b["id"]);
    // And with a different body too: B's use of the key says nothing about A's.
    let other = |amount| create(payment_body(amount, "usd", true)).key("other");
    fresh(&server, &b, &other(999), StatusCode::OK).await;
    fresh(&server, &a, &other(5), StatusCode::OK).await;
    assert_eq!(assert_audit_ok(&server).await["payments"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_key_make_one_payment() {
    const N: usize = 20;
    let server = Arc::new(Server::start());
    let m = server.create_merchant("race").await;
    let req = create(payment_body(777, "usd", false)).key("race-key");
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let mut tasks = Vec::new();
    for _ in 0..N {
        let (server, m, req, barrier) = (server.clone(), m.clone(), req.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            server.send(&m, &req).await
        }));
    }
    let mut bodies = Vec::new();
    let mut fresh = 0;
    for t in tasks {
        let (status, text, headers) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{text}");
        if !replayed(&headers) {
            fresh += 1;
        }
        bodies.push(text);
    }
    assert_eq!(
        fresh, 1,
        "exactly one request did the work; the rest replayed it"
    );
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "every answer is the same"
    );
    let first = parse(&bodies[0]);

    let list = server.ok(&m, &get("/v1/payments")).await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{list:#}");
    assert_eq!(data[0]["id"], first["id"]);
    let audit = assert_audit_ok(&server).await;
    assert_eq!(audit["payments"], 1);
    let per_key = named(&audit["checks"], "one_payment_per_idempotency_key");
    assert_eq!(per_key["ok"], true);
    let balance = server.ok(&m, &get("/v1/balance")).await;
    assert_eq!(
        balance["pending"],
        json!([{ "amount": 777, "currency": "usd" }])
    );
}

#[tokio::test]
async fn a_decline_replays_as_the_same_402() {
    let server = Server::start();
    let m = server.create_merchant("decline-replay").await;
    let declined = create(payment_with_card(900, "usd", true, "4000000000009995")).key("d-1");
    let first = replays(&server, &m, &declined, StatusCode::PAYMENT_REQUIRED, 1).await;
    assert_eq!(parse(&first)["error"]["decline_code"], "insufficient_funds");
    // Observed: the key stays bound to the decline; retrying with another card needs a new key.
    let another_card = create(payment_body(900, "usd", true)).key("d-1");
    server
        .check(&m, [case("another card", another_card, reused())])
        .await;
    assert_eq!(assert_audit_ok(&server).await["payments"], 1);
}

#[tokio::test]
async fn a_rejected_request_does_not_use_up_its_key() {
    let server = Server::start();
    let m = server.create_merchant("rejected").await;
    // 400s from validation are not stored: the key is free for the corrected request.
    let zero = create(payment_body(0, "usd", true)).key("fix-me");
    let too_small = invalid("amount_too_small", "amount");
    server.check(&m, [case("amount 0", zero, too_small)]).await;
    let fixed = create(payment_body(100, "usd", true)).key("fix-me");
    fresh(&server, &m, &fixed, StatusCode::OK).await;

    // Nor are 409s from the ledger: a refund refused on state, then allowed, with one key.
    let id = server.held(&m, "held", 400).await;
    let refund = on(&id, "refunds").key("r-1");
    let state = conflict("payment_unexpected_state");
    let early = case("refund before capture", refund.clone(), state);
    server.check(&m, [early]).await;
    server.ok(&m, &on(&id, "capture")).await;
    let refund = parse(&fresh(&server, &m, &refund, StatusCode::OK).await);
    assert_eq!(refund["amount"], 400);
    assert_audit_ok(&server).await;
}

#[tokio::test]
async fn capture_cancel_and_refund_with_a_key_replay() {
    let server = Server::start();
    let m = server.create_merchant("follow-ups").await;
    let id = server.held(&m, "p-1", 1000).await;
    let capture = |amount: i64| on(&id, "capture").body(json!({ "amount": amount }));
    replays(&server, &m, &capture(600).key("cap-1"), StatusCode::OK, 1).await;
    let cap_1_on_a_create = create(payment_body(1000, "usd", false)).key("cap-1");
    server
        .check(
            &m,
            [
                // Without the key it is a second capture, which the state machine refuses.
                case(
                    "capture again without the key",
                    capture(600),
                    conflict("payment_unexpected_state"),
                ),
                // Same key, another amount: refused as reuse, whatever the state says.
                case(
                    "the key, another amount",
                    capture(500).key("cap-1"),
                    reused(),
                ),
                // Keys are per merchant, not per route: the capture's key cannot create a payment.
                case("the capture's key on a create", cap_1_on_a_create, reused()),
            ],
        )
        .await;

    // A refund replays the same refund and does not refund twice.
    let refund = on(&id, "refunds")
        .body(json!({ "amount": 250 }))
        .key("ref-1");
    replays(&server, &m, &refund, StatusCode::OK, 1).await;
    let got = server.ok(&m, &get(format!("/v1/payments/{id}"))).await;
    assert_eq!(got["amount_refunded"], 250);

    // A cancel replays too.
    let other = server.held(&m, "p-2", 300).await;
    replays(
        &server,
        &m,
        &on(&other, "cancel").key("can-1"),
        StatusCode::OK,
        1,
    )
    .await;

    let balance = server.ok(&m, &get("/v1/balance")).await;
    assert_eq!(
        balance["pending"],
        json!([{ "amount": 0, "currency": "usd" }])
    );
    assert_eq!(
        balance["available"],
        json!([{ "amount": 350, "currency": "usd" }])
    );
    assert_audit_ok(&server).await;
}

/// A replay shows the payment as the first answer did, not as it is now: every answer
/// is replayed after all the later changes to its payment, byte for byte.
#[tokio::test]
async fn replays_show_the_payment_as_it_was_when_first_answered() {
    let server = Server::start();
    let m = server.create_merchant("as-it-was").await;
    let hold = create(payment_body(1000, "usd", false)).key("w-hold");
    let held = fresh(&server, &m, &hold, StatusCode::OK).await;
    let id = parse(&held)["id"].as_str().unwrap().to_string();
    let capture = on(&id, "capture")
        .body(json!({ "amount": 800 }))
        .key("w-capture");
    let captured = fresh(&server, &m, &capture, StatusCode::OK).await;
    let refund = |amount: i64, key: &str| {
        on(&id, "refunds")
            .body(json!({ "amount": amount }))
            .key(key)
    };
    let (refund_1, refund_2) = (refund(100, "w-refund-1"), refund(200, "w-refund-2"));
    let refunded_1 = fresh(&server, &m, &refund_1, StatusCode::OK).await;
    let refunded_2 = fresh(&server, &m, &refund_2, StatusCode::OK).await;
    let other_hold = create(payment_body(300, "usd", false)).key("w-other");
    let other_held = fresh(&server, &m, &other_hold, StatusCode::OK).await;
    let other = parse(&other_held)["id"].as_str().unwrap().to_string();
    let cancel = on(&other, "cancel").key("w-cancel");
    let canceled = fresh(&server, &m, &cancel, StatusCode::OK).await;

    for (req, first) in [
        (&hold, &held),
        (&capture, &captured),
        (&refund_1, &refunded_1),
        (&refund_2, &refunded_2),
        (&other_hold, &other_held),
        (&cancel, &canceled),
    ] {
        replay(&server, &m, req, StatusCode::OK, first).await;
    }
    let (held, captured) = (parse(&held), parse(&captured));
    assert_eq!(held["status"], "requires_capture");
    assert_eq!(held["amount_capturable"], 1000);
    assert_eq!(captured["amount_refunded"], 0);
    assert_eq!(parse(&refunded_2)["amount"], 200);
    assert_eq!(parse(&other_held)["status"], "requires_capture");
    assert_eq!(parse(&canceled)["status"], "canceled");
    let now = server.ok(&m, &get(format!("/v1/payments/{id}"))).await;
    assert_eq!(now["amount_refunded"], 300);
    assert_audit_ok(&server).await;
}

#[tokio::test]
async fn a_key_replays_inside_its_retention_and_is_free_again_once_pruned() {
    use std::time::{Duration, Instant};
    let server = Server::start_args(&["--idempotency-retention", "1s"]);
    let m = server.create_merchant("retention").await;
    let first_req = create(payment_body(1500, "usd", true)).key("kept-a-while");
    let first = replays(&server, &m, &first_req, StatusCode::OK, 1).await;
    // After the retention (plus one prune interval, a quarter of it), the key is pruned
    // and a different request may use it: a new payment, not a refusal.
    let other = create(payment_body(1600, "usd", true)).key("kept-a-while");
    let started = Instant::now();
    let second = loop {
        let (status, text, _) = server.send(&m, &other).await;
        if status == StatusCode::OK {
            break text;
        }
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the key was not pruned within 10 s of a 1 s retention"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "pruned too early"
    );
    assert_ne!(parse(&second)["id"], parse(&first)["id"]);
    // Two payments share the key, more than a retention apart: the audit allows it.
    assert_eq!(assert_audit_ok(&server).await["payments"], 2);
}

/// The retry storm a flaky network makes: for each of 100 keys, 200 copies of one request
/// at once. Exactly one payment a key, and every copy gets the same answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_storm_of_200_sends_for_each_of_100_keys_makes_one_payment_a_key() {
    const KEYS: usize = 100;
    const SENDS_PER_KEY: usize = 200;
    let server = Server::start();
    let m = server.create_merchant("storm").await;
    let client = reqwest::Client::new();
    for key in 0..KEYS {
        let body = payment_body(100 + key as i64, "usd", key % 2 == 0);
        crate::support::one_key_at_once(
            &client,
            &[&server],
            &m,
            &format!("storm-{key}"),
            &body,
            SENDS_PER_KEY,
        )
        .await;
    }
    let audit = assert_audit_ok(&server).await;
    assert_eq!(audit["payments"], KEYS, "{audit:#}");
}

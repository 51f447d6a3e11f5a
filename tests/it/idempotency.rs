//! Idempotency keys: a retry with the same key and body gets the first answer back, byte
//! for byte, and never a second payment; a key reused for another request is refused.

use crate::api::{assert_audit_ok, assert_error, payment_with_card, raw};
use crate::support::{Server, payment_body};
use reqwest::{Method, StatusCode};
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

#[tokio::test]
async fn same_key_same_body_replays_byte_for_byte() {
    let server = Server::start();
    let m = server.create_merchant("replay").await;
    let body = payment_body(1500, "usd", true).to_string();
    let send = || {
        raw(
            &server,
            Some(&m.key),
            Method::POST,
            "/v1/payments",
            Some("order-1"),
            Some(&body),
        )
    };

    let (status, first, headers) = send().await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(!replayed(&headers));
    for _ in 0..2 {
        let (status, again, headers) = send().await;
        assert_eq!(status, StatusCode::OK);
        assert!(replayed(&headers), "the replay is marked");
        assert_eq!(again, first, "the replay is byte-identical");
    }
    // The same body with keys in another order and other whitespace is the same request.
    let reordered = r#"{ "capture": true, "card": {"exp_year": 2034, "exp_month": 12, "number": "4242424242424242"}, "currency": "usd", "amount": 1500 }"#;
    let (status, again, headers) = raw(
        &server,
        Some(&m.key),
        Method::POST,
        "/v1/payments",
        Some("order-1"),
        Some(reordered),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(replayed(&headers));
    assert_eq!(again, first);

    let (_, list, _) = server
        .call(&m, Method::GET, "/v1/payments", None, None)
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let (_, balance, _) = server
        .call(&m, Method::GET, "/v1/balance", None, None)
        .await;
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
    let (status, first) = server.pay(&m, "order-2", 1500, true).await;
    assert_eq!(status, StatusCode::OK);

    let mut other_card = payment_body(1500, "usd", true);
    other_card["card"]["number"] = json!("5555555555554444");
    let mut other_expiry = payment_body(1500, "usd", true);
    other_expiry["card"]["exp_year"] = json!(2035);
    for (what, body) in [
        ("amount", payment_body(1501, "usd", true)),
        ("currency", payment_body(1500, "eur", true)),
        ("capture", payment_body(1500, "usd", false)),
        ("card", other_card),
        ("expiry", other_expiry),
    ] {
        let (status, err, headers) = server
            .call(
                &m,
                Method::POST,
                "/v1/payments",
                Some("order-2"),
                Some(body),
            )
            .await;
        assert_error(
            status,
            &err,
            StatusCode::BAD_REQUEST,
            "idempotency_error",
            "idempotency_key_reused",
            Some("Idempotency-Key"),
        );
        assert!(!replayed(&headers), "{what}");
    }
    // The original is intact and still replays.
    let (status, again) = server.pay(&m, "order-2", 1500, true).await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
    assert_eq!(assert_audit_ok(&server).await["payments"], 1);
}

#[tokio::test]
async fn keys_are_scoped_per_merchant() {
    let server = Server::start_args(&["--shards", "2"]);
    let a = server.create_merchant("a").await;
    let b = server.create_merchant("b").await;
    let (status_a, pay_a, headers_a) = server
        .call(
            &a,
            Method::POST,
            "/v1/payments",
            Some("shared"),
            Some(payment_body(100, "usd", true)),
        )
        .await;
    let (status_b, pay_b, headers_b) = server
        .call(
            &b,
            Method::POST,
            "/v1/payments",
            Some("shared"),
            Some(payment_body(100, "usd", true)),
        )
        .await;
    assert_eq!((status_a, status_b), (StatusCode::OK, StatusCode::OK));
    assert!(!replayed(&headers_a) && !replayed(&headers_b));
    assert_ne!(pay_a["id"], pay_b["id"]);
    // And with a different body too: B's use of the key says nothing about A's.
    let (status, _, _) = server
        .call(
            &b,
            Method::POST,
            "/v1/payments",
            Some("other"),
            Some(payment_body(999, "usd", true)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = server
        .call(
            &a,
            Method::POST,
            "/v1/payments",
            Some("other"),
            Some(payment_body(5, "usd", true)),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(assert_audit_ok(&server).await["payments"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_key_make_one_payment() {
    const N: usize = 20;
    let server = Arc::new(Server::start());
    let m = server.create_merchant("race").await;
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let mut tasks = Vec::new();
    for _ in 0..N {
        let (server, m, barrier) = (server.clone(), m.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            raw(
                &server,
                Some(&m.key),
                Method::POST,
                "/v1/payments",
                Some("race-key"),
                Some(&payment_body(777, "usd", false).to_string()),
            )
            .await
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
    let first: Value = serde_json::from_str(&bodies[0]).unwrap();

    let (_, list, _) = server
        .call(&m, Method::GET, "/v1/payments", None, None)
        .await;
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{list:#}");
    assert_eq!(data[0]["id"], first["id"]);
    let audit = assert_audit_ok(&server).await;
    assert_eq!(audit["payments"], 1);
    let per_key = audit["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "one_payment_per_idempotency_key")
        .expect("the audit checks keys");
    assert_eq!(per_key["ok"], true);
    let (_, balance, _) = server
        .call(&m, Method::GET, "/v1/balance", None, None)
        .await;
    assert_eq!(
        balance["pending"],
        json!([{ "amount": 777, "currency": "usd" }])
    );
}

#[tokio::test]
async fn a_decline_replays_as_the_same_402() {
    let server = Server::start();
    let m = server.create_merchant("decline-replay").await;
    let body = payment_with_card(900, "usd", true, "4000000000009995").to_string();
    let send = || {
        raw(
            &server,
            Some(&m.key),
            Method::POST,
            "/v1/payments",
            Some("d-1"),
            Some(&body),
        )
    };
    let (status, first, headers) = send().await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{first}");
    assert!(!replayed(&headers));
    let (status, again, headers) = send().await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(replayed(&headers));
    assert_eq!(again, first);
    let err: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(err["error"]["decline_code"], "insufficient_funds");
    // Observed: the key stays bound to the decline; retrying with another card needs a new key.
    let (status, err, _) = server
        .call(
            &m,
            Method::POST,
            "/v1/payments",
            Some("d-1"),
            Some(payment_body(900, "usd", true)),
        )
        .await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        "idempotency_error",
        "idempotency_key_reused",
        Some("Idempotency-Key"),
    );
    assert_eq!(assert_audit_ok(&server).await["payments"], 1);
}

#[tokio::test]
async fn a_rejected_request_does_not_use_up_its_key() {
    let server = Server::start();
    let m = server.create_merchant("rejected").await;
    // 400s from validation are not stored: the key is free for the corrected request.
    let (status, _, _) = server
        .call(
            &m,
            Method::POST,
            "/v1/payments",
            Some("fix-me"),
            Some(payment_body(0, "usd", true)),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, ok) = server.pay(&m, "fix-me", 100, true).await;
    assert_eq!(status, StatusCode::OK, "{ok:#}");

    // Nor are 409s from the ledger: a capture refused on state, then allowed, with one key.
    let (_, held) = server.pay(&m, "held", 400, false).await;
    let id = held["id"].as_str().unwrap();
    let (status, _, _) = server
        .call(
            &m,
            Method::POST,
            &format!("/v1/payments/{id}/refunds"),
            Some("r-1"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _, _) = server
        .call(
            &m,
            Method::POST,
            &format!("/v1/payments/{id}/capture"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, refund, _) = server
        .call(
            &m,
            Method::POST,
            &format!("/v1/payments/{id}/refunds"),
            Some("r-1"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{refund:#}");
    assert_eq!(refund["amount"], 400);
    assert_audit_ok(&server).await;
}

#[tokio::test]
async fn capture_cancel_and_refund_with_a_key_replay() {
    let server = Server::start();
    let m = server.create_merchant("follow-ups").await;

    let (_, held) = server.pay(&m, "p-1", 1000, false).await;
    let id = held["id"].as_str().unwrap().to_string();
    let capture = format!("/v1/payments/{id}/capture");
    let body = json!({ "amount": 600 }).to_string();
    let send = || {
        raw(
            &server,
            Some(&m.key),
            Method::POST,
            &capture,
            Some("cap-1"),
            Some(&body),
        )
    };
    let (status, first, headers) = send().await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(!replayed(&headers));
    // Same key: the first answer again, not a 409 for capturing twice.
    let (status, again, headers) = send().await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert!(replayed(&headers));
    assert_eq!(again, first);
    // Without the key it is a second capture, which the state machine refuses.
    let (status, err, _) = server
        .call(
            &m,
            Method::POST,
            &capture,
            None,
            Some(json!({ "amount": 600 })),
        )
        .await;
    assert_error(
        status,
        &err,
        StatusCode::CONFLICT,
        "invalid_request_error",
        "payment_unexpected_state",
        None,
    );
    // Same key, another amount: refused as reuse, before the state is looked at.
    let (status, err, _) = server
        .call(
            &m,
            Method::POST,
            &capture,
            Some("cap-1"),
            Some(json!({ "amount": 500 })),
        )
        .await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        "idempotency_error",
        "idempotency_key_reused",
        Some("Idempotency-Key"),
    );
    // Keys are per merchant, not per route: the capture's key cannot create a payment.
    let (status, err, _) = server
        .call(
            &m,
            Method::POST,
            "/v1/payments",
            Some("cap-1"),
            Some(payment_body(1000, "usd", false)),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err:#}");
    assert_eq!(err["error"]["code"], "idempotency_key_reused");

    // A refund replays the same refund and does not refund twice.
    let refunds = format!("/v1/payments/{id}/refunds");
    let body = json!({ "amount": 250 }).to_string();
    let send = || {
        raw(
            &server,
            Some(&m.key),
            Method::POST,
            &refunds,
            Some("ref-1"),
            Some(&body),
        )
    };
    let (status, first, _) = send().await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again, headers) = send().await;
    assert_eq!(status, StatusCode::OK);
    assert!(replayed(&headers));
    assert_eq!(again, first);
    let (_, got, _) = server
        .call(&m, Method::GET, &format!("/v1/payments/{id}"), None, None)
        .await;
    assert_eq!(got["amount_refunded"], 250);

    // A cancel replays too.
    let (_, held) = server.pay(&m, "p-2", 300, false).await;
    let cancel = format!("/v1/payments/{}/cancel", held["id"].as_str().unwrap());
    let send = || {
        raw(
            &server,
            Some(&m.key),
            Method::POST,
            &cancel,
            Some("can-1"),
            None,
        )
    };
    let (status, first, _) = send().await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again, headers) = send().await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert!(replayed(&headers));
    assert_eq!(again, first);

    let (_, balance, _) = server
        .call(&m, Method::GET, "/v1/balance", None, None)
        .await;
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

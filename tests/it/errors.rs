//! Every way a request can be wrong gets an exact status and the one error shape,
//! `{"error": {"type", "code", "message", "param"}}`, and never a 500.

use crate::api::{assert_error, payment_with_card, raw};
use crate::support::{Merchant, Server, payment_body};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const INVALID: &str = "invalid_request_error";

/// POST /v1/payments with a raw body and a fresh idempotency key; the parsed answer.
async fn create_raw(server: &Server, m: &Merchant, key: &str, body: &str) -> (StatusCode, Value) {
    let (status, text, headers) = raw(
        server,
        Some(&m.key),
        Method::POST,
        "/v1/payments",
        Some(key),
        Some(body),
    )
    .await;
    assert_eq!(headers["content-type"], "application/json", "{text}");
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, value)
}

async fn create(server: &Server, m: &Merchant, key: &str, body: Value) -> (StatusCode, Value) {
    create_raw(server, m, key, &body.to_string()).await
}

#[tokio::test]
async fn bodies_that_do_not_parse() {
    let server = Server::start();
    let m = server.create_merchant("parse").await;

    for (i, text) in [r#"{"amount": 100,"#, "not json", ""]
        .into_iter()
        .enumerate()
    {
        let (status, err) = create_raw(&server, &m, &format!("p-{i}"), text).await;
        assert_error(
            status,
            &err,
            StatusCode::BAD_REQUEST,
            INVALID,
            "json_invalid",
            Some("body"),
        );
    }

    let mut body = payment_body(100, "usd", true);
    body["colour"] = json!("blue");
    let (status, err) = create(&server, &m, "u-1", body).await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        INVALID,
        "parameter_unknown",
        Some("colour"),
    );

    let mut body = payment_body(100, "usd", true);
    body["card"]["pin"] = json!("1234");
    let (status, err) = create(&server, &m, "u-2", body).await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        INVALID,
        "parameter_unknown",
        Some("card.pin"),
    );

    let mut body = payment_body(100, "usd", true);
    body.as_object_mut().unwrap().remove("amount");
    let (status, err) = create(&server, &m, "m-1", body).await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        INVALID,
        "parameter_missing",
        Some("amount"),
    );

    let mut body = payment_body(100, "usd", true);
    body["card"].as_object_mut().unwrap().remove("number");
    let (status, err) = create(&server, &m, "m-2", body).await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        INVALID,
        "parameter_missing",
        Some("card.number"),
    );

    let mut body = payment_body(100, "usd", true);
    body.as_object_mut().unwrap().remove("card");
    let (status, err) = create(&server, &m, "m-3", body).await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        INVALID,
        "parameter_missing",
        Some("card"),
    );

    // A JSON value of the wrong type for the whole body.
    let (status, err) = create_raw(&server, &m, "t-1", "[1, 2]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err:#}");
    assert_eq!(err["error"]["type"], INVALID);
    assert_eq!(server.audit().await["payments"], 0);
}

#[tokio::test]
async fn trailing_data_after_the_body_is_refused() {
    let server = Server::start();
    let m = server.create_merchant("trailing").await;
    let body = payment_body(100, "usd", true).to_string();
    for (i, text) in [
        format!("{body} trailing"),
        format!("{body}{body}"),
        format!("{body},"),
    ]
    .iter()
    .enumerate()
    {
        let (status, err) = create_raw(&server, &m, &format!("t-{i}"), text).await;
        assert_error(
            status,
            &err,
            StatusCode::BAD_REQUEST,
            INVALID,
            "json_invalid",
            Some("body"),
        );
    }
    assert_eq!(server.audit().await["payments"], 0);
}

#[tokio::test]
async fn amounts_out_of_range_or_not_integers() {
    let server = Server::start();
    let m = server.create_merchant("amounts").await;

    for (i, amount) in [0, -5].into_iter().enumerate() {
        let (status, err) = create(
            &server,
            &m,
            &format!("s-{i}"),
            payment_body(amount, "usd", true),
        )
        .await;
        assert_error(
            status,
            &err,
            StatusCode::BAD_REQUEST,
            INVALID,
            "amount_too_small",
            Some("amount"),
        );
    }

    // The bound is 100 million major units less one minor unit, per currency exponent.
    for (currency, max) in [
        ("usd", 9_999_999_999i64),
        ("jpy", 99_999_999),
        ("kwd", 99_999_999_999),
    ] {
        let (status, ok) = create(
            &server,
            &m,
            &format!("max-{currency}"),
            payment_body(max, currency, false),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{currency} max: {ok:#}");
        assert_eq!(ok["amount"], max);
        let (status, err) = create(
            &server,
            &m,
            &format!("over-{currency}"),
            payment_body(max + 1, currency, false),
        )
        .await;
        assert_error(
            status,
            &err,
            StatusCode::BAD_REQUEST,
            INVALID,
            "amount_too_large",
            Some("amount"),
        );
    }

    // Not an i64: the JSON type is wrong, so the code is parameter_invalid.
    for (i, amount) in [
        "1e30",
        "12.5",
        "\"100\"",
        "99999999999999999999",
        "null",
        "true",
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(
            r#"{{"amount": {amount}, "currency": "usd", "card": {{"number": "4242424242424242", "exp_month": 12, "exp_year": 2034}}}}"#
        );
        let (status, err) = create_raw(&server, &m, &format!("n-{i}"), &body).await;
        assert_error(
            status,
            &err,
            StatusCode::BAD_REQUEST,
            INVALID,
            "parameter_invalid",
            Some("amount"),
        );
    }

    // Capture and refund amounts are checked too.
    let (_, held) = server.pay(&m, "held", 500, false).await;
    let path = format!("/v1/payments/{}/capture", held["id"].as_str().unwrap());
    let (status, err, _) = server
        .call(&m, Method::POST, &path, None, Some(json!({ "amount": 0 })))
        .await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        INVALID,
        "amount_too_small",
        Some("amount"),
    );
    let (status, err, _) = server
        .call(
            &m,
            Method::POST,
            &path,
            None,
            Some(json!({ "amount": 501 })),
        )
        .await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        INVALID,
        "amount_too_large",
        Some("amount"),
    );
    let (status, err, _) = server
        .call(
            &m,
            Method::POST,
            &path,
            None,
            Some(json!({ "amount": 1.5 })),
        )
        .await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        INVALID,
        "parameter_invalid",
        Some("amount"),
    );
    let (status, err, _) = server
        .call(&m, Method::POST, &path, None, Some(json!({ "amont": 5 })))
        .await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        INVALID,
        "parameter_unknown",
        Some("amont"),
    );
    let (status, still, _) = server.call(&m, Method::POST, &path, None, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a failed capture changed nothing: {still:#}"
    );
    assert_eq!(still["amount_captured"], 500);

    let refunds = format!("/v1/payments/{}/refunds", held["id"].as_str().unwrap());
    let (status, err, _) = server
        .call(
            &m,
            Method::POST,
            &refunds,
            None,
            Some(json!({ "amount": -1 })),
        )
        .await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        INVALID,
        "amount_too_small",
        Some("amount"),
    );
    let (status, err, _) = server
        .call(
            &m,
            Method::POST,
            &refunds,
            None,
            Some(json!({ "amount": 501 })),
        )
        .await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        INVALID,
        "amount_too_large",
        Some("amount"),
    );
    assert_eq!(server.audit().await["ok"], true);
}

#[tokio::test]
async fn currencies_and_cards_that_are_refused() {
    let server = Server::start();
    let m = server.create_merchant("cards").await;

    for currency in ["USD", "xyz", "", "us"] {
        let (status, err) = create(
            &server,
            &m,
            &format!("c-{currency}"),
            payment_body(100, currency, true),
        )
        .await;
        assert_error(
            status,
            &err,
            StatusCode::BAD_REQUEST,
            INVALID,
            "currency_invalid",
            Some("currency"),
        );
    }

    for (i, number) in ["4242424242424241", "1234", "4242-4242-4242-424x", ""]
        .into_iter()
        .enumerate()
    {
        let (status, err) = create(
            &server,
            &m,
            &format!("n-{i}"),
            payment_with_card(100, "usd", true, number),
        )
        .await;
        assert_error(
            status,
            &err,
            StatusCode::BAD_REQUEST,
            "card_error",
            "invalid_number",
            Some("card.number"),
        );
    }

    let mut expired = payment_body(100, "usd", true);
    expired["card"]["exp_year"] = json!(2020);
    let (status, err) = create(&server, &m, "expired", expired).await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        "card_error",
        "expired_card",
        Some("card.exp_year"),
    );

    for month in [0, 13] {
        let mut body = payment_body(100, "usd", true);
        body["card"]["exp_month"] = json!(month);
        let (status, err) = create(&server, &m, &format!("month-{month}"), body).await;
        assert_error(
            status,
            &err,
            StatusCode::BAD_REQUEST,
            "card_error",
            "invalid_expiry_month",
            Some("card.exp_month"),
        );
    }
    // Beyond u8: a type error rather than a card error.
    let mut body = payment_body(100, "usd", true);
    body["card"]["exp_month"] = json!(300);
    let (status, err) = create(&server, &m, "month-300", body).await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        INVALID,
        "parameter_invalid",
        Some("card.exp_month"),
    );

    // Nothing above was recorded.
    assert_eq!(server.audit().await["payments"], 0);
}

#[tokio::test]
async fn idempotency_key_is_required_and_checked() {
    let server = Server::start();
    let m = server.create_merchant("keys").await;
    let (status, err, _) = server
        .call(
            &m,
            Method::POST,
            "/v1/payments",
            None,
            Some(payment_body(100, "usd", true)),
        )
        .await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        INVALID,
        "idempotency_key_missing",
        Some("Idempotency-Key"),
    );
    let long = "k".repeat(256);
    let (status, err, _) = server
        .call(
            &m,
            Method::POST,
            "/v1/payments",
            Some(&long),
            Some(payment_body(100, "usd", true)),
        )
        .await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        INVALID,
        "idempotency_key_invalid",
        Some("Idempotency-Key"),
    );
    let (status, _, _) = server
        .call(
            &m,
            Method::POST,
            "/v1/payments",
            Some(&long[..255]),
            Some(payment_body(100, "usd", true)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "255 characters is the longest key");
    assert_eq!(server.audit().await["payments"], 1);
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let server = Server::start_args(&["--body-limit-bytes", "1024"]);
    let m = server.create_merchant("big").await;
    let mut body = payment_body(100, "usd", true);
    body["card"]["cvc"] = json!("1".repeat(4096));
    let (status, err) = create(&server, &m, "big", body).await;
    assert_error(
        status,
        &err,
        StatusCode::PAYLOAD_TOO_LARGE,
        INVALID,
        "body_too_large",
        None,
    );
    // Just under the limit is parsed as usual.
    let (status, ok) = create(&server, &m, "small", payment_body(100, "usd", true)).await;
    assert_eq!(status, StatusCode::OK, "{ok:#}");
    assert_eq!(server.audit().await["payments"], 1);
}

#[tokio::test]
async fn authentication_is_required() {
    let server = Server::start();
    let m = server.create_merchant("auth").await;
    let body = payment_body(100, "usd", true).to_string();
    let bad_tokens: [Option<&str>; 4] = [
        None,
        Some("sk_test_nope"),
        Some(""),
        Some(&server.admin_token),
    ];
    for token in bad_tokens {
        for (method, path, payload) in [
            (Method::POST, "/v1/payments", Some(body.as_str())),
            (Method::GET, "/v1/payments", None),
            (Method::GET, "/v1/balance", None),
        ] {
            let (status, text, _) = raw(&server, token, method, path, Some("k"), payload).await;
            let err: Value = serde_json::from_str(&text).unwrap();
            assert_error(
                status,
                &err,
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid_api_key",
                None,
            );
        }
    }
    // Not a Bearer scheme at all.
    let res = server
        .client
        .get(server.url("/v1/balance"))
        .header("Authorization", format!("Basic {}", m.key))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Admin routes refuse a merchant key.
    let (status, text, _) = raw(
        &server,
        Some(&m.key),
        Method::GET,
        "/v1/admin/audit",
        None,
        None,
    )
    .await;
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_error(
        status,
        &err,
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        "invalid_api_key",
        None,
    );
    let (status, text, _) = raw(
        &server,
        Some(&m.key),
        Method::POST,
        "/v1/merchants",
        None,
        Some(r#"{"name":"mallory"}"#),
    )
    .await;
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_error(
        status,
        &err,
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        "invalid_api_key",
        None,
    );
    let (status, text, _) = raw(&server, None, Method::GET, "/v1/admin/audit", None, None).await;
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_error(
        status,
        &err,
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        "invalid_api_key",
        None,
    );

    let audit = server.audit().await;
    assert_eq!(
        (audit["merchants"].clone(), audit["payments"].clone()),
        (json!(1), json!(0))
    );
}

#[tokio::test]
async fn unknown_and_malformed_payment_ids_are_404() {
    let server = Server::start();
    let m = server.create_merchant("ids").await;
    let unknown = format!("pay_{}", "0123456789abcdef".repeat(2));
    for id in [
        unknown.as_str(),
        "pay_xyz",
        "nope",
        // Right length, wrong prefix / uppercase hex.
        "re_0123456789abcdef0123456789abcdef",
        "pay_0123456789ABCDEF0123456789ABCDEF",
    ] {
        for (method, path) in [
            (Method::GET, format!("/v1/payments/{id}")),
            (Method::POST, format!("/v1/payments/{id}/capture")),
            (Method::POST, format!("/v1/payments/{id}/cancel")),
            (Method::POST, format!("/v1/payments/{id}/refunds")),
        ] {
            let (status, err, _) = server.call(&m, method, &path, None, None).await;
            assert_error(
                status,
                &err,
                StatusCode::NOT_FOUND,
                INVALID,
                "resource_missing",
                Some("id"),
            );
        }
    }
}

#[tokio::test]
async fn transitions_the_state_machine_forbids_are_409() {
    let server = Server::start();
    let m = server.create_merchant("states").await;
    let conflict = |status, err: &Value| {
        assert_error(
            status,
            err,
            StatusCode::CONFLICT,
            INVALID,
            "payment_unexpected_state",
            None,
        );
    };
    let post = |path: String| {
        let (server, m) = (&server, &m);
        async move { server.call(m, Method::POST, &path, None, None).await }
    };

    // Canceled: neither capture nor cancel again nor refund.
    let (_, canceled) = server.pay(&m, "c", 300, false).await;
    let c = canceled["id"].as_str().unwrap();
    assert_eq!(
        post(format!("/v1/payments/{c}/cancel")).await.0,
        StatusCode::OK
    );
    for action in ["capture", "cancel", "refunds"] {
        let (status, err, _) = post(format!("/v1/payments/{c}/{action}")).await;
        conflict(status, &err);
    }

    // Captured: no second capture, no cancel.
    let (_, held) = server.pay(&m, "h", 300, false).await;
    let h = held["id"].as_str().unwrap();
    assert_eq!(
        post(format!("/v1/payments/{h}/capture")).await.0,
        StatusCode::OK
    );
    for action in ["capture", "cancel"] {
        let (status, err, _) = post(format!("/v1/payments/{h}/{action}")).await;
        conflict(status, &err);
    }

    // Uncaptured: no refund yet.
    let (_, uncaptured) = server.pay(&m, "u", 300, false).await;
    let u = uncaptured["id"].as_str().unwrap();
    let (status, err, _) = server
        .call(
            &m,
            Method::POST,
            &format!("/v1/payments/{u}/refunds"),
            None,
            Some(json!({ "amount": 100 })),
        )
        .await;
    conflict(status, &err);

    // Failed: nothing at all.
    let (_, declined, _) = server
        .call(
            &m,
            Method::POST,
            "/v1/payments",
            Some("f"),
            Some(payment_with_card(300, "usd", false, "4000000000000002")),
        )
        .await;
    let f = declined["error"]["payment"]["id"].as_str().unwrap();
    for action in ["capture", "cancel", "refunds"] {
        let (status, err, _) = post(format!("/v1/payments/{f}/{action}")).await;
        conflict(status, &err);
    }
    assert_eq!(server.audit().await["ok"], true);
}

#[tokio::test]
async fn unknown_routes_methods_and_list_parameters() {
    let server = Server::start();
    let m = server.create_merchant("routes").await;

    for path in ["/v1/nope", "/", "/v1/payments/pay_x/void", "/v2/payments"] {
        let (status, err, headers) = server.call(&m, Method::GET, path, None, None).await;
        assert_error(
            status,
            &err,
            StatusCode::NOT_FOUND,
            INVALID,
            "resource_missing",
            Some("path"),
        );
        assert_eq!(headers["content-type"], "application/json");
    }
    // Unknown routes do not need a key to be told so.
    let (status, text, _) = raw(&server, None, Method::GET, "/v1/nope", None, None).await;
    let err: Value = serde_json::from_str(&text).unwrap();
    assert_error(
        status,
        &err,
        StatusCode::NOT_FOUND,
        INVALID,
        "resource_missing",
        Some("path"),
    );

    for (method, path) in [
        (Method::DELETE, "/v1/payments"),
        (Method::PUT, "/v1/balance"),
        (
            Method::GET,
            "/v1/payments/pay_0123456789abcdef0123456789abcdef/capture",
        ),
        (Method::POST, "/healthz"),
    ] {
        let (status, err, headers) = server.call(&m, method.clone(), path, None, None).await;
        assert_error(
            status,
            &err,
            StatusCode::METHOD_NOT_ALLOWED,
            INVALID,
            "method_not_allowed",
            None,
        );
        assert_eq!(
            headers["content-type"], "application/json",
            "{method} {path}"
        );
    }

    for query in ["limit=0", "limit=101"] {
        let (status, err, _) = server
            .call(
                &m,
                Method::GET,
                &format!("/v1/payments?{query}"),
                None,
                None,
            )
            .await;
        assert_error(
            status,
            &err,
            StatusCode::BAD_REQUEST,
            INVALID,
            "parameter_invalid",
            Some("limit"),
        );
    }
    // Observed: a query that does not deserialize at all (limit not a usize, an unknown
    // parameter) is reported against the whole query, param "query", not the field.
    for query in ["limit=-1", "limit=abc", "foo=1"] {
        let (status, err, _) = server
            .call(
                &m,
                Method::GET,
                &format!("/v1/payments?{query}"),
                None,
                None,
            )
            .await;
        assert_error(
            status,
            &err,
            StatusCode::BAD_REQUEST,
            INVALID,
            "parameter_invalid",
            Some("query"),
        );
    }
    let (status, err, _) = server
        .call(
            &m,
            Method::GET,
            "/v1/payments?starting_after=pay_nope",
            None,
            None,
        )
        .await;
    assert_error(
        status,
        &err,
        StatusCode::BAD_REQUEST,
        INVALID,
        "parameter_invalid",
        Some("starting_after"),
    );
    for query in ["limit=1", "limit=100"] {
        let (status, _, _) = server
            .call(
                &m,
                Method::GET,
                &format!("/v1/payments?{query}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{query}");
    }
}

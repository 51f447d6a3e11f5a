//! Every way a request can be wrong gets an exact status and the one error shape,
//! `{"error": {"type", "code", "message", "param"}}`, and never a 500. Each test is a
//! table of cases: a new rule is one row.

use crate::api::payment_with_card;
use crate::support::{
    Auth, Case, Req, Server, Want, card_error, case, conflict, create, declined, get, invalid,
    invalid_any, not_found, on, pay, pay_with, pay_without, payment_body, post, unauthorized,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test]
async fn bodies_that_do_not_parse() {
    let server = Server::start();
    let m = server.create_merchant("parse").await;
    let json_invalid = invalid("json_invalid", "body");
    let body = pay().to_string();
    server
        .check(
            &m,
            [
                case("cut short", create(r#"{"amount": 100,"#), json_invalid),
                case("not JSON", create("not json"), json_invalid),
                case("empty", create(""), json_invalid),
                case(
                    "trailing word",
                    create(format!("{body} trailing")),
                    json_invalid,
                ),
                case("two bodies", create(format!("{body}{body}")), json_invalid),
                case("trailing comma", create(format!("{body},")), json_invalid),
                // A JSON value of the wrong type for the whole body.
                case("an array", create("[1, 2]"), invalid_any()),
                case(
                    "unknown field",
                    create(pay_with("colour", json!("blue"))),
                    invalid("parameter_unknown", "colour"),
                ),
                case(
                    "unknown card field",
                    create(pay_with("card.pin", json!("1234"))),
                    invalid("parameter_unknown", "card.pin"),
                ),
                case(
                    "no amount",
                    create(pay_without("amount")),
                    invalid("parameter_missing", "amount"),
                ),
                case(
                    "no card number",
                    create(pay_without("card.number")),
                    invalid("parameter_missing", "card.number"),
                ),
                case(
                    "no card",
                    create(pay_without("card")),
                    invalid("parameter_missing", "card"),
                ),
            ],
        )
        .await;
    assert_eq!(server.audit().await["payments"], 0);
}

#[tokio::test]
async fn amounts_out_of_range_or_not_integers() {
    let server = Server::start();
    let m = server.create_merchant("amounts").await;
    let too_small = invalid("amount_too_small", "amount");
    let too_large = invalid("amount_too_large", "amount");
    let not_an_integer = invalid("parameter_invalid", "amount");

    // The bound is 100 million major units less one minor unit, per currency exponent.
    let maxes = [
        ("usd", 9_999_999_999i64),
        ("jpy", 99_999_999),
        ("kwd", 99_999_999_999),
    ];
    for (currency, max) in maxes {
        let ok = server
            .ok(
                &m,
                &create(payment_body(max, currency, false)).key(currency),
            )
            .await;
        assert_eq!(ok["amount"], max, "{currency} max: {ok:#}");
    }
    let mut cases = vec![
        case("zero", create(payment_body(0, "usd", true)), too_small),
        case("negative", create(payment_body(-5, "usd", true)), too_small),
    ];
    cases.extend(maxes.map(|(currency, max)| {
        let over = payment_body(max + 1, currency, false);
        case(format!("over the {currency} max"), create(over), too_large)
    }));
    // Not an i64: the JSON type is wrong, so the code is parameter_invalid.
    cases.extend(
        ["1e30", "12.5", "\"100\"", "99999999999999999999", "null", "true"].map(|amount| {
            let body = format!(
                r#"{{"amount": {amount}, "currency": "usd", "card": {{"number": "4242424242424242", "exp_month": 12, "exp_year": 2034}}}}"#
            );
            case(format!("amount {amount}"), create(body), not_an_integer)
        }),
    );
    // Capture and refund amounts are checked too.
    let id = server.held(&m, "held", 500).await;
    let capture = |amount: Value| on(&id, "capture").body(json!({ "amount": amount }));
    cases.extend([
        case("capture 0", capture(json!(0)), too_small),
        case("capture more than held", capture(json!(501)), too_large),
        case("capture 1.5", capture(json!(1.5)), not_an_integer),
        case(
            "capture with a misspelt field",
            on(&id, "capture").body(json!({ "amont": 5 })),
            invalid("parameter_unknown", "amont"),
        ),
    ]);
    server.check(&m, cases).await;
    let still = server.ok(&m, &on(&id, "capture")).await;
    assert_eq!(
        still["amount_captured"], 500,
        "a failed capture changed nothing"
    );

    let refund = |amount: i64| on(&id, "refunds").body(json!({ "amount": amount }));
    let refunds = [
        case("refund -1", refund(-1), too_small),
        case("refund more than paid", refund(501), too_large),
    ];
    server.check(&m, refunds).await;
    assert_eq!(server.audit().await["ok"], true);
}

#[tokio::test]
async fn currencies_and_cards_that_are_refused() {
    let server = Server::start();
    let m = server.create_merchant("cards").await;
    let mut cases: Vec<Case> = ["USD", "xyz", "", "us"]
        .map(|currency| {
            let body = payment_body(100, currency, true);
            let want = invalid("currency_invalid", "currency");
            case(format!("currency {currency:?}"), create(body), want)
        })
        .into();
    cases.extend(
        ["4242424242424241", "1234", "4242-4242-4242-424x", ""].map(|number| {
            let body = payment_with_card(100, "usd", true, number);
            let want = card_error("invalid_number", "card.number");
            case(format!("card number {number:?}"), create(body), want)
        }),
    );
    let month = card_error("invalid_expiry_month", "card.exp_month");
    cases.extend([
        case(
            "expired",
            create(pay_with("card.exp_year", json!(2020))),
            card_error("expired_card", "card.exp_year"),
        ),
        case(
            "month 0",
            create(pay_with("card.exp_month", json!(0))),
            month,
        ),
        case(
            "month 13",
            create(pay_with("card.exp_month", json!(13))),
            month,
        ),
        // Beyond u8: a type error rather than a card error.
        case(
            "month 300",
            create(pay_with("card.exp_month", json!(300))),
            invalid("parameter_invalid", "card.exp_month"),
        ),
    ]);
    server.check(&m, cases).await;
    // Nothing above was recorded.
    assert_eq!(server.audit().await["payments"], 0);
}

#[tokio::test]
async fn idempotency_key_is_required_and_checked() {
    let server = Server::start();
    let m = server.create_merchant("keys").await;
    let long = "k".repeat(256);
    let (_, paid) = server.pay(&m, "to-change", 1_000, false).await;
    let id = paid["id"].as_str().unwrap();
    let missing = invalid("idempotency_key_missing", "Idempotency-Key");
    server
        .check(
            &m,
            [
                case("no key", create(pay()).no_key(), missing),
                // Every change to money: a timed-out one is learned only by resending it.
                case("capture, no key", on(id, "capture").no_key(), missing),
                case("cancel, no key", on(id, "cancel").no_key(), missing),
                case("refund, no key", on(id, "refunds").no_key(), missing),
                case(
                    "256 characters",
                    create(pay()).key(&long),
                    invalid("idempotency_key_invalid", "Idempotency-Key"),
                ),
            ],
        )
        .await;
    // 255 characters is the longest key.
    server.ok(&m, &create(pay()).key(&long[..255])).await;
    assert_eq!(server.audit().await["payments"], 2);
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let server = Server::start_args(&["--body-limit-bytes", "1024"]);
    let m = server.create_merchant("big").await;
    let too_large = Want {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        param: None,
        ..invalid("body_too_large", "")
    };
    let big = pay_with("card.cvc", json!("1".repeat(4096)));
    server
        .check(&m, [case("big", create(big), too_large)])
        .await;
    // Just under the limit is parsed as usual.
    server.ok(&m, &create(pay()).key("small")).await;
    assert_eq!(server.audit().await["payments"], 1);
}

#[tokio::test]
async fn authentication_is_required() {
    let server = Server::start();
    let m = server.create_merchant("auth").await;
    let (_, paid) = server.pay(&m, "paid", 1_000, false).await;
    let paid = paid["id"].as_str().unwrap().to_string();
    // A key rolled away: refused at once.
    let rolled = server.create_merchant("rolled").await;
    let res = server
        .client
        .post(server.url(&format!("/v1/admin/merchants/{}/roll_key", rolled.id)))
        .bearer_auth(&server.admin_token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bad = [
        Auth::Anonymous,
        Auth::Bearer("sk_test_nope".into()),
        Auth::Bearer(String::new()),
        Auth::Bearer(server.admin_token.clone()),
        Auth::Bearer(rolled.key.clone()),
        // Another merchant's key, one character off.
        Auth::Bearer(format!("{}x", &m.key[..m.key.len() - 1])),
        // Not a Bearer scheme at all.
        Auth::Header(format!("Basic {}", m.key)),
    ];
    let mut cases = Vec::new();
    for auth in bad {
        // Every merchant route.
        for req in [
            create(pay()),
            get("/v1/payments"),
            get(format!("/v1/payments/{paid}")),
            on(&paid, "capture"),
            on(&paid, "cancel"),
            on(&paid, "refunds"),
            get("/v1/balance"),
        ] {
            let name = format!("{} {} as {auth:?}", req.method, req.path);
            cases.push(case(name, req.key("k").auth(auth.clone()), unauthorized()));
        }
    }
    // Admin routes refuse a merchant key, and no key at all.
    let mallory = post("/v1/merchants").body(json!({ "name": "mallory" }));
    cases.extend([
        case(
            "audit as a merchant",
            get("/v1/admin/audit"),
            unauthorized(),
        ),
        case("new merchant as a merchant", mallory, unauthorized()),
        case(
            "audit anonymously",
            get("/v1/admin/audit").auth(Auth::Anonymous),
            unauthorized(),
        ),
        case(
            "roll a key as a merchant",
            post(format!("/v1/admin/merchants/{}/roll_key", m.id)).body(json!({})),
            unauthorized(),
        ),
        case(
            "look payments up as a merchant",
            post("/v1/admin/payments/lookup").body(json!({ "payments": [] })),
            unauthorized(),
        ),
    ]);
    server.check(&m, cases).await;

    // Nothing changed: the one payment is still only authorized.
    let audit = server.audit().await;
    assert_eq!(
        (audit["merchants"].clone(), audit["payments"].clone()),
        (json!(2), json!(1))
    );
    let (_, read, _) = server
        .call(&m, Method::GET, &format!("/v1/payments/{paid}"), None, None)
        .await;
    assert_eq!(read["status"], "requires_capture", "{read}");
}

#[tokio::test]
async fn unknown_and_malformed_payment_ids_are_404() {
    let server = Server::start();
    let m = server.create_merchant("ids").await;
    let unknown = format!("pay_{}", "0123456789abcdef".repeat(2));
    let mut cases = Vec::new();
    for id in [
        unknown.as_str(),
        "pay_xyz",
        "nope",
        // Right length, wrong prefix / uppercase hex.
        "re_0123456789abcdef0123456789abcdef",
        "pay_0123456789ABCDEF0123456789ABCDEF",
    ] {
        for req in [
            get(format!("/v1/payments/{id}")),
            on(id, "capture"),
            on(id, "cancel"),
            on(id, "refunds"),
        ] {
            cases.push(case(req.path.clone(), req, not_found("id")));
        }
    }
    server.check(&m, cases).await;
}

#[tokio::test]
async fn transitions_the_state_machine_forbids_are_409() {
    let server = Server::start();
    let m = server.create_merchant("states").await;
    let canceled = server.held(&m, "c", 300).await;
    server.ok(&m, &on(&canceled, "cancel")).await;
    let captured = server.held(&m, "h", 300).await;
    server.ok(&m, &on(&captured, "capture")).await;
    let uncaptured = server.held(&m, "u", 300).await;
    let card = create(payment_with_card(300, "usd", false, "4000000000000002"));
    let decline = server
        .refused(&m, &case("decline", card, declined("card_declined")))
        .await;
    let failed = decline["error"]["payment"]["id"].as_str().unwrap();

    let state = conflict("payment_unexpected_state");
    let refund_100 = on(&uncaptured, "refunds").body(json!({ "amount": 100 }));
    server
        .check(
            &m,
            [
                case("capture a canceled", on(&canceled, "capture"), state),
                case("cancel a canceled", on(&canceled, "cancel"), state),
                case("refund a canceled", on(&canceled, "refunds"), state),
                case("capture a captured", on(&captured, "capture"), state),
                case("cancel a captured", on(&captured, "cancel"), state),
                case("refund an uncaptured", refund_100, state),
                case("capture a failed", on(failed, "capture"), state),
                case("cancel a failed", on(failed, "cancel"), state),
                case("refund a failed", on(failed, "refunds"), state),
            ],
        )
        .await;
    assert_eq!(server.audit().await["ok"], true);
}

#[tokio::test]
async fn unknown_routes_methods_and_list_parameters() {
    let server = Server::start();
    let m = server.create_merchant("routes").await;
    let no_route = not_found("path");
    let not_allowed = Want {
        status: StatusCode::METHOD_NOT_ALLOWED,
        param: None,
        ..invalid("method_not_allowed", "")
    };
    let held_capture = "/v1/payments/pay_0123456789abcdef0123456789abcdef/capture";
    let mut cases: Vec<Case> = ["/v1/nope", "/", "/v1/payments/pay_x/void", "/v2/payments"]
        .map(|path| case(path, get(path), no_route))
        .into();
    cases.extend([
        // Unknown routes do not need a key to be told so.
        case("anonymous", get("/v1/nope").auth(Auth::Anonymous), no_route),
        case(
            "DELETE",
            Req::new(Method::DELETE, "/v1/payments"),
            not_allowed,
        ),
        case("PUT", Req::new(Method::PUT, "/v1/balance"), not_allowed),
        case("GET a capture", get(held_capture), not_allowed),
        case("POST /healthz", post("/healthz"), not_allowed),
    ]);
    let list = |query: &str| get(format!("/v1/payments?{query}"));
    cases.extend(
        ["limit=0", "limit=101"].map(|q| case(q, list(q), invalid("parameter_invalid", "limit"))),
    );
    // Observed: a query that does not deserialize at all (limit not a usize, an unknown
    // parameter) is reported against the whole query, param "query", not the field.
    cases.extend(
        ["limit=-1", "limit=abc", "foo=1"]
            .map(|q| case(q, list(q), invalid("parameter_invalid", "query"))),
    );
    let cursor = "starting_after=pay_nope";
    cases.push(case(
        cursor,
        list(cursor),
        invalid("parameter_invalid", "starting_after"),
    ));
    server.check(&m, cases).await;
    for query in ["limit=1", "limit=100"] {
        server.ok(&m, &list(query)).await;
    }
}

/// A card number sent where it does not belong (another type, another field, a field
/// name, a path) is refused without ever coming back in the answer.
#[tokio::test]
async fn card_numbers_in_the_wrong_place_never_come_back() {
    let server = Server::start();
    let m = server.create_merchant("pan").await;
    let numbers = ["4242424242424242", "4000 0000 0000 0002", "378282246310005"];
    for number in numbers {
        let digits: String = number.chars().filter(char::is_ascii_digit).collect();
        let as_integer: Value = serde_json::from_str(&digits).unwrap();
        let bodies = [
            pay_with("/card/number", as_integer.clone()),
            pay_with("/amount", json!(number)),
            pay_with("/currency", json!(number)),
            pay_with("/card/exp_month", json!(number)),
            pay_with("/card/cvc", as_integer.clone()),
            pay_with(&format!("/{digits}"), json!(1)),
            pay_with("/card", json!(number)),
        ];
        for body in bodies {
            let (status, answer, _) = server
                .call(
                    &m,
                    Method::POST,
                    "/v1/payments",
                    Some(&format!("k-{digits}")),
                    Some(body.clone()),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
            let text = answer.to_string();
            assert!(
                !text.contains(&digits) && !text.contains(number),
                "{body} echoed a card number: {text}"
            );
        }
        let (status, answer, _) = server
            .call(
                &m,
                Method::GET,
                &format!("/v1/payments/{digits}"),
                None,
                None,
            )
            .await;
        assert!(status.is_client_error(), "{status} {answer}");
        assert!(!answer.to_string().contains(&digits), "{answer}");
    }
}

/// One merchant over its limit is refused with 429 and Retry-After, before anything is
/// written; another merchant is served as usual; a bad limit is refused at start.
#[tokio::test]
async fn a_merchant_over_its_rate_limit_gets_429_and_others_do_not() {
    const BURST: usize = 5;
    let server = Server::start_args(&["--rate-limit", "1/s", "--rate-burst", "5"]);
    let noisy = server.create_merchant("noisy").await;
    let quiet = server.create_merchant("quiet").await;
    let mut statuses = Vec::new();
    for i in 0..BURST + 5 {
        let (status, body, headers) = server
            .call(
                &noisy,
                Method::POST,
                "/v1/payments",
                Some(&format!("noisy-{i}")),
                Some(payment_body(100, "usd", true)),
            )
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"]["code"], "rate_limited", "{body}");
            assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
            let after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(after >= 1, "Retry-After {after}");
            // The limit itself, in the IETF RateLimit fields.
            assert_eq!(headers["ratelimit-limit"], "1");
            assert_eq!(headers["ratelimit-remaining"], "0");
            assert_eq!(headers["ratelimit-reset"], after.to_string().as_str());
        }
        statuses.push(status);
    }
    // The burst goes through (a token may refill meanwhile), the rest is refused.
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!((BURST..=BURST + 1).contains(&ok), "{statuses:?}");
    assert!(
        statuses[BURST + 2..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // The other merchant is not held back, and nothing refused was written.
    let (status, body) = server.pay(&quiet, "quiet-1", 100, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.audit().await["payments"], ok + 1);

    for bad in [["--rate-limit", "fast"], ["--rate-burst", "3"]] {
        let out = crate::support::run_bounded(
            std::process::Command::new(crate::support::BIN)
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(crate::support::temp_dir().path())
                .args(bad),
            crate::support::COMMAND_TIMEOUT,
        );
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&bad[0][2..].replace('-', "_")),
            "{bad:?}: {err}"
        );
    }
}

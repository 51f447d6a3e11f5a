//! `POST /v1/admin/merchants/{id}/roll_key`: a new key shown once, the old one refused at
//! once or after a grace period; on a PostgreSQL layout, on every instance.

use crate::support::{Merchant, PgShards, Server, temp_dir};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn roll(server: &Server, id: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = server
        .client
        .post(server.url(&format!("/v1/admin/merchants/{id}/roll_key")))
        .bearer_auth(&server.admin_token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.json().await.unwrap())
}

async fn balance_status(server: &Server, key: &str) -> StatusCode {
    server
        .client
        .get(server.url("/v1/balance"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
}

/// Poll until `key` gets `want` from `server`, at most `within`; how long it took.
async fn until_status(server: &Server, key: &str, want: StatusCode, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if balance_status(server, key).await == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{key} still not {want} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_rolled_key_replaces_the_old_one_at_once() {
    let server = Server::start();
    let m = server.create_merchant("roll").await;
    let (status, rolled) = roll(&server, &m.id, None).await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    let new_key = rolled["secret_key"].as_str().unwrap();
    assert_ne!(new_key, m.key);
    assert_eq!(rolled["previous_key_expires"], Value::Null);
    assert_eq!(balance_status(&server, new_key).await, StatusCode::OK);
    assert_eq!(
        balance_status(&server, &m.key).await,
        StatusCode::UNAUTHORIZED
    );
    // The new key pays for the same merchant.
    let same = Merchant {
        id: m.id.clone(),
        key: new_key.to_string(),
    };
    assert_eq!(
        server.pay(&same, "after-roll", 700, true).await.0,
        StatusCode::OK
    );

    for (body, param) in [
        (json!({ "expires_in": -1 }), "expires_in"),
        (json!({ "expires_in": 604_801 }), "expires_in"),
        (json!({ "nope": 1 }), "nope"),
    ] {
        let (status, err) = roll(&server, &m.id, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert!(err["error"].to_string().contains(param), "{err}");
    }
    let (status, _) = roll(&server, "mer_0123456789abcdef0123456789abcdef", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn with_a_grace_period_the_old_key_works_until_it_ends() {
    let server = Server::start();
    let m = server.create_merchant("grace").await;
    let (status, rolled) = roll(&server, &m.id, Some(json!({ "expires_in": 2 }))).await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    assert!(rolled["previous_key_expires"].as_i64().is_some());
    assert_eq!(balance_status(&server, &m.key).await, StatusCode::OK);
    until_status(
        &server,
        &m.key,
        StatusCode::UNAUTHORIZED,
        Duration::from_secs(4),
    )
    .await;
    // A restart keeps the roll.
    let new_key = rolled["secret_key"].as_str().unwrap().to_string();
    let server = Server::start_with(server.into_data(), &[]);
    assert_eq!(balance_status(&server, &new_key).await, StatusCode::OK);
    assert_eq!(
        balance_status(&server, &m.key).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn every_instance_of_a_layout_stops_accepting_a_rolled_key_within_its_cache_lifetime() {
    const TOKEN: &str = "adm_roll";
    let dir = temp_dir();
    let pg = PgShards::unapplied(dir.path(), 2, false);
    pg.apply();
    let a = Server::start_on_layout(&pg.layout, TOKEN);
    let b = Server::start_on_layout(&pg.layout, TOKEN);
    let m = a.create_merchant("everywhere").await;
    // b has the old key cached now.
    assert_eq!(balance_status(&b, &m.key).await, StatusCode::OK);
    let (status, rolled) = roll(&a, &m.id, None).await;
    assert_eq!(status, StatusCode::OK);
    let new_key = rolled["secret_key"].as_str().unwrap();
    for server in [&a, &b] {
        assert_eq!(balance_status(server, new_key).await, StatusCode::OK);
    }
    assert_eq!(
        balance_status(&a, &m.key).await,
        StatusCode::UNAUTHORIZED,
        "at once where rolled"
    );
    // The documented bound: the merchant cache's lifetime, 5 s.
    let took = until_status(&b, &m.key, StatusCode::UNAUTHORIZED, Duration::from_secs(7)).await;
    assert!(took <= Duration::from_secs(6), "{took:?}");
}

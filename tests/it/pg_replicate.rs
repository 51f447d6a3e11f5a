//! The copy-and-catch-up step of a future `shard move`: PostgreSQL logical replication
//! of one bucket range between two shards on two servers, checked by per-table row
//! counts and checksums, while the API keeps changing the source.

use crate::support::{PgShards, Server, temp_dir};
use paytool::ids::bucket_of;
use paytool::store::postgres::replicate;
use reqwest::StatusCode;
use std::time::{Duration, Instant};

const TOKEN: &str = "adm_replicate";
/// The range copied: the lower half of shard s0's buckets.
const FIRST: u16 = 0;
const LAST: u16 = 255;
/// Bounds on the copy and on streaming a change across.
const COPY_TIMEOUT: Duration = Duration::from_secs(30);
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_bucket_range_copies_and_keeps_up_and_both_sides_agree() {
    let dir = temp_dir();
    let pg = PgShards::unapplied(dir.path(), 2, true);
    pg.apply();
    let api = Server::start_on_layout(&pg.layout, TOKEN);
    // Merchants in the copied range (and some outside it), each with payments.
    let mut inside = Vec::new();
    for i in 0..40 {
        let m = api.create_merchant(&format!("m{i}")).await;
        let bucket = bucket_of(&m.id);
        let (status, _) = api.pay(&m, &format!("first-{i}"), 1000 + i, true).await;
        assert_eq!(status, StatusCode::OK);
        if (FIRST..=LAST).contains(&bucket) {
            inside.push(m);
        }
    }
    assert!(
        !inside.is_empty(),
        "no merchant landed in buckets {FIRST}-{LAST}"
    );

    let (source, target) = (pg.client(0).await, pg.client(1).await);
    replicate::start(&source, &target, &pg.url(0), FIRST, LAST)
        .await
        .unwrap();
    // Starting again is a no-op.
    replicate::start(&source, &target, &pg.url(0), FIRST, LAST)
        .await
        .unwrap();
    replicate::wait_copied(&target, FIRST, LAST, COPY_TIMEOUT)
        .await
        .unwrap();
    let copied = replicate::checksums(&source, FIRST, LAST).await.unwrap();
    assert_eq!(
        copied,
        replicate::checksums(&target, FIRST, LAST).await.unwrap()
    );
    assert!(
        copied
            .iter()
            .any(|(t, rows, _)| *t == "payments" && *rows > 0),
        "{copied:?}"
    );
    // Only the range was copied: nothing of the other buckets.
    let elsewhere = replicate::checksums(&target, LAST + 1, 511).await.unwrap();
    assert!(
        elsewhere.iter().all(|(_, rows, _)| *rows == 0),
        "{elsewhere:?}"
    );

    // The API keeps writing to the source, updates included (the row filter's column is
    // in the replica identity, so they are allowed), and the target keeps up.
    for (i, m) in inside.iter().enumerate() {
        let (status, held) = api.pay(m, &format!("held-{i}"), 700, false).await;
        assert_eq!(status, StatusCode::OK, "{held}");
        let id = held["id"].as_str().unwrap();
        let path = format!("/v1/payments/{id}/capture");
        let (status, captured, _) = api.call(m, reqwest::Method::POST, &path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{captured}");
    }
    let after = replicate::checksums(&source, FIRST, LAST).await.unwrap();
    assert_ne!(after, copied, "the source changed");
    let started = Instant::now();
    loop {
        if replicate::checksums(&target, FIRST, LAST).await.unwrap() == after {
            break;
        }
        assert!(
            started.elapsed() < CATCH_UP_TIMEOUT,
            "the target did not catch up"
        );
        tokio::time::sleep(replicate::POLL_INTERVAL).await;
    }
    replicate::stop(&source, &target, FIRST, LAST)
        .await
        .unwrap();
    replicate::stop(&source, &target, FIRST, LAST)
        .await
        .unwrap();
    assert_eq!(api.audit().await["ok"], true);
}

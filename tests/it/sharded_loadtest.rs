//! `paytool loadtest` on PostgreSQL shards: API instances spawned on a layout, the load
//! spread over them, the money audit through the API and the ledger checked on every
//! shard. Needs PostgreSQL installed (scripts/install-services.sh), as the PostgreSQL
//! backend of the API suite does.

use crate::support::{PgShards, loadtest, temp_dir};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const PROFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/sharded-smoke.toml");
/// The request names the profile's journeys send: each must have samples.
const REQUEST_NAMES: [&str; 10] = [
    "GET /v1/balance",
    "GET /v1/payments",
    "GET /v1/payments/{id}",
    "POST /v1/payments",
    "POST /v1/payments (decline)",
    "POST /v1/payments (retry storm)",
    "POST /v1/payments (retry storm, impatient)",
    "POST /v1/payments/{id}/cancel",
    "POST /v1/payments/{id}/capture",
    "POST /v1/payments/{id}/refunds",
];
/// Merchants for the run whose shards are read afterwards: with 24, the chance that
/// every one hashes to the same one of two shards is 2^-23.
const MERCHANTS_ON_BOTH_SHARDS: &str = "24";

/// `paytool loadtest -p PROFILE ARGS --output json --report-dir REPORTS`: the summary,
/// after checking that it passed.
fn passing_run(profile: &Path, args: &[&str], reports: &Path) -> Value {
    let mut all = vec!["-p", profile.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend_from_slice(&[
        "--output",
        "json",
        "--report-dir",
        reports.to_str().unwrap(),
    ]);
    crate::support::passed_summary(&loadtest(&all, None))
}

/// The money audit passed, and the target's ledger audit covered both shards.
fn assert_audited_on_two_shards(summary: &Value) {
    let audit = &summary["audit"];
    assert_eq!(audit["ok"], true, "{audit:#}");
    assert_eq!(audit["ledger_shards"], 2, "{audit:#}");
    assert!(
        audit["acknowledged_payments"].as_u64().unwrap() > 20,
        "{audit:#}"
    );
    let checks = audit["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c["name"].as_str().unwrap().starts_with("ledger: ")),
        "no ledger checks: {audit:#}"
    );
}

/// Two instances, each sent requests.
fn assert_spread_over_two_instances(summary: &Value) {
    let instances = summary["instances"].as_array().expect("instances");
    assert_eq!(instances.len(), 2, "{summary:#}");
    for i in instances {
        assert!(i["requests"].as_u64().unwrap() > 50, "{summary:#}");
    }
    assert_ne!(instances[0]["base_url"], instances[1]["base_url"]);
}

fn count(requests: &Value, name: &str) -> u64 {
    requests
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["count"].as_u64())
        .unwrap_or(0)
}

#[test]
fn sharded_smoke_runs_every_journey_on_two_instances_and_spawned_shards() {
    let reports = temp_dir();
    let summary = passing_run(Path::new(PROFILE), &[], reports.path());
    assert_audited_on_two_shards(&summary);
    assert_spread_over_two_instances(&summary);
    assert_eq!(summary["layout"]["name"], "two", "{summary:#}");
    assert_eq!(summary["layout"]["postgres"], "spawn");
    assert_eq!(summary["layout"]["shards"], serde_json::json!(["s0", "s1"]));
    for name in REQUEST_NAMES {
        assert!(count(&summary["requests"], name) > 0, "{name}: {summary:#}");
    }
    // A run that passed leaves no servers and no data behind.
    let run_dir = reports.path().join(summary["run_id"].as_str().unwrap());
    assert!(run_dir.join("summary.json").exists());
    for gone in ["postgres", "server-data"] {
        assert!(!run_dir.join(gone).exists(), "{gone} was kept");
    }
    let still = Command::new("pgrep")
        .args(["-f", run_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        still.stdout.is_empty(),
        "processes of the run are left: {}",
        String::from_utf8_lossy(&still.stdout)
    );
}

#[test]
fn existing_shards_are_used_as_they_are_and_each_keeps_its_books() {
    let root = temp_dir();
    let pg = PgShards::start(&root.path().join("pg"));
    let profile = root.path().join("existing.toml");
    let text = std::fs::read_to_string(PROFILE).unwrap();
    let text = text
        .replace(
            "layout = \"shards/two.toml\"",
            &format!("layout = {:?}", pg.layout.to_str().unwrap()),
        )
        .replace("postgres = \"spawn\"", "postgres = \"existing\"");
    std::fs::write(&profile, text).unwrap();
    let args = [
        "--users",
        "8",
        "--ramp",
        "1s",
        "--run-time",
        "4s",
        "--merchants",
        MERCHANTS_ON_BOTH_SHARDS,
    ];
    let summary = passing_run(&profile, &args, &root.path().join("reports"));
    assert_audited_on_two_shards(&summary);
    assert_spread_over_two_instances(&summary);
    assert_eq!(summary["layout"]["postgres"], "existing");
    // Read each shard directly, past the API: both hold payments, and each one's
    // postings balance per currency on their own.
    let payments = pg.on_each_shard("SELECT count(*) FROM payments");
    for (shard, n) in payments.iter().enumerate() {
        assert!(
            n.trim().parse::<u64>().unwrap() > 0,
            "shard {shard}: {payments:?}"
        );
    }
    let unbalanced = pg.on_each_shard(
        "SELECT count(*) FROM (SELECT currency FROM ledger_entries GROUP BY currency HAVING sum(amount) <> 0) AS u",
    );
    assert!(unbalanced.iter().all(|n| n.trim() == "0"), "{unbalanced:?}");
}

/// The run is refused before anything starts: exit 2; its stderr.
fn refused(profile: &Path, args: &[&str]) -> String {
    let mut all = vec!["-p", profile.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = loadtest(&all, None);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    err
}

#[test]
fn layout_targets_that_do_not_fit_are_refused_naming_the_key() {
    let dir = temp_dir();
    let layout = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/shards/two.toml");
    let spawn = format!("layout = {layout:?}\npostgres = \"spawn\"");
    // A layout whose shard s1 has its URL written out: spawn could not point it anywhere.
    let written_out = dir.path().join("layout-with-a-url.toml");
    let layout_text = std::fs::read_to_string(layout).unwrap();
    std::fs::write(
        &written_out,
        layout_text
            .replace("${PAYTOOL_SHARD_S1_URL:-", "")
            .replace("paytool_s1}", "paytool_s1"),
    )
    .unwrap();
    let named_layout = format!("layout = {written_out:?}\npostgres = \"spawn\"");
    // (case, the [target] table, flags, what stderr must say, the file it must name)
    let cases: [(&str, String, &[&str], &str, &Path); 14] = [
        (
            "standbys of existing shards",
            format!("layout = {layout:?}\nreplicas = 1"),
            &[],
            "`target.replicas` needs target.postgres = \"spawn\"",
            dir.path(),
        ),
        (
            "too many standbys",
            format!("{spawn}\nreplicas = 3"),
            &[],
            "`target.replicas` is 3: at most 2",
            dir.path(),
        ),
        (
            "shards",
            format!("{spawn}\nshards = 2"),
            &[],
            "`target.shards` cannot be combined with target.layout",
            dir.path(),
        ),
        (
            "url",
            format!("{spawn}\nurl = \"http://127.0.0.1:1\""),
            &[],
            "`target.url` cannot be combined with target.layout",
            dir.path(),
        ),
        (
            "too many",
            format!("{spawn}\ninstances = 17"),
            &[],
            "`target.instances` is 17: it must be 1 to 16",
            dir.path(),
        ),
        (
            "flag",
            spawn.clone(),
            &["--instances", "0"],
            "`target.instances` is 0: it must be 1 to 16",
            dir.path(),
        ),
        (
            "no layout",
            "instances = 2".into(),
            &[],
            "`target.instances` above 1 needs target.layout",
            dir.path(),
        ),
        (
            "mode alone",
            "postgres = \"spawn\"".into(),
            &[],
            "`target.postgres` only applies with target.layout",
            dir.path(),
        ),
        (
            "bad mode",
            format!("layout = {layout:?}\npostgres = \"maybe\""),
            &[],
            "unknown variant `maybe`",
            dir.path(),
        ),
        (
            "redis on a url",
            "url = \"http://127.0.0.1:1\"\nredis = \"spawn\"".into(),
            &[],
            "`target.redis` only applies to a spawned API",
            dir.path(),
        ),
        (
            "bad redis mode",
            format!("{spawn}\nredis = \"always\""),
            &[],
            "unknown variant `always`",
            dir.path(),
        ),
        (
            "processes off behind a balancer",
            format!("{spawn}\nbalancer = \"haproxy\"\nprocesses = false"),
            &[],
            "`target.processes` is false, but target.balancer (each instance drains on SIGTERM) needs the instances as processes",
            dir.path(),
        ),
        (
            "missing",
            "layout = \"nope.toml\"".into(),
            &[],
            "`target.layout` is \"nope.toml\": no such file",
            dir.path(),
        ),
        (
            "written out",
            named_layout,
            &[],
            "`shards.s1.url` must be \"${PAYTOOL_SHARD_S1_URL}\"",
            &written_out,
        ),
    ];
    let text = std::fs::read_to_string(PROFILE).unwrap();
    let (start, end) = (text.find("[target]").unwrap(), text.find("[load]").unwrap());
    for (case, target, args, want, named) in cases {
        let profile = dir.path().join(format!("{}.toml", case.replace(' ', "-")));
        let profile_text = format!("{}[target]\n{target}\n\n{}", &text[..start], &text[end..]);
        std::fs::write(&profile, profile_text).unwrap();
        let err = refused(&profile, args);
        assert!(err.contains(want), "{case}: wanted {want:?} in {err}");
        let named = if named.is_dir() {
            profile.as_path()
        } else {
            named
        };
        assert!(err.contains(named.to_str().unwrap()), "{case}: {err}");
    }
}

//! The throwaway PostgreSQL server paytool spawns for sharded load tests and these tests.

use crate::support::temp_dir;
use paytool::services::postgres::{LocalPostgres, Settings};

#[test]
fn a_throwaway_server_starts_serves_stops_and_starts_again() {
    let dir = temp_dir();
    let mut pg = LocalPostgres::start(&dir.path().join("pg"), &Settings::default())
        .expect("PostgreSQL must be installed: scripts/install-services.sh");
    pg.create_database("paytool_t").unwrap();
    pg.create_database("paytool_t").unwrap(); // idempotent
    let answer = pg
        .psql("SELECT current_setting('wal_level') || ' ' || current_setting('fsync')")
        .unwrap();
    assert_eq!(answer.trim(), "logical on");
    pg.stop().unwrap();
    assert!(pg.psql("SELECT 1").is_err(), "a stopped server answered");
    pg.start_again().unwrap();
    assert_eq!(pg.psql("SELECT 1").unwrap().trim(), "1");
}

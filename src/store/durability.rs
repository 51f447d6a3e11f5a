//! What each shard writer's own connection says about durability, read when it
//! connects and published on /metrics as `paytool_store_durable{store, shard}`: 1 when
//! a commit is on disk before it returns (SQLite: `synchronous=FULL` in WAL mode;
//! PostgreSQL: `synchronous_commit=on` and `fsync=on`), else 0 with a warning. The API
//! answers a write only after its batch's commit returned, so this is what an
//! acknowledged payment's durability rests on.

/// Publish one writer connection's settings; `settings` is how they read, for the log.
pub fn report(store: &'static str, shard: &str, durable: bool, settings: &str) {
    metrics::gauge!("paytool_store_durable", "store" => store, "shard" => shard.to_string())
        .set(if durable { 1.0 } else { 0.0 });
    if !durable {
        tracing::warn!(
            store,
            shard,
            settings,
            "the shard's writer does not wait for the disk: an acknowledged payment can be lost in a crash"
        );
    }
}

/// SQLite's `PRAGMA synchronous` (2 is FULL) and `PRAGMA journal_mode`.
pub fn sqlite_is_durable(synchronous: i64, journal_mode: &str) -> bool {
    synchronous >= 2 && journal_mode.eq_ignore_ascii_case("wal")
}

/// PostgreSQL's `SHOW synchronous_commit` and `SHOW fsync`.
pub fn postgres_is_durable(synchronous_commit: &str, fsync: &str) -> bool {
    matches!(synchronous_commit, "on" | "remote_write" | "remote_apply") && fsync == "on"
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_settings_that_wait_for_the_disk_count() {
        assert!(super::sqlite_is_durable(2, "wal"));
        assert!(super::sqlite_is_durable(3, "WAL"));
        assert!(!super::sqlite_is_durable(1, "wal"));
        assert!(!super::sqlite_is_durable(2, "delete"));
        assert!(super::postgres_is_durable("on", "on"));
        assert!(!super::postgres_is_durable("off", "on"));
        assert!(!super::postgres_is_durable("local", "on"));
        assert!(!super::postgres_is_durable("on", "off"));
    }
}

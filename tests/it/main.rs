//! Integration tests: one binary (one link), modules per area. Every test starts the
//! real `paytool` binary on a free loopback port with its own data dir and talks to it
//! as a user would: HTTP, the CLI, the SQLite files.

mod moto;
mod open_client;
mod support;

mod api;
mod balancer;
mod cache;
mod card_scan;
mod chaos;
mod cli;
mod connections;
mod crash;
mod disk_faults;
mod errors;
mod failover;
mod idempotency;
mod loadtest;
mod local_postgres;
mod pg_explain;
mod pg_shards;
mod replicas;
mod report;
mod report_html;
mod roll_key;
mod scale;
mod secrets_sweep;
mod segments;
mod serve_errors;
mod shard_move;
mod sharded_loadtest;
mod store_upgrade;

//! Redis in front of the store (`paytool serve --redis`): API-key lookups, idempotent
//! replays and payment reads, read through and kept fresh after every write. Never the
//! source of truth for money: `store.rs` says what is cached and why that is safe;
//! `client.rs` keeps a slow or absent Redis from slowing the API (a short timeout and a
//! circuit breaker, `breaker.rs`).

pub mod admin;
pub mod breaker;
pub mod client;
pub mod entries;
pub mod keys;
pub mod seed;
pub mod store;
pub mod verify;

pub use client::RedisClient;
pub use store::CachedStore;

/// Where paytool's keys live unless told otherwise.
pub const PREFIX_DEFAULT: &str = "paytool:";

/// `serve --redis` and `--redis-prefix`.
#[derive(Clone, Debug)]
pub struct CacheOptions {
    /// The Redis URL (`redis://[:password@]host:port/db`); shown only redacted.
    pub url: crate::secrets::Secret,
    pub prefix: String,
}

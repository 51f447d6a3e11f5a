//! paytool: a reference payment API, load tests with a money audit, and the ops commands
//! around them. The library does the work and never prints; `src/cmd/` presents.

pub mod api;
pub mod cache;
pub mod clock;
pub mod cloud;
pub mod config;
pub mod ids;
pub mod layers;
pub mod ledger;
pub mod loadtest;
pub mod profile;
pub mod scenarios;
pub mod secrets;
pub mod services;
pub mod store;

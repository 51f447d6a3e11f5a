//! One file a subcommand: declare arguments, resolve options, call the library, present.

pub mod cache;
pub mod completions;
pub mod loadtest;
mod present;
pub mod report;
pub mod scale;
pub mod serve;
pub mod shard;
mod stdout_aside;

/// A usage or configuration error: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A failure with its own exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

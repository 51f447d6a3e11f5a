//! One file a subcommand: declare arguments, resolve options, call the library, present.

pub mod completions;
pub mod serve;

/// A usage or configuration error: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

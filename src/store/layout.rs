//! A checked shard layout: named PostgreSQL shards and the bucket ranges each owns.
//! `profile::shards` reads and checks the TOML file; the store routes by it.

use crate::secrets::DbUrl;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    pub name: String,
    pub url: DbUrl,
    /// Standbys a merchant's reads may go to once they have replayed its writes (never
    /// writes, never the audit's reads).
    pub replicas: Vec<DbUrl>,
}

/// A bucket range and the shard (an index into `Layout::shards`) that owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Range {
    pub first: u16,
    pub last: u16,
    pub shard: usize,
}

/// A checked layout: shards in name order, ranges in bucket order, no gap, no overlap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub name: String,
    pub source: PathBuf,
    pub version: u64,
    pub shards: Vec<Shard>,
    pub ranges: Vec<Range>,
    /// SHA-256 of the bucket map and shard names (not the URLs: a shard may move
    /// host without the layout changing), hex.
    pub digest: String,
    /// The file's text as written (`${VAR}`s unresolved, so no secret from the
    /// environment), recorded in the shards for API instances to follow a move.
    pub text: String,
}

impl Layout {
    /// The shard that owns `bucket`.
    pub fn owner(&self, bucket: u16) -> usize {
        let i = self.ranges.partition_point(|r| r.last < bucket);
        self.ranges[i].shard
    }

    /// Each shard's owned buckets, as inclusive ranges.
    pub fn ranges_of(&self, shard: usize) -> impl Iterator<Item = &Range> {
        self.ranges.iter().filter(move |r| r.shard == shard)
    }

    pub fn shard_index(&self, name: &str) -> Option<usize> {
        self.shards.iter().position(|s| s.name == name)
    }
}

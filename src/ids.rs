//! Time-ordered identifiers and the merchant -> bucket hash.

use sha2::{Digest, Sha256};

/// Logical buckets merchants hash into; a layout maps bucket ranges to shards. Fixed for
/// the life of a deployment: changing it would move every merchant.
pub const BUCKETS: u16 = 1024;

/// `prefix_` + a UUIDv7 in hex: sorts by creation time, so listing newest-first is an
/// index scan. `Uuid::now_v7` is monotonic within the process.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Whether `id` has the shape `new_id(prefix)` produces.
pub fn is_id(id: &str, prefix: &str) -> bool {
    id.len() == prefix.len() + 33
        && id.starts_with(prefix)
        && id.as_bytes()[prefix.len()] == b'_'
        && id[prefix.len() + 1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn bucket_of(merchant_id: &str) -> u16 {
    let digest = Sha256::digest(merchant_id.as_bytes());
    u16::from_be_bytes([digest[0], digest[1]]) % BUCKETS
}

/// Contiguous bucket ranges, one per shard: shard i owns [i*B/n, (i+1)*B/n).
pub fn shard_of_bucket(bucket: u16, shards: usize) -> usize {
    bucket as usize * shards / BUCKETS as usize
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_validate() {
        let a = new_id("pay");
        let b = new_id("pay");
        assert!(a < b);
        assert!(is_id(&a, "pay"));
        assert!(!is_id(&a, "re"));
        assert!(!is_id("pay_xyz", "pay"));
    }

    #[test]
    fn buckets_spread_over_shards() {
        let mut per_shard = [0usize; 4];
        for i in 0..4000 {
            per_shard[shard_of_bucket(bucket_of(&format!("mer_{i}")), 4)] += 1;
        }
        assert!(per_shard.iter().all(|n| *n > 800), "{per_shard:?}");
    }
}

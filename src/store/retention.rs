//! How long idempotency keys are kept, and the bounded pruning of the expired ones, off
//! the request path. A key is kept at least the retention (Stripe keeps them 24 h) and
//! pruned within one prune interval after; until then it still replays.

use std::ops::RangeInclusive;
use std::time::Duration;

pub const RETENTION_DEFAULT: Duration = Duration::from_secs(24 * 3600);
/// The retentions a deployment may choose: from a second (tests) to 30 days.
pub const RETENTION_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(30 * 24 * 3600);
/// The longest wait between two pruning rounds.
pub const PRUNE_INTERVAL_MAX: Duration = Duration::from_secs(60);
/// Rows deleted by one statement: small enough that the group-commit writer never waits
/// on the pruner for more than a few milliseconds.
pub const PRUNE_BATCH_MAX: i64 = 1_000;
/// Statements per round: what is left waits for the next round.
pub const PRUNE_BATCHES_PER_ROUND_MAX: usize = 100;

/// A quarter of the retention, at most `PRUNE_INTERVAL_MAX`.
pub fn prune_interval(retention: Duration) -> Duration {
    (retention / 4).min(PRUNE_INTERVAL_MAX)
}

/// Keys created before this (ms since the epoch) may be pruned.
pub fn expired_before_ms(retention: Duration, now_ms: i64) -> i64 {
    now_ms - retention.as_millis() as i64
}

/// Run `delete_batch` (which deletes at most `PRUNE_BATCH_MAX` rows older than its
/// argument and says how many) until a batch comes back short or the round's bound is
/// reached; the rows deleted.
pub fn prune_round<E>(
    before_ms: i64,
    mut delete_batch: impl FnMut(i64) -> Result<usize, E>,
) -> Result<usize, E> {
    let mut deleted = 0;
    for _ in 0..PRUNE_BATCHES_PER_ROUND_MAX {
        let n = delete_batch(before_ms)?;
        deleted += n;
        if (n as i64) < PRUNE_BATCH_MAX {
            break;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_rounds_are_bounded() {
        assert_eq!(
            prune_interval(Duration::from_secs(4)),
            Duration::from_secs(1)
        );
        assert_eq!(prune_interval(RETENTION_DEFAULT), PRUNE_INTERVAL_MAX);
        assert_eq!(expired_before_ms(Duration::from_secs(2), 10_000), 8_000);
        let mut calls = 0;
        let all = prune_round::<()>(0, |_| {
            calls += 1;
            Ok(PRUNE_BATCH_MAX as usize)
        })
        .unwrap();
        assert_eq!(
            calls, PRUNE_BATCHES_PER_ROUND_MAX,
            "a round stops at its bound"
        );
        assert_eq!(all, PRUNE_BATCHES_PER_ROUND_MAX * PRUNE_BATCH_MAX as usize);
        let mut left = 2_500usize;
        let deleted = prune_round::<()>(0, |_| {
            let n = left.min(PRUNE_BATCH_MAX as usize);
            left -= n;
            Ok(n)
        })
        .unwrap();
        assert_eq!((deleted, left), (2_500, 0), "a short batch ends the round");
    }
}

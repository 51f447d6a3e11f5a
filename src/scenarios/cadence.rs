//! Coordinated-omission mitigation for the closed model, as Goose's `co_mitigation`: a
//! Goose user sends its next request only after the last one answered, so a stall hides
//! the requests it would have sent meanwhile. Each user learns its own cadence (the gap
//! between the starts of its requests); a request that took longer than that is followed
//! by the requests the user would have sent during it, as synthetic samples of
//! `latency - cadence`, `latency - 2 * cadence`, ... (HdrHistogram's `recordCorrected`).
//! They count as requests, as Goose's backfilled ones do, and the summary says how many.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Which of the user's gaps stands for its expected cadence (Goose's names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CoMitigation {
    #[default]
    Disabled,
    Average,
    Minimum,
    Maximum,
}

impl CoMitigation {
    pub fn as_str(self) -> &'static str {
        match self {
            CoMitigation::Disabled => "disabled",
            CoMitigation::Average => "average",
            CoMitigation::Minimum => "minimum",
            CoMitigation::Maximum => "maximum",
        }
    }

    pub fn parse(text: &str) -> Option<CoMitigation> {
        Some(match text {
            "disabled" => CoMitigation::Disabled,
            "average" => CoMitigation::Average,
            "minimum" => CoMitigation::Minimum,
            "maximum" => CoMitigation::Maximum,
            _ => return None,
        })
    }
}

/// Gaps seen before a cadence is trusted (Goose waits for the same).
const GAPS_BEFORE_TRUSTED: u64 = 3;
/// The most synthetic samples one slow request adds: a 10 s stall at a 1 ms cadence
/// would otherwise add 10,000.
pub const BACKFILL_PER_REQUEST_MAX: u32 = 1_000;

/// One Goose user's cadence, kept in its session data.
#[derive(Clone, Debug, Default)]
pub struct Cadence {
    last_start: Option<Instant>,
    gaps: u64,
    total: Duration,
    min: Option<Duration>,
    max: Duration,
}

impl Cadence {
    /// A request starts now.
    pub fn started(&mut self, now: Instant) {
        if let Some(last) = self.last_start {
            let gap = now.saturating_duration_since(last);
            self.gaps += 1;
            self.total += gap;
            self.min = Some(self.min.map_or(gap, |m| m.min(gap)));
            self.max = self.max.max(gap);
        }
        self.last_start = Some(now);
    }

    /// The expected gap by `how`, once enough gaps were seen.
    pub fn expected(&self, how: CoMitigation) -> Option<Duration> {
        if self.gaps < GAPS_BEFORE_TRUSTED {
            return None;
        }
        let gap = match how {
            CoMitigation::Disabled => return None,
            CoMitigation::Average => self.total / self.gaps as u32,
            CoMitigation::Minimum => self.min?,
            CoMitigation::Maximum => self.max,
        };
        (!gap.is_zero()).then_some(gap)
    }
}

/// The synthetic latencies a request of `latency` stands for at `cadence`, longest
/// first, at most `BACKFILL_PER_REQUEST_MAX`.
pub fn backfill(latency: Duration, cadence: Duration) -> impl Iterator<Item = Duration> {
    (1..=BACKFILL_PER_REQUEST_MAX)
        .map(move |k| latency.checked_sub(cadence * k))
        .take_while(move |l| l.is_some_and(|l| l >= cadence))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_stands_for_the_requests_the_cadence_would_have_sent() {
        let ms = Duration::from_millis;
        let got: Vec<Duration> = backfill(ms(1000), ms(250)).collect();
        assert_eq!(got, [ms(750), ms(500), ms(250)]);
        assert_eq!(backfill(ms(200), ms(250)).count(), 0);
        assert_eq!(
            backfill(ms(10_000), Duration::from_micros(1)).count() as u32,
            BACKFILL_PER_REQUEST_MAX
        );

        let mut c = Cadence::default();
        let t0 = Instant::now();
        for (i, gap) in [0u64, 10, 20, 30].iter().enumerate() {
            c.started(t0 + ms(gap * (i as u64 + 1)));
        }
        // Starts at 0, 20, 60 and 120 ms: gaps of 20, 40 and 60.
        assert_eq!(c.expected(CoMitigation::Average), Some(ms(40)));
        assert_eq!(c.expected(CoMitigation::Minimum), Some(ms(20)));
        assert_eq!(c.expected(CoMitigation::Maximum), Some(ms(60)));
        assert_eq!(c.expected(CoMitigation::Disabled), None);
        let mut young = Cadence::default();
        young.started(t0);
        young.started(t0 + ms(5));
        assert_eq!(young.expected(CoMitigation::Average), None, "too few gaps");
    }
}

//! A circuit breaker for the cache: after `FAILURES_TO_OPEN` failures in a row the cache
//! is skipped (the store answers alone) for `COOLDOWN`, then one probe decides whether
//! it closes again. Pure: the caller logs and counts the transitions it returns.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Consecutive failures (errors or timeouts) that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 3;
/// How long an open breaker skips the cache before letting one probe through.
pub const COOLDOWN: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    Open,
    /// One probe is in flight; everyone else still skips the cache.
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// (from, to).
pub type Transition = (State, State);

#[derive(Debug)]
struct Inner {
    state: State,
    failures: u32,
    open_until: Instant,
}

#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            inner: Mutex::new(Inner {
                state: State::Closed,
                failures: 0,
                open_until: Instant::now(),
            }),
        }
    }
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Whether a call may go to the cache now; an open breaker past its cooldown lets
    /// this one call through as the probe. The second value is a transition to report.
    pub fn allow(&self, now: Instant) -> (bool, Option<Transition>) {
        let mut b = self.lock();
        match b.state {
            State::Closed => (true, None),
            State::Open if now >= b.open_until => {
                b.state = State::HalfOpen;
                (true, Some((State::Open, State::HalfOpen)))
            }
            State::Open | State::HalfOpen => (false, None),
        }
    }

    /// A call succeeded; a transition to report, if any.
    pub fn success(&self) -> Option<Transition> {
        let mut b = self.lock();
        b.failures = 0;
        let from = b.state;
        (from != State::Closed).then(|| {
            b.state = State::Closed;
            (from, State::Closed)
        })
    }

    /// A call failed; a transition to report, if any.
    pub fn failure(&self, now: Instant) -> Option<Transition> {
        let mut b = self.lock();
        b.failures += 1;
        let from = b.state;
        let open = match from {
            State::Closed => b.failures >= FAILURES_TO_OPEN,
            State::HalfOpen => true,
            State::Open => false,
        };
        open.then(|| {
            b.state = State::Open;
            b.open_until = now + COOLDOWN;
            (from, State::Open)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_in_a_row_probes_after_cooldown_and_closes_on_success() {
        let b = Breaker::default();
        let t0 = Instant::now();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            assert_eq!(b.failure(t0), None);
        }
        assert_eq!(b.success(), None, "a success resets the count");
        for _ in 0..FAILURES_TO_OPEN - 1 {
            assert_eq!(b.failure(t0), None);
        }
        assert_eq!(b.failure(t0), Some((State::Closed, State::Open)));
        assert_eq!(b.allow(t0), (false, None));
        // After the cooldown one probe goes through; the others keep skipping.
        let later = t0 + COOLDOWN;
        assert_eq!(b.allow(later), (true, Some((State::Open, State::HalfOpen))));
        assert_eq!(b.allow(later), (false, None));
        // A failed probe opens it again; a good one closes it.
        assert_eq!(b.failure(later), Some((State::HalfOpen, State::Open)));
        assert_eq!(
            b.allow(later + COOLDOWN),
            (true, Some((State::Open, State::HalfOpen)))
        );
        assert_eq!(b.success(), Some((State::HalfOpen, State::Closed)));
        assert_eq!(b.allow(later + COOLDOWN), (true, None));
    }
}

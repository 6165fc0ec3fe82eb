//! A circuit breaker per adapter: after consecutive failures it opens, sending nothing for a
//! while; then it lets one probe through, and closes again when the probe succeeds.

use crate::telemetry::metrics::BreakerState;

/// Consecutive failures that open the breaker.
pub const THRESHOLD: u32 = 5;
/// How long an open breaker stays open before it lets a probe through.
pub const OPEN_MS: i64 = 5_000;
/// How soon a delivery held back during a probe is looked at again.
const PROBE_WAIT_MS: i64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: i64 },
    HalfOpen { probing: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    state: State,
    consecutive_failures: u32,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: State::Closed,
            consecutive_failures: 0,
        }
    }
}

impl Breaker {
    /// May an attempt go now? `Ok(true)` when it is the half-open probe; `Err(at)` when it must
    /// wait until `at`.
    pub fn admit(&mut self, now: i64) -> Result<bool, i64> {
        match self.state {
            State::Closed => Ok(false),
            State::Open { until } if now < until => Err(until),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: true };
                Ok(true)
            }
            State::HalfOpen { probing: true } => Err(now + PROBE_WAIT_MS),
        }
    }

    pub fn success(&mut self) {
        self.state = State::Closed;
        self.consecutive_failures = 0;
    }

    pub fn failure(&mut self, now: i64) {
        self.consecutive_failures += 1;
        if matches!(self.state, State::HalfOpen { .. }) || self.consecutive_failures >= THRESHOLD {
            self.state = State::Open {
                until: now + OPEN_MS,
            };
        }
    }

    /// The state as metrics show it (an open breaker whose time is up stays open until the
    /// next attempt asks to go).
    pub fn observed(&self) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// A probe that never reached the system (it could not be mapped) does not count.
    pub fn cancel_probe(&mut self, probe: bool) {
        if probe && self.state == (State::HalfOpen { probing: true }) {
            self.state = State::HalfOpen { probing: false };
        }
    }

    #[cfg(test)]
    pub fn is_open(&self, now: i64) -> bool {
        matches!(self.state, State::Open { until } if now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_probes_then_closes() {
        let mut b = Breaker::default();
        for _ in 0..THRESHOLD - 1 {
            assert_eq!(b.admit(0), Ok(false));
            b.failure(0);
        }
        assert!(!b.is_open(0));
        b.failure(0);
        assert!(b.is_open(1));
        assert_eq!(b.admit(1), Err(OPEN_MS));
        assert_eq!(
            b.admit(OPEN_MS),
            Ok(true),
            "one probe after the open period"
        );
        assert!(b.admit(OPEN_MS).is_err(), "only one probe at a time");
        b.failure(OPEN_MS);
        assert!(b.is_open(OPEN_MS + 1), "a failed probe opens it again");
        assert_eq!(b.admit(2 * OPEN_MS), Ok(true));
        b.success();
        assert_eq!(b.admit(2 * OPEN_MS), Ok(false));
    }

    #[test]
    fn a_success_resets_the_count() {
        let mut b = Breaker::default();
        for _ in 0..THRESHOLD - 1 {
            b.failure(0);
        }
        b.success();
        b.failure(0);
        assert!(!b.is_open(0));
    }
}

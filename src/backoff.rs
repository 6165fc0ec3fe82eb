//! Waits that double with each failure in a row up to a cap, with jitter when asked: the one
//! computation behind delivery retries, AMQP reconnects, task restarts and key fetches, each
//! with its own numbers.

use std::time::Duration;

/// Doublings counted at most: 2^30 times the shortest first wait in use (1 ms) is twelve days,
/// longer than any cap.
const MAX_DOUBLINGS: u32 = 30;

/// A doubling wait: `initial` after the first failure, twice as long after each one more in a
/// row, never longer than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after `failures` failures in a row: `initial·2^(failures-1)`, capped at `max`
    /// (`initial` for 0 and 1).
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(MAX_DOUBLINGS);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }
}

/// `wait` with jitter, drawn from its upper half: `draw` (per mille, 0 to 1000) says where,
/// from half the wait (0) to all of it (1000), so that callers failing together do not all
/// come back at the same moment.
pub fn jitter(wait: Duration, draw: u32) -> Duration {
    wait / 2 + wait / 2 * draw.min(1000) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn it_doubles_from_the_first_wait_up_to_the_cap() {
        let backoff = Backoff {
            initial: 100 * MS,
            max: 1000 * MS,
        };
        let waits: Vec<Duration> = (0..=6).map(|n| backoff.after(n)).collect();
        assert_eq!(
            waits,
            [100, 100, 200, 400, 800, 1000, 1000].map(|ms| ms * MS)
        );
        assert_eq!(backoff.after(u32::MAX), 1000 * MS);
    }

    #[test]
    fn a_cap_beyond_any_doubling_is_not_overflowed() {
        let backoff = Backoff {
            initial: Duration::from_secs(u64::MAX / 4),
            max: Duration::MAX,
        };
        assert_eq!(backoff.after(40), Duration::MAX);
        let one_ms = Backoff {
            initial: MS,
            max: Duration::MAX,
        };
        assert_eq!(one_ms.after(40), MS * (1 << 30));
    }

    #[test]
    fn jitter_draws_from_the_upper_half() {
        let wait = 1000 * MS;
        assert_eq!(jitter(wait, 0), 500 * MS);
        assert_eq!(jitter(wait, 500), 750 * MS);
        assert_eq!(jitter(wait, 1000), wait);
        assert_eq!(jitter(wait, 5000), wait);
    }
}

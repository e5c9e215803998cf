//! Calls started per second, per tenant: a token bucket (as GCRA, one
//! instant of state) that says how long a start must wait.

use std::time::{Duration, Instant};

/// The starts of one tenant.
#[derive(Debug)]
pub struct StartRate {
    /// Between two starts at the steady rate.
    interval: Duration,
    /// How far ahead of the steady rate a burst may run: a second's worth.
    tolerance: Duration,
    /// When the next start would be due at the steady rate.
    due: Instant,
}

impl StartRate {
    /// `per_second` starts a second (at least one), in bursts of as many.
    pub fn new(per_second: u32, now: Instant) -> Self {
        let per_second = per_second.max(1);
        let interval = Duration::from_secs(1) / per_second;
        Self {
            interval,
            tolerance: interval * (per_second - 1),
            due: now,
        }
    }

    /// Reserves a start and says how long to wait for it.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let due = self.due.max(now);
        let start = due
            .checked_sub(self.tolerance)
            .map_or(now, |earliest| earliest.max(now));
        self.due = due + self.interval;
        start - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_a_second_then_the_steady_rate() {
        let now = Instant::now();
        let mut rate = StartRate::new(10, now);
        for _ in 0..10 {
            assert_eq!(rate.reserve(now), Duration::ZERO);
        }
        assert_eq!(rate.reserve(now), Duration::from_millis(100));
        assert_eq!(rate.reserve(now), Duration::from_millis(200));
        // Idle time refills the bucket, up to a burst.
        let later = now + Duration::from_secs(10);
        for _ in 0..10 {
            assert_eq!(rate.reserve(later), Duration::ZERO);
        }
        assert!(rate.reserve(later) > Duration::ZERO);
    }

    #[test]
    fn zero_means_one_a_second() {
        let now = Instant::now();
        let mut rate = StartRate::new(0, now);
        assert_eq!(rate.reserve(now), Duration::ZERO);
        assert_eq!(rate.reserve(now), Duration::from_secs(1));
    }
}

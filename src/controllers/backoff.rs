//! How controllers retry: a failed reconcile per object ([`retry`]), a failed watch per
//! controller ([`WatchBackoff`]).

use std::time::Duration;

/// The retry after `failures` failures in a row: `backoff × 2^(failures-1)`, at most
/// `max_backoff`, then 80-120 % of that by `random` (a kind's `backoff` and `max_backoff`).
pub fn retry(backoff: Duration, max_backoff: Duration, failures: u32, random: u64) -> Duration {
    let doubling = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
    let d = backoff.saturating_mul(doubling).min(max_backoff);
    let jitter = 0.8 + 0.4 * ((random % 1001) as f64 / 1000.0);
    d.mul_f64(jitter)
}

/// How a controller's watches retry after their stream failed: 0.5 s, doubled up to 8 s,
/// reset once events flow again. (kube's default goes up to 30 s: after an API server
/// restart the operator came back 22 s after the API server was ready.)
#[derive(Debug, Clone, Copy)]
pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(8);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (d * 2).min(Self::MAX);
        Some(d)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kind's backoff: 2 s, at most 60 s.
    fn retry_of(failures: u32, random: u64) -> Duration {
        retry(
            Duration::from_secs(2),
            Duration::from_secs(60),
            failures,
            random,
        )
    }

    #[test]
    fn backoff_doubles_per_failure_up_to_the_cap_with_a_fifth_of_jitter() {
        // random % 1001 == 500: no jitter (factor 1.0).
        let mid = 500;
        assert_eq!(retry_of(1, mid), Duration::from_secs(2));
        assert_eq!(retry_of(2, mid), Duration::from_secs(4));
        assert_eq!(retry_of(3, mid), Duration::from_secs(8));
        assert_eq!(retry_of(5, mid), Duration::from_secs(32));
        assert_eq!(retry_of(6, mid), Duration::from_secs(60));
        assert_eq!(retry_of(u32::MAX, mid), Duration::from_secs(60));
        // The extremes of the jitter: 80 % and 120 %.
        assert_eq!(retry_of(1, 0), Duration::from_millis(1600));
        assert_eq!(retry_of(1, 1000), Duration::from_millis(2400));
        assert_eq!(retry_of(9, 1000), Duration::from_secs(72));
    }

    #[test]
    fn watches_retry_from_half_a_second_doubling_up_to_eight() {
        use kube::runtime::utils::Backoff;
        let mut b = WatchBackoff::default();
        let secs: Vec<f64> = b.by_ref().take(7).map(|d| d.as_secs_f64()).collect();
        assert_eq!(secs, [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(500)));
    }
}

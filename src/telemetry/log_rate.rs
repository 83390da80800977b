//! Rate limits for log lines a client can cause. A guard refusal, an unreachable `API` service
//! or a failed accept wrote one WARN line each, so an attacker controlled the log volume (and
//! the disk and the log pipeline behind it). Each such call site has a [`LogRate`]: at most
//! so many lines per second, and the next line written says how many were left out. The exact
//! counts stay in the metrics and the audit log, which are not rate limited.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A per-call-site allowance of log lines per second.
#[derive(Debug)]
pub struct LogRate {
    per_second: u64,
    /// The second (since the epoch) the count is for.
    second: AtomicU64,
    count: AtomicU64,
    suppressed: AtomicU64,
}

impl LogRate {
    pub const fn new(per_second: u64) -> Self {
        Self {
            per_second,
            second: AtomicU64::new(0),
            count: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines left out since the last one written)` when a line may be written now.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    }

    fn admit_at(&self, now: u64) -> Option<u64> {
        let second = self.second.load(Ordering::Relaxed);
        if now != second
            && self
                .second
                .compare_exchange(second, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.count.store(0, Ordering::Relaxed);
        }
        if self.count.fetch_add(1, Ordering::Relaxed) < self.per_second {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_rate_are_counted_and_reported_with_the_next_one() {
        let rate = LogRate::new(3);
        let first: Vec<Option<u64>> = (0..10).map(|_| rate.admit_at(100)).collect();
        assert_eq!(first[..3], [Some(0), Some(0), Some(0)]);
        assert!(first[3..].iter().all(Option::is_none));
        // The next second: the first line written says seven were left out.
        assert_eq!(rate.admit_at(101), Some(7));
        assert_eq!(rate.admit_at(101), Some(0));
    }
}

//! The bound on status writes per object: no object, whatever its spec and whatever bug it
//! meets, makes the operator write its status more than [`BURST`] times in a row and then
//! once per [`REFILL`], unless it is busy (a drill run or a canary rollout under way, whose
//! every phase and check must be recorded before the next action). A write over the bound
//! is deferred: nothing is written and nothing acted on in that pass (status is written
//! before acting, so an action never runs ahead of its record); the object is looked at
//! again when the budget allows, and `maturity_operator_status_writes_deferred_total`
//! counts it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

/// Writes an idle object may have in a row.
pub const BURST: f64 = 5.0;
/// One more write is allowed after each such time: at most 6 a minute once the burst is
/// used up.
pub const REFILL: Duration = Duration::from_secs(10);
/// Budgets kept before the full ones (objects that did not write for a while) are dropped.
const KEPT: usize = 4096;

/// What may be done with a write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Allowance {
    Write,
    /// Not before this long.
    Wait(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

/// Per-object token buckets, by kind/namespace/name.
#[derive(Default)]
pub struct WriteBudget {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl WriteBudget {
    /// Whether the object `key` may write its status at `now`; `busy` writes (a run or
    /// rollout under way, or ending) are always allowed and use nothing up.
    pub fn ask(&self, key: &str, busy: bool, now: Timestamp) -> Allowance {
        if busy {
            return Allowance::Write;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > KEPT {
            buckets.retain(|_, b| level(b, now) < BURST);
        }
        let b = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        let tokens = level(b, now);
        if tokens >= 1.0 {
            *b = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            Allowance::Write
        } else {
            let missing = (1.0 - tokens) * REFILL.as_secs_f64();
            Allowance::Wait(Duration::from_secs_f64(missing.max(0.001)))
        }
    }
}

/// The bucket's tokens at `now` (refilled since it was last used, at most [`BURST`]).
fn level(b: &Bucket, now: Timestamp) -> f64 {
    let since = (now.as_millisecond() - b.at.as_millisecond()).max(0) as f64 / 1000.0;
    (b.tokens + since / REFILL.as_secs_f64()).min(BURST)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_790_000_000 + s).unwrap()
    }

    #[test]
    fn an_idle_object_writes_five_in_a_row_then_one_per_ten_seconds() {
        let b = WriteBudget::default();
        for i in 0..5 {
            assert_eq!(b.ask("d/ns/a", false, at(0)), Allowance::Write, "write {i}");
        }
        assert_eq!(
            b.ask("d/ns/a", false, at(0)),
            Allowance::Wait(Duration::from_secs(10))
        );
        assert_eq!(
            b.ask("d/ns/a", false, at(4)),
            Allowance::Wait(Duration::from_secs(6))
        );
        assert_eq!(b.ask("d/ns/a", false, at(10)), Allowance::Write);
        assert_eq!(
            b.ask("d/ns/a", false, at(10)),
            Allowance::Wait(Duration::from_secs(10))
        );
        // Another object has its own budget.
        assert_eq!(b.ask("d/ns/b", false, at(10)), Allowance::Write);
        // Over a minute of trying every second after the burst: 6 writes.
        let writes = (11..=70)
            .filter(|s| b.ask("d/ns/a", false, at(*s)) == Allowance::Write)
            .count();
        assert_eq!(writes, 6);
    }

    #[test]
    fn busy_writes_are_always_allowed_and_use_nothing() {
        let b = WriteBudget::default();
        for _ in 0..100 {
            assert_eq!(b.ask("d/ns/a", true, at(0)), Allowance::Write);
        }
        for _ in 0..5 {
            assert_eq!(b.ask("d/ns/a", false, at(0)), Allowance::Write);
        }
        assert!(matches!(b.ask("d/ns/a", false, at(0)), Allowance::Wait(_)));
    }

    #[test]
    fn a_budget_refills_to_the_burst_and_no_more() {
        let b = WriteBudget::default();
        for _ in 0..5 {
            b.ask("k", false, at(0));
        }
        // An hour later: 5 again, not 360.
        let writes = (0..20)
            .filter(|_| b.ask("k", false, at(3600)) == Allowance::Write)
            .count();
        assert_eq!(writes, 5);
    }
}

//! The only place that reads the clock or draws randomness. Controllers get a [`Clock`]
//! from their context and hand `now` and random numbers to the pure cores; tests drive
//! time with a [`ManualClock`]. Time arithmetic on timestamps saturates here too.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;

/// Now, and random numbers.
pub trait Source: Send + Sync {
    fn now(&self) -> Timestamp;
    fn random(&self) -> u64;
}

/// The clock and randomness source of a process (clones share it).
#[derive(Clone)]
pub struct Clock(Arc<dyn Source>);

impl Clock {
    /// The system clock and the standard library's random keys.
    pub fn system() -> Self {
        Self(Arc::new(System))
    }

    pub fn from_source(s: impl Source + 'static) -> Self {
        Self(Arc::new(s))
    }

    pub fn now(&self) -> Timestamp {
        self.0.now()
    }

    /// Today's date in UTC (the date of attestations, exemptions and reports).
    pub fn today(&self) -> jiff::civil::Date {
        utc_date(self.now())
    }

    pub fn random(&self) -> u64 {
        self.0.random()
    }
}

/// 32 bytes from the operating system's cryptographic random source, for a secret key
/// (never from [`Clock::random`], which is fit for jitter, not for secrets).
pub fn secret_key() -> Result<[u8; 32], String> {
    use ring::rand::SecureRandom;
    let mut key = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| "the operating system gave no random bytes".to_string())?;
    Ok(key)
}

struct System;

impl Source for System {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn random(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        if let Some(v) = fixed_random() {
            return v;
        }
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i64(Timestamp::now().as_nanosecond() as i64);
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.finish()
    }
}

/// A test hook: with `MATURITY_TEST_RANDOM=<number>` in the environment every draw of the
/// process is that number (a drill's start inside its window, the pods and nodes it picks),
/// so that an end-to-end test can place a drawn start. Read once.
fn fixed_random() -> Option<u64> {
    static FIXED: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *FIXED.get_or_init(|| std::env::var("MATURITY_TEST_RANDOM").ok()?.parse().ok())
}

/// A clock that moves only when told to, with a seeded random sequence (tests).
pub struct ManualClock {
    now: Mutex<Timestamp>,
    state: AtomicU64,
}

impl ManualClock {
    pub fn new(now: Timestamp, seed: u64) -> Arc<Self> {
        Arc::new(Self {
            now: Mutex::new(now),
            state: AtomicU64::new(seed),
        })
    }

    pub fn set(&self, t: Timestamp) {
        if let Ok(mut n) = self.now.lock() {
            *n = t;
        }
    }

    pub fn advance(&self, d: Duration) {
        if let Ok(mut n) = self.now.lock() {
            *n = add(*n, d);
        }
    }
}

impl Source for Arc<ManualClock> {
    fn now(&self) -> Timestamp {
        self.now.lock().map(|n| *n).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// splitmix64: a fixed sequence per seed.
    fn random(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The UTC date of `t` (the dates of attestations, exemptions and reports).
pub fn utc_date(t: Timestamp) -> jiff::civil::Date {
    t.to_zoned(jiff::tz::TimeZone::UTC).date()
}

/// `d` plus `days`, saturating at the last date.
pub fn add_days(d: jiff::civil::Date, days: i64) -> jiff::civil::Date {
    jiff::Span::new()
        .try_days(days)
        .ok()
        .and_then(|span| d.checked_add(span).ok())
        .unwrap_or(jiff::civil::Date::MAX)
}

/// `t + d`, saturating at the largest timestamp.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_millisecond(t.as_millisecond().saturating_add(ms)).unwrap_or(Timestamp::MAX)
}

/// `t - d`, saturating at the smallest timestamp.
pub fn sub(t: Timestamp, d: Duration) -> Timestamp {
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_millisecond(t.as_millisecond().saturating_sub(ms)).unwrap_or(Timestamp::MIN)
}

/// Milliseconds from `from` to `to` (negative when `to` is earlier).
pub fn millis_between(from: Timestamp, to: Timestamp) -> i64 {
    to.as_millisecond() - from.as_millisecond()
}

/// How long from `from` until `to` (zero when `to` is not later).
pub fn until(from: Timestamp, to: Timestamp) -> Duration {
    Duration::from_millis(millis_between(from, to).max(0) as u64)
}

/// `v` rounded to `digits` decimals.
pub fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// `v` rounded down to `digits` decimals (a hair of float noise above a boundary still
/// counts as the boundary: 98.99999999999999 from an exact 99 stays 99).
pub fn floor(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    ((v * f) + 1e-6).floor() / f
}

/// `v` rounded to `digits` significant digits (0 stays 0; non-finite values unchanged).
pub fn significant(v: f64, digits: i32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let magnitude = v.abs().log10().floor() as i32;
    round(v, digits - 1 - magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_arithmetic_saturates() {
        let t = Timestamp::from_second(1_000).unwrap();
        assert_eq!(
            add(t, Duration::from_secs(5)),
            Timestamp::from_second(1_005).unwrap()
        );
        assert_eq!(
            sub(t, Duration::from_secs(5)),
            Timestamp::from_second(995).unwrap()
        );
        assert_eq!(add(t, Duration::MAX), Timestamp::MAX);
        assert_eq!(
            add(t, Duration::from_secs(213_503_982_333 * 86_400)),
            Timestamp::MAX
        );
        assert_eq!(sub(t, Duration::MAX), Timestamp::MIN);
        assert_eq!(
            until(t, Timestamp::from_second(999).unwrap()),
            Duration::ZERO
        );
        assert_eq!(
            until(t, Timestamp::from_second(1_002).unwrap()),
            Duration::from_secs(2)
        );
        assert_eq!(round(1.23456, 2), 1.23);
        assert_eq!(floor(98.996, 2), 98.99);
        assert_eq!(floor(98.999_999_999_999_99, 2), 99.0);
        assert_eq!(significant(0.823_4, 2), 0.82);
        assert_eq!(significant(-1.549, 2), -1.5);
        assert_eq!(significant(0.004_137, 2), 0.0041);
        assert_eq!(significant(1_234_567.0, 3), 1_230_000.0);
        assert_eq!(significant(0.0, 2), 0.0);
    }

    #[test]
    fn a_manual_clock_moves_when_told_and_repeats_its_sequence() {
        let t = Timestamp::from_second(1_000).unwrap();
        let m = ManualClock::new(t, 7);
        let c = Clock::from_source(m.clone());
        assert_eq!(c.now(), t);
        m.advance(Duration::from_secs(60));
        assert_eq!(c.now(), Timestamp::from_second(1_060).unwrap());
        let a: Vec<u64> = (0..3).map(|_| c.random()).collect();
        let again = Clock::from_source(ManualClock::new(t, 7));
        let b: Vec<u64> = (0..3).map(|_| again.random()).collect();
        assert_eq!(a, b);
        assert_ne!(a[0], a[1]);
        let s = Clock::system();
        assert_ne!(s.random(), s.random());
    }
}

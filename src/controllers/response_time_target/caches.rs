//! What a latency or ratio group remembers between evaluations, so that most cycles ask
//! Prometheus one question per batch: the histogram's bucket boundaries (checked every 10
//! minutes or when a member is new) and which members the recordings per shape cover
//! (checked every hour or when a member is new).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::Context;
use super::Member;
use crate::api::ResponseTimeTarget;
use crate::prom::QueryError;
use crate::slo::Problem;
use crate::slo::batch::{self, GroupKey};
use crate::slo::queries::matching_le;
use crate::slo::recordings;

/// How long a latency group's bucket boundaries are trusted before they are checked again
/// (a histogram's buckets change with a deploy, rarely).
const BUCKETS_RECHECK: Duration = Duration::from_secs(600);

/// How long the recordings' coverage is trusted before it is checked again (a recording
/// that covers a window keeps covering it).
const COVERAGE_RECHECK: Duration = Duration::from_secs(3600);
/// How soon a coverage check that failed is asked again.
const FAILED_RECHECK: Duration = Duration::from_secs(60);

/// A group's caches.
#[derive(Debug, Clone, Default)]
pub struct Cached {
    pub buckets: Option<Buckets>,
    pub coverage: Option<Coverage>,
}

impl Cached {
    /// Keeps what was checked now, and what was known for the rest.
    pub fn merge(&mut self, new: Cached) {
        if new.buckets.is_some() {
            self.buckets = new.buckets;
        }
        if new.coverage.is_some() {
            self.coverage = new.coverage;
        }
    }
}

/// A latency group's bucket boundaries (`le` values) per tuple of varying-label values, as
/// checked at `at`, and which tuples were asked about.
#[derive(Debug, Clone)]
pub struct Buckets {
    at: Instant,
    les: Arc<BTreeMap<Vec<String>, Vec<String>>>,
    asked: Arc<BTreeSet<Vec<String>>>,
}

impl Buckets {
    /// Whether these boundaries answer for every one of `members`.
    pub fn cover(&self, members: &[Member]) -> bool {
        self.at.elapsed() < BUCKETS_RECHECK
            && members.iter().all(|m| self.asked.contains(&m.values))
    }
}

/// The members (tuples of varying-label values) whose window the recordings cover.
#[derive(Debug, Clone)]
pub struct Coverage {
    at: Instant,
    covered: Arc<BTreeSet<Vec<String>>>,
    asked: Arc<BTreeSet<Vec<String>>>,
}

impl Coverage {
    fn cover(&self, members: &[Member]) -> bool {
        self.at.elapsed() < COVERAGE_RECHECK
            && members.iter().all(|m| self.asked.contains(&m.values))
    }

    /// Whether `member` is read from the recordings.
    pub fn covers(&self, member: &Member) -> bool {
        self.covered.contains(&member.values)
    }
}

/// The coverage of the recordings for `members`, from the cache when it answers for all of
/// them, else asked now (the second value: what to cache). A failed check covers nobody
/// (the raw series are read) and is asked again a minute later.
pub async fn coverage(
    ctx: &Context,
    key: &GroupKey,
    members: &[Member],
    cached: Option<Coverage>,
) -> (Coverage, Option<Coverage>) {
    if let Some(c) = cached.filter(|c| c.cover(members)) {
        return (c, None);
    }
    let values: Vec<&[String]> = members.iter().map(|m| m.values.as_slice()).collect();
    let longest = members
        .iter()
        .filter_map(|m| m.target.spec.window.parse().ok())
        .max()
        .unwrap_or(Duration::from_secs(28 * 86400));
    let query = recordings::coverage_query(key, &values, recordings::needed(longest));
    let asked: Arc<BTreeSet<Vec<String>>> =
        Arc::new(members.iter().map(|m| m.values.clone()).collect());
    let labels = key.eq_labels();
    match ctx.prom.instant(&query, None).await {
        Ok(samples) => {
            let covered = samples
                .iter()
                .map(|s| {
                    labels
                        .iter()
                        .map(|l| s.labels.get(l).cloned().unwrap_or_default())
                        .collect()
                })
                .collect();
            let c = Coverage {
                at: Instant::now(),
                covered: Arc::new(covered),
                asked,
            };
            (c.clone(), Some(c))
        }
        Err(e) => {
            tracing::debug!(error = %e, "the recordings' coverage could not be checked");
            // Covers nobody (the raw series are read), asked again in a minute rather than
            // at every cycle: a Prometheus in trouble gets no extra query per cycle.
            let at = Instant::now()
                .checked_sub(COVERAGE_RECHECK - FAILED_RECHECK)
                .unwrap_or_else(Instant::now);
            let none = Coverage {
                at,
                covered: Arc::default(),
                asked,
            };
            (none.clone(), Some(none))
        }
    }
}

pub fn problems(b: &Buckets, members: &[Member]) -> Vec<Option<Problem>> {
    members
        .iter()
        .map(|m| {
            bucket_problem(
                &m.target,
                b.les.get(&m.values).map(Vec::as_slice).unwrap_or_default(),
            )
        })
        .collect()
}

/// The bucket boundaries of a batch's members: one query, by the varying labels.
pub async fn bucket_check(
    ctx: &Context,
    key: &GroupKey,
    members: &[Member],
) -> Result<Buckets, QueryError> {
    let asked = Arc::new(members.iter().map(|m| m.values.clone()).collect());
    let GroupKey::Latency { shape, .. } = key else {
        // A ratio group has no buckets; never asked.
        return Ok(Buckets {
            at: Instant::now(),
            les: Arc::default(),
            asked,
        });
    };
    let mut by = vec!["le".to_string()];
    by.extend(shape.eq_labels.iter().cloned());
    let values: Vec<&[String]> = members.iter().map(|m| m.values.as_slice()).collect();
    let query = batch::group_buckets_query(key, &values, &by);
    let samples = ctx.prom.instant(&query, None).await?;
    let mut les: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for s in samples {
        let tuple: Vec<String> = shape
            .eq_labels
            .iter()
            .map(|l| s.labels.get(l).cloned().unwrap_or_default())
            .collect();
        if let Some(le) = s.labels.get("le") {
            les.entry(tuple).or_default().push(le.clone());
        }
    }
    Ok(Buckets {
        at: Instant::now(),
        les: Arc::new(les),
        asked,
    })
}

/// Why the target's threshold cannot be read from the bucket boundaries `available`.
fn bucket_problem(t: &ResponseTimeTarget, available: &[String]) -> Option<Problem> {
    let latency = t.spec.indicator.latency.as_ref()?;
    let threshold = latency.threshold.parse().ok()?.as_secs_f64();
    if available.is_empty() {
        return Some(Problem::NoHistogram {
            histogram: latency.histogram.clone(),
        });
    }
    if matching_le(available, threshold).is_some() {
        return None;
    }
    let mut numbers: Vec<f64> = available.iter().filter_map(|l| l.parse().ok()).collect();
    numbers.sort_by(|a, b| a.total_cmp(b));
    Some(Problem::ThresholdNotABucket {
        threshold: latency.threshold.to_string(),
        histogram: latency.histogram.clone(),
        available: numbers
            .iter()
            .map(|n| format!("{n}"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

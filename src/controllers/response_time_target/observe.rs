//! Every read of a ResponseTimeTarget evaluation, all from Prometheus: per batch of a
//! group one query, and for latency groups a bucket check now and then (cached per group);
//! per alertResolution target the raw `ALERTS` samples of its window.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;

use super::super::Context;
use super::{Evaluated, Member};
use crate::api::ResponseTimeTarget;
use crate::api::response_time_target::ResolutionFigures;
use crate::prom::QueryError;
use crate::slo::batch::{self, GroupKey};
use crate::slo::queries::matching_le;
use crate::slo::{Observations, Problem, decide, resolution};

/// Members of one group answered by one query at most: bounds the size of a query (its
/// alternatives of label values) and lets a large group be asked in parallel.
pub const MAX_BATCH: usize = 500;

/// How long a latency group's bucket boundaries are trusted before they are checked again
/// (a histogram's buckets change with a deploy, rarely).
const BUCKETS_RECHECK: Duration = Duration::from_secs(600);

fn failed(p: Problem) -> Observations {
    Observations {
        counts: Err(p),
        error_ratios: BTreeMap::new(),
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
    fn cover(&self, members: &[Member]) -> bool {
        self.at.elapsed() < BUCKETS_RECHECK
            && members.iter().all(|m| self.asked.contains(&m.values))
    }
}

/// One query's worth of evaluation.
pub enum Job {
    Batch {
        key: GroupKey,
        members: Vec<Member>,
        buckets: Option<Buckets>,
    },
    Single(Member),
}

/// A group's members in batches of at most [`MAX_BATCH`], sorted by their values so that a
/// batch's alternatives stay few.
pub fn batches(key: &GroupKey, mut members: Vec<Member>, buckets: Option<Buckets>) -> Vec<Job> {
    members.sort_by(|a, b| a.values.cmp(&b.values));
    let mut jobs = Vec::new();
    while !members.is_empty() {
        let rest = members.split_off(members.len().min(MAX_BATCH));
        jobs.push(Job::Batch {
            key: key.clone(),
            members,
            buckets: buckets.clone(),
        });
        members = rest;
    }
    jobs
}

/// A job's members' evaluations, and the bucket boundaries checked on the way (to keep
/// for the group).
pub type Observed = (Vec<Evaluated>, Option<(GroupKey, Buckets)>);

/// Observes one job.
pub async fn job(ctx: &Context, job: Job) -> Observed {
    match job {
        Job::Single(member) => {
            let (obs, figures) = resolution(ctx, &member.target).await;
            let e = Evaluated {
                member,
                obs,
                figures,
            };
            (vec![e], None)
        }
        Job::Batch {
            key,
            members,
            buckets,
        } => {
            let (observations, checked) = group(ctx, &key, &members, buckets).await;
            let done = members
                .into_iter()
                .zip(observations)
                .map(|(member, obs)| Evaluated {
                    member,
                    obs,
                    figures: None,
                })
                .collect();
            (done, checked.map(|b| (key, b)))
        }
    }
}

/// Each member's observations, and the bucket boundaries when they were checked now.
async fn group(
    ctx: &Context,
    key: &GroupKey,
    members: &[Member],
    cached: Option<Buckets>,
) -> (Vec<Observations>, Option<Buckets>) {
    // Latency groups: which members' threshold is a bucket boundary.
    let (bucket_problems, checked): (Vec<Option<Problem>>, Option<Buckets>) = match key {
        GroupKey::Latency { .. } => match cached.filter(|b| b.cover(members)) {
            Some(b) => (problems(&b, members), None),
            None => match bucket_check(ctx, key, members).await {
                Ok(b) => (problems(&b, members), Some(b)),
                Err(e) => (vec![Some(Problem::Query(e)); members.len()], None),
            },
        },
        _ => (vec![None; members.len()], None),
    };
    let ok: Vec<usize> = (0..members.len())
        .filter(|i| bucket_problems[*i].is_none())
        .collect();
    let values: Vec<&[String]> = ok.iter().map(|i| members[*i].values.as_slice()).collect();
    let mut observations: Vec<Option<Observations>> =
        bucket_problems.into_iter().map(|p| p.map(failed)).collect();
    if !ok.is_empty() {
        let query = batch::group_query(key, &values);
        match ctx.prom.instant(&query, None).await {
            Ok(samples) => {
                for (i, obs) in ok.iter().zip(batch::split_answer(key, &values, &samples)) {
                    observations[*i] = Some(obs);
                }
            }
            Err(e) => {
                for i in &ok {
                    observations[*i] = Some(failed(Problem::Query(e.clone())));
                }
            }
        }
    }
    let observations = observations
        .into_iter()
        .map(|o| o.unwrap_or_else(|| failed(Problem::Value(crate::prom::ValueError::Empty))))
        .collect();
    (observations, checked)
}

fn problems(b: &Buckets, members: &[Member]) -> Vec<Option<Problem>> {
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
async fn bucket_check(
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

/// An alertResolution target: incidents from the raw `ALERTS` samples of the window, then
/// handling figures. Returns the observations and the figures.
async fn resolution(
    ctx: &Context,
    t: &ResponseTimeTarget,
) -> (Observations, Option<ResolutionFigures>) {
    let Some(ind) = &t.spec.indicator.alert_resolution else {
        return (failed(Problem::NoIncidents), None);
    };
    let ns = t.namespace().unwrap_or_default();
    let query = resolution::firing_query(&ind.selector, t.spec.window.as_str());
    let query = match ctx.scoped(&query, &ns) {
        Ok(q) => q,
        Err(e) => {
            let problem = Problem::QueryNotAllowed(format!("firing query: {e}"));
            return (failed(problem), None);
        }
    };
    let within = match ind.resolve_within.parse() {
        Ok(r) => r.as_secs_f64(),
        Err(e) => return (failed(Problem::InvalidSpec(e.to_string())), None),
    };
    // Minute-aligned, so that evaluations within a minute agree.
    let now = ctx.clock.now().as_second() as f64;
    let end = (now / 60.0).floor() * 60.0;
    let series = match ctx.prom.instant_matrix(&query, Some(end)).await {
        Ok(s) => s,
        Err(e) => return (failed(Problem::Query(e)), None),
    };
    let handling = resolution::handling(&resolution::incidents(&series, end), within);
    let counts = handling.counts();
    let obs = Observations {
        counts: if counts.total > 0.0 {
            Ok(counts)
        } else {
            Err(Problem::NoIncidents)
        },
        error_ratios: BTreeMap::new(),
    };
    (obs, Some(decide::resolution_figures(&handling)))
}

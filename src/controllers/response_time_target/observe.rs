//! Every read of a ResponseTimeTarget evaluation, all from Prometheus: per batch of a
//! group one query (two when the shape's recordings cover some members and not others),
//! and now and then the checks cached per group (`caches`); per alertResolution target
//! the raw `ALERTS` samples of its window.

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::super::Context;
use super::caches::{self, Cached, bucket_check, problems};
use super::{Evaluated, Member};
use crate::api::ResponseTimeTarget;
use crate::api::response_time_target::ResolutionFigures;
use crate::slo::batch::{self, GroupKey};
use crate::slo::{Observations, Problem, decide, recordings, resolution};

/// Members of one group answered by one query at most: bounds the size of a query (its
/// alternatives of label values) and lets a large group be asked in parallel.
pub const MAX_BATCH: usize = 500;

pub fn failed(p: Problem) -> Observations {
    Observations {
        counts: Err(p),
        error_ratios: BTreeMap::new(),
    }
}

/// One query's worth of evaluation.
pub enum Job {
    Batch {
        key: GroupKey,
        members: Vec<Member>,
        cached: Box<Cached>,
        /// The shape's recordings exist: members they cover are read from them.
        recorded: bool,
    },
    Single(Member),
}

impl Job {
    /// How many targets it evaluates.
    pub fn targets(&self) -> usize {
        match self {
            Job::Batch { members, .. } => members.len(),
            Job::Single(_) => 1,
        }
    }
}

/// A group's members in batches of at most [`MAX_BATCH`], sorted by their values so that a
/// batch's alternatives stay few.
pub fn batches(
    key: &GroupKey,
    mut members: Vec<Member>,
    cached: Cached,
    recorded: bool,
) -> Vec<Job> {
    members.sort_by(|a, b| a.values.cmp(&b.values));
    let mut jobs = Vec::new();
    while !members.is_empty() {
        let rest = members.split_off(members.len().min(MAX_BATCH));
        jobs.push(Job::Batch {
            key: key.clone(),
            members,
            cached: Box::new(cached.clone()),
            recorded,
        });
        members = rest;
    }
    jobs
}

/// A job's members' evaluations, and what was checked on the way (to keep for the group).
pub type Observed = (Vec<Evaluated>, Option<(GroupKey, Cached)>);

/// Observes one job: a `reconcile` span of the targets it evaluates (ResponseTimeTargets are
/// evaluated in batches, not one by one).
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(kind = "ResponseTimeTarget", targets = job.targets())
)]
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
            cached,
            recorded,
        } => {
            let (observations, checked) = group(ctx, &key, &members, *cached, recorded).await;
            let done = members
                .into_iter()
                .zip(observations)
                .map(|(member, obs)| Evaluated {
                    member,
                    obs,
                    figures: None,
                })
                .collect();
            (done, Some((key, checked)))
        }
    }
}

/// Each member's observations, and what was checked now. Members whose threshold is not a
/// bucket boundary are not asked; the others in at most two queries: those the
/// recordings cover, and the rest from the raw series.
async fn group(
    ctx: &Context,
    key: &GroupKey,
    members: &[Member],
    cached: Cached,
    recorded: bool,
) -> (Vec<Observations>, Cached) {
    let mut checked = Cached::default();
    let bucket_problems: Vec<Option<Problem>> = match key {
        GroupKey::Latency { .. } => match cached.buckets.filter(|b| b.cover(members)) {
            Some(b) => problems(&b, members),
            None => match bucket_check(ctx, key, members).await {
                Ok(b) => {
                    let p = problems(&b, members);
                    checked.buckets = Some(b);
                    p
                }
                Err(e) => vec![Some(Problem::Query(e)); members.len()],
            },
        },
        _ => vec![None; members.len()],
    };
    let coverage = match recorded {
        true => {
            let (c, new) = caches::coverage(ctx, key, members, cached.coverage).await;
            checked.coverage = new;
            Some(c)
        }
        false => None,
    };
    let id = recordings::shape_id(key);
    let (mut from_recordings, mut raw) = (Vec::new(), Vec::new());
    for (i, m) in members.iter().enumerate() {
        if bucket_problems[i].is_some() {
            continue;
        }
        match &coverage {
            Some(c) if c.covers(m) => from_recordings.push(i),
            _ => raw.push(i),
        }
    }
    let mut observations: Vec<Option<Observations>> =
        bucket_problems.into_iter().map(|p| p.map(failed)).collect();
    for (part, source) in [
        (from_recordings, batch::Source::Recorded(&id)),
        (raw, batch::Source::Raw),
    ] {
        if part.is_empty() {
            continue;
        }
        let values: Vec<&[String]> = part.iter().map(|i| members[*i].values.as_slice()).collect();
        let query = batch::group_query(key, &values, source);
        let answers = match ctx.prom.instant(&query, None).await {
            Ok(samples) => batch::split_answer(key, &values, &samples),
            Err(e) => vec![failed(Problem::Query(e)); part.len()],
        };
        for (i, obs) in part.iter().zip(answers) {
            observations[*i] = Some(obs);
        }
    }
    let observations = observations
        .into_iter()
        .map(|o| o.unwrap_or_else(|| failed(Problem::Value(crate::prom::ValueError::Empty))))
        .collect();
    (observations, checked)
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

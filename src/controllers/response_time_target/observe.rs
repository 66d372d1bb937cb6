//! Every read of a ResponseTimeTarget evaluation, all from Prometheus: per group one
//! bucket check (latency groups) and one query; per alertResolution target the raw
//! `ALERTS` samples of its window.

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::super::Context;
use super::Member;
use crate::api::ResponseTimeTarget;
use crate::api::response_time_target::ResolutionFigures;
use crate::prom::QueryError;
use crate::slo::batch::{self, GroupKey};
use crate::slo::queries::matching_le;
use crate::slo::{Observations, Problem, decide, resolution};

fn failed(p: Problem) -> Observations {
    Observations {
        counts: Err(p),
        error_ratios: BTreeMap::new(),
    }
}

/// A group's query scoped to the group's namespace. Every member's own queries were
/// scoped before it joined the group, so this cannot fail but for a bug; the query is then
/// one that reads nothing rather than the unscoped one.
fn scope(ctx: &Context, key: &GroupKey, query: String) -> String {
    let ns = match key {
        GroupKey::Latency { namespace, .. } | GroupKey::Ratio { namespace, .. } => namespace,
    };
    ctx.scoped(&query, ns).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a group query could not be scoped; it reads nothing");
        "vector(0) == 1".to_string()
    })
}

/// Each member's observations (None: nothing to evaluate for it this time).
pub async fn group(ctx: &Context, key: &GroupKey, members: &[Member]) -> Vec<Option<Observations>> {
    // Latency groups: which members' threshold is a bucket boundary.
    let bucket_problems: Vec<Option<Problem>> = match key {
        GroupKey::Latency { .. } => match bucket_check(ctx, key, members).await {
            Ok(problems) => problems,
            Err(e) => vec![Some(Problem::Query(e)); members.len()],
        },
        _ => vec![None; members.len()],
    };
    let ok: Vec<usize> = (0..members.len())
        .filter(|i| bucket_problems[*i].is_none())
        .collect();
    let values: Vec<&[String]> = ok.iter().map(|i| members[*i].1.as_slice()).collect();
    let mut observations: Vec<Option<Observations>> =
        bucket_problems.into_iter().map(|p| p.map(failed)).collect();
    if !ok.is_empty() {
        let query = scope(ctx, key, batch::group_query(key, &values));
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
    observations
}

/// Per member: None when its threshold is a bucket boundary of its histogram.
async fn bucket_check(
    ctx: &Context,
    key: &GroupKey,
    members: &[Member],
) -> Result<Vec<Option<Problem>>, QueryError> {
    let GroupKey::Latency { shape, .. } = key else {
        return Ok(vec![None; members.len()]);
    };
    // One query for the group: bucket boundaries by the varying labels.
    let mut by = vec!["le".to_string()];
    by.extend(shape.eq_labels.iter().cloned());
    let values: Vec<&[String]> = members.iter().map(|(_, v)| v.as_slice()).collect();
    let query = scope(ctx, key, batch::group_buckets_query(key, &values, &by));
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
    Ok(members
        .iter()
        .map(|(t, v)| bucket_problem(t, les.get(v).map(Vec::as_slice).unwrap_or_default()))
        .collect())
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
/// handling figures. Returns the observations, the queries shown and the figures.
pub async fn resolution(
    ctx: &Context,
    t: &ResponseTimeTarget,
) -> (
    Observations,
    BTreeMap<String, String>,
    Option<ResolutionFigures>,
) {
    let Some(ind) = &t.spec.indicator.alert_resolution else {
        return (failed(Problem::NoIncidents), BTreeMap::new(), None);
    };
    let ns = t.namespace().unwrap_or_default();
    let query = resolution::firing_query(&ind.selector, t.spec.window.as_str());
    let query = match ctx.scoped(&query, &ns) {
        Ok(q) => q,
        Err(e) => {
            let problem = Problem::QueryNotAllowed(format!("firing query: {e}"));
            return (failed(problem), BTreeMap::new(), None);
        }
    };
    let queries: BTreeMap<String, String> = [("firing".to_string(), query.clone())].into();
    let within = match ind.resolve_within.parse() {
        Ok(r) => r.as_secs_f64(),
        Err(e) => return (failed(Problem::InvalidSpec(e.to_string())), queries, None),
    };
    // Minute-aligned, so that evaluations within a minute agree.
    let now = ctx.clock.now().as_second() as f64;
    let end = (now / 60.0).floor() * 60.0;
    let series = match ctx.prom.instant_matrix(&query, Some(end)).await {
        Ok(s) => s,
        Err(e) => return (failed(Problem::Query(e)), queries, None),
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
    (obs, queries, Some(decide::resolution_figures(&handling)))
}

//! Every read of a MaturityAssessment pass: the assessment (fresh, never from the cache: its
//! status remembers the reports), the workloads in its scope, the namespace's
//! ResponseTimeTargets, CanaryPolicies and DrillSchedules, what other projects keep
//! ([`super::sources`]: the tools' objects, Alertmanager, Prometheus's alerting rules),
//! declared signals, and the report ConfigMap when a report is due.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::super::{Context, Error};
use super::sources;
use crate::api::canary_policy::RolloutPhase;
use crate::api::drill_schedule::WorkloadKind;
use crate::api::names::{CONTACT_ANNOTATIONS, GITOPS_MARKS, OWNER_LABELS, report_config_map};
use crate::api::{CanaryPolicy, DrillSchedule, MaturityAssessment, ResponseTimeTarget};
use crate::conditions;
use crate::model::decide::{self, Observed, ReportExtras};
use crate::model::evidence::{self, CanaryFacts, DrillFact, TargetFact, Workload};
use crate::model::report::{DrillFigures, TargetFigures};
use crate::model::tools;

/// None when the assessment is gone.
pub async fn observe(
    ctx: &Context,
    cached: &MaturityAssessment,
    now: Timestamp,
) -> Result<Option<Observed>, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let Some(a) = ctx.kube.get::<MaturityAssessment>(&ns, &name).await? else {
        return Ok(None);
    };
    let policies = ctx.kube.list::<CanaryPolicy>(&ns, "").await?;
    let objects = sources::tool_objects(ctx, &ns).await?;
    let tools = tools::read(&objects);
    let mut workloads = workloads(ctx, &a, &ns, &policies, &tools.canary.governed).await?;
    workloads.extend(rollouts(&a, objects.of(tools::ARGO_ROLLOUT)));
    let rtts = ctx.kube.list::<ResponseTimeTarget>(&ns, "").await?;
    let (mut targets, target_figures) = targets(ctx, &rtts);
    targets.extend(sources::tool_targets(ctx, &ns, &tools.slos).await);
    let alerting = sources::alerting(ctx, &ns, &rtts).await;
    let (mut canary, canary_promoted) = canaries(&policies);
    canary.policies += tools.canary.canaries;
    canary.analyzed += tools.canary.analyzed;
    canary.rolled_back += tools.canary.rolled_back;
    let canary_promoted = canary_promoted + tools.canary.promoted;
    let (mut drills, drill_figures) = drills(ctx, &ns).await?;
    drills.extend(tools.drills);
    let rules = sources::rules(ctx, &ns).await;
    let signals = a.spec.signals.clone().unwrap_or_default();
    let (satisfaction, complaints, demand) = super::signals::read_signals(ctx, &ns, &signals).await;
    let report_data = if !decide::report_data_needed(&a, now) {
        BTreeMap::new()
    } else {
        ctx.kube
            .get::<ConfigMap>(&ns, &report_config_map(&name))
            .await?
            .and_then(|c| c.data)
            .unwrap_or_default()
    };
    let verified = crate::attest::verify(ctx.settings.evidence_key.as_ref(), &ns, &name, &a.spec);
    Ok(Some(Observed {
        verified,
        assessment: a,
        workloads,
        targets,
        canary,
        drills,
        rules,
        satisfaction,
        complaints,
        demand,
        extras: ReportExtras {
            targets: target_figures,
            drills: drill_figures,
            canary_promoted,
        },
        report_data,
        interval: ctx.settings.assessment_interval,
        alerting,
    }))
}

fn has_any(map: &BTreeMap<String, String>, keys: &[&str]) -> bool {
    keys.iter()
        .any(|k| map.get(*k).is_some_and(|v| !v.is_empty()))
}

/// A workload and what it declares; `governed` when a tool's canary governs it.
fn workload(meta: &ObjectMeta, policies: &[CanaryPolicy], governed: bool) -> Workload {
    let labels = meta.labels.clone().unwrap_or_default();
    let annotations = meta.annotations.clone().unwrap_or_default();
    Workload {
        name: meta.name.clone().unwrap_or_default(),
        owner: has_any(&labels, OWNER_LABELS),
        contact: has_any(&annotations, CONTACT_ANNOTATIONS),
        gitops: has_any(&labels, GITOPS_MARKS) || has_any(&annotations, GITOPS_MARKS),
        canary_governed: governed || policies.iter().any(|p| crate::canary::selects(p, &labels)),
    }
}

/// The Argo Rollouts in the assessment's scope, as workloads (governed when they analyse
/// their releases).
fn rollouts(a: &MaturityAssessment, rollouts: &[serde_json::Value]) -> Vec<Workload> {
    rollouts
        .iter()
        .filter_map(|r| {
            let meta: ObjectMeta = serde_json::from_value(r["metadata"].clone()).ok()?;
            let labels = meta.labels.clone().unwrap_or_default();
            let in_scope = a
                .spec
                .scope
                .selector
                .as_ref()
                .is_none_or(|s| crate::selector::matches(s, &labels));
            in_scope.then(|| workload(&meta, &[], tools::canaries::rollout_analysed(r)))
        })
        .collect()
}

/// The Deployments, then the StatefulSets, that the assessment's scope selects (those a
/// tool's canary governs by name among them).
async fn workloads(
    ctx: &Context,
    a: &MaturityAssessment,
    ns: &str,
    policies: &[CanaryPolicy],
    governed: &std::collections::BTreeSet<String>,
) -> Result<Vec<Workload>, Error> {
    let scope = a
        .spec
        .scope
        .selector
        .as_ref()
        .map(crate::selector::query)
        .unwrap_or_default();
    let mut metas = ctx
        .kube
        .workloads(ns, WorkloadKind::Deployment, &scope)
        .await?;
    metas.extend(
        ctx.kube
            .workloads(ns, WorkloadKind::StatefulSet, &scope)
            .await?,
    );
    Ok(metas
        .iter()
        .map(|m| {
            let governed = m.name.as_ref().is_some_and(|n| governed.contains(n));
            workload(m, policies, governed)
        })
        .collect())
}

fn objective_met(r: &ResponseTimeTarget) -> Option<bool> {
    r.status
        .as_ref()
        .and_then(|s| conditions::status_of(&s.common.conditions, crate::slo::OBJECTIVE_MET))
        .and_then(|v| match v {
            "True" => Some(true),
            "False" => Some(false),
            _ => None,
        })
}

/// The namespace's ResponseTimeTargets: for the evidence and for the reports.
fn targets(ctx: &Context, rtts: &[ResponseTimeTarget]) -> (Vec<TargetFact>, Vec<TargetFigures>) {
    let figures = rtts
        .iter()
        .map(|r| {
            let s = r.status.clone().unwrap_or_default();
            TargetFigures {
                name: r.name_any(),
                attainment_percent: s.attainment,
                objective_percent: r.spec.objective,
                error_budget_remaining: s.error_budget_remaining,
                objective_met: objective_met(r),
            }
        })
        .collect();
    let facts = rtts
        .iter()
        .map(|r| TargetFact {
            name: r.name_any(),
            objective_met: objective_met(r),
            burn_alerts: evidence::burn_alerts(r, &ctx.settings.tenancy),
            tool_alerts: None,
        })
        .collect();
    (facts, figures)
}

/// The namespace's CanaryPolicies and their totals; and the promotions, for the reports.
fn canaries(policies: &[CanaryPolicy]) -> (CanaryFacts, u32) {
    let mut canary = CanaryFacts {
        policies: policies.len(),
        ..Default::default()
    };
    let mut promoted = 0;
    for p in policies {
        let Some(s) = &p.status else { continue };
        if let Some(tot) = &s.totals {
            canary.analyzed += tot.analyzed;
            promoted += tot.promoted;
            canary.rolled_back += tot.rolled_back;
        }
        // The latest rollout of each Deployment (most recent first) says how its current
        // revision came.
        let mut seen = std::collections::BTreeSet::new();
        for r in &s.rollouts {
            if seen.insert(&r.deployment) && r.phase == RolloutPhase::Unguarded {
                canary
                    .unguarded
                    .push(format!("{} revision {}", r.deployment, r.revision));
            }
        }
    }
    (canary, promoted)
}

/// The namespace's DrillSchedules: for the evidence and for the reports.
async fn drills(ctx: &Context, ns: &str) -> Result<(Vec<DrillFact>, Vec<DrillFigures>), Error> {
    let schedules = ctx.kube.list::<DrillSchedule>(ns, "").await?;
    let figures = schedules
        .iter()
        .map(|d| {
            let s = d.status.clone().unwrap_or_default();
            let sum = s.summary.clone().unwrap_or_default();
            DrillFigures {
                name: d.name_any(),
                passed: sum.passed,
                failed: sum.failed,
                aborted: sum.aborted,
                last_recovery_seconds: s.runs.iter().find_map(|r| r.recovery_seconds),
            }
        })
        .collect();
    let facts = schedules.iter().map(evidence::drill_fact).collect();
    Ok((facts, figures))
}

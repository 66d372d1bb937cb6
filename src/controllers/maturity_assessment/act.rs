//! Acting on a MaturityAssessment pass: the report ConfigMap first (server-side apply,
//! owned by the assessment), then the status that records the reports' times (only when
//! it changed), then the assessment's metrics.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::super::runtime::{Context, Error};
use crate::api::MaturityAssessment;
use crate::api::maturity_assessment::{MaturityAssessmentStatus, PracticeState};
use crate::api::names::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::metrics::Metrics;
use crate::model::decide::{Observed, Outcome, ReportWrite};

pub async fn act(ctx: &Context, o: &Observed, outcome: Outcome) -> Result<Action, Error> {
    let a = &o.assessment;
    let ns = a.namespace().unwrap_or_default();
    let name = a.name_any();
    if let Some(report) = &outcome.report {
        write_report(ctx, a, &ns, &name, report).await?;
    }
    let old = a.status.clone().unwrap_or_default();
    ctx.kube
        .write_status_if_changed(a, &old, &outcome.status)
        .await?;
    export(&ctx.metrics, &ns, &name, &outcome.status);
    Ok(Action::requeue(outcome.requeue))
}

/// The reports into the ConfigMap `<assessment>-report`, owned by the assessment.
async fn write_report(
    ctx: &Context,
    a: &MaturityAssessment,
    ns: &str,
    name: &str,
    r: &ReportWrite,
) -> Result<(), Error> {
    for period in &r.periods {
        tracing::info!(
            namespace = ns,
            assessment = name,
            period = period.key(),
            "report produced"
        );
    }
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(r.config_map.clone()),
            namespace: Some(ns.to_string()),
            owner_references: a.controller_owner_ref(&()).map(|o| vec![o]),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                MANAGED_BY.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(r.data.clone()),
        ..Default::default()
    };
    ctx.kube.apply::<ConfigMap>(ns, &r.config_map, &cm).await?;
    Ok(())
}

/// The level, each capability's level, the practices by state and what the next level
/// misses, as metrics (removed by the runtime's `forget` when the assessment goes).
fn export(m: &Metrics, ns: &str, name: &str, s: &MaturityAssessmentStatus) {
    m.maturity_level
        .with_label_values(&[ns, name])
        .set(s.level.unwrap_or(0) as i64);
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for c in &s.capabilities {
        m.maturity_capability_level
            .with_label_values(&[ns, name, &c.id])
            .set(c.level as i64);
        for p in &c.practices {
            *counts.entry(state_label(p.state)).or_default() += 1;
        }
    }
    for state in ["met", "not_met", "unknown", "exempt", "expired"] {
        m.maturity_practices
            .with_label_values(&[ns, name, state])
            .set(counts.get(state).copied().unwrap_or(0));
    }
    let missing: Vec<(i32, &str)> = s
        .next_level
        .iter()
        .flat_map(|n| n.missing.iter().map(|p| (n.level, p.practice.as_str())))
        .collect();
    m.set_next_level_missing(ns, name, &missing);
}

/// The `state` label of a practice state.
fn state_label(s: PracticeState) -> &'static str {
    match s {
        PracticeState::Met => "met",
        PracticeState::NotMet => "not_met",
        PracticeState::Unknown => "unknown",
        PracticeState::Exempt => "exempt",
        PracticeState::Expired => "expired",
    }
}

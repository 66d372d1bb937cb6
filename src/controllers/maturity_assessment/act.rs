//! Acting on a MaturityAssessment pass: the report ConfigMap first (server-side apply,
//! owned by the assessment), then the status that records the reports' times (only when
//! it changed), then the assessment's metrics.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::super::{Context, Error, Written};
use super::metrics::MaturityMetrics;
use crate::api::MaturityAssessment;
use crate::api::names::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::model::decide::{self, Delivery, Observed, Outcome, ReportWrite};
use crate::model::report::Period;

pub async fn act(
    ctx: &Context,
    metrics: &MaturityMetrics,
    o: &Observed,
    outcome: Outcome,
) -> Result<Action, Error> {
    let a = &o.assessment;
    let ns = a.namespace().unwrap_or_default();
    let name = a.name_any();
    if let Some(report) = &outcome.report {
        write_report(ctx, a, &ns, &name, report).await?;
    }
    // Delivered after the ConfigMap holds the report, recorded with the status: a crash in
    // between delivers it again (at least once).
    let mut status = outcome.status;
    if !outcome.deliveries.is_empty() {
        let answers = deliver(ctx, &ns, &name, &outcome.deliveries).await;
        decide::delivered(&mut status, &answers, ctx.clock.now());
    }
    let old = a.status.clone().unwrap_or_default();
    if let Written::Deferred(wait) = ctx.write_status(a, &old, &status, false).await? {
        return Ok(Action::requeue(wait));
    }
    metrics.export(&ns, &name, &status);
    Ok(Action::requeue(outcome.requeue))
}

/// POSTs each report to its receiver: the answers, in order.
async fn deliver(
    ctx: &Context,
    ns: &str,
    name: &str,
    deliveries: &[Delivery],
) -> Vec<(Period, Result<u16, String>)> {
    let mut answers = Vec::new();
    for d in deliveries {
        let answer = ctx.deliverer.post(&d.url, d.body.clone()).await;
        tracing::info!(
            namespace = ns,
            assessment = name,
            period = d.period.key(),
            ?answer,
            "report delivery"
        );
        answers.push((d.period, answer));
    }
    answers
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

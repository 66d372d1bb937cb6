//! Acting on a DrillSchedule pass: status first (what must be restored is recorded before
//! the target changes, so a restarted operator can put it back), then the change where the
//! cluster differs from it, the Events, and the drill's metrics.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;

use super::super::runtime::{Context, Error};
use crate::api::drill_schedule::DrillScheduleStatus;
use crate::drill::decide::{Observed, Outcome};
use crate::drill::run::{Effect, TargetView};
use crate::k8s::WorkloadRef;
use crate::metrics::Metrics;

pub async fn act(ctx: &Context, o: &Observed, outcome: &Outcome) -> Result<Requeue, Error> {
    let drill = &o.drill;
    let (ns, name) = (drill.namespace().unwrap_or_default(), drill.name_any());
    if let Some(e) = &outcome.unschedulable {
        tracing::warn!(drill = %name, error = %e, "no next window");
        return Ok(Requeue::requeue(outcome.requeue));
    }
    let old = drill.status.clone().unwrap_or_default();
    ctx.kube
        .write_status_if_changed(drill, &old, &outcome.status)
        .await?;
    if let Some((view, effect)) = &outcome.effect {
        change(ctx, &ns, view, effect).await?;
    }
    ctx.kube.publish(drill, "Drill", &outcome.notes).await;
    export(&ctx.metrics, &ns, &name, &outcome.status, o.deleting);
    Ok(Requeue::requeue(outcome.requeue))
}

/// Applies `effect` where the target (as seen) differs from it.
async fn change(ctx: &Context, ns: &str, view: &TargetView, effect: &Effect) -> Result<(), Error> {
    let target = WorkloadRef::parse(&view.name);
    match effect {
        Effect::KillPods(pods) => {
            for p in pods.iter().filter(|p| view.pods.contains(p)) {
                if ctx.kube.delete::<Pod>(ns, p).await? {
                    tracing::info!(namespace = ns, pod = %p, "drill: pod deleted");
                }
            }
        }
        Effect::Scale(n) => {
            if view.replicas != *n {
                ctx.kube.scale(ns, &target, *n).await?;
            }
        }
        Effect::Select { service, selector } => {
            if view.service_selector.as_ref() != Some(selector) {
                select(ctx, ns, service, selector).await?;
            }
        }
        Effect::Restore(saved) => {
            if let Some(r) = saved.replicas
                && view.replicas != r
            {
                ctx.kube.scale(ns, &target, r).await?;
            }
            if let (Some(service), Some(selector)) = (&saved.service, &saved.service_selector)
                && view.service_selector.as_ref() != Some(selector)
            {
                select(ctx, ns, service, selector).await?;
            }
        }
    }
    Ok(())
}

/// Sets the Service's whole selector.
async fn select(
    ctx: &Context,
    ns: &str,
    service: &str,
    selector: &BTreeMap<String, String>,
) -> Result<(), Error> {
    let ops = vec![serde_json::json!(
        {"op": "replace", "path": "/spec/selector", "value": selector}
    )];
    ctx.kube.json_patch::<Service>(ns, service, ops).await?;
    Ok(())
}

/// The status figures as metrics (removed when the DrillSchedule goes away).
fn export(m: &Metrics, ns: &str, name: &str, s: &DrillScheduleStatus, deleting: bool) {
    let sum = s.summary.clone().unwrap_or_default();
    let results = [
        ("passed", sum.passed),
        ("failed", sum.failed),
        ("aborted", sum.aborted),
        ("skipped", sum.skipped),
    ];
    if deleting {
        for (r, _) in results {
            let _ = m.drill_runs.remove_label_values(&[ns, name, r]);
        }
        let _ = m
            .drill_last_recovery_seconds
            .remove_label_values(&[ns, name]);
        return;
    }
    for (r, v) in results {
        m.drill_runs.with_label_values(&[ns, name, r]).set(v as i64);
    }
    if let Some(secs) = s.runs.iter().find_map(|r| r.recovery_seconds) {
        m.drill_last_recovery_seconds
            .with_label_values(&[ns, name])
            .set(secs);
    }
}

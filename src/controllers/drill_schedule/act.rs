//! Acting on a DrillSchedule pass: status first (what must be restored is recorded before
//! the target changes, so a restarted operator can put it back), then the change where the
//! cluster differs from it, the Events, and the drill's metrics.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;

use super::super::{Context, Error, Written};
use super::metrics::DrillMetrics;
use crate::drill::decide::{Observed, Outcome};
use crate::drill::run::{Effect, TargetView};
use crate::k8s::WorkloadRef;

pub async fn act(
    ctx: &Context,
    metrics: &DrillMetrics,
    o: &Observed,
    outcome: &Outcome,
) -> Result<Requeue, Error> {
    let drill = &o.drill;
    let (ns, name) = (drill.namespace().unwrap_or_default(), drill.name_any());
    let old = drill.status.clone().unwrap_or_default();
    let busy = old.active.is_some() || outcome.status.active.is_some();
    if let Written::Deferred(wait) = ctx.write_status(drill, &old, &outcome.status, busy).await? {
        return Ok(Requeue::requeue(wait));
    }
    if let Some((view, effect)) = &outcome.effect {
        change(ctx, &ns, view, effect).await?;
    }
    ctx.kube.publish(drill, "Drill", &outcome.notes).await;
    metrics.export(&ns, &name, &outcome.status, o.deleting);
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
        Effect::FailNodes { cordon, kill } => {
            for n in cordon {
                let cordoned = view.nodes.iter().any(|v| &v.name == n && v.unschedulable);
                if !cordoned {
                    ctx.kube.set_unschedulable(n, true).await?;
                    tracing::info!(node = %n, "drill: node cordoned");
                }
            }
            for p in kill.iter().filter(|p| view.pods.contains(p)) {
                if ctx.kube.delete::<Pod>(ns, p).await? {
                    tracing::info!(namespace = ns, pod = %p, "drill: pod deleted");
                }
            }
        }
        Effect::Restore(saved) => {
            for n in &saved.cordoned {
                if view.nodes.iter().any(|v| &v.name == n && v.unschedulable) {
                    ctx.kube.set_unschedulable(n, false).await?;
                    tracing::info!(node = %n, "drill: node uncordoned");
                }
            }
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

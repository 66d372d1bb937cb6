//! Acting on a CanaryPolicy pass: status first (the records must be there before a
//! Deployment changes, so a restarted operator can continue or undo), then each Deployment
//! change that the cluster does not have yet, the Events, and the policy's metrics.

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;

use super::super::{Context, Error, Written};
use super::metrics::CanaryMetrics;
use crate::canary::decide::{Observed, Outcome};
use crate::canary::deployment::{Action, DeploymentView, patch_for};

pub async fn act(
    ctx: &Context,
    metrics: &CanaryMetrics,
    o: &Observed,
    outcome: Outcome,
) -> Result<Requeue, Error> {
    let policy = &o.policy;
    let old = policy.status.clone().unwrap_or_default();
    let busy = [&old, &outcome.status]
        .iter()
        .any(|s| s.rollouts.iter().any(|r| r.phase.is_under_way()));
    if let Written::Deferred(wait) = ctx
        .write_status(policy, &old, &outcome.status, busy)
        .await?
    {
        return Ok(Requeue::requeue(wait));
    }
    let ns = policy.namespace().unwrap_or_default();
    for (view, action) in &outcome.actions {
        change(ctx, &ns, view, action, o.deleting).await?;
    }
    ctx.kube.publish(policy, "Rollout", &outcome.notes).await;
    metrics.export(&ns, &policy.name_any(), &outcome.status, o.deleting);
    Ok(Requeue::requeue(outcome.requeue))
}

/// Changes the Deployment when the action asks for something it does not have yet. A
/// Deployment changed since it was read is looked at again: at the next pass, or, while the
/// policy is being deleted, by failing the pass (the finalizer stays until every Deployment
/// is given back, not only those whose patch happened to apply).
async fn change(
    ctx: &Context,
    ns: &str,
    d: &DeploymentView,
    action: &Action,
    deleting: bool,
) -> Result<(), Error> {
    let ops = patch_for(d, action);
    if ops.is_empty() {
        return Ok(());
    }
    match ctx.kube.json_patch::<Deployment>(ns, &d.name, ops).await {
        Ok(()) => {
            tracing::info!(namespace = ns, deployment = %d.name, ?action, "changed the Deployment");
            Ok(())
        }
        // The Deployment changed since it was read (the `test` op failed): look again.
        Err(e) if matches!(e.code(), Some(409 | 422)) && !deleting => {
            tracing::debug!(deployment = %d.name, "Deployment changed meanwhile; will look again");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

//! Acting on a CanaryPolicy pass: status first (the records must be there before a
//! Deployment changes, so a restarted operator can continue or undo), then each Deployment
//! change that the cluster does not have yet, the Events, and the policy's metrics.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::runtime::controller::Action as Requeue;

use super::super::runtime::{Context, Error};
use crate::api::canary_policy::CanaryPolicyStatus;
use crate::canary::decide::{Observed, Outcome};
use crate::canary::deployment::{Action, DeploymentView, patch_for};
use crate::metrics::Metrics;

pub async fn act(ctx: &Context, o: &Observed, outcome: Outcome) -> Result<Requeue, Error> {
    let policy = &o.policy;
    let old = policy.status.clone().unwrap_or_default();
    ctx.kube
        .write_status_if_changed(policy, &old, &outcome.status)
        .await?;
    let ns = policy.namespace().unwrap_or_default();
    for (view, action) in &outcome.actions {
        change(ctx, &ns, view, action).await?;
    }
    ctx.kube.publish(policy, "Rollout", &outcome.notes).await;
    export(
        &ctx.metrics,
        &ns,
        &policy.name_any(),
        &outcome.status,
        o.deleting,
    );
    Ok(Requeue::requeue(outcome.requeue))
}

/// Changes the Deployment when the action asks for something it does not have yet.
async fn change(ctx: &Context, ns: &str, d: &DeploymentView, action: &Action) -> Result<(), Error> {
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
        Err(e) if matches!(e.code(), Some(409 | 422)) => {
            tracing::debug!(deployment = %d.name, "Deployment changed meanwhile; will look again");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The status figures as metrics (removed when the policy goes away).
fn export(m: &Metrics, ns: &str, name: &str, s: &CanaryPolicyStatus, deleting: bool) {
    let cov = s.coverage.clone().unwrap_or_default();
    let totals = s.totals.clone().unwrap_or_default();
    let scopes = [("namespace", cov.deployments), ("governed", cov.governed)];
    let outcomes = [
        ("analyzed", totals.analyzed),
        ("promoted", totals.promoted),
        ("rolled_back", totals.rolled_back),
        ("held", totals.held),
        ("inconclusive", totals.inconclusive),
    ];
    let failed: BTreeMap<(String, String), (f64, f64)> = s
        .rollouts
        .iter()
        .filter_map(|r| {
            r.exposure.as_ref().map(|e| {
                (
                    (r.deployment.clone(), r.revision.clone()),
                    (e.max_share_percent, e.minutes),
                )
            })
        })
        .collect();
    if deleting {
        for (scope, _) in scopes {
            let _ = m.canary_deployments.remove_label_values(&[ns, name, scope]);
        }
        for (o, _) in outcomes {
            let _ = m.canary_rollouts.remove_label_values(&[ns, name, o]);
        }
        let _ = m
            .canary_exposure_replica_minutes
            .remove_label_values(&[ns, name]);
        for (d, rev) in failed.keys() {
            let _ = m
                .canary_failed_exposure_share
                .remove_label_values(&[ns, name, d, rev]);
            let _ = m
                .canary_failed_exposure_minutes
                .remove_label_values(&[ns, name, d, rev]);
        }
        return;
    }
    for (scope, v) in scopes {
        m.canary_deployments
            .with_label_values(&[ns, name, scope])
            .set(v as i64);
    }
    for (o, v) in outcomes {
        m.canary_rollouts
            .with_label_values(&[ns, name, o])
            .set(v as i64);
    }
    m.canary_exposure_replica_minutes
        .with_label_values(&[ns, name])
        .set(totals.exposure_replica_minutes);
    for ((d, rev), (share, minutes)) in failed {
        m.canary_failed_exposure_share
            .with_label_values(&[ns, name, &d, &rev])
            .set(share);
        m.canary_failed_exposure_minutes
            .with_label_values(&[ns, name, &d, &rev])
            .set(minutes);
    }
}

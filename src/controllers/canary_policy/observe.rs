//! Every read of a CanaryPolicy pass: the policy (fresh, never from the cache: its status
//! is the memory), its namespace's Deployments and ReplicaSets, and the checks that are
//! due, run against Prometheus.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::super::{Context, Error};
use crate::api::CanaryPolicy;
use crate::api::canary_policy::RolloutRecord;
use crate::authz::Verdict;
use crate::canary::analysis::{self, QueryVars, Reading};
use crate::canary::decide::{self, Observed};
use crate::canary::rollout::Check;
use crate::prom::{ValueError, single_value};

/// None when the policy is gone.
pub async fn observe(
    ctx: &Context,
    cached: &CanaryPolicy,
    deleting: bool,
    policies: &Store<CanaryPolicy>,
) -> Result<Option<Observed>, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let Some(policy) = ctx
        .kube
        .get::<CanaryPolicy>(&ns, &cached.name_any())
        .await?
    else {
        return Ok(None);
    };
    let mut observed = Observed {
        policy,
        deleting,
        deployments: ctx.kube.list::<Deployment>(&ns, "").await?,
        replica_sets: ctx.kube.list::<ReplicaSet>(&ns, "").await?,
        policies: policies
            .state()
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
            .map(|p| p.as_ref().clone())
            .collect(),
        checks: Default::default(),
        tenancy: ctx.settings.tenancy.clone(),
        authority: Verdict::Allowed,
        author: None,
        hook_hosts: ctx.settings.canary_hook_hosts.clone(),
        post_hooks: Vec::new(),
    };
    if decide::has_work(&observed) {
        let p = &observed.policy;
        let authored = crate::canary::authored(p);
        observed.authority = ctx
            .authorized(
                "CanaryPolicy",
                &ns,
                p.metadata.annotations.as_ref(),
                &authored,
                &decide::needs(p),
            )
            .await?;
        observed.author = match ctx.settings.authors.of(
            "CanaryPolicy",
            &ns,
            p.metadata.annotations.as_ref(),
            &authored,
        ) {
            crate::authz::Authority::Author(a) => Some(a.username),
            _ => None,
        };
    }
    for (deployment, rollout) in decide::due_checks(&observed, ctx.clock.now()) {
        let check = run_check(ctx, &observed.policy, &ns, &deployment, &rollout).await;
        observed.checks.insert(deployment, check);
    }
    for ended in decide::due_post_hooks(&observed) {
        let (results, _) = call_hooks(ctx, &observed.policy, &ns, &ended).await;
        observed.post_hooks.push(decide::PostHooksCalled {
            deployment: ended.deployment,
            started_at: ended.started_at,
            results,
        });
    }
    Ok(Some(observed))
}

/// Calls the policy's hooks that are due for rollout `r` (by its phase), one after the
/// other, each within its timeout; and whether its `PreRollout` ones all passed.
async fn call_hooks(
    ctx: &Context,
    policy: &CanaryPolicy,
    ns: &str,
    r: &RolloutRecord,
) -> (Vec<crate::api::canary_policy::MetricResult>, bool) {
    let due = analysis::due_hooks(&policy.spec.hooks, r);
    let mut results = Vec::new();
    for hook in &due {
        let body = analysis::hook_payload(&policy.name_any(), ns, r, hook);
        let timeout = analysis::hook_timeout(hook).unwrap_or(analysis::HOOK_TIMEOUT);
        let answer = ctx.hooks.call_hook(&hook.url, body, timeout).await;
        results.push(analysis::judge_hook(hook, answer));
    }
    let pre_rollout_passed = analysis::pre_rollout_passed(&due, &results);
    (results, pre_rollout_passed)
}

/// Runs every metric of the policy for the rollout's canary (and stable, for `compare`).
async fn run_check(
    ctx: &Context,
    policy: &CanaryPolicy,
    ns: &str,
    deployment: &str,
    r: &RolloutRecord,
) -> Check {
    let vars = QueryVars {
        namespace: ns.into(),
        deployment: deployment.into(),
        canary_hash: r.canary_hash.clone().unwrap_or_default(),
        stable_hash: r.stable_hash.clone().unwrap_or_default(),
        interval: policy.spec.analysis.interval.as_str().to_string(),
    };
    let (mut results, pre_rollout_passed) = call_hooks(ctx, policy, ns, r).await;
    for m in &policy.spec.analysis.metrics {
        let (query, canary) = match vars.canary_query(m) {
            Ok(q) => scoped_read(ctx, q, ns).await,
            Err(e) => (m.query.as_str().to_string(), Reading::Error(e.to_string())),
        };
        let stable = match vars.stable_query(m) {
            None => None,
            Some(Ok(q)) => Some(scoped_read(ctx, q, ns).await),
            Some(Err(e)) => Some((m.query.as_str().to_string(), Reading::Error(e.to_string()))),
        };
        results.push(analysis::judge(m, query, canary, stable));
    }
    let mut outcome = analysis::verdict(&results, policy.spec.analysis.on_no_data);
    if let Some(min) = &policy.spec.analysis.min_requests {
        let traffic = match vars.traffic_query(min) {
            Ok(q) => scoped_read(ctx, q, ns).await.1,
            Err(e) => Reading::Error(e.to_string()),
        };
        outcome = analysis::with_traffic(outcome, min.count, &vars.interval, &traffic);
    }
    let (verdict, message) = outcome;
    Check {
        results,
        verdict,
        message,
        pre_rollout_passed,
    }
}

/// The query as sent (scoped to the policy's namespace) and what it read.
async fn scoped_read(ctx: &Context, query: String, ns: &str) -> (String, Reading) {
    match ctx.scoped(&query, ns) {
        Ok(q) => {
            let reading = read(ctx, &q).await;
            (q, reading)
        }
        Err(e) => (query, Reading::Error(e.to_string())),
    }
}

async fn read(ctx: &Context, query: &str) -> Reading {
    match ctx.prom.instant(query, None).await {
        Err(e) => Reading::Error(e.to_string()),
        Ok(samples) => match single_value(&samples) {
            Ok(v) => Reading::Value(v),
            Err(e @ (ValueError::Empty | ValueError::NaN)) => Reading::NoData(e.to_string()),
            Err(e) => Reading::Error(e.to_string()),
        },
    }
}

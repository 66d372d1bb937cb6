//! The CanaryPolicy controller: for each policy, looks at the Deployments of its
//! namespace, runs each governed one's rollout through `canary::rollout::plan`, runs the
//! checks that are due against Prometheus, writes status *before* changing a Deployment,
//! and publishes an Event per transition. A finalizer gives every held Deployment back
//! (its own settings, unpaused) before a policy goes away.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action as Requeue, Config, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;

use super::timed;

use crate::FIELD_MANAGER;
use crate::api::CanaryPolicy;
use crate::api::canary_policy::{CanaryPolicyStatus, Coverage, RolloutRecord, Totals};
use crate::canary::analysis::{self, QueryVars, Reading};
use crate::canary::deployment::{
    Action, DeploymentView, HOLD_ANNOTATION, ReplicaSetView, patch_for,
};
use crate::canary::governing;
use crate::canary::rollout::{self, Check, Policy};
use crate::conditions::{self, Cond, Status};
use crate::metrics::Metrics;
use crate::prom::{PromClient, single_value};

pub const FINALIZER: &str = "maturity.sre.dev/canary-release";
/// How often an idle policy is looked at without any event.
const IDLE_REQUEUE: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] super::ApiError),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

#[derive(Clone)]
pub struct Settings {
    pub api_timeout: Duration,
    /// Only this namespace (None: all).
    pub namespace: Option<String>,
}

struct Ctx {
    client: Client,
    prom: PromClient,
    metrics: Metrics,
    recorder: Recorder,
    settings: Settings,
    policies: Store<CanaryPolicy>,
}

fn api_for<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The controller and the store of policies it keeps (the webhook reads the same store).
pub fn controller(
    client: &Client,
    namespace: Option<&str>,
) -> (Controller<CanaryPolicy>, Store<CanaryPolicy>) {
    let policies: Api<CanaryPolicy> = api_for(client, namespace);
    let deployments: Api<Deployment> = api_for(client, namespace);
    let c = Controller::new(policies, watcher::Config::default().any_semantic())
        .with_config(Config::default().concurrency(4));
    let store = c.store();
    let mapper_store = store.clone();
    let c = c.watches(
        deployments,
        watcher::Config::default().any_semantic(),
        move |d: Deployment| {
            let ns = d.namespace().unwrap_or_default();
            let labels = d.labels().clone();
            let hold = d.annotations().get(HOLD_ANNOTATION).cloned();
            mapper_store
                .state()
                .into_iter()
                .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
                .filter(|p| {
                    crate::canary::selects(p, &labels) || hold.as_deref() == Some(&p.name_any())
                })
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        },
    );
    (c, store)
}

/// Runs the controller until `stop`.
pub async fn run(
    controller: Controller<CanaryPolicy>,
    client: Client,
    prom: PromClient,
    metrics: Metrics,
    settings: Settings,
    mut stop: watch::Receiver<bool>,
) {
    let recorder = crate::events::recorder(client.clone());
    let ctx = Arc::new(Ctx {
        client,
        prom,
        metrics,
        recorder,
        settings,
        policies: controller.store(),
    });
    controller
        .graceful_shutdown_on(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "canary reconcile");
            }
        })
        .await;
}

fn error_policy(
    p: Arc<CanaryPolicy>,
    e: &kube::runtime::finalizer::Error<Error>,
    _: Arc<Ctx>,
) -> Requeue {
    use kube::runtime::finalizer::Error as F;
    // A second pass over a policy that is already gone: nothing left to release.
    if let F::RemoveFinalizer(kube::Error::Api(s)) = e
        && s.code == 404
    {
        return Requeue::await_change();
    }
    tracing::warn!(policy = %p.name_any(), error = %e, "reconciling a CanaryPolicy failed; retrying");
    Requeue::requeue(Duration::from_secs(2))
}
async fn reconcile(
    p: Arc<CanaryPolicy>,
    ctx: Arc<Ctx>,
) -> Result<Requeue, kube::runtime::finalizer::Error<Error>> {
    let ns = p.namespace().unwrap_or_default();
    let api: Api<CanaryPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let started = std::time::Instant::now();
    let r = finalizer(&api, FINALIZER, p, |event| async {
        match event {
            Finalizer::Apply(p) => sync(&ctx, &p, false).await,
            Finalizer::Cleanup(p) => sync(&ctx, &p, true).await,
        }
    })
    .await;
    ctx.metrics
        .cycle_duration
        .with_label_values(&["canary_policy"])
        .observe(started.elapsed().as_secs_f64());
    if r.is_err() {
        ctx.metrics
            .reconcile_errors
            .with_label_values(&["canary_policy"])
            .inc();
    }
    r
}

/// What one pass over a policy's Deployments saw.
struct Scope {
    deployments: Vec<Deployment>,
    replica_sets: Vec<ReplicaSet>,
}

async fn scope(ctx: &Ctx, ns: &str) -> Result<Scope, Error> {
    let t = ctx.settings.api_timeout;
    let deps: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let rss: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    Ok(Scope {
        deployments: timed(t, deps.list(&ListParams::default())).await?.items,
        replica_sets: timed(t, rss.list(&ListParams::default())).await?.items,
    })
}

fn owned_by(rs: &ReplicaSet, d: &Deployment) -> bool {
    let uid = d.metadata.uid.as_deref();
    rs.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
}

/// One pass over the policy (`deleting`: give everything back for the finalizer).
async fn sync(ctx: &Ctx, cached: &CanaryPolicy, deleting: bool) -> Result<Requeue, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let api: Api<CanaryPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    // Status is the memory of every rollout: read it fresh, never from the watch cache.
    let Some(policy) = timed(ctx.settings.api_timeout, api.get_opt(&name)).await? else {
        return Ok(Requeue::await_change());
    };
    let mut status = policy.status.clone().unwrap_or_default();
    let mut written = status.clone();
    let now = Timestamp::now();

    let parsed = parse(&policy);
    let scope = scope(ctx, &ns).await?;
    let policies = ctx.policies.state();
    let governed: BTreeSet<String> = scope
        .deployments
        .iter()
        .filter(|d| {
            !deleting
                && parsed.is_ok()
                && governing(policies.iter().map(|p| p.as_ref()), &ns, d.labels())
                    .is_some_and(|g| g.name_any() == name)
        })
        .map(|d| d.name_any())
        .collect();
    // Deployments to look at: governed ones, those with a rollout in progress, those held for us.
    let mut names: BTreeSet<String> = governed.clone();
    names.extend(
        status
            .rollouts
            .iter()
            .filter(|r| !r.phase.is_terminal())
            .map(|r| r.deployment.clone()),
    );
    names.extend(
        scope
            .deployments
            .iter()
            .filter(|d| d.annotations().get(HOLD_ANNOTATION) == Some(&name))
            .map(|d| d.name_any()),
    );

    let mut requeue = IDLE_REQUEUE;
    let fallback = Policy {
        name: name.clone(),
        steps: vec![(100, Duration::ZERO)],
        interval: Duration::from_secs(30),
        failure_limit: 1,
        rollback: Default::default(),
    };
    let rules = parsed.as_ref().unwrap_or(&fallback);
    for dname in &names {
        let d = scope.deployments.iter().find(|d| &d.name_any() == dname);
        let view = d.map(DeploymentView::from_deployment);
        let rss: Vec<ReplicaSetView> = match d {
            Some(d) => scope
                .replica_sets
                .iter()
                .filter(|rs| owned_by(rs, d))
                .filter_map(ReplicaSetView::from_replica_set)
                .collect(),
            None => Vec::new(),
        };
        let active = status
            .rollouts
            .iter()
            .find(|r| &r.deployment == dname && !r.phase.is_terminal())
            .cloned();
        let is_governed = governed.contains(dname);
        let mut decision = rollout::plan(
            rules,
            active.as_ref(),
            view.as_ref(),
            &rss,
            is_governed,
            now,
            None,
        );
        if decision.check_due
            && let (Some(r), Ok(spec)) = (&active, &parsed)
        {
            let check = run_check(ctx, &policy, spec, &ns, dname, r).await;
            decision = rollout::plan(
                rules,
                active.as_ref(),
                view.as_ref(),
                &rss,
                is_governed,
                Timestamp::now(),
                Some(&check),
            );
        }
        if let Some(after) = decision.requeue {
            requeue = requeue.min(after.max(Duration::from_millis(200)));
        }
        let active_left = decision.records.iter().any(|r| !r.phase.is_terminal());
        if active_left {
            requeue = requeue.min(rules.interval);
        }
        // Memory first: the records are in status before the Deployment changes.
        if !decision.records.is_empty() {
            upsert(&mut status, decision.records, &decision.totals, &policy);
            if status != written {
                write_status(ctx, &api, &name, &status).await?;
                written = status.clone();
            }
        }
        if let (Some(action), Some(v)) = (&decision.action, &view) {
            apply(ctx, &ns, v, action).await?;
        }
        publish(ctx, &policy, &decision.notes).await;
    }

    // Coverage and conditions.
    status.coverage = Some(Coverage {
        deployments: scope.deployments.len() as u32,
        governed: governed.len() as u32,
    });
    let generation = policy.metadata.generation;
    let nowt = Time(now);
    let ready = match &parsed {
        Ok(_) => Cond::new(
            "Ready",
            Status::True,
            "Watching",
            format!(
                "governing {} of {} Deployments in the namespace",
                governed.len(),
                scope.deployments.len()
            ),
        ),
        Err(why) => Cond::new("Ready", Status::False, "InvalidSpec", why.clone()),
    };
    status.common.conditions =
        conditions::merge(&status.common.conditions, &[ready], generation, &nowt);
    status.common.observed_generation = generation;
    if status != written {
        status.common.last_evaluated = Some(nowt);
        write_status(ctx, &api, &name, &status).await?;
    }
    export(ctx, &ns, &name, &status, deleting);
    Ok(Requeue::requeue(requeue))
}

/// The spec as the state machine needs it, or why it cannot be used.
fn parse(p: &CanaryPolicy) -> Result<Policy, String> {
    let interval = p
        .spec
        .analysis
        .interval
        .parse()
        .map_err(|e| format!("analysis.interval: {e}"))?;
    if interval.is_zero() {
        return Err("analysis.interval must be longer than zero".into());
    }
    let mut steps = Vec::new();
    for (i, s) in p.spec.steps.iter().enumerate() {
        let d = s
            .analyze
            .parse()
            .map_err(|e| format!("steps[{i}].analyze: {e}"))?;
        steps.push((s.weight, d));
    }
    if steps.is_empty() {
        return Err("at least one step is needed".into());
    }
    if kube::core::Selector::try_from(p.spec.selector.clone()).is_err() {
        return Err("selector: not a valid label selector".into());
    }
    if p.spec
        .selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.is_empty())
        && p.spec
            .selector
            .match_expressions
            .as_ref()
            .is_none_or(|m| m.is_empty())
    {
        return Err("selector: an empty selector would govern every Deployment of the namespace; name the labels".into());
    }
    Ok(Policy {
        name: p.name_any(),
        steps,
        interval,
        failure_limit: p.spec.analysis.failure_limit.max(1) as u32,
        rollback: p.spec.rollback,
    })
}

/// Runs every metric of the policy for the rollout's canary (and stable, for `compare`).
async fn run_check(
    ctx: &Ctx,
    policy: &CanaryPolicy,
    _rules: &Policy,
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
    let mut results = Vec::new();
    for m in &policy.spec.analysis.metrics {
        let (query, canary) = match vars.canary_query(m) {
            Ok(q) => {
                let reading = read(ctx, &q).await;
                (q, reading)
            }
            Err(e) => (m.query.as_str().to_string(), Reading::Error(e.to_string())),
        };
        let stable = match vars.stable_query(m) {
            None => None,
            Some(Ok(q)) => {
                let reading = read(ctx, &q).await;
                Some((q, reading))
            }
            Some(Err(e)) => Some((m.query.as_str().to_string(), Reading::Error(e.to_string()))),
        };
        results.push(analysis::judge(m, query, canary, stable));
    }
    let (verdict, message) = analysis::verdict(&results, policy.spec.analysis.on_no_data);
    Check {
        results,
        verdict,
        message,
    }
}

async fn read(ctx: &Ctx, query: &str) -> Reading {
    use crate::prom::ValueError;
    match ctx.prom.instant(query, None).await {
        Err(e) => Reading::Error(e.to_string()),
        Ok(samples) => match single_value(&samples) {
            Ok(v) => Reading::Value(v),
            Err(e @ (ValueError::Empty | ValueError::NaN)) => Reading::NoData(e.to_string()),
            Err(e) => Reading::Error(e.to_string()),
        },
    }
}

/// Puts `records` into status (replacing the same rollout), adds `totals`, keeps the newest
/// first and at most `historyLimit` ended rollouts (every running one is kept).
fn upsert(
    status: &mut CanaryPolicyStatus,
    records: Vec<RolloutRecord>,
    add: &Totals,
    p: &CanaryPolicy,
) {
    for r in records {
        match status
            .rollouts
            .iter_mut()
            .find(|x| x.deployment == r.deployment && x.started_at == r.started_at)
        {
            Some(x) => *x = r,
            None => status.rollouts.push(r),
        }
    }
    status
        .rollouts
        .sort_by_key(|r| std::cmp::Reverse(r.started_at.as_ref().map(|t| t.0.as_millisecond())));
    let limit = p.spec.history_limit.unwrap_or(10).max(1) as usize;
    let mut ended = 0;
    status.rollouts.retain(|r| {
        if !r.phase.is_terminal() {
            return true;
        }
        ended += 1;
        ended <= limit
    });
    let t = status.totals.get_or_insert_with(Totals::default);
    t.analyzed += add.analyzed;
    t.promoted += add.promoted;
    t.rolled_back += add.rolled_back;
    t.held += add.held;
    t.inconclusive += add.inconclusive;
    t.exposure_replica_minutes =
        ((t.exposure_replica_minutes + add.exposure_replica_minutes) * 100.0).round() / 100.0;
}

async fn write_status(
    ctx: &Ctx,
    api: &Api<CanaryPolicy>,
    name: &str,
    status: &CanaryPolicyStatus,
) -> Result<(), Error> {
    super::write_status(
        api,
        name,
        status,
        &[],
        ctx.settings.api_timeout,
        &ctx.metrics,
    )
    .await?;
    Ok(())
}

/// Changes the Deployment when the action asks for something it does not have yet.
async fn apply(ctx: &Ctx, ns: &str, d: &DeploymentView, action: &Action) -> Result<(), Error> {
    let ops = patch_for(d, action);
    if ops.is_empty() {
        return Ok(());
    }
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
        .map_err(|e| Error::Finalizer(format!("building the Deployment patch: {e}")))?;
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match timed(
        ctx.settings.api_timeout,
        api.patch(&d.name, &params, &Patch::<()>::Json(patch)),
    )
    .await
    {
        Ok(_) => {
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

async fn publish(ctx: &Ctx, p: &CanaryPolicy, notes: &[rollout::Note]) {
    crate::events::publish(&ctx.recorder, &p.object_ref(&()), "Rollout", notes).await;
}

/// The status figures as metrics (removed when the policy goes away).
fn export(ctx: &Ctx, ns: &str, name: &str, s: &CanaryPolicyStatus, deleting: bool) {
    let m = &ctx.metrics;
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

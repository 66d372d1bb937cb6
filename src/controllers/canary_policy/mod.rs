//! The CanaryPolicy controller: observe the policy's namespace (Deployments, ReplicaSets,
//! the other policies, the checks that are due), let `canary::decide` decide, then act:
//! status first (the memory of every rollout), then the Deployment changes and Events. A
//! finalizer gives every held Deployment back before a policy goes away.

mod act;
pub mod metrics;
mod observe;

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::Event;
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use super::runtime::{self, Kind};
use super::{Context, Error};
use crate::api::CanaryPolicy;
use crate::api::names::{CANARY_FINALIZER, HOLD_ANNOTATION};
use crate::canary::decide;

pub const KIND: Kind = Kind {
    name: "CanaryPolicy",
    finalizer: Some(CANARY_FINALIZER),
    concurrency: 4,
    backoff: Duration::from_secs(2),
    max_backoff: Duration::from_secs(60),
    waiting: Duration::from_millis(250),
};

/// The controller and the store of policies it keeps (the webhook reads the same store).
/// A Deployment's change wakes the policies of its namespace that select or hold it.
pub fn controller(ctx: &Context) -> (Controller<CanaryPolicy>, Store<CanaryPolicy>) {
    let ns = ctx.settings.namespace.as_deref();
    let c = runtime::controller::<CanaryPolicy>(&ctx.kube, ns, &KIND);
    let store = c.store();
    let policies = store.clone();
    let c = c.watches(
        ctx.kube.api_in::<Deployment>(ns),
        kube::runtime::watcher::Config::default().any_semantic(),
        move |d: Deployment| {
            let ns = d.namespace().unwrap_or_default();
            let hold = d.annotations().get(HOLD_ANNOTATION).cloned();
            runtime::in_namespace(&policies, &ns, |p| {
                crate::canary::selects(p, d.labels()) || hold.as_deref() == Some(&p.name_any())
            })
        },
    );
    (c, store)
}

/// Runs the controller until `stop`.
pub async fn run(
    controller: Controller<CanaryPolicy>,
    ctx: Arc<Context>,
    stop: watch::Receiver<bool>,
) {
    let policies = controller.store();
    let metrics = metrics::CanaryMetrics::new(&ctx.metrics);
    let reconcile: runtime::Reconcile<CanaryPolicy> = Arc::new(move |event, ctx| {
        reconcile(event, ctx, policies.clone(), metrics.clone()).boxed()
    });
    runtime::run(controller, ctx, KIND, reconcile, None, stop).await;
}

async fn reconcile(
    event: Event<CanaryPolicy>,
    ctx: Arc<Context>,
    policies: Store<CanaryPolicy>,
    metrics: metrics::CanaryMetrics,
) -> Result<Action, Error> {
    let (cached, deleting) = match event {
        Event::Apply(p) => (p, false),
        Event::Cleanup(p) => (p, true),
    };
    let Some(observed) = observe::observe(&ctx, &cached, deleting, &policies).await? else {
        return Ok(Action::await_change());
    };
    let outcome = decide::decide(&observed, ctx.clock.now());
    act::act(&ctx, &metrics, &observed, outcome).await
}

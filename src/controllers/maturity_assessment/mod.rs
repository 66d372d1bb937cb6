//! The MaturityAssessment controller: every interval it observes the assessment's namespace
//! (workloads, the operator's own ResponseTimeTargets, CanaryPolicies and DrillSchedules,
//! Prometheus's alerting rules, declared business signals), lets `model::decide` decide
//! every practice, the level, the conditions and the reports that are due, then acts: the
//! report ConfigMap first, then the status that records its time, then the metrics.

mod act;
pub mod metrics;
mod observe;
mod signals;
mod sources;

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::Event;
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use super::runtime::{self, Kind};
use super::{Context, Error};
use crate::api::MaturityAssessment;
use crate::model::decide;

pub const KIND: Kind = Kind {
    name: "MaturityAssessment",
    finalizer: None,
    concurrency: 2,
    backoff: Duration::from_secs(5),
    max_backoff: Duration::from_secs(60),
    waiting: Duration::from_secs(1),
};

/// The controller and the store of assessments it keeps.
pub fn controller(ctx: &Context) -> (Controller<MaturityAssessment>, Store<MaturityAssessment>) {
    let ns = ctx.settings.namespace.as_deref();
    let c = runtime::controller::<MaturityAssessment>(&ctx.kube, ns, &KIND);
    let store = c.store();
    (c, store)
}

/// Runs the controller until `stop`.
pub async fn run(
    controller: Controller<MaturityAssessment>,
    ctx: Arc<Context>,
    stop: watch::Receiver<bool>,
) {
    let metrics = metrics::MaturityMetrics::new(&ctx.metrics);
    let exported = metrics.clone();
    let reconcile: runtime::Reconcile<MaturityAssessment> =
        Arc::new(move |event, ctx| reconcile(event, ctx, metrics.clone()).boxed());
    // A deleted assessment is not reconciled again: its series go then.
    let forget: runtime::OnGone = Arc::new(move |ns, name| exported.forget(ns, name));
    runtime::run(controller, ctx, KIND, reconcile, Some(forget), stop).await;
}

async fn reconcile(
    event: Event<MaturityAssessment>,
    ctx: Arc<Context>,
    metrics: metrics::MaturityMetrics,
) -> Result<Action, Error> {
    let (Event::Apply(cached) | Event::Cleanup(cached)) = event;
    let now = ctx.clock.now();
    let Some(observed) = observe::observe(&ctx, &cached, now).await? else {
        return Ok(Action::requeue(ctx.settings.assessment_interval));
    };
    let mut outcome = decide::decide(&observed, now);
    if super::guard::churns(&cached.name_any()) {
        outcome.status.common.last_evaluated = Some(Time(now));
        outcome.requeue = Duration::from_millis(20);
    }
    act::act(&ctx, &metrics, &observed, outcome).await
}

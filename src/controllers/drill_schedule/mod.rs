//! The DrillSchedule controller: observe the drill (fresh), its namespace and what its run
//! needs seen, let `drill::decide` decide (schedule window with jitter or the
//! `maturity.sre.dev/run-now` annotation, the run state machine), then act: status first
//! (what must be restored is in it before anything changes), then the change where the
//! cluster differs, Events and metrics. A finalizer restores before a DrillSchedule goes
//! away; the annotation `maturity.sre.dev/drills: stop` on the DrillSchedule or its
//! namespace stops every drill there at once (restoring first).

mod act;
pub mod metrics;
mod observe;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::Event;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use tokio::sync::watch;

use super::runtime::{self, Kind};
use super::{Context, Error};
use crate::api::DrillSchedule;
use crate::api::names::DRILL_FINALIZER;
use crate::drill::decide::{self, Draws, Planned};

pub const KIND: Kind = Kind {
    name: "DrillSchedule",
    finalizer: Some(DRILL_FINALIZER),
    concurrency: 4,
    backoff: Duration::from_secs(1),
    max_backoff: Duration::from_secs(60),
    waiting: Duration::from_millis(250),
};

/// The starts drawn inside windows, in memory: drill uid -> (window start, start).
#[derive(Clone, Default)]
struct Starts(Arc<Mutex<HashMap<String, Planned>>>);

impl Starts {
    fn get(&self, uid: &str) -> Option<Planned> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(uid).copied()
    }

    fn set(&self, uid: String, p: Planned) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(uid, p);
    }
}

/// The controller and its store of DrillSchedules. A namespace's change (the stop
/// annotation) wakes the DrillSchedules in it.
pub fn controller(ctx: &Context) -> (Controller<DrillSchedule>, Store<DrillSchedule>) {
    let namespace = ctx.settings.namespace.as_deref();
    let namespaces: Api<Namespace> = Api::all(ctx.kube.client().clone());
    let ns_config = match namespace {
        Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
        None => watcher::Config::default(),
    };
    let c = runtime::controller::<DrillSchedule>(&ctx.kube, namespace, &KIND);
    let store = c.store();
    let mapper_store = store.clone();
    let c = c.watches(namespaces, ns_config, move |ns: Namespace| {
        runtime::in_namespace(&mapper_store, &ns.name_any(), |_| true)
    });
    (c, store)
}

/// Runs the controller until `stop`.
pub async fn run(
    controller: Controller<DrillSchedule>,
    ctx: Arc<Context>,
    stop: watch::Receiver<bool>,
) {
    let drills = controller.store();
    let starts = Starts::default();
    let metrics = metrics::DrillMetrics::new(&ctx.metrics);
    let reconcile: runtime::Reconcile<DrillSchedule> = Arc::new(move |event, ctx| {
        reconcile(event, ctx, drills.clone(), starts.clone(), metrics.clone()).boxed()
    });
    runtime::run(controller, ctx, KIND, reconcile, None, stop).await;
}

async fn reconcile(
    event: Event<DrillSchedule>,
    ctx: Arc<Context>,
    drills: Store<DrillSchedule>,
    starts: Starts,
    metrics: metrics::DrillMetrics,
) -> Result<Action, Error> {
    let (cached, deleting) = match event {
        Event::Apply(d) => (d, false),
        Event::Cleanup(d) => (d, true),
    };
    let now = ctx.clock.now();
    let draws = Draws {
        jitter: ctx.clock.random(),
        pick: ctx.clock.random(),
        start: ctx.clock.random(),
    };
    let observed = observe::observe(&ctx, &cached, deleting, &drills, &starts, now, &draws);
    let Some(observed) = observed.await? else {
        return Ok(Action::await_change());
    };
    let outcome = decide::decide(&observed, now, &draws);
    if let Some(p) = outcome.planned {
        starts.set(observed.drill.uid().unwrap_or_default(), p);
    }
    let next = act::act(&ctx, &metrics, &observed, &outcome).await?;
    if !deleting {
        return Ok(next);
    }
    // The finalizer is removed only once nothing is left to restore.
    match &outcome.status.active {
        Some(a) => Err(Error::Waiting(format!(
            "restoring what the drill changed before the DrillSchedule goes away (phase {:?})",
            a.phase
        ))),
        None => Ok(Action::await_change()),
    }
}

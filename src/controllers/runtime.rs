//! One way to run a controller: bounded concurrency, the finalizer
//! (when the kind has one), one error policy with per-object exponential backoff and
//! jitter (reset on success), and one reconcile timer labelled by outcome (`ok` or the
//! error's category). The ResponseTimeTarget loop, which batches across targets, uses the
//! same context and timer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::finalizer::Event;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

use super::{Context, Error, guard};

use crate::conditions::Note;
use crate::k8s::{self, Kube, Namespaced};
use crate::metrics::Metrics;

/// How a kind is run.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// The kind's name: the `controller` label of the metrics.
    pub name: &'static str,
    /// Removed only once the reconcile's Cleanup succeeded.
    pub finalizer: Option<&'static str>,
    /// Objects reconciled at once.
    pub concurrency: u16,
    /// The first retry after a failure; doubled per failure in a row, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// The retry after [`Error::Waiting`].
    pub waiting: Duration,
}

/// A reconcile: Apply (or Cleanup, for a kind with a finalizer whose object is being
/// deleted) of one object.
pub type Reconcile<K> =
    Arc<dyn Fn(Event<K>, Arc<Context>) -> BoxFuture<'static, Result<Action, Error>> + Send + Sync>;

/// Called with the namespace and name of an object that was deleted.
pub type OnGone = Arc<dyn Fn(&str, &str) + Send + Sync>;

struct Runner<K: Resource> {
    ctx: Arc<Context>,
    kind: Kind,
    reconcile: Reconcile<K>,
    failures: Mutex<HashMap<ObjectRef<K>, u32>>,
}

/// A controller of `K` watching `namespace` (None: all), with the kind's concurrency.
pub fn controller<K: Namespaced>(kube: &Kube, namespace: Option<&str>, kind: &Kind) -> Controller<K>
where
    K::DynamicType: std::hash::Hash + Eq + Clone + Default,
{
    Controller::new(
        kube.api_in::<K>(namespace),
        kube::runtime::watcher::Config::default().any_semantic(),
    )
    .with_config(Config::default().concurrency(kind.concurrency))
    .trigger_backoff(super::backoff::WatchBackoff::default())
}

/// The objects of `store` in namespace `ns` that `keep` selects, to reconcile when
/// something they watch changes.
pub fn in_namespace<K: Namespaced>(
    store: &Store<K>,
    ns: &str,
    keep: impl Fn(&K) -> bool,
) -> Vec<ObjectRef<K>> {
    store
        .state()
        .into_iter()
        .filter(|o| o.namespace().as_deref() == Some(ns) && keep(o))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// Runs `controller` until `stop`. `on_gone(namespace, name)` is called for an object that
/// was deleted (its metrics go there).
pub async fn run<K: Namespaced>(
    controller: Controller<K>,
    ctx: Arc<Context>,
    kind: Kind,
    reconcile: Reconcile<K>,
    on_gone: Option<OnGone>,
    mut stop: watch::Receiver<bool>,
) {
    let runner = Arc::new(Runner {
        ctx,
        kind,
        reconcile,
        failures: Mutex::new(HashMap::new()),
    });
    controller
        .graceful_shutdown_on(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .run(reconcile_one, error_policy, runner)
        .for_each(|r| {
            if let (Err(kube::runtime::controller::Error::ObjectNotFound(o)), Some(f)) =
                (&r, &on_gone)
            {
                f(o.namespace.as_deref().unwrap_or_default(), &o.name);
            }
            async {}
        })
        .await;
}

/// One pass over `obj`: a `reconcile` span (kind, namespace, name), the API and Prometheus
/// calls it makes as its children.
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(kind = r.kind.name, namespace = obj.namespace().unwrap_or_default(), name = obj.name_any())
)]
async fn reconcile_one<K: Namespaced>(obj: Arc<K>, r: Arc<Runner<K>>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = ObjectRef::from_obj(obj.as_ref());
    let pass = async {
        guard::failpoint(&obj.name_any());
        match r.kind.finalizer {
            None => (r.reconcile)(Event::Apply(obj), r.ctx.clone()).await,
            Some(name) => {
                let reconcile = r.reconcile.clone();
                let ctx = r.ctx.clone();
                r.ctx
                    .kube
                    .finalized(obj, name, move |e| reconcile(e, ctx))
                    .await
            }
        }
    };
    let result = guard::guarded(pass).await;
    observe(&r.ctx.metrics, r.kind.name, started, &result);
    if result.is_ok()
        && let Ok(mut f) = r.failures.lock()
    {
        f.remove(&key);
    }
    result
}

/// The one reconcile timer: duration by controller and outcome, and failures counted.
pub fn observe<T>(
    metrics: &Metrics,
    controller: &str,
    started: Instant,
    result: &Result<T, Error>,
) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => e.category(),
    };
    metrics
        .cycle_duration
        .with_label_values(&[controller, outcome])
        .observe(started.elapsed().as_secs_f64());
    if let Err(e) = result
        && !matches!(e, Error::Waiting(_))
    {
        metrics
            .reconcile_errors
            .with_label_values(&[controller, e.category()])
            .inc();
    }
}

fn error_policy<K: Namespaced>(obj: Arc<K>, e: &Error, r: Arc<Runner<K>>) -> Action {
    if let Error::Waiting(why) = e {
        tracing::info!(kind = r.kind.name, object = %obj.name_any(), "{why}");
        return Action::requeue(r.kind.waiting);
    }
    let failures = match r.failures.lock() {
        Ok(mut f) => {
            let n = f.entry(ObjectRef::from_obj(obj.as_ref())).or_insert(0);
            *n = n.saturating_add(1);
            *n
        }
        Err(_) => 1,
    };
    let delay = super::backoff::retry(
        r.kind.backoff,
        r.kind.max_backoff,
        failures,
        r.ctx.clock.random(),
    );
    tracing::warn!(
        kind = r.kind.name,
        namespace = obj.namespace().unwrap_or_default(),
        object = %obj.name_any(),
        category = e.category(),
        error = %e,
        failures,
        retry_in = ?delay,
        "reconcile failed; retrying"
    );
    // A panic is that object's condition, until a pass succeeds and writes its own Ready.
    if let Error::Panicked(why) = e {
        let (kube, obj, now) = (r.ctx.kube.clone(), obj.clone(), r.ctx.clock.now());
        let cond = crate::conditions::Cond::new(
            "Ready",
            crate::conditions::Status::False,
            "InternalError",
            // The same text on every retry: a condition that changed each time would be a
            // write, whose watch event would retry at once, ahead of the backoff.
            format!(
                "the operator failed on this object (a bug, please report it): {why}; retrying with backoff"
            ),
        );
        tokio::spawn(async move {
            if let Err(e) = kube.set_condition(obj.as_ref(), cond, now).await {
                tracing::warn!(error = %e, "could not write the InternalError condition");
            }
        });
    }
    // The first failure of a streak is told on the object, its category as the reason
    // (`kubectl describe` shows a missing permission); the retries are not.
    if failures == 1 && !matches!(e, Error::Kube(k8s::Error::NotLeader(_))) {
        let kube = r.ctx.kube.clone();
        let note = Note::warning(
            e.category(),
            format!("reconciling failed, retrying in {delay:?} and backing off: {e}"),
        );
        tokio::spawn(async move { kube.publish(obj.as_ref(), "Reconcile", &[note]).await });
    }
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_is_not_a_failure_category() {
        assert_eq!(Error::Waiting("restoring".into()).category(), "Waiting");
        assert_eq!(
            Error::Kube(k8s::Error::Timeout(Duration::from_secs(1))).category(),
            "Timeout"
        );
    }
}

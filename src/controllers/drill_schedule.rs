//! The DrillSchedule controller: decides when a drill is due (schedule window with
//! jitter, or the `maturity.sre.dev/run-now` annotation), resolves the target, runs the
//! steady-state and abort checks against Prometheus, and drives `drill::run`: status is
//! written before every change, the change is applied only when the cluster differs, and
//! a finalizer restores before a DrillSchedule goes away. The annotation
//! `maturity.sre.dev/drills: stop` on the DrillSchedule or its namespace stops every drill
//! there at once (restoring first).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::finalizer::Event as Finalizer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use tokio::sync::watch;

use super::runtime::{self, Context, Kind};
use crate::api::DrillSchedule;
use crate::api::drill_schedule::{
    Check, DrillScheduleStatus, DrillSummary, RunRecord, RunResult, WorkloadKind,
};
use crate::api::names::FIELD_MANAGER;
use crate::conditions::{self, Cond, Status};
use crate::drill::run::{self, CheckOutcome, Checks, Effect, Fault, Plan, TargetView};
use crate::drill::schedule::{self, Schedule};
use crate::prom::{single_value, template};

pub use crate::api::names::{DRILL_FINALIZER as FINALIZER, RUN_NOW_ANNOTATION, STOP_ANNOTATION};
const IDLE_REQUEUE: Duration = Duration::from_secs(300);

use super::runtime::Error;

pub const KIND: Kind = Kind {
    name: "DrillSchedule",
    finalizer: Some(FINALIZER),
    concurrency: 4,
    backoff: Duration::from_secs(1),
    max_backoff: Duration::from_secs(60),
    waiting: Duration::from_millis(250),
};

struct Ctx {
    ctx: Arc<Context>,
    drills: Store<DrillSchedule>,
    /// Exact starts drawn inside announced windows: (drill uid) -> (window start, start).
    planned: Arc<Mutex<HashMap<String, (Timestamp, Timestamp)>>>,
}

impl std::ops::Deref for Ctx {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.ctx
    }
}

/// The controller and its store of DrillSchedules.
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
        let name = ns.name_any();
        mapper_store
            .state()
            .into_iter()
            .filter(|d| d.namespace().as_deref() == Some(name.as_str()))
            .map(|d| ObjectRef::from_obj(d.as_ref()))
            .collect::<Vec<_>>()
    });
    (c, store)
}

pub async fn run(
    controller: Controller<DrillSchedule>,
    ctx: Arc<Context>,
    stop: watch::Receiver<bool>,
) {
    let drills = controller.store();
    let planned = Arc::new(Mutex::new(HashMap::new()));
    let reconcile: runtime::Reconcile<DrillSchedule> = Arc::new(move |event, ctx| {
        let c = Ctx {
            ctx,
            drills: drills.clone(),
            planned: planned.clone(),
        };
        async move { reconcile(event, c).await }.boxed()
    });
    runtime::run(controller, ctx, KIND, reconcile, None, stop).await;
}

async fn reconcile(event: Finalizer<DrillSchedule>, ctx: Ctx) -> Result<Requeue, Error> {
    match event {
        Finalizer::Apply(d) => sync(&ctx, &d, None).await,
        Finalizer::Cleanup(d) => {
            sync(&ctx, &d, Some("the DrillSchedule is being deleted")).await?;
            // The finalizer is removed only once nothing is left to restore.
            let left = ctx
                .kube
                .get::<DrillSchedule>(&d.namespace().unwrap_or_default(), &d.name_any())
                .await?
                .and_then(|d| d.status)
                .and_then(|s| s.active);
            match left {
                Some(a) => Err(Error::Waiting(format!(
                    "restoring what the drill changed before the DrillSchedule goes away (phase {:?})",
                    a.phase
                ))),
                None => Ok(Requeue::await_change()),
            }
        }
    }
}

/// The spec parsed; errors are a sentence for the Ready condition.
fn parse(d: &DrillSchedule) -> Result<(Schedule, Plan), String> {
    let s = Schedule::parse(d)?;
    let spec = &d.spec;
    let dur = |v: &crate::api::common::DurationString, what: &str| {
        v.parse().map_err(|e| format!("{what}: {e}"))
    };
    let fault = if let Some(k) = &spec.action.pod_kill {
        Fault::PodKill {
            count: k.count,
            percent: k.percent,
        }
    } else if let Some(sd) = &spec.action.scale_down {
        Fault::ScaleDown {
            replicas: sd.replicas,
            hold: dur(&sd.hold, "scaleDown.hold")?,
        }
    } else if let Some(f) = &spec.action.failover {
        Fault::Failover {
            service: f.service.clone(),
            to_selector: f.to_selector.clone(),
            hold: dur(&f.hold, "failover.hold")?,
        }
    } else {
        return Err("action must set one of podKill, scaleDown or failover".into());
    };
    let check_interval = match &spec.check_interval {
        Some(c) => dur(c, "checkInterval")?,
        None => Duration::from_secs(15),
    };
    if check_interval.is_zero() {
        return Err("checkInterval must be longer than zero".into());
    }
    Ok((
        s,
        Plan {
            fault,
            check_interval,
            recovery_deadline: dur(&spec.recovery_deadline, "recoveryDeadline")?,
            has_steady_state: !spec.steady_state.is_empty(),
        },
    ))
}

/// One pass. `deleting`: the reason to stop a run under way and start none.
async fn sync(ctx: &Ctx, cached: &DrillSchedule, deleting: Option<&str>) -> Result<Requeue, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let api: Api<DrillSchedule> = ctx.kube.api(&ns);
    let Some(drill) = ctx.kube.call(api.get_opt(&name)).await? else {
        return Ok(Requeue::await_change());
    };
    let uid = drill.uid().unwrap_or_default();
    let mut status = drill.status.clone().unwrap_or_default();
    let mut written = status.clone();
    let now = ctx.clock.now();
    let parsed = parse(&drill);
    let stop = match deleting {
        Some(why) => Some(why.to_string()),
        None => stop_reason(ctx, &drill, &ns).await?,
    };
    let mut requeue = IDLE_REQUEUE;

    if let Some(active) = status.active.clone() {
        let (plan, stop) = match &parsed {
            Ok((_, p)) => (p.clone(), stop.clone()),
            Err(e) => (
                // Only restoring is left to do: the fault is never applied again.
                Plan {
                    fault: Fault::PodKill {
                        count: None,
                        percent: None,
                    },
                    check_interval: Duration::from_secs(15),
                    recovery_deadline: Duration::from_secs(0),
                    has_steady_state: false,
                },
                Some(
                    stop.clone()
                        .unwrap_or_else(|| format!("the spec is no longer valid: {e}")),
                ),
            ),
        };
        let target = view(ctx, &ns, &active.target, &plan).await?;
        let mut step = run::advance(
            &plan,
            &active,
            target.as_ref(),
            now,
            &ctx.instance,
            stop.as_deref(),
            None,
        );
        if step.check_due {
            let checks = Checks {
                steady: run_checks(ctx, &drill.spec.steady_state, &ns, &active.target).await,
                abort: run_checks(ctx, &drill.spec.abort_when, &ns, &active.target).await,
            };
            step = run::advance(
                &plan,
                &active,
                target.as_ref(),
                ctx.clock.now(),
                &ctx.instance,
                stop.as_deref(),
                Some(&checks),
            );
        }
        status.active = step.active.clone();
        if let Some(r) = &step.finished {
            record(&mut status, r.clone(), &drill);
        }
        if status != written {
            write_status(ctx, &drill, &written, &status).await?;
            written = status.clone();
        }
        if let (Some(effect), Some(t)) = (&step.effect, &target) {
            apply(ctx, &ns, &active.target, t, effect).await?;
        }
        publish(ctx, &drill, &step.notes).await;
        if let Some(r) = step.requeue {
            requeue = requeue.min(r.max(Duration::from_millis(100)));
        }
        if step.finished.is_some() {
            requeue = Duration::ZERO.max(Duration::from_millis(100));
        }
    } else if deleting.is_none()
        && let Ok((sched, plan)) = &parsed
    {
        let run_now = drill
            .annotations()
            .get(RUN_NOW_ANNOTATION)
            .filter(|v| Some(*v) != status.last_run_now.as_ref())
            .cloned();
        let mut due = false;
        if let Some(token) = run_now {
            status.last_run_now = Some(token);
            due = stop.is_none();
        }
        if stop.is_some() || drill.spec.suspend {
            status.next_window = None;
        } else {
            let window = match &status.next_window {
                Some(w) => schedule::Window {
                    start: w.start.0,
                    end: w.end.0,
                },
                None => match sched.next_window(now) {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::warn!(drill = %name, error = %e, "no next window");
                        return Ok(Requeue::requeue(IDLE_REQUEUE));
                    }
                },
            };
            let planned = {
                let mut p = ctx.planned.lock().unwrap_or_else(|e| e.into_inner());
                let entry = p.entry(uid.clone()).or_insert((window.start, window.start));
                if entry.0 != window.start {
                    *entry = (window.start, window.start);
                }
                if entry.1 == window.start && sched.jitter > Duration::ZERO {
                    // Drawn once per window (again after a restart, inside the same window).
                    let from = if now > window.start {
                        now.min(window.end)
                    } else {
                        window.start
                    };
                    entry.1 = sched.pick_start(
                        schedule::Window {
                            start: from,
                            end: window.end,
                        },
                        ctx.clock.random(),
                    );
                }
                entry.1
            };
            let missed_after = add(window.end, sched.starting_deadline);
            let mut next_from = None;
            if now > missed_after {
                let r = RunRecord {
                    started_at: Time(now),
                    result: RunResult::Skipped,
                    target: None,
                    recovery_seconds: None,
                    restore_seconds: None,
                    finished_at: Some(Time(now)),
                    reason: Some(format!(
                        "missed the window {} to {} by more than the starting deadline",
                        window.start, window.end
                    )),
                };
                record(&mut status, r, &drill);
                next_from = Some(now);
            } else if now >= planned {
                due = true;
                next_from = Some(window.end);
            } else {
                requeue = requeue.min(Duration::from_millis(
                    (planned.as_millisecond() - now.as_millisecond()).max(100) as u64,
                ));
            }
            let window = match next_from {
                Some(after) => sched.next_window(after).unwrap_or(window),
                None => window,
            };
            // A new window's start is drawn on the next pass.
            let shown = next_from.is_none().then_some(planned);
            status.next_window = Some(schedule::window_status(window, shown, drill.spec.announce));
        }
        if due {
            let step = start_run(ctx, &drill, plan, &ns, now).await?;
            status.active = step.active.clone();
            if let Some(r) = &step.finished {
                record(&mut status, r.clone(), &drill);
            }
            publish(ctx, &drill, &step.notes).await;
            requeue = Duration::from_millis(100);
        }
    }

    let generation = drill.metadata.generation;
    let ready = match (&parsed, &stop) {
        (Err(e), _) => Cond::new("Ready", Status::False, "InvalidSpec", e.clone()),
        (Ok(_), Some(why)) if deleting.is_none() => {
            Cond::new("Ready", Status::True, "Stopped", why.clone())
        }
        (Ok(_), _) if drill.spec.suspend => Cond::new(
            "Ready",
            Status::True,
            "Suspended",
            "spec.suspend is true: no scheduled drills (run-now still works)",
        ),
        (Ok(_), _) => Cond::new(
            "Ready",
            Status::True,
            "Scheduled",
            if drill.spec.announce {
                "the next drill's start is in status.nextWindow.plannedStart".to_string()
            } else {
                "the next drill starts at an unannounced time inside status.nextWindow".to_string()
            },
        ),
    };
    status.common.conditions =
        conditions::merge(&status.common.conditions, &[ready], generation, &Time(now));
    status.common.observed_generation = generation;
    if status != written {
        status.common.last_evaluated = Some(Time(now));
        write_status(ctx, &drill, &written, &status).await?;
    }
    export(ctx, &ns, &name, &status, deleting.is_some());
    Ok(Requeue::requeue(requeue))
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_millisecond(t.as_millisecond() + d.as_millis() as i64).unwrap_or(t)
}

/// Why drills must stop here now, if they must (the stop annotation).
async fn stop_reason(ctx: &Ctx, d: &DrillSchedule, ns: &str) -> Result<Option<String>, Error> {
    if d.annotations().get(STOP_ANNOTATION).map(String::as_str) == Some("stop") {
        return Ok(Some(format!(
            "stopped by the {STOP_ANNOTATION}=stop annotation on the DrillSchedule"
        )));
    }
    let namespaces: Api<Namespace> = Api::all(ctx.kube.client().clone());
    let n = ctx.kube.call(namespaces.get_opt(ns)).await?;
    if n.as_ref()
        .and_then(|n| n.annotations().get(STOP_ANNOTATION))
        .map(String::as_str)
        == Some("stop")
    {
        return Ok(Some(format!(
            "stopped by the {STOP_ANNOTATION}=stop annotation on namespace {ns}"
        )));
    }
    Ok(None)
}

/// Resolves the target, runs the pre-checks and starts (or skips) a run.
async fn start_run(
    ctx: &Ctx,
    d: &DrillSchedule,
    plan: &Plan,
    ns: &str,
    now: Timestamp,
) -> Result<run::Step, Error> {
    let t = &d.spec.target;
    let kind = match t.kind {
        WorkloadKind::Deployment => "Deployment",
        WorkloadKind::StatefulSet => "StatefulSet",
    };
    let name = match (&t.name, &t.selector) {
        (Some(n), _) => Some(n.clone()),
        (None, Some(sel)) => {
            let mut names = list_names(ctx, ns, t.kind, sel).await?;
            names.sort();
            (!names.is_empty()).then(|| {
                let i = (ctx.clock.random() % names.len() as u64) as usize;
                names.swap_remove(i)
            })
        }
        (None, None) => None,
    };
    let skip = |why: String| run::Step {
        finished: Some(RunRecord {
            started_at: Time(now),
            result: RunResult::Skipped,
            target: None,
            recovery_seconds: None,
            restore_seconds: None,
            finished_at: Some(Time(now)),
            reason: Some(why.clone()),
        }),
        notes: vec![run::Note {
            reason: "DrillSkipped".into(),
            message: why,
            warning: true,
        }],
        ..Default::default()
    };
    let Some(name) = name else {
        return Ok(skip(format!("no {kind} matches the target")));
    };
    let target_name = format!("{kind}/{name}");
    // One drill at a time per target.
    let busy = ctx.drills.state().into_iter().find(|o| {
        o.namespace().as_deref() == Some(ns)
            && o.name_any() != d.name_any()
            && o.status
                .as_ref()
                .and_then(|s| s.active.as_ref())
                .is_some_and(|a| a.target == target_name)
    });
    if let Some(other) = busy {
        return Ok(skip(format!(
            "{target_name} is already being drilled by {}",
            other.name_any()
        )));
    }
    let Some(view) = view(ctx, ns, &target_name, plan).await? else {
        return Ok(skip(format!("{target_name} not found")));
    };
    let pre = run_checks(ctx, &d.spec.steady_state, ns, &target_name).await;
    Ok(run::start(
        plan,
        &view,
        &pre,
        now,
        &ctx.instance,
        ctx.clock.random(),
    ))
}

async fn list_names(
    ctx: &Ctx,
    ns: &str,
    kind: WorkloadKind,
    sel: &LabelSelector,
) -> Result<Vec<String>, Error> {
    let s = kube::core::Selector::try_from(sel.clone())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let lp = ListParams::default().labels(&s);
    Ok(match kind {
        WorkloadKind::Deployment => ctx
            .kube
            .call(ctx.kube.api::<Deployment>(ns).list(&lp))
            .await?
            .items
            .iter()
            .map(|o| o.name_any())
            .collect(),
        WorkloadKind::StatefulSet => ctx
            .kube
            .call(ctx.kube.api::<StatefulSet>(ns).list(&lp))
            .await?
            .items
            .iter()
            .map(|o| o.name_any())
            .collect(),
    })
}

/// What is observed of `Kind/name` (and of the failover Service); None when it is gone.
async fn view(ctx: &Ctx, ns: &str, target: &str, plan: &Plan) -> Result<Option<TargetView>, Error> {
    let (kind, name) = target.split_once('/').unwrap_or(("Deployment", target));
    let (replicas, available, selector) = match kind {
        "StatefulSet" => {
            let Some(s) = ctx
                .kube
                .call(ctx.kube.api::<StatefulSet>(ns).get_opt(name))
                .await?
            else {
                return Ok(None);
            };
            let spec = s.spec.clone().unwrap_or_default();
            let st = s.status.clone().unwrap_or_default();
            let r = spec.replicas.unwrap_or(1);
            let ok = st.observed_generation.unwrap_or(0) >= s.metadata.generation.unwrap_or(0)
                && st.available_replicas.unwrap_or(0) >= r
                && st.ready_replicas.unwrap_or(0) >= r;
            (r, ok, spec.selector)
        }
        _ => {
            let Some(dp) = ctx
                .kube
                .call(ctx.kube.api::<Deployment>(ns).get_opt(name))
                .await?
            else {
                return Ok(None);
            };
            let spec = dp.spec.clone().unwrap_or_default();
            let st = dp.status.clone().unwrap_or_default();
            let r = spec.replicas.unwrap_or(1);
            let ok = st.observed_generation.unwrap_or(0) >= dp.metadata.generation.unwrap_or(0)
                && st.updated_replicas.unwrap_or(0) == r
                && st.available_replicas.unwrap_or(0) == r
                && st.replicas.unwrap_or(0) == r;
            (r, ok, spec.selector)
        }
    };
    let s = kube::core::Selector::try_from(selector)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let pods = ctx
        .kube
        .call(
            ctx.kube
                .api::<Pod>(ns)
                .list(&ListParams::default().labels(&s)),
        )
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| p.name_any())
        .collect();
    let service_selector = match &plan.fault {
        Fault::Failover { service, .. } => ctx
            .kube
            .call(ctx.kube.api::<Service>(ns).get_opt(service))
            .await?
            .map(|s| s.spec.and_then(|s| s.selector).unwrap_or_default()),
        _ => None,
    };
    Ok(Some(TargetView {
        name: target.to_string(),
        replicas,
        available,
        pods,
        service_selector,
    }))
}

/// Runs `checks` (placeholders `{{namespace}}`, `{{target}}`): Breached when any value is
/// out of bounds, Unknown when any has no value, Holds otherwise (and with no checks).
async fn run_checks(ctx: &Ctx, checks: &[Check], ns: &str, target: &str) -> CheckOutcome {
    let vars: BTreeMap<&str, String> = BTreeMap::from([
        ("namespace", ns.to_string()),
        (
            "target",
            target
                .split_once('/')
                .map(|(_, n)| n)
                .unwrap_or(target)
                .to_string(),
        ),
    ]);
    let mut breached = Vec::new();
    let mut unknown = Vec::new();
    for c in checks {
        let q = match template::render(c.query.as_str(), &vars) {
            Ok(q) => q,
            Err(e) => {
                unknown.push(format!("{}: {e}", c.name));
                continue;
            }
        };
        match ctx
            .prom
            .instant(&q, None)
            .await
            .map_err(|e| e.to_string())
            .and_then(|s| single_value(&s).map_err(|e| e.to_string()))
        {
            Ok(v) => {
                if let Some(max) = c.max
                    && v > max
                {
                    breached.push(format!("{} {v} > {max}", c.name));
                }
                if let Some(min) = c.min
                    && v < min
                {
                    breached.push(format!("{} {v} < {min}", c.name));
                }
            }
            Err(e) => unknown.push(format!("{}: {e}", c.name)),
        }
    }
    if !breached.is_empty() {
        CheckOutcome::Breached(breached.join("; "))
    } else if !unknown.is_empty() {
        CheckOutcome::Unknown(unknown.join("; "))
    } else {
        CheckOutcome::Holds
    }
}

/// Applies an effect when the cluster differs from it.
async fn apply(
    ctx: &Ctx,
    ns: &str,
    target: &str,
    view: &TargetView,
    effect: &Effect,
) -> Result<(), Error> {
    let (kind, name) = target.split_once('/').unwrap_or(("Deployment", target));
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let scale_pp = pp.clone();
    let scale = |n: i32| async move {
        let pp = scale_pp.clone();
        let patch = serde_json::json!({"spec": {"replicas": n}});
        if kind == "StatefulSet" {
            ctx.kube
                .call(
                    ctx.kube
                        .api::<StatefulSet>(ns)
                        .patch(name, &pp, &Patch::Merge(&patch)),
                )
                .await
                .map(|_| ())
        } else {
            ctx.kube
                .call(
                    ctx.kube
                        .api::<Deployment>(ns)
                        .patch(name, &pp, &Patch::Merge(&patch)),
                )
                .await
                .map(|_| ())
        }
    };
    let select = |service: String, selector: BTreeMap<String, String>| {
        let pp = pp.clone();
        async move {
            let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
                {"op": "replace", "path": "/spec/selector", "value": selector}
            ]))
            .expect("static patch shape");
            ctx.kube
                .call(
                    ctx.kube
                        .api::<Service>(ns)
                        .patch(&service, &pp, &Patch::<()>::Json(patch)),
                )
                .await
                .map(|_| ())
        }
    };
    match effect {
        Effect::KillPods(pods) => {
            let api = ctx.kube.api::<Pod>(ns);
            for p in pods {
                if view.pods.contains(p) {
                    match ctx.kube.call(api.delete(p, &DeleteParams::default())).await {
                        Ok(_) => tracing::info!(namespace = ns, pod = %p, "drill: pod deleted"),
                        Err(e) if e.code() == Some(404) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Effect::Scale(n) => {
            if view.replicas != *n {
                scale(*n).await?;
            }
        }
        Effect::Select { service, selector } => {
            if view.service_selector.as_ref() != Some(selector) {
                select(service.clone(), selector.clone()).await?;
            }
        }
        Effect::Restore(saved) => {
            if let Some(r) = saved.replicas
                && view.replicas != r
            {
                scale(r).await?;
            }
            if let (Some(svc), Some(sel)) = (&saved.service, &saved.service_selector)
                && view.service_selector.as_ref() != Some(sel)
            {
                select(svc.clone(), sel.clone()).await?;
            }
        }
    }
    Ok(())
}

fn record(status: &mut DrillScheduleStatus, r: RunRecord, d: &DrillSchedule) {
    run::tally(status.summary.get_or_insert_with(DrillSummary::default), &r);
    status.runs.insert(0, r);
    status
        .runs
        .truncate(d.spec.history_limit.unwrap_or(10).max(1) as usize);
}

/// Status only when it changed (server-side apply: a finished run's `active` and a window
/// no longer planned go with the fields left out).
async fn write_status(
    ctx: &Ctx,
    drill: &DrillSchedule,
    old: &DrillScheduleStatus,
    new: &DrillScheduleStatus,
) -> Result<(), Error> {
    ctx.kube.write_status_if_changed(drill, old, new).await?;
    Ok(())
}

async fn publish(ctx: &Ctx, d: &DrillSchedule, notes: &[run::Note]) {
    ctx.kube.publish(d, "Drill", notes).await;
}

fn export(ctx: &Ctx, ns: &str, name: &str, s: &DrillScheduleStatus, deleting: bool) {
    let m = &ctx.metrics;
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

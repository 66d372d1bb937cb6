//! Every read of a DrillSchedule pass: the DrillSchedule (fresh, never from the cache: its
//! status is the memory of the run under way), its namespace (the stop annotation), the
//! namespace's DrillSchedules, the start drawn in memory for its window, and as
//! `drill::decide` asks: the run's target and its due checks, or the target of a run due to
//! start and the steady-state checks before it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::super::{Context, Error};
use super::Starts;
use crate::api::DrillSchedule;
use crate::api::drill_schedule::Check;
use crate::drill::decide::{self, Checked, Draws, NodeReads, Observed, StartReads};
use crate::drill::run::{CheckOutcome, Checks, NodeView, ReadyPod, TargetView};
use crate::k8s::WorkloadRef;
use crate::prom::{single_value, template};

/// None when the DrillSchedule is gone.
pub async fn observe(
    ctx: &Context,
    cached: &DrillSchedule,
    deleting: bool,
    drills: &Store<DrillSchedule>,
    starts: &Starts,
    now: Timestamp,
    draws: &Draws,
) -> Result<Option<Observed>, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let Some(drill) = ctx
        .kube
        .get::<DrillSchedule>(&ns, &cached.name_any())
        .await?
    else {
        return Ok(None);
    };
    let mut o = Observed {
        planned: starts.get(&drill.uid().unwrap_or_default()),
        drill,
        deleting,
        namespace: None,
        drills: drills
            .state()
            .iter()
            .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
            .map(|d| d.as_ref().clone())
            .collect(),
        instance: ctx.instance.clone(),
        target: None,
        checks: None,
        start: None,
    };
    if decide::stop_reason(&o).is_none() {
        o.namespace = ctx.kube.get_cluster::<Namespace>(&ns).await?;
    }
    let active = o.drill.status.as_ref().and_then(|s| s.active.clone());
    if let Some(a) = active {
        o.target = view(ctx, &o.drill, &a.target).await?;
        if decide::check_due(&o, now) {
            let spec = &o.drill.spec;
            let checks = Checks {
                steady: run_checks(ctx, &spec.steady_state, &ns, &a.target).await,
                abort: run_checks(ctx, &spec.abort_when, &ns, &a.target).await,
            };
            o.checks = Some(Checked {
                checks,
                at: ctx.clock.now(),
            });
        }
    } else if decide::start_due(&o, now, draws) {
        o.start = Some(start(ctx, &o, draws.pick).await?);
    }
    Ok(Some(o))
}

/// The target of a run about to start: resolved, and unless another drill has it, seen and
/// pre-checked.
async fn start(ctx: &Context, o: &Observed, pick: u64) -> Result<StartReads, Error> {
    let ns = o.drill.namespace().unwrap_or_default();
    let spec = serde_json::to_value(&o.drill.spec).unwrap_or_default();
    let verdict = ctx
        .authorized(
            "DrillSchedule",
            &ns,
            o.drill.metadata.annotations.as_ref(),
            &spec,
            &decide::needs(&o.drill),
        )
        .await?;
    if let Some(why) = verdict.denied() {
        return Ok(StartReads {
            denied: Some(why.to_string()),
            ..Default::default()
        });
    }
    let t = &o.drill.spec.target;
    let name = match (&t.name, &t.selector) {
        (Some(n), _) => Some(n.clone()),
        (None, Some(sel)) => {
            let labels = crate::selector::query(sel);
            let found = ctx.kube.workloads(&ns, t.kind, &labels).await?;
            decide::pick(
                found
                    .into_iter()
                    .map(|m| m.name.unwrap_or_default())
                    .collect(),
                pick,
            )
        }
        (None, None) => None,
    };
    let Some(name) = name else {
        return Ok(StartReads::default());
    };
    let target = format!("{}/{name}", t.kind.as_str());
    let mut reads = StartReads {
        target: Some(target.clone()),
        ..Default::default()
    };
    if decide::busy_with(o, &target).is_some() {
        return Ok(reads);
    }
    if let Some(view) = view(ctx, &o.drill, &target).await? {
        let pre = run_checks(ctx, &o.drill.spec.steady_state, &ns, &target).await;
        reads.seen = Some((view, pre));
    }
    Ok(reads)
}

/// What is seen of `Kind/name` (and of a failover's Service); None when it is gone.
async fn view(ctx: &Context, d: &DrillSchedule, target: &str) -> Result<Option<TargetView>, Error> {
    let ns = d.namespace().unwrap_or_default();
    let Some(w) = ctx.kube.workload(&ns, &WorkloadRef::parse(target)).await? else {
        return Ok(None);
    };
    let service_selector = match decide::failover_service(d) {
        Some(service) => ctx
            .kube
            .get::<Service>(&ns, &service)
            .await?
            .map(|s| s.spec.and_then(|s| s.selector).unwrap_or_default()),
        None => None,
    };
    let pod_nodes: BTreeMap<String, String> = w
        .pods
        .iter()
        .filter(|p| p.running)
        .filter_map(|p| Some((p.name.clone(), p.node.clone()?)))
        .collect();
    // The zone of each node matters only to a zone failure about to start (Labelled).
    let (nodes, zone_label) = match decide::nodes_to_read(d) {
        NodeReads::None => (Vec::new(), None),
        NodeReads::Named(names) => (ctx.kube.nodes_named(&names).await?, None),
        NodeReads::OfPods => {
            let mut names: Vec<String> = pod_nodes.values().cloned().collect();
            names.sort();
            names.dedup();
            (ctx.kube.nodes_named(&names).await?, None)
        }
        NodeReads::Labelled(label) => (ctx.kube.nodes_labelled(&label).await?, Some(label)),
    };
    let nodes = nodes
        .into_iter()
        .map(|n| NodeView {
            zone: zone_label.as_ref().and_then(|l| n.labels().get(l).cloned()),
            unschedulable: n
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false),
            name: n.name_any(),
        })
        .collect();
    Ok(Some(TargetView {
        name: target.to_string(),
        pod_nodes,
        nodes,
        replicas: w.replicas,
        available: w.available,
        pods: w
            .pods
            .iter()
            .filter(|p| p.running)
            .map(|p| p.name.clone())
            .collect(),
        uids: w
            .pods
            .iter()
            .map(|p| (p.name.clone(), p.uid.clone()))
            .collect(),
        ready: w
            .pods
            .iter()
            .filter_map(|p| {
                Some(ReadyPod {
                    name: p.name.clone(),
                    uid: p.uid.clone(),
                    since: p.ready_since?,
                })
            })
            .collect(),
        service_selector,
    }))
}

/// Runs `checks` (placeholders `{{namespace}}`, `{{target}}`; each scoped to the drill's
/// namespace): Breached when any value is out of bounds, Unknown when any has no value (or
/// may not be read), Holds otherwise (and with no checks).
async fn run_checks(ctx: &Context, checks: &[Check], ns: &str, target: &str) -> CheckOutcome {
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
        let rendered = template::render(c.query.as_str(), &vars).map_err(|e| e.to_string());
        let q = match rendered.and_then(|q| ctx.scoped(&q, ns).map_err(|e| e.to_string())) {
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

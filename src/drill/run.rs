//! The run state machine of a DrillSchedule: from the run in status, what is observed of
//! the target, and check results, to the next run state, the one effect to apply, and the
//! record of a finished run.
//!
//! The caller writes the returned state to status *before* applying the effect, and a run
//! is only recorded as finished once the restored state has been observed, so no crash
//! can lose what must be put back.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

use crate::api::drill_schedule::{
    ActiveRun, DrillPhase, DrillSummary, RunRecord, RunResult, SavedState,
};
use crate::clock::{add, millis_between, round};

/// What the drill does, parsed from the spec.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Delete pods: an exact count or a percent of the target's pods (rounded up).
    PodKill {
        count: Option<i32>,
        percent: Option<i32>,
    },
    ScaleDown {
        replicas: i32,
        hold: Duration,
    },
    Failover {
        service: String,
        to_selector: BTreeMap<String, String>,
        hold: Duration,
    },
    /// Cordon a node running the target and delete the target's pods on it.
    NodeFailure {
        hold: Duration,
    },
    /// The same for every node of a zone (`label`'s value `zone`, or a drawn one).
    ZoneFailure {
        zone: Option<String>,
        label: String,
        hold: Duration,
    },
}

impl Fault {
    fn hold(&self) -> Option<Duration> {
        match self {
            Fault::PodKill { .. } => None,
            Fault::ScaleDown { hold, .. }
            | Fault::Failover { hold, .. }
            | Fault::NodeFailure { hold }
            | Fault::ZoneFailure { hold, .. } => Some(*hold),
        }
    }
}

/// A node as a node or zone failure sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeView {
    pub name: String,
    /// The value of the zone label (of the drill's `zoneLabel`), if it has one.
    pub zone: Option<String>,
    pub unschedulable: bool,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub fault: Fault,
    pub check_interval: Duration,
    pub recovery_deadline: Duration,
    /// Steady-state checks are defined (otherwise only availability counts).
    pub has_steady_state: bool,
    /// `abortWhen` checks are defined.
    pub has_abort_when: bool,
}

/// Rounds of checks in a row that cannot be read before a run is aborted.
pub const UNKNOWN_LIMIT: u32 = 3;

/// A pod of the target that is Ready (and not being deleted).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadyPod {
    pub name: String,
    pub uid: String,
    /// Its Ready condition's last transition (whole seconds, as the API keeps it).
    pub since: Timestamp,
}

/// What is observed of the target (and the Service of a failover).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TargetView {
    /// `Deployment/web`.
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// Every desired replica is available on the current revision.
    pub available: bool,
    /// Names of the target's running pods.
    pub pods: Vec<String>,
    /// Uids of the target's pods (not being deleted), by name.
    pub uids: BTreeMap<String, String>,
    /// Its Ready pods, with when each became Ready.
    pub ready: Vec<ReadyPod>,
    /// The node of each running pod, by pod name.
    pub pod_nodes: BTreeMap<String, String>,
    /// The nodes read for a node or zone failure (see `decide::nodes_to_read`).
    pub nodes: Vec<NodeView>,
    /// The failover Service's selector (None: no such Service).
    pub service_selector: Option<BTreeMap<String, String>>,
}

/// Result of one round of checks.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckOutcome {
    Holds,
    Breached(String),
    /// Nothing to judge (no data, or the query failed).
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Checks {
    /// `steadyState` checks.
    pub steady: CheckOutcome,
    /// `abortWhen` checks.
    pub abort: CheckOutcome,
}

/// A change to make in the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    KillPods(Vec<String>),
    Scale(i32),
    Select {
        service: String,
        selector: BTreeMap<String, String>,
    },
    /// Cordon `cordon` (those not cordoned yet) and delete the pods `kill`.
    FailNodes {
        cordon: Vec<String>,
        kill: Vec<String>,
    },
    /// Put back what `saved` holds (replicas, a Service selector).
    Restore(SavedState),
}

pub use crate::conditions::Note;

#[derive(Debug, Clone, Default)]
pub struct Step {
    /// The run state to write (None: no run under way).
    pub active: Option<ActiveRun>,
    /// A finished run to record.
    pub finished: Option<RunRecord>,
    pub effect: Option<Effect>,
    pub notes: Vec<Note>,
    /// Run the checks and call again with them.
    pub check_due: bool,
    pub requeue: Option<Duration>,
}

fn micro(t: Timestamp) -> MicroTime {
    MicroTime(t)
}

fn secs(from: &MicroTime, to: Timestamp) -> f64 {
    round(millis_between(from.0, to) as f64 / 1000.0, 3)
}

/// Pods to kill: `count`, or `percent` of the pods rounded up; at least one.
pub fn kill_count(count: Option<i32>, percent: Option<i32>, pods: usize) -> usize {
    let n = match (count, percent) {
        (Some(c), _) => c.max(1) as usize,
        (None, Some(p)) => (p.max(1) as usize * pods).div_ceil(100),
        (None, None) => 1,
    };
    n.clamp(1, pods.max(1))
}

/// Starts a run on `target` if the steady state holds before it (`pre`); otherwise the
/// run is Skipped with the reason.
pub fn start(
    plan: &Plan,
    target: &TargetView,
    pre: &CheckOutcome,
    now: Timestamp,
    instance: &str,
    random: u64,
) -> Step {
    let skip = |why: String| Step {
        finished: Some(RunRecord {
            started_at: Time(now),
            result: RunResult::Skipped,
            target: Some(target.name.clone()),
            recovery_seconds: None,
            restore_seconds: None,
            finished_at: Some(Time(now)),
            reason: Some(why.clone()),
            run_now: false,
            injected_at: None,
        }),
        notes: vec![Note {
            reason: "DrillSkipped".into(),
            message: why,
            warning: true,
        }],
        ..Default::default()
    };
    if !target.available {
        return skip(format!(
            "{} is not Available; a drill on a degraded workload would hurt users",
            target.name
        ));
    }
    match pre {
        CheckOutcome::Holds => {}
        CheckOutcome::Breached(why) => {
            return skip(format!(
                "steady state does not hold before the drill: {why}"
            ));
        }
        CheckOutcome::Unknown(why) => {
            return skip(format!(
                "steady state cannot be confirmed before the drill: {why}"
            ));
        }
    }
    let mut saved = SavedState::default();
    match &plan.fault {
        Fault::PodKill { count, percent } => {
            if target.pods.is_empty() {
                return skip(format!("{} has no running pods to kill", target.name));
            }
            let n = kill_count(*count, *percent, target.pods.len());
            let mut pods = target.pods.clone();
            // A random choice: rotate by the random number, then take n.
            let k = (random % pods.len() as u64) as usize;
            pods.rotate_left(k);
            pods.truncate(n);
            saved.killed_uids = pods
                .iter()
                .filter_map(|p| target.uids.get(p).cloned())
                .collect();
            saved.killed_pods = pods;
        }
        Fault::ScaleDown { replicas, .. } => {
            if *replicas >= target.replicas {
                return skip(format!(
                    "scaleDown.replicas {replicas} is not fewer than the {} {} has: a scale-down drill never scales up",
                    target.replicas, target.name
                ));
            }
            saved.replicas = Some(target.replicas);
        }
        Fault::Failover { service, .. } => {
            let Some(sel) = &target.service_selector else {
                return skip(format!("Service {service} not found"));
            };
            saved.service = Some(service.clone());
            saved.service_selector = Some(sel.clone());
        }
        Fault::NodeFailure { .. } | Fault::ZoneFailure { .. } => {
            match fail_nodes(&plan.fault, target, random) {
                Ok(s) => saved = s,
                Err(why) => return skip(why),
            }
        }
    }
    let active = ActiveRun {
        started_at: micro(now),
        phase: DrillPhase::Injecting,
        target: target.name.clone(),
        saved,
        injected_at: None,
        restore_at: None,
        restored_at: None,
        last_check_at: None,
        abort_reason: None,
        instance: instance.to_string(),
        resumed: None,
        run_now: false,
        unknown_checks: 0,
        steady_since: None,
    };
    Step {
        active: Some(active),
        notes: vec![Note {
            reason: "DrillStarted".into(),
            message: format!("drill on {} starts", target.name),
            warning: false,
        }],
        requeue: Some(Duration::ZERO),
        ..Default::default()
    }
}

/// What a node or zone failure takes down: the nodes (one drawn among those running the
/// target, or those of a zone), which of them to cordon, and the target's pods on them.
fn fail_nodes(fault: &Fault, target: &TargetView, random: u64) -> Result<SavedState, String> {
    let mut used: Vec<&String> = target.pod_nodes.values().collect();
    used.sort();
    used.dedup();
    if used.is_empty() {
        return Err(format!("{} has no running pods on a node", target.name));
    }
    let (nodes, zone): (Vec<String>, Option<String>) = match fault {
        Fault::ZoneFailure { zone, label, .. } => {
            let zone_of = |n: &String| {
                target
                    .nodes
                    .iter()
                    .find(|v| &v.name == n)
                    .and_then(|v| v.zone.clone())
            };
            let z = match zone {
                Some(z) => z.clone(),
                None => {
                    let mut zones: Vec<String> = used.iter().filter_map(|n| zone_of(n)).collect();
                    zones.sort();
                    zones.dedup();
                    if zones.is_empty() {
                        return Err(format!(
                            "no node running {} has the label {label}",
                            target.name
                        ));
                    }
                    zones[(random % zones.len() as u64) as usize].clone()
                }
            };
            let mut in_zone: Vec<String> = target
                .nodes
                .iter()
                .filter(|v| v.zone.as_deref() == Some(z.as_str()))
                .map(|v| v.name.clone())
                .collect();
            in_zone.sort();
            if !used.iter().any(|n| in_zone.contains(n)) {
                return Err(format!(
                    "no pod of {} runs in zone {z} ({label})",
                    target.name
                ));
            }
            (in_zone, Some(z))
        }
        _ => {
            let n = used[(random % used.len() as u64) as usize].clone();
            (vec![n], None)
        }
    };
    let cordoned = nodes
        .iter()
        .filter(|n| {
            !target
                .nodes
                .iter()
                .any(|v| &v.name == *n && v.unschedulable)
        })
        .cloned()
        .collect();
    let mut killed: Vec<String> = target
        .pod_nodes
        .iter()
        .filter(|(_, n)| nodes.contains(n))
        .map(|(p, _)| p.clone())
        .collect();
    killed.sort();
    Ok(SavedState {
        killed_uids: killed
            .iter()
            .filter_map(|p| target.uids.get(p).cloned())
            .collect(),
        killed_pods: killed,
        nodes,
        cordoned,
        zone,
        ..Default::default()
    })
}

/// Stops the run early: restore at once.
fn abort(a: &mut ActiveRun, why: String, out: &mut Step) {
    if a.abort_reason.is_none() {
        out.notes.push(Note {
            reason: "DrillAborted".into(),
            message: format!("{}: {why}; restoring", a.target),
            warning: true,
        });
        a.abort_reason = Some(why);
    }
    a.phase = DrillPhase::Restoring;
    out.effect = Some(Effect::Restore(a.saved.clone()));
    out.requeue = Some(Duration::ZERO);
}

/// A round of checks while the fault or its aftermath lasts: an `abortWhen` breach aborts,
/// so does a steady-state breach while the fault holds (`holding`); checks that cannot be
/// read [`UNKNOWN_LIMIT`] rounds in a row abort too. After the fault, the steady state's
/// holding streak is kept (`steady_since`). True when the run was aborted.
fn watch(a: &mut ActiveRun, c: &Checks, holding: bool, at: Timestamp, out: &mut Step) -> bool {
    a.last_check_at = Some(micro(at));
    match &c.steady {
        CheckOutcome::Holds => {
            a.steady_since.get_or_insert(micro(at));
        }
        _ => a.steady_since = None,
    }
    if let CheckOutcome::Breached(why) = &c.abort {
        abort(a, format!("abortWhen breached: {why}"), out);
        return true;
    }
    if holding && let CheckOutcome::Breached(why) = &c.steady {
        abort(
            a,
            format!("steady state breached during the drill: {why}"),
            out,
        );
        return true;
    }
    let mut unknown = Vec::new();
    if let CheckOutcome::Unknown(why) = &c.abort {
        unknown.push(format!("abortWhen: {why}"));
    }
    if holding && let CheckOutcome::Unknown(why) = &c.steady {
        unknown.push(format!("steady state: {why}"));
    }
    if unknown.is_empty() {
        a.unknown_checks = 0;
        return false;
    }
    a.unknown_checks += 1;
    if a.unknown_checks >= UNKNOWN_LIMIT {
        abort(
            a,
            format!(
                "the checks could not be read {UNKNOWN_LIMIT} times in a row, so the drill is not watched: {}",
                unknown.join("; ")
            ),
            out,
        );
        return true;
    }
    false
}

/// When the target was whole again after the fault: `replicas` of its pods Ready, none of
/// them one that was killed (the latest Ready time among the earliest-ready ones), and not
/// before the injection; None while fewer are Ready.
pub fn ready_again(
    target: &TargetView,
    saved: &SavedState,
    injected: Timestamp,
) -> Option<Timestamp> {
    let mut since: Vec<Timestamp> = target
        .ready
        .iter()
        // A run recorded before uids were kept names its pods only.
        .filter(|p| match saved.killed_uids.is_empty() {
            true => !saved.killed_pods.contains(&p.name),
            false => !saved.killed_uids.contains(&p.uid),
        })
        .map(|p| p.since)
        .collect();
    since.sort();
    let n = target.replicas.max(0) as usize;
    if n == 0 {
        return Some(injected);
    }
    since.get(n - 1).map(|t| (*t).max(injected))
}

fn restored(target: &TargetView, saved: &SavedState) -> bool {
    // A node the drill cordoned is schedulable again (or gone).
    let uncordoned = saved
        .cordoned
        .iter()
        .all(|n| !target.nodes.iter().any(|v| &v.name == n && v.unschedulable));
    uncordoned
        && saved.replicas.is_none_or(|r| target.replicas == r)
        && saved
            .service_selector
            .as_ref()
            .is_none_or(|s| target.service_selector.as_ref() == Some(s))
}

/// Advances the run under way.
///
/// `target` is None when the workload no longer exists; `stop` is why the run must end
/// now (stop annotation, deletion), if it must.
pub fn advance(
    plan: &Plan,
    active: &ActiveRun,
    target: Option<&TargetView>,
    now: Timestamp,
    instance: &str,
    stop: Option<&str>,
    checks: Option<&Checks>,
) -> Step {
    let mut a = active.clone();
    let mut out = Step::default();
    if a.instance != instance && a.resumed.is_none() {
        let phase = a.phase;
        a.resumed = Some(format!(
            "resumed at {now} by a restarted operator (phase {phase:?})"
        ));
        out.notes.push(Note {
            reason: "DrillResumed".into(),
            message: format!("{}: {}", a.target, a.resumed.clone().unwrap_or_default()),
            warning: false,
        });
    }
    let Some(target) = target else {
        out.finished = Some(finish(
            &a,
            RunResult::Aborted,
            now,
            None,
            Some(format!(
                "{} was deleted during the drill; nothing left to restore",
                a.target
            )),
        ));
        return out;
    };
    if let Some(why) = stop
        && matches!(a.phase, DrillPhase::Injecting | DrillPhase::Holding)
    {
        abort(&mut a, why.to_string(), &mut out);
        out.active = Some(a);
        return out;
    }
    match a.phase {
        DrillPhase::Injecting => {
            a.injected_at = Some(micro(now));
            // The steady state held before the start.
            a.steady_since = Some(micro(now));
            out.effect = Some(match &plan.fault {
                Fault::PodKill { .. } => {
                    a.phase = DrillPhase::Recovering;
                    Effect::KillPods(a.saved.killed_pods.clone())
                }
                Fault::ScaleDown { replicas, hold } => {
                    a.phase = DrillPhase::Holding;
                    a.restore_at = Some(micro(add(now, *hold)));
                    Effect::Scale(*replicas)
                }
                Fault::Failover {
                    service,
                    to_selector,
                    hold,
                } => {
                    a.phase = DrillPhase::Holding;
                    a.restore_at = Some(micro(add(now, *hold)));
                    Effect::Select {
                        service: service.clone(),
                        selector: to_selector.clone(),
                    }
                }
                Fault::NodeFailure { .. } | Fault::ZoneFailure { .. } => {
                    a.phase = DrillPhase::Holding;
                    let hold = plan.fault.hold().unwrap_or_default();
                    a.restore_at = Some(micro(add(now, hold)));
                    Effect::FailNodes {
                        cordon: a.saved.cordoned.clone(),
                        kill: a.saved.killed_pods.clone(),
                    }
                }
            });
            out.notes.push(Note {
                reason: "DrillInjected".into(),
                message: format!("{}: {}", a.target, describe(&plan.fault, &a.saved)),
                warning: false,
            });
            out.requeue = Some(Duration::from_millis(250));
        }
        DrillPhase::Holding => {
            // Keep the fault in place (idempotent: nothing is sent when it already is).
            out.effect = match &plan.fault {
                Fault::ScaleDown { replicas, .. } => Some(Effect::Scale(*replicas)),
                Fault::Failover {
                    service,
                    to_selector,
                    ..
                } => Some(Effect::Select {
                    service: service.clone(),
                    selector: to_selector.clone(),
                }),
                // The nodes stay cordoned; the pods deleted are not deleted again.
                Fault::NodeFailure { .. } | Fault::ZoneFailure { .. } => Some(Effect::FailNodes {
                    cordon: a.saved.cordoned.clone(),
                    kill: Vec::new(),
                }),
                Fault::PodKill { .. } => None,
            };
            let restore_at = a.restore_at.as_ref().map(|t| t.0).unwrap_or(now);
            if now >= restore_at {
                a.phase = DrillPhase::Restoring;
                out.effect = Some(Effect::Restore(a.saved.clone()));
                out.requeue = Some(Duration::ZERO);
            } else {
                let since = a
                    .last_check_at
                    .as_ref()
                    .or(a.injected_at.as_ref())
                    .map(|t| now.as_millisecond() - t.0.as_millisecond())
                    .unwrap_or(i64::MAX);
                let interval = plan.check_interval.as_millis() as i64;
                if since >= interval {
                    match checks {
                        None => out.check_due = true,
                        Some(c) => {
                            watch(&mut a, c, true, now, &mut out);
                        }
                    }
                }
                if out.requeue.is_none() {
                    let to_check = (interval - since.min(interval)).max(0) as u64;
                    let to_restore =
                        (restore_at.as_millisecond() - now.as_millisecond()).max(0) as u64;
                    out.requeue = Some(Duration::from_millis(to_check.min(to_restore).max(100)));
                }
            }
        }
        DrillPhase::Restoring => {
            out.effect = Some(Effect::Restore(a.saved.clone()));
            if restored(target, &a.saved) {
                let restore_s = a.injected_at.as_ref().map(|t| secs(t, now));
                out.notes.push(Note {
                    reason: "DrillRestored".into(),
                    message: format!("{}: restored ({})", a.target, describe_saved(&a.saved)),
                    warning: false,
                });
                if let Some(why) = a.abort_reason.clone() {
                    let mut r = finish(&a, RunResult::Aborted, now, None, Some(why));
                    r.restore_seconds = restore_s;
                    out.finished = Some(r);
                    out.effect = None;
                    return out;
                }
                a.restored_at = Some(micro(now));
                a.phase = DrillPhase::Recovering;
            }
            out.requeue = Some(Duration::from_millis(250));
        }
        DrillPhase::Recovering => {
            // Whatever was changed stays put back.
            out.effect = Some(Effect::Restore(a.saved.clone()));
            let injected = a.injected_at.clone().unwrap_or(a.started_at.clone());
            let deadline = plan.recovery_deadline.as_secs_f64();
            let whole = target.available && restored(target, &a.saved);
            let pods_at = whole
                .then(|| ready_again(target, &a.saved, injected.0))
                .flatten();
            // Watched every interval until recovered; once the pods are back, the steady
            // state is read before the run ends.
            let last = a.last_check_at.as_ref().unwrap_or(&injected).0;
            let since = crate::clock::until(last, now);
            let watched = plan.has_steady_state || plan.has_abort_when;
            let interval_due = watched && since >= plan.check_interval;
            let confirm = pods_at.is_some()
                && plan.has_steady_state
                && since >= plan.check_interval.min(Duration::from_secs(1));
            if interval_due || confirm {
                match checks {
                    None => out.check_due = true,
                    Some(c) => {
                        if watch(&mut a, c, false, now, &mut out) {
                            out.active = Some(a);
                            return out;
                        }
                    }
                }
            }
            let steady_at = match (plan.has_steady_state, checks) {
                (false, _) => Some(injected.0),
                (true, Some(c)) if c.steady == CheckOutcome::Holds => {
                    a.steady_since.as_ref().map(|t| t.0)
                }
                (true, _) => None,
            };
            if let (Some(pods_at), Some(steady_at)) = (pods_at, steady_at) {
                // Nothing recovers before what was changed is put back; but a node or zone
                // failure asks whether the workload recovered on other nodes meanwhile.
                let restored_at = match plan.fault {
                    Fault::NodeFailure { .. } | Fault::ZoneFailure { .. } => injected.0,
                    _ => a.restored_at.as_ref().map_or(injected.0, |t| t.0),
                };
                let at = pods_at.max(steady_at).max(restored_at);
                let recovery = secs(&injected, at);
                let result = if recovery <= deadline {
                    RunResult::Passed
                } else {
                    RunResult::Failed
                };
                let why = format!(
                    "recovered in {recovery:.2} s (deadline {deadline:.0} s){}",
                    a.resumed
                        .as_ref()
                        .map(|r| format!("; {r}"))
                        .unwrap_or_default()
                );
                let mut r = finish(&a, result, now, Some(recovery), Some(why));
                r.restore_seconds = a.restored_at.as_ref().map(|t| secs(&injected, t.0));
                out.finished = Some(r);
                out.effect = None;
                out.check_due = false;
                return out;
            }
            if secs(&injected, now) > deadline {
                let why = format!(
                    "not recovered within the recovery deadline of {deadline:.0} s ({}){}",
                    if pods_at.is_none() {
                        format!("{} not Available", a.target)
                    } else {
                        "steady state not holding".into()
                    },
                    a.resumed
                        .as_ref()
                        .map(|r| format!("; {r}"))
                        .unwrap_or_default()
                );
                let mut r = finish(&a, RunResult::Failed, now, None, Some(why));
                r.restore_seconds = a.restored_at.as_ref().map(|t| secs(&injected, t.0));
                out.finished = Some(r);
                out.effect = None;
                out.check_due = false;
                return out;
            }
            let to_check = plan.check_interval.saturating_sub(since);
            out.requeue = Some(if watched {
                to_check.clamp(Duration::from_millis(100), Duration::from_millis(250))
            } else {
                Duration::from_millis(250)
            });
        }
    }
    out.active = Some(a);
    out
}

fn finish(
    a: &ActiveRun,
    result: RunResult,
    now: Timestamp,
    recovery: Option<f64>,
    reason: Option<String>,
) -> RunRecord {
    RunRecord {
        started_at: Time(a.started_at.0),
        result,
        target: Some(a.target.clone()),
        recovery_seconds: recovery,
        restore_seconds: None,
        finished_at: Some(Time(now)),
        reason,
        run_now: a.run_now,
        injected_at: a.injected_at.clone(),
    }
}

fn describe(f: &Fault, saved: &SavedState) -> String {
    match f {
        Fault::PodKill { .. } => format!("killing pods {}", saved.killed_pods.join(", ")),
        Fault::ScaleDown { replicas, hold } => format!(
            "scaled from {} to {replicas} replicas for {}",
            saved.replicas.unwrap_or_default(),
            crate::duration::format_duration(*hold)
        ),
        Fault::Failover {
            service,
            to_selector,
            hold,
        } => format!(
            "Service {service} switched to {to_selector:?} for {}",
            crate::duration::format_duration(*hold)
        ),
        Fault::NodeFailure { hold } | Fault::ZoneFailure { hold, .. } => format!(
            "{}node{} {} cordoned for {} and pods {} deleted",
            saved
                .zone
                .as_ref()
                .map(|z| format!("zone {z}: "))
                .unwrap_or_default(),
            if saved.nodes.len() == 1 { "" } else { "s" },
            saved.nodes.join(", "),
            crate::duration::format_duration(*hold),
            saved.killed_pods.join(", ")
        ),
    }
}

fn describe_saved(s: &SavedState) -> String {
    let mut parts = Vec::new();
    if let Some(r) = s.replicas {
        parts.push(format!("{r} replicas"));
    }
    if let (Some(svc), Some(sel)) = (&s.service, &s.service_selector) {
        parts.push(format!("Service {svc} selector {sel:?}"));
    }
    if !s.cordoned.is_empty() {
        parts.push(format!("node(s) {} uncordoned", s.cordoned.join(", ")));
    }
    if parts.is_empty() {
        "nothing was changed that needs putting back".into()
    } else {
        parts.join(", ")
    }
}

/// Adds a finished run to the summary.
pub fn tally(summary: &mut DrillSummary, r: &RunRecord) {
    match r.result {
        RunResult::Passed => {
            summary.passed += 1;
            summary.pass_streak += 1;
            summary.last_passed = r.finished_at.clone();
        }
        RunResult::Failed => {
            summary.failed += 1;
            summary.pass_streak = 0;
        }
        RunResult::Aborted => {
            summary.aborted += 1;
            summary.pass_streak = 0;
        }
        RunResult::Skipped => summary.skipped += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn plan(fault: Fault, steady: bool) -> Plan {
        Plan {
            fault,
            check_interval: Duration::from_secs(2),
            recovery_deadline: Duration::from_secs(60),
            has_steady_state: steady,
            has_abort_when: false,
        }
    }

    fn target(replicas: i32) -> TargetView {
        TargetView {
            name: "Deployment/web".into(),
            replicas,
            available: true,
            pods: vec!["a".into(), "b".into(), "c".into()],
            uids: ["a", "b", "c"]
                .map(|n| (n.to_string(), format!("uid-{n}")))
                .into(),
            ready: ["a", "b", "c"].map(|n| pod(n, -100)).to_vec(),
            pod_nodes: BTreeMap::new(),
            nodes: Vec::new(),
            service_selector: Some(BTreeMap::from([("app".into(), "web".into())])),
        }
    }

    /// Pod `name` (uid `uid-NAME`), Ready since `t(since)`.
    fn pod(name: &str, since: i64) -> ReadyPod {
        ReadyPod {
            name: name.into(),
            uid: format!("uid-{name}"),
            since: t(since),
        }
    }

    /// A round of checks where everything holds.
    fn holds() -> Checks {
        Checks {
            steady: CheckOutcome::Holds,
            abort: CheckOutcome::Holds,
        }
    }

    fn scale() -> Fault {
        Fault::ScaleDown {
            replicas: 1,
            hold: Duration::from_secs(10),
        }
    }

    #[test]
    fn kill_counts() {
        assert_eq!(kill_count(Some(1), None, 3), 1);
        assert_eq!(kill_count(Some(5), None, 3), 3);
        assert_eq!(kill_count(None, Some(50), 3), 2);
        assert_eq!(kill_count(None, Some(1), 3), 1);
    }

    #[test]
    fn no_steady_state_or_no_availability_means_skipped() {
        let p = plan(scale(), true);
        let s = start(
            &p,
            &target(3),
            &CheckOutcome::Breached("errors 0.5 > 0.1".into()),
            t(0),
            "i",
            0,
        );
        assert!(s.active.is_none());
        let r = s.finished.unwrap();
        assert_eq!(r.result, RunResult::Skipped);
        assert!(r.reason.unwrap().contains("errors 0.5"));
        let mut down = target(3);
        down.available = false;
        let s = start(&p, &down, &CheckOutcome::Holds, t(0), "i", 0);
        assert_eq!(s.finished.unwrap().result, RunResult::Skipped);
    }

    /// A scaleDown run through every phase, with state only in the ActiveRun (as status).
    #[test]
    fn a_scale_down_to_not_fewer_replicas_is_skipped() {
        // scale() scales to 1: from 1 (or from none) it would not scale down.
        let p = plan(scale(), false);
        for have in [1, 0] {
            let s = start(&p, &target(have), &CheckOutcome::Holds, t(0), "i", 0);
            assert!(s.active.is_none() && s.effect.is_none());
            let r = s.finished.unwrap();
            assert_eq!(r.result, RunResult::Skipped);
            assert_eq!(
                r.reason.unwrap(),
                format!(
                    "scaleDown.replicas 1 is not fewer than the {have} Deployment/web has: a scale-down drill never scales up"
                )
            );
        }
    }

    #[test]
    fn scale_down_saves_holds_restores_and_passes() {
        let p = plan(scale(), false);
        let mut tv = target(3);
        let s = start(&p, &tv, &CheckOutcome::Holds, t(0), "i", 0);
        let a = s.active.unwrap();
        assert_eq!(a.saved.replicas, Some(3), "saved before anything changes");
        assert!(s.effect.is_none());
        let s = advance(&p, &a, Some(&tv), t(0), "i", None, None);
        let a = s.active.unwrap();
        assert_eq!(a.phase, DrillPhase::Holding);
        assert_eq!(s.effect, Some(Effect::Scale(1)));
        tv.replicas = 1;
        tv.available = false;
        tv.ready = vec![pod("a", -100)];
        // Checks are due every interval while holding.
        let s = advance(&p, &a, Some(&tv), t(2), "i", None, None);
        assert!(s.check_due);
        let ok = holds();
        let a = advance(&p, &a, Some(&tv), t(2), "i", None, Some(&ok))
            .active
            .unwrap();
        assert_eq!(a.last_check_at, Some(micro(t(2))));
        // Hold over: restore.
        let s = advance(&p, &a, Some(&tv), t(10), "i", None, None);
        let a = s.active.unwrap();
        assert_eq!(a.phase, DrillPhase::Restoring);
        assert_eq!(
            s.effect,
            Some(Effect::Restore(SavedState {
                replicas: Some(3),
                ..Default::default()
            }))
        );
        // Not recorded until the restored replicas are seen.
        let s = advance(&p, &a, Some(&tv), t(10), "i", None, None);
        assert_eq!(s.active.as_ref().unwrap().phase, DrillPhase::Restoring);
        tv.replicas = 3;
        let a = advance(&p, &a, Some(&tv), t(11), "i", None, None)
            .active
            .unwrap();
        assert_eq!(a.phase, DrillPhase::Recovering);
        let s = advance(&p, &a, Some(&tv), t(12), "i", None, None);
        assert!(s.finished.is_none(), "not Available yet");
        // Two new pods Ready at 12 s; the operator sees it at 15 s: recovery is 12 s.
        tv.available = true;
        tv.ready = vec![pod("a", -100), pod("d", 12), pod("e", 12)];
        let s = advance(&p, &a, Some(&tv), t(15), "i", None, None);
        let r = s.finished.unwrap();
        assert!(s.active.is_none());
        assert_eq!(r.result, RunResult::Passed);
        assert_eq!(r.recovery_seconds, Some(12.0));
        assert_eq!(r.restore_seconds, Some(11.0));
        assert_eq!(r.injected_at, Some(micro(t(0))));
    }

    #[test]
    fn a_breach_while_holding_aborts_and_restores() {
        let p = plan(scale(), true);
        let mut tv = target(3);
        let a = start(&p, &tv, &CheckOutcome::Holds, t(0), "i", 0)
            .active
            .unwrap();
        let a = advance(&p, &a, Some(&tv), t(0), "i", None, None)
            .active
            .unwrap();
        tv.replicas = 1;
        let bad = Checks {
            steady: CheckOutcome::Breached("error-ratio 0.4 > 0.1".into()),
            abort: CheckOutcome::Holds,
        };
        let s = advance(&p, &a, Some(&tv), t(2), "i", None, Some(&bad));
        let a = s.active.unwrap();
        assert_eq!(a.phase, DrillPhase::Restoring);
        assert!(matches!(s.effect, Some(Effect::Restore(_))));
        assert!(s.notes.iter().any(|n| n.reason == "DrillAborted"));
        tv.replicas = 3;
        let s = advance(&p, &a, Some(&tv), t(3), "i", None, None);
        let r = s.finished.unwrap();
        assert_eq!(r.result, RunResult::Aborted);
        assert!(r.reason.unwrap().contains("steady state breached"));
        assert_eq!(r.restore_seconds, Some(3.0));
    }

    #[test]
    fn stop_annotation_and_restart() {
        let p = plan(scale(), false);
        let tv = target(3);
        let a = start(&p, &tv, &CheckOutcome::Holds, t(0), "first", 0)
            .active
            .unwrap();
        let a = advance(&p, &a, Some(&tv), t(0), "first", None, None)
            .active
            .unwrap();
        // Another operator process continues the run and says so.
        let s = advance(&p, &a, Some(&tv), t(1), "second", None, None);
        let b = s.active.unwrap();
        assert!(b.resumed.as_ref().unwrap().contains("restarted operator"));
        assert!(s.notes.iter().any(|n| n.reason == "DrillResumed"));
        let s = advance(
            &p,
            &b,
            Some(&tv),
            t(1),
            "second",
            Some("stopped by annotation"),
            None,
        );
        assert_eq!(s.active.unwrap().phase, DrillPhase::Restoring);
    }

    #[test]
    fn pod_kill_recovery_and_failover_restore() {
        let p = plan(
            Fault::PodKill {
                count: Some(1),
                percent: None,
            },
            false,
        );
        let mut tv = target(3);
        let a = start(&p, &tv, &CheckOutcome::Holds, t(0), "i", 7)
            .active
            .unwrap();
        assert_eq!(a.saved.killed_pods.len(), 1);
        let s = advance(&p, &a, Some(&tv), t(0), "i", None, None);
        assert_eq!(
            s.effect,
            Some(Effect::KillPods(a.saved.killed_pods.clone()))
        );
        let a = s.active.unwrap();
        assert_eq!(a.phase, DrillPhase::Recovering);
        // Random 7 rotates [a, b, c] by one: b is killed.
        assert_eq!(
            (a.saved.killed_pods.clone(), a.saved.killed_uids.clone()),
            (vec!["b".to_string()], vec!["uid-b".to_string()])
        );
        tv.available = false;
        assert!(
            advance(&p, &a, Some(&tv), t(1), "i", None, None)
                .finished
                .is_none()
        );
        // A stale status says Available while the killed pod is still counted: only two
        // pods that were not killed are Ready, so nothing is recovered yet.
        tv.available = true;
        tv.ready = vec![pod("a", -100), pod("b", -100), pod("c", -100)];
        assert!(
            advance(&p, &a, Some(&tv), t(1), "i", None, None)
                .finished
                .is_none(),
            "the killed pod does not count"
        );
        // Its replacement Ready at 3 s, seen at 5 s: recovery 3 s.
        tv.ready = vec![pod("a", -100), pod("c", -100), pod("d", 3)];
        let r = advance(&p, &a, Some(&tv), t(5), "i", None, None)
            .finished
            .unwrap();
        assert_eq!(
            (r.result, r.recovery_seconds),
            (RunResult::Passed, Some(3.0))
        );
        // A StatefulSet's pod comes back under its name, with a new uid: it counts.
        let mut same_name = pod("b", 4);
        same_name.uid = "uid-b2".into();
        tv.ready = vec![pod("a", -100), pod("c", -100), same_name];
        let r = advance(&p, &a, Some(&tv), t(5), "i", None, None)
            .finished
            .unwrap();
        assert_eq!(r.recovery_seconds, Some(4.0));

        let to = BTreeMap::from([("app".to_string(), "standby".to_string())]);
        let p = plan(
            Fault::Failover {
                service: "web".into(),
                to_selector: to.clone(),
                hold: Duration::from_secs(5),
            },
            false,
        );
        let a = start(&p, &tv, &CheckOutcome::Holds, t(0), "i", 0)
            .active
            .unwrap();
        assert_eq!(a.saved.service_selector, tv.service_selector);
        let s = advance(&p, &a, Some(&tv), t(0), "i", None, None);
        assert_eq!(
            s.effect,
            Some(Effect::Select {
                service: "web".into(),
                selector: to
            })
        );
    }

    fn kill_one() -> Plan {
        plan(
            Fault::PodKill {
                count: Some(1),
                percent: None,
            },
            false,
        )
    }

    /// A podKill run injected at 0 s (pod b killed), recovering.
    fn recovering(p: &Plan, tv: &TargetView) -> ActiveRun {
        let a = start(p, tv, &CheckOutcome::Holds, t(0), "i", 7)
            .active
            .unwrap();
        advance(p, &a, Some(tv), t(0), "i", None, None)
            .active
            .unwrap()
    }

    #[test]
    fn abort_when_is_watched_after_a_pod_kill_until_recovery() {
        let mut p = kill_one();
        p.has_abort_when = true;
        let mut tv = target(3);
        let a = recovering(&p, &tv);
        tv.ready = vec![pod("a", -100), pod("c", -100)];
        tv.available = false;
        // Before an interval (2 s) passed: no check.
        assert!(!advance(&p, &a, Some(&tv), t(1), "i", None, None).check_due);
        assert!(advance(&p, &a, Some(&tv), t(2), "i", None, None).check_due);
        let ok = holds();
        let a = advance(&p, &a, Some(&tv), t(2), "i", None, Some(&ok))
            .active
            .unwrap();
        assert_eq!(a.phase, DrillPhase::Recovering);
        assert_eq!(a.last_check_at, Some(micro(t(2))));
        let bad = Checks {
            steady: CheckOutcome::Holds,
            abort: CheckOutcome::Breached("5xx 12 > 1".into()),
        };
        let s = advance(&p, &a, Some(&tv), t(4), "i", None, Some(&bad));
        let a = s.active.unwrap();
        assert_eq!(a.phase, DrillPhase::Restoring);
        assert_eq!(
            a.abort_reason.as_deref(),
            Some("abortWhen breached: 5xx 12 > 1")
        );
        assert!(s.notes.iter().any(|n| n.reason == "DrillAborted"));
        // Nothing to put back for a pod kill: recorded Aborted at the next pass.
        let r = advance(&p, &a, Some(&tv), t(4), "i", None, None)
            .finished
            .unwrap();
        assert_eq!(r.result, RunResult::Aborted);
        assert_eq!(r.recovery_seconds, None);
    }

    #[test]
    fn checks_that_cannot_be_read_three_times_in_a_row_abort() {
        let mut p = plan(
            Fault::ScaleDown {
                replicas: 1,
                hold: Duration::from_secs(60),
            },
            true,
        );
        p.has_abort_when = true;
        let mut tv = target(3);
        let a = start(&p, &tv, &CheckOutcome::Holds, t(0), "i", 0)
            .active
            .unwrap();
        let mut a = advance(&p, &a, Some(&tv), t(0), "i", None, None)
            .active
            .unwrap();
        tv.replicas = 1;
        let unknown = Checks {
            steady: CheckOutcome::Holds,
            abort: CheckOutcome::Unknown("errors: no data".into()),
        };
        let ok = holds();
        // Two unknown rounds, then a read one: the count starts again.
        for (at, c, want) in [(2, &unknown, 1), (4, &unknown, 2), (6, &ok, 0)] {
            a = advance(&p, &a, Some(&tv), t(at), "i", None, Some(c))
                .active
                .unwrap();
            assert_eq!((a.phase, a.unknown_checks), (DrillPhase::Holding, want));
        }
        for at in [8, 10] {
            a = advance(&p, &a, Some(&tv), t(at), "i", None, Some(&unknown))
                .active
                .unwrap();
        }
        let s = advance(&p, &a, Some(&tv), t(12), "i", None, Some(&unknown));
        let a = s.active.unwrap();
        assert_eq!(a.phase, DrillPhase::Restoring);
        assert_eq!(
            a.abort_reason.as_deref(),
            Some(
                "the checks could not be read 3 times in a row, so the drill is not watched: abortWhen: errors: no data"
            )
        );
    }

    #[test]
    fn with_a_steady_state_recovery_is_when_it_holds_again_after_the_pods() {
        let mut p = kill_one();
        p.has_steady_state = true;
        let mut tv = target(3);
        let a = recovering(&p, &tv);
        tv.ready = vec![pod("a", -100), pod("c", -100), pod("d", 1)];
        let breached = Checks {
            steady: CheckOutcome::Breached("errors 0.3 > 0.1".into()),
            abort: CheckOutcome::Holds,
        };
        let holds = holds();
        // Pods back at 1 s, but the steady state is breached at 2 s (no abort after the
        // fault: it is what recovery waits for) and holds at 4 s: recovery 4 s.
        let s = advance(&p, &a, Some(&tv), t(2), "i", None, Some(&breached));
        assert!(s.finished.is_none());
        let a = s.active.unwrap();
        assert_eq!(
            (a.phase, a.steady_since.clone()),
            (DrillPhase::Recovering, None)
        );
        let r = advance(&p, &a, Some(&tv), t(4), "i", None, Some(&holds))
            .finished
            .unwrap();
        assert_eq!(
            (r.result, r.recovery_seconds),
            (RunResult::Passed, Some(4.0))
        );
        // Had it held all along, recovery is the pods' 1 s.
        let a = recovering(&p, &target(3));
        let r = advance(&p, &a, Some(&tv), t(2), "i", None, Some(&holds))
            .finished
            .unwrap();
        assert_eq!(r.recovery_seconds, Some(1.0));
    }

    /// Pods a on n1, b and c on n2; nodes n1, n2 (zone z1), n3 (zone z2, cordoned already).
    fn on_nodes() -> TargetView {
        let mut tv = target(3);
        tv.pod_nodes = [("a", "n1"), ("b", "n2"), ("c", "n2")]
            .map(|(p, n)| (p.to_string(), n.to_string()))
            .into();
        let node = |name: &str, zone: &str, unschedulable| NodeView {
            name: name.into(),
            zone: Some(zone.into()),
            unschedulable,
        };
        tv.nodes = vec![
            node("n1", "z1", false),
            node("n2", "z1", false),
            node("n3", "z2", true),
        ];
        tv
    }

    #[test]
    fn a_node_failure_cordons_one_node_of_the_target_deletes_its_pods_and_uncordons_it() {
        let p = plan(
            Fault::NodeFailure {
                hold: Duration::from_secs(10),
            },
            false,
        );
        let mut tv = on_nodes();
        // Nodes in use, sorted: [n1, n2]; random 1 draws n2.
        let a = start(&p, &tv, &CheckOutcome::Holds, t(0), "i", 1)
            .active
            .unwrap();
        assert_eq!(a.saved.nodes, ["n2"]);
        assert_eq!(a.saved.cordoned, ["n2"]);
        assert_eq!(a.saved.killed_pods, ["b", "c"]);
        assert_eq!(a.saved.killed_uids, ["uid-b", "uid-c"]);
        let s = advance(&p, &a, Some(&tv), t(0), "i", None, None);
        assert_eq!(
            s.effect,
            Some(Effect::FailNodes {
                cordon: vec!["n2".into()],
                kill: vec!["b".into(), "c".into()]
            })
        );
        assert_eq!(
            s.notes[0].message,
            "Deployment/web: node n2 cordoned for 10s and pods b, c deleted"
        );
        let a = s.active.unwrap();
        assert_eq!(a.phase, DrillPhase::Holding);
        tv.nodes[1].unschedulable = true;
        // Held: the node stays cordoned, nothing is deleted again.
        let s = advance(&p, &a, Some(&tv), t(5), "i", None, None);
        assert_eq!(
            s.effect,
            Some(Effect::FailNodes {
                cordon: vec!["n2".into()],
                kill: vec![]
            })
        );
        let a = advance(&p, &a, Some(&tv), t(10), "i", None, None)
            .active
            .unwrap();
        assert_eq!(a.phase, DrillPhase::Restoring);
        // Not restored while n2 is still cordoned.
        let s = advance(&p, &a, Some(&tv), t(10), "i", None, None);
        assert_eq!(s.active.as_ref().unwrap().phase, DrillPhase::Restoring);
        assert_eq!(s.effect, Some(Effect::Restore(a.saved.clone())));
        tv.nodes[1].unschedulable = false;
        let a = advance(&p, &a, Some(&tv), t(11), "i", None, None)
            .active
            .unwrap();
        assert_eq!(a.phase, DrillPhase::Recovering);
        // The replacements were Ready on n1 at 3 s and 4 s, while n2 was down: recovery
        // 4 s (the workload recovered on another node); the restore took 11 s.
        tv.ready = vec![pod("a", -100), pod("d", 3), pod("e", 4)];
        let r = advance(&p, &a, Some(&tv), t(12), "i", None, None)
            .finished
            .unwrap();
        assert_eq!(
            (r.result, r.recovery_seconds),
            (RunResult::Passed, Some(4.0))
        );
        assert_eq!(r.restore_seconds, Some(11.0));
    }

    #[test]
    fn a_zone_failure_takes_every_node_of_the_zone_and_leaves_a_cordoned_one_cordoned() {
        let zone = |zone: Option<&str>| {
            plan(
                Fault::ZoneFailure {
                    zone: zone.map(String::from),
                    label: "topology.kubernetes.io/zone".into(),
                    hold: Duration::from_secs(10),
                },
                false,
            )
        };
        let tv = on_nodes();
        let a = start(&zone(Some("z1")), &tv, &CheckOutcome::Holds, t(0), "i", 0)
            .active
            .unwrap();
        assert_eq!(a.saved.zone.as_deref(), Some("z1"));
        assert_eq!(a.saved.nodes, ["n1", "n2"]);
        assert_eq!(a.saved.cordoned, ["n1", "n2"]);
        assert_eq!(a.saved.killed_pods, ["a", "b", "c"]);
        // A zone drawn among those of the target's nodes: only z1 runs its pods.
        let a = start(&zone(None), &tv, &CheckOutcome::Holds, t(0), "i", 5)
            .active
            .unwrap();
        assert_eq!(a.saved.zone.as_deref(), Some("z1"));
        // z2 has no pod of the target: skipped, with the reason.
        let s = start(&zone(Some("z2")), &tv, &CheckOutcome::Holds, t(0), "i", 0);
        assert_eq!(
            s.finished.unwrap().reason.as_deref(),
            Some("no pod of Deployment/web runs in zone z2 (topology.kubernetes.io/zone)")
        );
        // A pod on n3 (cordoned before the drill): n3 is taken down, not uncordoned after.
        let mut tv = on_nodes();
        tv.pod_nodes.insert("c".into(), "n3".into());
        let a = start(&zone(Some("z2")), &tv, &CheckOutcome::Holds, t(0), "i", 0)
            .active
            .unwrap();
        assert_eq!(
            (
                a.saved.nodes.clone(),
                a.saved.cordoned.clone(),
                a.saved.killed_pods.clone()
            ),
            (vec!["n3".to_string()], vec![], vec!["c".to_string()])
        );
    }

    #[test]
    fn too_slow_a_recovery_fails() {
        let p = plan(
            Fault::PodKill {
                count: Some(1),
                percent: None,
            },
            false,
        );
        let mut tv = target(3);
        let a = start(&p, &tv, &CheckOutcome::Holds, t(0), "i", 0)
            .active
            .unwrap();
        let a = advance(&p, &a, Some(&tv), t(0), "i", None, None)
            .active
            .unwrap();
        tv.available = false;
        let r = advance(&p, &a, Some(&tv), t(61), "i", None, None)
            .finished
            .unwrap();
        assert_eq!(r.result, RunResult::Failed);
        assert!(r.reason.unwrap().contains("not Available"));
    }

    #[test]
    fn summary_counts_and_streak() {
        let mut s = DrillSummary::default();
        let rec = |result| RunRecord {
            started_at: Time(t(0)),
            result,
            target: None,
            recovery_seconds: None,
            restore_seconds: None,
            finished_at: Some(Time(t(1))),
            reason: None,
            run_now: false,
            injected_at: None,
        };
        for r in [
            RunResult::Passed,
            RunResult::Passed,
            RunResult::Skipped,
            RunResult::Failed,
            RunResult::Passed,
        ] {
            tally(&mut s, &rec(r));
        }
        assert_eq!((s.passed, s.failed, s.skipped, s.pass_streak), (3, 1, 1, 1));
        assert_eq!(s.last_passed, Some(Time(t(1))));
    }
}

//! DrillSchedule's decision, from plain values: the DrillSchedule (its status is the memory
//! of the run under way), its namespace (the stop annotation), the namespace's other
//! DrillSchedules, what is seen of the target and the checks that were run, to the new
//! status (with `Ready`), the one change to make to the target, the Events, the start drawn
//! for the window, and when to look again.
//!
//! Reads come in two phases: the controller reads the drill, its namespace and the run's
//! target, asks [`check_due`] whether the run's checks must be run, or [`start_due`]
//! whether a run starts now (and so which target must be resolved, viewed and pre-checked),
//! then calls [`decide`].

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::run::{self, CheckOutcome, Checks, Effect, Fault, Plan, TargetView};
use super::schedule::{self, Schedule, Window};
use crate::api::DrillSchedule;
use crate::api::drill_schedule::{
    ActiveRun, DrillScheduleStatus, DrillSummary, RunRecord, RunResult, Window as WindowStatus,
};
use crate::api::names::{RUN_NOW_ANNOTATION, STOP_ANNOTATION, STOP_VALUE};
use crate::authz::Permission;
use crate::clock;
use crate::conditions::{self, Cond, Note, Status};
use crate::prom::enforce::Tenancy;

/// How often a drill is looked at without any event.
pub const IDLE_REQUEUE: Duration = Duration::from_secs(300);
/// The soonest a drill is looked at again.
pub const MIN_REQUEUE: Duration = Duration::from_millis(100);
/// Why a run under way stops when its DrillSchedule is being deleted.
pub const DELETING: &str = "the DrillSchedule is being deleted";

/// A start drawn inside a window: (window start, start).
pub type Planned = (Timestamp, Timestamp);

/// Everything read for one pass over a drill.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Read fresh (its status is the memory of the run under way).
    pub drill: DrillSchedule,
    /// The DrillSchedule is being deleted: stop the run under way, start none.
    pub deleting: bool,
    /// The drill's namespace; read only when nothing else stops drills already
    /// ([`stop_reason`] is None without it).
    pub namespace: Option<Namespace>,
    /// The DrillSchedules of the namespace (this one included): who drills what.
    pub drills: Vec<DrillSchedule>,
    /// This operator process, as named in the runs it starts.
    pub instance: String,
    /// The start drawn in memory for this drill's current window, if any.
    pub planned: Option<Planned>,
    /// The target of the run under way as seen (None: gone, or no run under way).
    pub target: Option<TargetView>,
    /// The checks of the run under way, when [`check_due`] asked for them.
    pub checks: Option<Checked>,
    /// What was read for a run due to start, when [`start_due`] said so.
    pub start: Option<StartReads>,
}

/// The run's checks, and when they were read (the run steps at that time).
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub checks: Checks,
    pub at: Timestamp,
}

/// What was read for a run about to start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartReads {
    /// `Kind/name` of the workload picked ([`pick`]); None: none matches the target.
    pub target: Option<String>,
    /// It as seen, with the steady-state checks run before the drill. None: not found, or
    /// not looked at because another drill has it ([`busy_with`]).
    pub seen: Option<(TargetView, CheckOutcome)>,
    /// Why the drill's author may not do what the run needs ([`needs`]); nothing else is
    /// read then.
    pub denied: Option<String>,
}

/// Every steady-state and abort check (placeholders filled with stand-ins) can be scoped to
/// the drill's namespace; else the sentence (the admission webhook refuses such a drill).
pub fn scoped_checks(d: &DrillSchedule, tenancy: &Tenancy) -> Result<(), String> {
    let namespace = d.metadata.namespace.clone().unwrap_or_default();
    let vars = std::collections::BTreeMap::from([
        ("namespace", namespace.clone()),
        ("target", "target".to_string()),
    ]);
    let checks = d.spec.steady_state.iter().map(|c| ("steadyState", c));
    let checks = checks.chain(d.spec.abort_when.iter().map(|c| ("abortWhen", c)));
    for (i, (list, c)) in checks.enumerate() {
        let Ok(q) = crate::prom::template::render(c.query.as_str(), &vars) else {
            continue;
        };
        tenancy
            .scope(&q, &namespace)
            .map_err(|e| format!("{list} check {} (#{}): {e}", c.name, i + 1))?;
    }
    Ok(())
}

/// What a run of `d` does in its namespace, for its author's rights to be checked before
/// it starts: delete pods, patch the workload (scaleDown), patch the Service (failover).
/// Restoring needs nothing more than injecting did.
pub fn needs(d: &DrillSchedule) -> Vec<Permission> {
    use crate::api::drill_schedule::WorkloadKind;
    let namespace = d.metadata.namespace.clone().unwrap_or_default();
    let p = |verb, group, resource| Permission {
        verb,
        group,
        resource,
        namespace: namespace.clone(),
    };
    let a = &d.spec.action;
    let mut out = Vec::new();
    if a.pod_kill.is_some() {
        out.push(p("delete", "", "pods"));
    }
    if a.scale_down.is_some() {
        out.push(match d.spec.target.kind {
            WorkloadKind::Deployment => p("patch", "apps", "deployments"),
            WorkloadKind::StatefulSet => p("patch", "apps", "statefulsets"),
        });
    }
    if a.failover.is_some() {
        out.push(p("patch", "", "services"));
    }
    if a.node_failure.is_some() || a.zone_failure.is_some() {
        out.push(Permission {
            verb: "patch",
            group: "",
            resource: "nodes",
            namespace: String::new(),
        });
        out.push(p("delete", "", "pods"));
    }
    out
}

/// The nodes a pass reads with the target: those a run under way saved (to keep them
/// cordoned, then uncordon them), else for a node or zone failure about to start, those
/// of the target's pods (`None`: every node with the zone label, for a zone failure).
pub fn nodes_to_read(d: &DrillSchedule) -> NodeReads {
    if let Some(a) = d.status.as_ref().and_then(|s| s.active.as_ref()) {
        return match a.saved.nodes.is_empty() {
            true => NodeReads::None,
            false => NodeReads::Named(a.saved.nodes.clone()),
        };
    }
    match parse(d) {
        Ok((
            _,
            Plan {
                fault: Fault::NodeFailure { .. },
                ..
            },
        )) => NodeReads::OfPods,
        Ok((
            _,
            Plan {
                fault: Fault::ZoneFailure { label, .. },
                ..
            },
        )) => NodeReads::Labelled(label),
        _ => NodeReads::None,
    }
}

/// Which nodes a pass reads (see [`nodes_to_read`]).
#[derive(Debug, Clone, PartialEq)]
pub enum NodeReads {
    None,
    Named(Vec<String>),
    /// The nodes the target's pods run on.
    OfPods,
    /// Every node with this label.
    Labelled(String),
}

/// The random numbers of a pass (drawn by the controller).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Draws {
    /// The start inside a window with jitter.
    pub jitter: u64,
    /// The workload among those the target's selector matches.
    pub pick: u64,
    /// The pods killed ([`run::start`]).
    pub start: u64,
}

/// What to do after a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Written before the effect: what must be restored is in it before anything changes.
    pub status: DrillScheduleStatus,
    /// The change to make to the target seen; applied only where the cluster differs.
    pub effect: Option<(TargetView, Effect)>,
    pub notes: Vec<Note>,
    pub requeue: Duration,
    /// The start drawn for the window, to remember (None: leave what is remembered).
    pub planned: Option<Planned>,
}

/// The spec parsed; errors are a sentence for the Ready condition.
pub fn parse(d: &DrillSchedule) -> Result<(Schedule, Plan), String> {
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
    } else if let Some(n) = &spec.action.node_failure {
        Fault::NodeFailure {
            hold: dur(&n.hold, "nodeFailure.hold")?,
        }
    } else if let Some(z) = &spec.action.zone_failure {
        Fault::ZoneFailure {
            zone: z.zone.clone(),
            label: z
                .zone_label
                .clone()
                .unwrap_or_else(|| crate::api::drill_schedule::ZONE_LABEL.to_string()),
            hold: dur(&z.hold, "zoneFailure.hold")?,
        }
    } else {
        return Err(
            "action must set one of podKill, scaleDown, failover, nodeFailure or zoneFailure"
                .into(),
        );
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
            has_abort_when: !spec.abort_when.is_empty(),
        },
    ))
}

/// The Service whose selector is read with the target: the one a run under way saved (it
/// must be put back even when the spec has become invalid since), else a valid failover's.
pub fn failover_service(d: &DrillSchedule) -> Option<String> {
    let saved = d
        .status
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .and_then(|a| a.saved.service.clone());
    if saved.is_some() {
        return saved;
    }
    match parse(d) {
        Ok((
            _,
            Plan {
                fault: Fault::Failover { service, .. },
                ..
            },
        )) => Some(service),
        _ => None,
    }
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a String> {
    meta.annotations.as_ref()?.get(key)
}

fn stopped(meta: &ObjectMeta) -> bool {
    annotation(meta, STOP_ANNOTATION).map(String::as_str) == Some(STOP_VALUE)
}

fn name_of(d: &DrillSchedule) -> String {
    d.metadata.name.clone().unwrap_or_default()
}

/// Why drills must stop here now, if they must: deletion, or the stop annotation on the
/// DrillSchedule or on its namespace.
pub fn stop_reason(o: &Observed) -> Option<String> {
    if o.deleting {
        return Some(DELETING.to_string());
    }
    if stopped(&o.drill.metadata) {
        return Some(format!(
            "stopped by the {STOP_ANNOTATION}={STOP_VALUE} annotation on the DrillSchedule"
        ));
    }
    let ns = o.drill.metadata.namespace.clone().unwrap_or_default();
    o.namespace
        .as_ref()
        .filter(|n| stopped(&n.metadata))
        .map(|_| {
            format!("stopped by the {STOP_ANNOTATION}={STOP_VALUE} annotation on namespace {ns}")
        })
}

/// The plan of the run under way and why it must stop, if it must. With a spec that is no
/// longer valid only restoring is left: the fault is never applied again.
fn active_plan(o: &Observed) -> (Plan, Option<String>) {
    let stop = stop_reason(o);
    match parse(&o.drill) {
        Ok((_, plan)) => (plan, stop),
        Err(e) => (
            Plan {
                fault: Fault::PodKill {
                    count: None,
                    percent: None,
                },
                check_interval: Duration::from_secs(15),
                recovery_deadline: Duration::from_secs(0),
                has_steady_state: false,
                has_abort_when: false,
            },
            Some(stop.unwrap_or_else(|| format!("the spec is no longer valid: {e}"))),
        ),
    }
}

fn active(o: &Observed) -> Option<&ActiveRun> {
    o.drill.status.as_ref().and_then(|s| s.active.as_ref())
}

/// The run under way's checks are due at `now` (with [`Observed::target`] read): run the
/// `steadyState` and `abortWhen` checks and put them in [`Observed::checks`].
pub fn check_due(o: &Observed, now: Timestamp) -> bool {
    let Some(a) = active(o) else {
        return false;
    };
    let (plan, stop) = active_plan(o);
    run::advance(
        &plan,
        a,
        o.target.as_ref(),
        now,
        &o.instance,
        stop.as_deref(),
        None,
    )
    .check_due
}

/// The run under way, one step (a second one with the checks, when they were due).
fn active_step(o: &Observed, a: &ActiveRun, now: Timestamp) -> run::Step {
    let (plan, stop) = active_plan(o);
    let target = o.target.as_ref();
    let step = run::advance(&plan, a, target, now, &o.instance, stop.as_deref(), None);
    match &o.checks {
        Some(c) if step.check_due => run::advance(
            &plan,
            a,
            target,
            c.at,
            &o.instance,
            stop.as_deref(),
            Some(&c.checks),
        ),
        _ => step,
    }
}

/// The schedule's part of a pass without a run under way.
#[derive(Debug, Default)]
struct Slot {
    /// A run starts now: a new run-now token, or the window's start came.
    due: bool,
    /// A new run-now token, acted on now.
    run_now: Option<String>,
    /// The run starting is the run-now's (not refused by a blackout).
    asked: bool,
    /// The window status shows (None: stopped or suspended).
    next_window: Option<WindowStatus>,
    /// The window was missed, or a run-now fell in a blackout: the records of skipped runs.
    missed: Vec<RunRecord>,
    /// Until the drawn start.
    requeue: Option<Duration>,
    planned: Option<Planned>,
}

/// A run-now value that overrides blackouts: its last word is `force` (e.g. `7 force`).
pub fn forced(token: &str) -> bool {
    token.split_whitespace().last() == Some("force")
}

/// The start inside `w`: drawn once per window (again after a restart, from `now` when
/// the window has begun).
fn draw(
    entry: Option<Planned>,
    w: Window,
    sched: &Schedule,
    now: Timestamp,
    random: u64,
) -> Planned {
    let mut e = entry
        .filter(|e| e.0 == w.start)
        .unwrap_or((w.start, w.start));
    if e.1 == w.start && sched.jitter > Duration::ZERO {
        let from = if now > w.start {
            now.min(w.end)
        } else {
            w.start
        };
        e.1 = sched.pick_start(
            Window {
                start: from,
                end: w.end,
            },
            random,
        );
    }
    e
}

/// Whether a run is due and what status shows of the schedule. Err: no next window.
fn slot(
    o: &Observed,
    sched: &Schedule,
    stopped: bool,
    now: Timestamp,
    random: u64,
) -> Result<Slot, String> {
    let d = &o.drill;
    let status = d.status.clone().unwrap_or_default();
    let run_now = annotation(&d.metadata, RUN_NOW_ANNOTATION)
        .filter(|v| Some(*v) != status.last_run_now.as_ref())
        .cloned();
    let mut s = Slot {
        due: run_now.is_some() && !stopped,
        asked: run_now.is_some() && !stopped,
        run_now,
        ..Default::default()
    };
    // A run-now inside a blackout is refused unless it says `force`.
    if s.due
        && let Some(token) = &s.run_now
        && !forced(token)
        && let Some((name, until)) = sched.blackout_until(now)
    {
        (s.due, s.asked) = (false, false);
        let mut r = skipped(
            now,
            format!(
                "run-now {token:?} falls in the blackout {name} (until {until}); set the annotation to \"{token} force\" to run anyway"
            ),
        );
        r.run_now = true;
        s.missed.push(r);
    }
    if stopped || d.spec.suspend {
        return Ok(s);
    }
    let window = match &status.next_window {
        Some(w) => Window {
            start: w.start.0,
            end: w.end.0,
        },
        None => sched.next_window(now)?,
    };
    let (_, start) = *s
        .planned
        .insert(draw(o.planned, window, sched, now, random));
    let next_from = if now > clock::add(window.end, sched.starting_deadline) {
        s.missed.push(skipped(
            now,
            format!(
                "missed the window {} to {} by more than the starting deadline",
                window.start, window.end
            ),
        ));
        Some(now)
    } else if now >= start {
        // Blackouts apply at the real start too: wait for the end of one the drawn start
        // fell in, or skip the window when it lasts past the starting deadline.
        match sched.blackout_until(now) {
            None => {
                s.due = true;
                Some(window.end)
            }
            Some((_, until)) if until <= clock::add(window.end, sched.starting_deadline) => {
                s.requeue = Some(clock::until(now, until).max(MIN_REQUEUE));
                None
            }
            Some((name, until)) => {
                s.missed.push(skipped(
                    now,
                    format!(
                        "the drawn start {start} fell in the blackout {name}, which lasts until {until}, past the window's starting deadline"
                    ),
                ));
                Some(until)
            }
        }
    } else {
        s.requeue = Some(clock::until(now, start).max(MIN_REQUEUE));
        None
    };
    let window = match next_from {
        Some(after) => sched.next_window(after).unwrap_or(window),
        None => window,
    };
    // A new window's start is drawn on the next pass.
    let shown = next_from.is_none().then_some(start);
    s.next_window = Some(schedule::window_status(window, shown, d.spec.announce));
    Ok(s)
}

/// A run starts now (no run under way, not being deleted, the spec valid): resolve the
/// target ([`pick`]) and, unless another drill has it ([`busy_with`]), view it and run the
/// steady-state checks; put what was read in [`Observed::start`].
pub fn start_due(o: &Observed, now: Timestamp, draws: &Draws) -> bool {
    if o.deleting || active(o).is_some() {
        return false;
    }
    let Ok((sched, _)) = parse(&o.drill) else {
        return false;
    };
    slot(o, &sched, stop_reason(o).is_some(), now, draws.jitter).is_ok_and(|s| s.due)
}

/// The workload drilled among those the selector matches, by a random number.
pub fn pick(mut names: Vec<String>, random: u64) -> Option<String> {
    names.sort();
    (!names.is_empty()).then(|| {
        let i = (random % names.len() as u64) as usize;
        names.swap_remove(i)
    })
}

/// The other DrillSchedule of the namespace with a run on `target` (one drill at a time
/// per target).
pub fn busy_with(o: &Observed, target: &str) -> Option<String> {
    o.drills
        .iter()
        .find(|x| {
            x.metadata.namespace == o.drill.metadata.namespace
                && name_of(x) != name_of(&o.drill)
                && x.status
                    .as_ref()
                    .and_then(|s| s.active.as_ref())
                    .is_some_and(|a| a.target == target)
        })
        .map(name_of)
}

fn skipped(now: Timestamp, why: String) -> RunRecord {
    RunRecord {
        started_at: Time(now),
        result: RunResult::Skipped,
        target: None,
        recovery_seconds: None,
        restore_seconds: None,
        finished_at: Some(Time(now)),
        reason: Some(why),
        run_now: false,
        injected_at: None,
    }
}

fn skip(now: Timestamp, why: String) -> run::Step {
    run::Step {
        finished: Some(skipped(now, why.clone())),
        notes: vec![Note::warning("DrillSkipped", why)],
        ..Default::default()
    }
}

/// Starts a run on the target read (or skips it, with the reason).
fn start(o: &Observed, plan: &Plan, now: Timestamp, random: u64) -> run::Step {
    let reads = o.start.clone().unwrap_or_default();
    if let Some(why) = reads.denied {
        return skip(now, why);
    }
    let Some(target) = reads.target else {
        let kind = o.drill.spec.target.kind.as_str();
        return skip(now, format!("no {kind} matches the target"));
    };
    if let Some(other) = busy_with(o, &target) {
        return skip(now, format!("{target} is already being drilled by {other}"));
    }
    let Some((view, pre)) = reads.seen else {
        return skip(now, format!("{target} not found"));
    };
    run::start(plan, &view, &pre, now, &o.instance, random)
}

/// Adds a finished run: newest first, at most `historyLimit`.
fn record(status: &mut DrillScheduleStatus, r: RunRecord, d: &DrillSchedule) {
    run::tally(status.summary.get_or_insert_with(DrillSummary::default), &r);
    status.runs.insert(0, r);
    status
        .runs
        .truncate(d.spec.history_limit.unwrap_or(10).max(1) as usize);
}

/// The run state of `step` into status.
fn take(status: &mut DrillScheduleStatus, step: &run::Step, d: &DrillSchedule) {
    status.active = step.active.clone();
    if let Some(r) = &step.finished {
        record(status, r.clone(), d);
    }
}

/// The schedule's part of a pass and the start of a run that is due. Err: no next window.
fn scheduled(
    o: &Observed,
    (sched, plan): (&Schedule, &Plan),
    stopped: bool,
    now: Timestamp,
    draws: &Draws,
    status: &mut DrillScheduleStatus,
    out: &mut Outcome,
) -> Result<(), String> {
    let slot = slot(o, sched, stopped, now, draws.jitter)?;
    if let Some(token) = slot.run_now.clone() {
        status.last_run_now = Some(token);
    }
    status.next_window = slot.next_window;
    for r in slot.missed {
        // A person asked for a run: say why none starts.
        if r.run_now {
            out.notes.push(Note::warning(
                "DrillSkipped",
                r.reason.clone().unwrap_or_default(),
            ));
        }
        record(status, r, &o.drill);
    }
    if let Some(r) = slot.requeue {
        out.requeue = out.requeue.min(r);
    }
    out.planned = slot.planned;
    if slot.due {
        let mut step = start(o, plan, now, draws.start);
        // A run asked for with run-now is marked so: it is not an unannounced drill.
        if slot.asked {
            if let Some(a) = step.active.as_mut() {
                a.run_now = true;
            }
            if let Some(r) = step.finished.as_mut() {
                r.run_now = true;
            }
        }
        take(status, &step, &o.drill);
        out.notes.extend(step.notes);
        out.requeue = MIN_REQUEUE;
    }
    Ok(())
}

/// The Ready condition: the spec's sentence when it is invalid, else why no drill starts
/// or how the next one is shown.
fn ready(o: &Observed, parsed: &Result<(Schedule, Plan), String>, stop: Option<&str>) -> Cond {
    match (parsed, stop) {
        (Err(e), _) => Cond::new("Ready", Status::False, "InvalidSpec", e.clone()),
        (Ok(_), Some(why)) if !o.deleting => Cond::new("Ready", Status::True, "Stopped", why),
        (Ok(_), _) if o.drill.spec.suspend => Cond::new(
            "Ready",
            Status::True,
            "Suspended",
            "spec.suspend is true: no scheduled drills (run-now still works)",
        ),
        (Ok(_), _) => Cond::new(
            "Ready",
            Status::True,
            "Scheduled",
            if o.drill.spec.announce {
                "the next drill's start is in status.nextWindow.plannedStart"
            } else {
                "the next drill starts at an unannounced time inside status.nextWindow"
            },
        ),
    }
}

/// The pass: the run under way one step further, or the schedule (and a run starting),
/// then `Ready`.
pub fn decide(o: &Observed, now: Timestamp, draws: &Draws) -> Outcome {
    let d = &o.drill;
    let old = d.status.clone().unwrap_or_default();
    let parsed = parse(d);
    let stop = stop_reason(o);
    let mut status = old.clone();
    let mut out = Outcome {
        status: old.clone(),
        effect: None,
        notes: Vec::new(),
        requeue: IDLE_REQUEUE,
        planned: None,
    };
    // lastEvaluated moves when the pass changes status beyond the run's own step (the
    // run's state used to be written on its own, before the condition).
    let mut compared = old.clone();
    // No next window (a cron that never fires, blackouts over every slot): said in Ready.
    let mut no_window = None;
    if let Some(a) = &old.active {
        let step = active_step(o, a, now);
        if let Some(r) = step.requeue {
            out.requeue = out.requeue.min(r.max(MIN_REQUEUE));
        }
        if step.finished.is_some() {
            out.requeue = MIN_REQUEUE;
        }
        take(&mut status, &step, d);
        compared = status.clone();
        out.effect = step.effect.zip(o.target.clone()).map(|(e, v)| (v, e));
        out.notes = step.notes;
    } else if !o.deleting
        && let Ok((sched, plan)) = &parsed
        && let Err(e) = scheduled(
            o,
            (sched, plan),
            stop.is_some(),
            now,
            draws,
            &mut status,
            &mut out,
        )
    {
        no_window = Some(e);
    }
    let generation = d.metadata.generation;
    let cond = match &no_window {
        Some(e) => Cond::new(
            "Ready",
            Status::False,
            "NoNextWindow",
            format!("no drill can start: {e}; change the schedule or the blackouts"),
        ),
        None => ready(o, &parsed, stop.as_deref()),
    };
    status.common.conditions =
        conditions::merge(&status.common.conditions, &[cond], generation, &Time(now));
    status.common.observed_generation = generation;
    if status != compared {
        status.common.last_evaluated = Some(Time(now));
    }
    out.status = status;
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime};

    use super::*;
    use crate::api::drill_schedule::{DrillPhase, SavedState, WorkloadKind};
    use crate::testing::DrillBuilder;

    const NONE: Draws = Draws {
        jitter: 0,
        pick: 0,
        start: 0,
    };
    const STOPPED: &str =
        "stopped by the maturity.sre.dev/drills=stop annotation on the DrillSchedule";
    const ANNOUNCED: &str = "the next drill's start is in status.nextWindow.plannedStart";
    const UNANNOUNCED: &str =
        "the next drill starts at an unannounced time inside status.nextWindow";

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// `hh:mm:ss` on 2026-11-25 (UTC).
    fn at(hms: &str) -> Timestamp {
        ts(&format!("2026-11-25T{hms}Z"))
    }

    fn observed(d: DrillSchedule) -> Observed {
        Observed {
            drill: d,
            deleting: false,
            namespace: None,
            drills: Vec::new(),
            instance: "i".into(),
            planned: None,
            target: None,
            checks: None,
            start: None,
        }
    }

    fn web(replicas: i32) -> TargetView {
        TargetView {
            name: "Deployment/web".into(),
            replicas,
            available: true,
            pods: vec!["web-a".into(), "web-b".into(), "web-c".into()],
            uids: ["web-a", "web-b", "web-c"]
                .map(|n| (n.to_string(), format!("uid-{n}")))
                .into(),
            ready: ["web-a", "web-b", "web-c"]
                .map(|n| run::ReadyPod {
                    name: n.into(),
                    uid: format!("uid-{n}"),
                    since: ts("2026-01-01T00:00:00Z"),
                })
                .to_vec(),
            pod_nodes: BTreeMap::new(),
            nodes: Vec::new(),
            service_selector: None,
        }
    }

    /// `Deployment/web` found with 3 replicas, the steady state holding.
    fn found() -> Option<StartReads> {
        Some(StartReads {
            target: Some("Deployment/web".into()),
            seen: Some((web(3), CheckOutcome::Holds)),
            denied: None,
        })
    }

    fn window(start: Timestamp, end: Timestamp, planned: Option<Timestamp>) -> WindowStatus {
        WindowStatus {
            start: Time(start),
            end: Time(end),
            planned_start: planned.map(Time),
        }
    }

    fn ready(out: &Outcome) -> (&str, &str, &str) {
        let c = out
            .status
            .common
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("a Ready condition");
        (c.status.as_str(), c.reason.as_str(), c.message.as_str())
    }

    fn saved3() -> SavedState {
        SavedState {
            replicas: Some(3),
            ..Default::default()
        }
    }

    /// A scaleDown run injected at 10:00 (from 3 replicas), holding until 10:01.
    fn holding() -> ActiveRun {
        ActiveRun {
            started_at: MicroTime(at("10:00:00")),
            phase: DrillPhase::Holding,
            target: "Deployment/web".into(),
            saved: saved3(),
            injected_at: Some(MicroTime(at("10:00:00"))),
            restore_at: Some(MicroTime(at("10:01:00"))),
            restored_at: None,
            last_check_at: None,
            abort_reason: None,
            instance: "i".into(),
            resumed: None,
            run_now: false,
            unknown_checks: 0,
            steady_since: None,
        }
    }

    /// The holding run of [`holding`] aborted for `why` (checked at `checked`, if read):
    /// restoring 3 replicas, with its Event.
    fn assert_aborted(out: &Outcome, why: &str, checked: Option<Timestamp>) {
        assert_eq!(
            out.status.active,
            Some(ActiveRun {
                phase: DrillPhase::Restoring,
                last_check_at: checked.map(MicroTime),
                abort_reason: Some(why.into()),
                ..holding()
            })
        );
        assert_eq!(out.effect, Some((web(1), Effect::Restore(saved3()))));
        assert_eq!(
            out.notes,
            vec![Note::warning(
                "DrillAborted",
                format!("Deployment/web: {why}; restoring")
            )]
        );
    }

    fn restoring() -> ActiveRun {
        ActiveRun {
            phase: DrillPhase::Restoring,
            ..holding()
        }
    }

    /// The run `run::start` makes at `now` on `web(3)` with the start draw 4: pods sorted
    /// a, b, c rotated left by 4 % 3 = 1, the first one kept.
    fn started(now: Timestamp) -> ActiveRun {
        ActiveRun {
            started_at: MicroTime(now),
            phase: DrillPhase::Injecting,
            target: "Deployment/web".into(),
            saved: SavedState {
                killed_pods: vec!["web-b".into()],
                killed_uids: vec!["uid-web-b".into()],
                ..Default::default()
            },
            injected_at: None,
            restore_at: None,
            restored_at: None,
            last_check_at: None,
            abort_reason: None,
            instance: "i".into(),
            resumed: None,
            run_now: false,
            unknown_checks: 0,
            steady_since: None,
        }
    }

    /// [`started`], asked for with run-now.
    fn asked(now: Timestamp) -> ActiveRun {
        ActiveRun {
            run_now: true,
            ..started(now)
        }
    }

    fn skipped_at(now: Timestamp, target: Option<&str>, why: &str) -> RunRecord {
        RunRecord {
            started_at: Time(now),
            result: RunResult::Skipped,
            target: target.map(String::from),
            recovery_seconds: None,
            restore_seconds: None,
            finished_at: Some(Time(now)),
            reason: Some(why.into()),
            run_now: false,
            injected_at: None,
        }
    }

    fn ready_condition(reason: &str, message: &str, since: Timestamp) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: Time(since),
            observed_generation: Some(1),
        }
    }

    const DRAW_4: Draws = Draws {
        jitter: 0,
        pick: 0,
        start: 4,
    };

    #[test]
    fn an_announced_window_not_due_yet_waits_for_the_drawn_start() {
        let o = observed(DrillBuilder::new("d").jitter("1h").announce().build());
        let now = at("09:58:00");
        // 60 000 ms into [10:00, 11:00].
        let draws = Draws {
            jitter: 60_000,
            ..NONE
        };
        assert!(!start_due(&o, now, &draws));
        let out = decide(&o, now, &draws);
        assert_eq!(out.requeue, Duration::from_secs(180));
        assert_eq!(out.planned, Some((at("10:00:00"), at("10:01:00"))));
        assert_eq!(
            out.status.next_window,
            Some(window(at("10:00:00"), at("11:00:00"), Some(at("10:01:00"))))
        );
        assert_eq!(ready(&out), ("True", "Scheduled", ANNOUNCED));
        assert_eq!(out.status.common.last_evaluated, Some(Time(now)));
        assert_eq!(out.status.common.observed_generation, Some(1));
        assert_eq!(
            out.status.common.conditions,
            vec![ready_condition("Scheduled", ANNOUNCED, now)]
        );
        assert!(out.status.active.is_none() && out.status.runs.is_empty());
        assert!(out.notes.is_empty() && out.effect.is_none());
    }

    #[test]
    fn an_unannounced_window_hides_the_start_and_is_looked_at_within_the_idle_interval() {
        let o = observed(DrillBuilder::new("d").jitter("1h").build());
        let draws = Draws {
            jitter: 60_000,
            ..NONE
        };
        let out = decide(&o, at("08:00:00"), &draws);
        assert_eq!(
            out.status.next_window,
            Some(window(at("10:00:00"), at("11:00:00"), None))
        );
        assert_eq!(out.planned, Some((at("10:00:00"), at("10:01:00"))));
        assert_eq!(
            out.requeue, IDLE_REQUEUE,
            "2 h 1 min away: the idle interval"
        );
        assert_eq!(ready(&out), ("True", "Scheduled", UNANNOUNCED));
    }

    #[test]
    fn a_start_drawn_for_the_window_is_kept() {
        let d = DrillBuilder::new("d")
            .jitter("1h")
            .next_window(at("10:00:00"), at("11:00:00"))
            .build();
        let mut o = observed(d);
        o.planned = Some((at("10:00:00"), at("10:45:00")));
        // A new draw from 10:44 with 0 would be due at once; the kept one is not.
        assert!(!start_due(&o, at("10:44:00"), &NONE));
        let out = decide(&o, at("10:44:00"), &NONE);
        assert_eq!(out.planned, Some((at("10:00:00"), at("10:45:00"))));
        assert_eq!(out.requeue, Duration::from_secs(60));
        assert!(out.status.active.is_none());
    }

    #[test]
    fn inside_its_window_without_a_draw_the_start_is_drawn_from_now() {
        let d = DrillBuilder::new("d")
            .jitter("1h")
            .next_window(at("10:00:00"), at("11:00:00"))
            .build();
        let mut o = observed(d);
        // A draw for yesterday's window does not count.
        o.planned = Some((ts("2026-11-24T10:00:00Z"), ts("2026-11-24T10:30:00Z")));
        let draws = Draws {
            jitter: 600_000,
            ..NONE
        };
        // From 10:30 to 11:00, 600 000 ms in: 10:40.
        let out = decide(&o, at("10:30:00"), &draws);
        assert_eq!(out.planned, Some((at("10:00:00"), at("10:40:00"))));
        assert_eq!(out.requeue, IDLE_REQUEUE, "10 min away: the idle interval");
        assert_eq!(
            out.status.next_window,
            Some(window(at("10:00:00"), at("11:00:00"), None))
        );
    }

    #[test]
    fn a_due_window_starts_a_run_and_shows_the_next_window() {
        let d = DrillBuilder::new("d")
            .announce()
            .next_window(at("10:00:00"), at("10:00:00"))
            .build();
        let mut o = observed(d);
        let now = at("10:00:05");
        assert!(start_due(&o, now, &DRAW_4));
        o.start = found();
        let out = decide(&o, now, &DRAW_4);
        assert_eq!(out.status.active, Some(started(now)));
        assert_eq!(
            out.notes,
            vec![Note::normal(
                "DrillStarted",
                "drill on Deployment/web starts"
            )]
        );
        // The next window's start is drawn on the next pass: none shown yet.
        assert_eq!(
            out.status.next_window,
            Some(window(
                ts("2026-11-26T10:00:00Z"),
                ts("2026-11-26T10:00:00Z"),
                None
            ))
        );
        assert_eq!(out.planned, Some((at("10:00:00"), at("10:00:00"))));
        assert_eq!(out.requeue, Duration::from_millis(100));
        assert!(out.effect.is_none() && out.status.runs.is_empty());
    }

    #[test]
    fn a_window_missed_by_more_than_the_starting_deadline_is_skipped() {
        let d = DrillBuilder::new("d")
            .jitter("30m")
            .starting_deadline("15m")
            .next_window(at("10:00:00"), at("10:30:00"))
            .build();
        let mut o = observed(d);
        o.planned = Some((at("10:00:00"), at("10:12:00")));
        // 10:45 is the deadline itself: still due.
        assert!(start_due(&o, at("10:45:00"), &NONE));
        let now = at("11:00:00");
        assert!(!start_due(&o, now, &NONE));
        let out = decide(&o, now, &NONE);
        assert_eq!(
            out.status.runs,
            vec![skipped_at(
                now,
                None,
                "missed the window 2026-11-25T10:00:00Z to 2026-11-25T10:30:00Z by more than the starting deadline"
            )]
        );
        assert_eq!(
            out.status.summary,
            Some(DrillSummary {
                skipped: 1,
                ..Default::default()
            })
        );
        assert_eq!(
            out.status.next_window,
            Some(window(
                ts("2026-11-26T10:00:00Z"),
                ts("2026-11-26T10:30:00Z"),
                None
            ))
        );
        assert!(out.notes.is_empty(), "a missed window is no Event");
        assert_eq!(out.requeue, IDLE_REQUEUE);
        assert!(out.status.active.is_none());
    }

    #[test]
    fn runs_beyond_the_history_limit_are_dropped_oldest_first() {
        let old = |why: &str| skipped_at(at("09:00:00"), None, why);
        let d = DrillBuilder::new("d")
            .history_limit(2)
            .status(DrillScheduleStatus {
                runs: vec![old("newer"), old("older")],
                ..Default::default()
            })
            .next_window(at("08:00:00"), at("08:00:00"))
            .build();
        let out = decide(&observed(d), at("09:30:00"), &NONE);
        let reasons: Vec<&str> = out
            .status
            .runs
            .iter()
            .map(|r| r.reason.as_deref().unwrap_or_default())
            .collect();
        assert_eq!(
            reasons,
            [
                "missed the window 2026-11-25T08:00:00Z to 2026-11-25T08:00:00Z by more than the starting deadline",
                "newer"
            ]
        );
    }

    #[test]
    fn blackouts_move_the_next_window_past_them() {
        let d = DrillBuilder::new("d")
            .blackout("0 0 24 12 *", "48h")
            .build();
        let out = decide(&observed(d), ts("2026-12-23T12:00:00Z"), &NONE);
        // The 24th and 25th 10:00 fall in the blackout (until the 26th 00:00).
        let next = ts("2026-12-26T10:00:00Z");
        assert_eq!(out.status.next_window, Some(window(next, next, None)));
        assert_eq!(out.requeue, IDLE_REQUEUE);

        // After the run of the 23rd, the next window skips the blackout too.
        let day = ts("2026-12-23T10:00:00Z");
        let d = DrillBuilder::new("d")
            .blackout("0 0 24 12 *", "48h")
            .next_window(day, day)
            .build();
        let mut o = observed(d);
        let now = ts("2026-12-23T10:00:01Z");
        assert!(start_due(&o, now, &DRAW_4));
        o.start = found();
        let out = decide(&o, now, &DRAW_4);
        assert_eq!(out.status.active, Some(started(now)));
        assert_eq!(out.status.next_window, Some(window(next, next, None)));
    }

    #[test]
    fn run_now_inside_a_blackout_is_refused_unless_forced() {
        let d = |token: &str| {
            DrillBuilder::new("d")
                .blackout("0 0 24 12 *", "48h")
                .run_now(token)
                .build()
        };
        let now = ts("2026-12-24T10:00:00Z");
        let o = observed(d("1"));
        assert!(!start_due(&o, now, &DRAW_4), "nothing to read: refused");
        let out = decide(&o, now, &DRAW_4);
        assert_eq!(out.status.active, None);
        assert_eq!(out.status.last_run_now.as_deref(), Some("1"), "acted on");
        let why = "run-now \"1\" falls in the blackout 0 0 24 12 * for 48h (until 2026-12-26T00:00:00Z); set the annotation to \"1 force\" to run anyway";
        let mut refused = skipped_at(now, None, why);
        refused.run_now = true;
        assert_eq!(out.status.runs, vec![refused]);
        assert_eq!(
            out.notes,
            vec![Note::warning("DrillSkipped", why)],
            "the person who asked is told"
        );
        // With force it starts, marked as asked for: never an unannounced drill.
        let mut o = observed(d("1 force"));
        assert!(start_due(&o, now, &DRAW_4));
        o.start = found();
        let out = decide(&o, now, &DRAW_4);
        assert_eq!(out.status.active, Some(asked(now)));
        assert_eq!(out.status.last_run_now.as_deref(), Some("1 force"));
        let next = ts("2026-12-26T10:00:00Z");
        assert_eq!(out.status.next_window, Some(window(next, next, None)));
        assert!(forced("7 force") && !forced("force7") && !forced("7"));
    }

    #[test]
    fn blackouts_apply_at_the_drawn_start() {
        // The window 10:00-11:00; the drawn start 10:35 falls in a blackout of 10:30-10:40.
        let b = |blackout: &str| {
            DrillBuilder::new("d")
                .jitter("1h")
                .blackout("30 10 * * *", blackout)
                .next_window(at("10:00:00"), at("11:00:00"))
                .build()
        };
        let mut o = observed(b("10m"));
        o.planned = Some((at("10:00:00"), at("10:35:00")));
        let now = at("10:35:00");
        assert!(!start_due(&o, now, &DRAW_4));
        let out = decide(&o, now, &DRAW_4);
        assert_eq!(out.status.active, None);
        assert!(out.status.runs.is_empty());
        assert_eq!(
            out.requeue,
            Duration::from_secs(300),
            "until the blackout ends"
        );
        // At its end the run starts.
        let now = at("10:40:00");
        assert!(start_due(&o, now, &DRAW_4));
        o.start = found();
        let out = decide(&o, now, &DRAW_4);
        assert_eq!(
            out.status.active.map(|a| a.started_at),
            Some(MicroTime(now))
        );
        // A blackout until 12:30 outlasts the window's end plus the starting deadline (1h):
        // the window is skipped, with the reason.
        let mut o = observed(b("2h"));
        o.planned = Some((at("10:00:00"), at("10:35:00")));
        let now = at("10:35:00");
        assert!(!start_due(&o, now, &DRAW_4));
        let out = decide(&o, now, &DRAW_4);
        assert_eq!(
            out.status.runs,
            vec![skipped_at(
                now,
                None,
                "the drawn start 2026-11-25T10:35:00Z fell in the blackout 30 10 * * * for 2h, which lasts until 2026-11-25T12:30:00Z, past the window's starting deadline"
            )]
        );
        // The next window: tomorrow's slot 10:00 (not in a blackout) to 11:00.
        let next = out.status.next_window.unwrap();
        assert_eq!(
            (next.start.0, next.end.0),
            (ts("2026-11-26T10:00:00Z"), ts("2026-11-26T11:00:00Z"))
        );
    }

    #[test]
    fn a_suspended_drill_shows_no_window_and_starts_only_on_run_now() {
        let b = || {
            DrillBuilder::new("d")
                .suspend()
                .next_window(at("10:00:00"), at("10:00:00"))
        };
        let now = at("10:00:05");
        let o = observed(b().build());
        assert!(!start_due(&o, now, &NONE));
        let out = decide(&o, now, &NONE);
        assert_eq!(out.status.next_window, None);
        assert_eq!(
            ready(&out),
            (
                "True",
                "Suspended",
                "spec.suspend is true: no scheduled drills (run-now still works)"
            )
        );
        assert_eq!(out.requeue, IDLE_REQUEUE);
        assert_eq!(out.planned, None);
        assert!(out.status.active.is_none());

        let mut o = observed(b().run_now("1").build());
        assert!(start_due(&o, now, &DRAW_4));
        o.start = found();
        let out = decide(&o, now, &DRAW_4);
        assert_eq!(out.status.active, Some(asked(now)));
        assert_eq!(out.status.last_run_now.as_deref(), Some("1"));
        assert_eq!(out.status.next_window, None);
        assert_eq!(ready(&out).1, "Suspended");
        assert_eq!(out.requeue, Duration::from_millis(100));
    }

    #[test]
    fn the_stop_annotation_on_the_drill_removes_the_window_and_blocks_run_now() {
        let d = DrillBuilder::new("d")
            .stop()
            .run_now("2")
            .last_run_now("1")
            .next_window(at("10:00:00"), at("10:00:00"))
            .build();
        let o = observed(d);
        let now = at("10:00:05");
        assert!(!start_due(&o, now, &NONE));
        let out = decide(&o, now, &NONE);
        assert_eq!(ready(&out), ("True", "Stopped", STOPPED));
        assert_eq!(out.status.next_window, None);
        // The token is acted on (by not running): it does not start a run later.
        assert_eq!(out.status.last_run_now.as_deref(), Some("2"));
        assert!(out.status.active.is_none() && out.notes.is_empty());
        assert_eq!(out.requeue, IDLE_REQUEUE);
        assert_eq!(out.planned, None);
    }

    fn namespace(drills: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("n".into()),
                annotations: Some(BTreeMap::from([(
                    "maturity.sre.dev/drills".to_string(),
                    drills.to_string(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_stop_annotation_on_the_namespace_stops_drills_there() {
        let d = DrillBuilder::new("d")
            .next_window(at("10:00:00"), at("10:00:00"))
            .build();
        let mut o = observed(d);
        o.namespace = Some(namespace("stop"));
        let out = decide(&o, at("09:00:00"), &NONE);
        assert_eq!(
            ready(&out),
            (
                "True",
                "Stopped",
                "stopped by the maturity.sre.dev/drills=stop annotation on namespace n"
            )
        );
        assert_eq!(out.status.next_window, None);

        o.namespace = Some(namespace("go"));
        assert_eq!(stop_reason(&o), None, "only the value stop stops");
        assert_eq!(ready(&decide(&o, at("09:00:00"), &NONE)).1, "Scheduled");
    }

    #[test]
    fn deletion_then_the_drill_then_the_namespace_say_why_drills_stop() {
        let mut o = observed(DrillBuilder::new("d").stop().build());
        o.namespace = Some(namespace("stop"));
        assert_eq!(stop_reason(&o).as_deref(), Some(STOPPED));
        o.deleting = true;
        assert_eq!(
            stop_reason(&o).as_deref(),
            Some("the DrillSchedule is being deleted")
        );
    }

    #[test]
    fn a_stop_aborts_the_run_under_way_and_restores() {
        let d = DrillBuilder::new("d")
            .scale_down(1, "60s")
            .stop()
            .active(holding())
            .build();
        let mut o = observed(d);
        o.target = Some(web(1));
        let now = at("10:00:10");
        assert!(!check_due(&o, now));
        let out = decide(&o, now, &NONE);
        assert_aborted(&out, STOPPED, None);
        assert_eq!(out.requeue, Duration::from_millis(100));
        assert_eq!(ready(&out), ("True", "Stopped", STOPPED));
    }

    #[test]
    fn a_new_run_now_token_starts_a_run() {
        let tomorrow = ts("2026-11-26T10:00:00Z");
        let d = DrillBuilder::new("d")
            .run_now("2")
            .last_run_now("1")
            .next_window(tomorrow, tomorrow)
            .build();
        let mut o = observed(d);
        let now = at("10:00:05");
        assert!(start_due(&o, now, &DRAW_4));
        o.start = found();
        let out = decide(&o, now, &DRAW_4);
        assert_eq!(out.status.last_run_now.as_deref(), Some("2"));
        assert_eq!(out.status.active, Some(asked(now)));
        assert_eq!(
            out.status.next_window,
            Some(window(tomorrow, tomorrow, None)),
            "the window stays"
        );
        assert_eq!(out.requeue, Duration::from_millis(100));
    }

    #[test]
    fn a_run_now_token_already_acted_on_starts_nothing() {
        let tomorrow = ts("2026-11-26T10:00:00Z");
        let d = DrillBuilder::new("d")
            .run_now("1")
            .last_run_now("1")
            .next_window(tomorrow, tomorrow)
            .build();
        let o = observed(d);
        let now = at("10:00:05");
        assert!(!start_due(&o, now, &DRAW_4));
        let out = decide(&o, now, &DRAW_4);
        assert_eq!(out.status.last_run_now.as_deref(), Some("1"));
        assert!(out.status.active.is_none() && out.notes.is_empty());
        assert_eq!(out.requeue, IDLE_REQUEUE);
    }

    #[test]
    fn an_invalid_spec_is_not_ready_and_schedules_nothing() {
        let d = DrillBuilder::new("d")
            .check_interval("0s")
            .run_now("1")
            .next_window(at("10:00:00"), at("10:00:00"))
            .build();
        let o = observed(d);
        let now = at("10:00:05");
        assert!(!start_due(&o, now, &NONE));
        let out = decide(&o, now, &NONE);
        assert_eq!(
            ready(&out),
            (
                "False",
                "InvalidSpec",
                "checkInterval must be longer than zero"
            )
        );
        assert_eq!(
            out.status.next_window,
            Some(window(at("10:00:00"), at("10:00:00"), None)),
            "left as it was"
        );
        assert_eq!(
            out.status.last_run_now, None,
            "the token waits for a valid spec"
        );
        assert_eq!(out.requeue, IDLE_REQUEUE);
        assert_eq!(out.planned, None);

        let o = observed(DrillBuilder::new("d").schedule("0 10 * *").build());
        let out = decide(&o, now, &NONE);
        assert_eq!(
            ready(&out),
            (
                "False",
                "InvalidSpec",
                "schedule \"0 10 * *\": expected five fields (minute hour day-of-month month day-of-week)"
            )
        );
        assert_eq!(out.status.next_window, None);
    }

    #[test]
    fn a_run_under_way_whose_spec_became_invalid_only_restores() {
        let d = DrillBuilder::new("d")
            .scale_down(1, "60s")
            .check_interval("0s")
            .active(holding())
            .build();
        let mut o = observed(d);
        o.target = Some(web(1));
        let out = decide(&o, at("10:00:10"), &NONE);
        let why = "the spec is no longer valid: checkInterval must be longer than zero";
        assert_aborted(&out, why, None);
        assert_eq!(ready(&out).1, "InvalidSpec");
        assert_eq!(out.requeue, Duration::from_millis(100));
    }

    #[test]
    fn only_a_valid_failover_or_a_run_that_switched_a_service_reads_it() {
        let b = || DrillBuilder::new("d").failover("web", &[("app", "standby")], "5s");
        assert_eq!(failover_service(&b().build()).as_deref(), Some("web"));
        assert_eq!(failover_service(&b().check_interval("0s").build()), None);
        assert_eq!(failover_service(&DrillBuilder::new("d").build()), None);
        // A failover under way whose spec became invalid: its Service must still be read,
        // or restoring would never see the selector put back.
        let switched = ActiveRun {
            saved: SavedState {
                service: Some("web".into()),
                service_selector: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            ..holding()
        };
        let invalid = b().check_interval("0s").active(switched).build();
        assert_eq!(failover_service(&invalid).as_deref(), Some("web"));
    }

    /// A run-now pass at 10:00:05 with `start` read.
    fn start_with(b: DrillBuilder, start: StartReads, drills: Vec<DrillSchedule>) -> Outcome {
        let mut o = observed(b.run_now("1").build());
        let now = at("10:00:05");
        assert!(start_due(&o, now, &DRAW_4));
        o.start = Some(start);
        o.drills = drills;
        decide(&o, now, &DRAW_4)
    }

    fn assert_skipped(out: &Outcome, target: Option<&str>, why: &str) {
        let now = at("10:00:05");
        let asked = RunRecord {
            run_now: true,
            ..skipped_at(now, target, why)
        };
        assert_eq!(out.status.runs, vec![asked]);
        assert_eq!(out.notes, vec![Note::warning("DrillSkipped", why)]);
        assert!(out.status.active.is_none());
        assert_eq!(out.status.summary.as_ref().map(|s| s.skipped), Some(1));
        assert_eq!(out.status.last_run_now.as_deref(), Some("1"));
        assert_eq!(out.requeue, Duration::from_millis(100));
    }

    #[test]
    fn a_run_its_author_may_not_do_is_skipped_with_the_reason() {
        let why = "author system:serviceaccount:tenant-a:dev may not patch services in tenant-a";
        let reads = StartReads {
            denied: Some(why.into()),
            ..Default::default()
        };
        let out = start_with(DrillBuilder::new("d"), reads, vec![]);
        assert_skipped(&out, None, why);
        assert_eq!(out.effect, None);
    }

    #[test]
    fn a_check_naming_another_namespace_is_refused_with_a_sentence() {
        let tenancy = Tenancy::Enforced {
            label: "namespace".into(),
        };
        let own = DrillBuilder::new("d")
            .steady_state("health", "up{namespace=\"{{namespace}}\"}", 1.0)
            .build();
        assert_eq!(scoped_checks(&own, &tenancy), Ok(()));
        let other = DrillBuilder::new("d")
            .steady_state("health", "up", 1.0)
            .steady_state("rich", "max(bank_balance{namespace=\"bank\"})", 1.0)
            .build();
        assert_eq!(
            scoped_checks(&other, &tenancy),
            Err(r#"steadyState check rich (#2): the query may only read namespace n: its matcher namespace="bank" would read other namespaces' series"#.into())
        );
        assert_eq!(scoped_checks(&other, &Tenancy::Single), Ok(()));
    }

    #[test]
    fn a_run_needs_what_its_action_does_in_the_namespace() {
        let p = |verb, group, resource| Permission {
            verb,
            group,
            resource,
            namespace: "n".into(),
        };
        let d = |b: DrillBuilder| needs(&b.build());
        assert_eq!(
            d(DrillBuilder::new("d").pod_kill(1)),
            vec![p("delete", "", "pods")]
        );
        assert_eq!(
            d(DrillBuilder::new("d").scale_down(1, "1m")),
            vec![p("patch", "apps", "deployments")]
        );
        assert_eq!(
            d(DrillBuilder::new("d")
                .kind(WorkloadKind::StatefulSet)
                .scale_down(1, "1m")),
            vec![p("patch", "apps", "statefulsets")]
        );
        assert_eq!(
            d(DrillBuilder::new("d").failover("web", &[("v", "b")], "1m")),
            vec![p("patch", "", "services")]
        );
    }

    #[test]
    fn a_target_not_found_is_skipped() {
        let reads = StartReads {
            target: Some("Deployment/web".into()),
            seen: None,
            denied: None,
        };
        let out = start_with(DrillBuilder::new("d"), reads, vec![]);
        assert_skipped(&out, None, "Deployment/web not found");
    }

    #[test]
    fn no_matching_workload_is_skipped() {
        let b = DrillBuilder::new("d")
            .selector(&[("app", "db")])
            .kind(WorkloadKind::StatefulSet);
        let out = start_with(b, StartReads::default(), vec![]);
        assert_skipped(&out, None, "no StatefulSet matches the target");
    }

    #[test]
    fn a_target_another_drill_has_is_skipped() {
        let on_web = |name: &str, ns: &str| {
            DrillBuilder::new(name)
                .namespace(ns)
                .active(holding())
                .build()
        };
        let me = DrillBuilder::new("d").build();
        let drills = vec![me.clone(), on_web("elsewhere", "m"), on_web("other", "n")];
        let mut o = observed(me);
        o.drills = drills.clone();
        assert_eq!(busy_with(&o, "Deployment/web").as_deref(), Some("other"));
        assert_eq!(busy_with(&o, "Deployment/api"), None);
        o.drills = vec![on_web("d", "n"), on_web("elsewhere", "m")];
        assert_eq!(
            busy_with(&o, "Deployment/web"),
            None,
            "itself, another namespace"
        );

        let out = start_with(DrillBuilder::new("d"), found().unwrap(), drills);
        assert_skipped(
            &out,
            None,
            "Deployment/web is already being drilled by other",
        );
    }

    #[test]
    fn a_steady_state_not_holding_before_the_drill_is_skipped() {
        let reads = StartReads {
            target: Some("Deployment/web".into()),
            seen: Some((web(3), CheckOutcome::Breached("health 1 > 0.5".into()))),
            denied: None,
        };
        let out = start_with(DrillBuilder::new("d"), reads, vec![]);
        assert_skipped(
            &out,
            Some("Deployment/web"),
            "steady state does not hold before the drill: health 1 > 0.5",
        );
    }

    #[test]
    fn the_workload_is_picked_from_the_sorted_names() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(pick(names(&["c", "a", "b"]), 4).as_deref(), Some("b"));
        assert_eq!(pick(names(&["b", "a"]), 2).as_deref(), Some("a"));
        assert_eq!(pick(names(&["x"]), 99).as_deref(), Some("x"));
        assert_eq!(pick(Vec::new(), 7), None);
    }

    fn checked(steady: CheckOutcome, at: Timestamp) -> Option<Checked> {
        Some(Checked {
            checks: Checks {
                steady,
                abort: CheckOutcome::Holds,
            },
            at,
        })
    }

    #[test]
    fn a_due_check_that_is_breached_aborts_at_the_time_it_was_read() {
        let d = DrillBuilder::new("d")
            .scale_down(1, "60s")
            .check_interval("2s")
            .steady_state("health", "drill_test_health", 0.5)
            .active(holding())
            .build();
        let mut o = observed(d);
        o.target = Some(web(1));
        assert!(!check_due(&o, at("10:00:01")), "1 s after injection");
        let now = at("10:00:03");
        assert!(check_due(&o, now));
        let read = ts("2026-11-25T10:00:03.5Z");
        o.checks = checked(CheckOutcome::Breached("health 1 > 0.5".into()), read);
        let out = decide(&o, now, &NONE);
        let why = "steady state breached during the drill: health 1 > 0.5";
        assert_aborted(&out, why, Some(read));
        assert_eq!(out.requeue, Duration::from_millis(100));

        o.checks = checked(CheckOutcome::Holds, read);
        let out = decide(&o, now, &NONE);
        assert_eq!(
            out.status.active,
            Some(ActiveRun {
                last_check_at: Some(MicroTime(read)),
                // The steady state holds from this check on.
                steady_since: Some(MicroTime(read)),
                ..holding()
            })
        );
        assert_eq!(
            out.effect,
            Some((web(1), Effect::Scale(1))),
            "the fault is kept"
        );
    }

    #[test]
    fn a_hold_between_checks_keeps_the_fault_and_waits_for_the_next_check() {
        let d = DrillBuilder::new("d")
            .scale_down(1, "60s")
            .check_interval("2s")
            .active(holding())
            .build();
        let mut o = observed(d);
        o.target = Some(web(1));
        let out = decide(&o, at("10:00:01"), &NONE);
        assert_eq!(out.status.active, Some(holding()));
        assert_eq!(out.effect, Some((web(1), Effect::Scale(1))));
        assert_eq!(
            out.requeue,
            Duration::from_secs(1),
            "the next check is 1 s away"
        );
        assert!(out.notes.is_empty());
    }

    #[test]
    fn restoring_goes_on_until_the_saved_state_is_seen() {
        let d = DrillBuilder::new("d")
            .scale_down(1, "60s")
            .active(restoring())
            .build();
        let mut o = observed(d);
        let now = at("10:01:00");
        o.target = Some(web(1));
        let out = decide(&o, now, &NONE);
        assert_eq!(out.status.active, Some(restoring()));
        assert_eq!(out.effect, Some((web(1), Effect::Restore(saved3()))));
        assert!(out.notes.is_empty());
        assert_eq!(out.requeue, Duration::from_millis(250));

        // Seen restored: recovering; the restore stays the effect (act sends nothing then).
        o.target = Some(web(3));
        let out = decide(&o, now, &NONE);
        assert_eq!(
            out.status.active,
            Some(ActiveRun {
                phase: DrillPhase::Recovering,
                restored_at: Some(MicroTime(now)),
                ..restoring()
            })
        );
        assert_eq!(out.effect, Some((web(3), Effect::Restore(saved3()))));
        assert_eq!(
            out.notes,
            vec![Note::normal(
                "DrillRestored",
                "Deployment/web: restored (3 replicas)"
            )]
        );
        assert_eq!(out.requeue, Duration::from_millis(250));
    }

    #[test]
    fn an_aborted_run_is_recorded_once_restored() {
        let a = ActiveRun {
            abort_reason: Some("stopped by hand".into()),
            ..restoring()
        };
        let d = DrillBuilder::new("d")
            .scale_down(1, "60s")
            .active(a)
            .build();
        let mut o = observed(d);
        o.target = Some(web(3));
        let now = at("10:00:10");
        let out = decide(&o, now, &NONE);
        assert_eq!(out.status.active, None);
        assert_eq!(
            out.status.runs,
            vec![RunRecord {
                started_at: Time(at("10:00:00")),
                result: RunResult::Aborted,
                target: Some("Deployment/web".into()),
                recovery_seconds: None,
                restore_seconds: Some(10.0),
                finished_at: Some(Time(now)),
                reason: Some("stopped by hand".into()),
                run_now: false,
                injected_at: Some(MicroTime(at("10:00:00"))),
            }]
        );
        assert_eq!(
            out.status.summary,
            Some(DrillSummary {
                aborted: 1,
                ..Default::default()
            })
        );
        assert_eq!(out.effect, None);
        assert_eq!(out.requeue, Duration::from_millis(100));
    }

    #[test]
    fn a_target_deleted_during_the_run_ends_it() {
        let d = DrillBuilder::new("d")
            .scale_down(1, "60s")
            .active(holding())
            .build();
        let now = at("10:00:10");
        let out = decide(&observed(d), now, &NONE);
        assert_eq!(out.status.active, None);
        assert_eq!(
            out.status.runs,
            vec![RunRecord {
                started_at: Time(at("10:00:00")),
                result: RunResult::Aborted,
                target: Some("Deployment/web".into()),
                recovery_seconds: None,
                restore_seconds: None,
                finished_at: Some(Time(now)),
                reason: Some(
                    "Deployment/web was deleted during the drill; nothing left to restore".into()
                ),
                run_now: false,
                injected_at: Some(MicroTime(at("10:00:00"))),
            }]
        );
        assert_eq!(out.effect, None);
        assert_eq!(out.requeue, Duration::from_millis(100));
    }

    #[test]
    fn a_recovered_run_passes() {
        let a = ActiveRun {
            phase: DrillPhase::Recovering,
            saved: SavedState {
                killed_pods: vec!["web-b".into()],
                ..Default::default()
            },
            restore_at: None,
            ..holding()
        };
        let d = DrillBuilder::new("d").active(a).build();
        let mut o = observed(d);
        // web-b's replacement web-d was Ready at 10:00:04; the pass sees it at 10:00:06.
        let mut view = web(3);
        view.ready.retain(|p| p.name != "web-b");
        view.ready.push(run::ReadyPod {
            name: "web-d".into(),
            uid: "uid-web-d".into(),
            since: at("10:00:04"),
        });
        o.target = Some(view);
        let now = at("10:00:06");
        let out = decide(&o, now, &NONE);
        assert_eq!(
            out.status.runs,
            vec![RunRecord {
                started_at: Time(at("10:00:00")),
                result: RunResult::Passed,
                target: Some("Deployment/web".into()),
                recovery_seconds: Some(4.0),
                restore_seconds: None,
                finished_at: Some(Time(now)),
                reason: Some("recovered in 4.00 s (deadline 60 s)".into()),
                run_now: false,
                injected_at: Some(MicroTime(at("10:00:00"))),
            }]
        );
        assert_eq!(
            out.status.summary,
            Some(DrillSummary {
                passed: 1,
                pass_streak: 1,
                last_passed: Some(Time(now)),
                ..Default::default()
            })
        );
        assert_eq!(out.status.active, None);
        assert_eq!(out.effect, None);
        assert_eq!(out.requeue, Duration::from_millis(100));
    }

    #[test]
    fn a_drill_being_deleted_starts_no_run() {
        let d = DrillBuilder::new("d")
            .run_now("2")
            .last_run_now("1")
            .next_window(at("10:00:00"), at("10:00:00"))
            .build();
        let mut o = observed(d);
        o.deleting = true;
        let now = at("10:00:05");
        assert!(!start_due(&o, now, &DRAW_4));
        let out = decide(&o, now, &DRAW_4);
        assert!(out.status.active.is_none() && out.notes.is_empty());
        assert_eq!(out.status.last_run_now.as_deref(), Some("1"));
        assert_eq!(
            out.status.next_window,
            Some(window(at("10:00:00"), at("10:00:00"), None))
        );
        assert_eq!(
            ready(&out),
            ("True", "Scheduled", UNANNOUNCED),
            "not Stopped"
        );
        assert_eq!(out.requeue, IDLE_REQUEUE);
        assert_eq!(out.planned, None);
    }

    #[test]
    fn a_drill_being_deleted_restores_its_run() {
        let d = DrillBuilder::new("d")
            .scale_down(1, "60s")
            .active(holding())
            .build();
        let mut o = observed(d);
        o.deleting = true;
        o.target = Some(web(1));
        let out = decide(&o, at("10:00:10"), &NONE);
        assert_eq!(
            out.status.active,
            Some(ActiveRun {
                phase: DrillPhase::Restoring,
                abort_reason: Some("the DrillSchedule is being deleted".into()),
                ..holding()
            })
        );
        assert_eq!(out.effect, Some((web(1), Effect::Restore(saved3()))));
        assert_eq!(ready(&out).1, "Scheduled");
    }

    #[test]
    fn no_window_outside_the_blackouts_is_said_in_ready_and_nothing_starts() {
        let d = DrillBuilder::new("d")
            .blackout("0 0 * * *", "24h")
            .run_now("1")
            .build();
        let o = observed(d);
        let now = at("09:00:00");
        assert!(!start_due(&o, now, &NONE));
        let out = decide(&o, now, &NONE);
        assert_eq!(
            ready(&out),
            (
                "False",
                "NoNextWindow",
                "no drill can start: the blackouts cover the next 1000 slots; change the schedule or the blackouts"
            )
        );
        assert!(out.status.runs.is_empty() && out.status.next_window.is_none());
        assert!(out.notes.is_empty() && out.effect.is_none());
        assert_eq!(out.planned, None);
        assert_eq!(out.requeue, IDLE_REQUEUE);
        // The next pass changes nothing: no second write.
        let again = observed(
            DrillBuilder::new("d")
                .blackout("0 0 * * *", "24h")
                .run_now("1")
                .status(out.status.clone())
                .build(),
        );
        assert_eq!(decide(&again, at("09:05:00"), &NONE).status, out.status);
    }

    #[test]
    fn a_cron_that_never_fires_is_said_in_ready() {
        let o = observed(DrillBuilder::new("d").schedule("0 0 30 2 *").build());
        let out = decide(&o, at("09:00:00"), &NONE);
        let (status, reason, message) = ready(&out);
        assert_eq!((status, reason), ("False", "NoNextWindow"));
        assert!(
            message.starts_with("no drill can start: no next slot"),
            "{message}"
        );
    }

    #[test]
    fn a_pass_with_nothing_new_changes_nothing() {
        let was = DrillScheduleStatus {
            common: crate::api::common::CommonStatus {
                observed_generation: Some(1),
                last_evaluated: Some(Time(at("09:58:00"))),
                conditions: vec![ready_condition("Scheduled", ANNOUNCED, at("09:58:00"))],
            },
            next_window: Some(window(at("10:00:00"), at("11:00:00"), Some(at("10:01:00")))),
            ..Default::default()
        };
        let d = DrillBuilder::new("d")
            .jitter("1h")
            .announce()
            .status(was.clone())
            .build();
        let mut o = observed(d);
        o.planned = Some((at("10:00:00"), at("10:01:00")));
        let out = decide(&o, at("09:59:00"), &NONE);
        assert_eq!(out.status, was);
        assert_eq!(out.requeue, Duration::from_secs(120));
    }

    #[test]
    fn a_run_step_alone_does_not_move_last_evaluated() {
        let t0 = at("09:00:00");
        let was = DrillScheduleStatus {
            common: crate::api::common::CommonStatus {
                observed_generation: Some(1),
                last_evaluated: Some(Time(t0)),
                conditions: vec![ready_condition("Scheduled", UNANNOUNCED, t0)],
            },
            active: Some(restoring()),
            ..Default::default()
        };
        let b = || {
            DrillBuilder::new("d")
                .scale_down(1, "60s")
                .status(was.clone())
        };
        let mut o = observed(b().build());
        o.target = Some(web(3));
        let now = at("10:01:00");
        let out = decide(&o, now, &NONE);
        assert_eq!(
            out.status.active.as_ref().map(|a| a.phase),
            Some(DrillPhase::Recovering)
        );
        assert_eq!(out.status.common, was.common);

        // A new generation changes the condition: lastEvaluated moves.
        o.drill = b().generation(2).build();
        let out = decide(&o, now, &NONE);
        assert_eq!(out.status.common.last_evaluated, Some(Time(now)));
        assert_eq!(out.status.common.observed_generation, Some(2));
        assert_eq!(
            out.status.common.conditions[0].last_transition_time,
            Time(t0),
            "still True"
        );
    }
}

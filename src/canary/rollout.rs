//! The rollout state machine of one governed Deployment: from what is observed (the
//! Deployment, its ReplicaSets, the rollout record kept in status, a check result) to the
//! next record, the one change to make to the Deployment, and the Events to publish.
//!
//! The caller writes the records to status *before* applying the action, so a restarted
//! operator finds in status everything it needs to continue or undo.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::analysis::Verdict;
use super::deployment::{Action, DeploymentView, ReplicaSetView, template_digest};
use crate::api::canary_policy::{
    CheckCounts, Exposure, MetricResult, RollbackMode, RolloutPhase, RolloutRecord, SavedSettings,
    Totals, Transition,
};

/// Transitions kept per rollout record.
pub const MAX_TRANSITIONS: usize = 30;

/// The parts of a CanaryPolicy the state machine needs, parsed.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// (weight percent, analysis time) per step.
    pub steps: Vec<(i32, Duration)>,
    pub interval: Duration,
    pub failure_limit: u32,
    pub rollback: RollbackMode,
    /// The longest a step waits for its canary pods to be ready.
    pub progress_deadline: Duration,
    /// Inconclusive checks in a row tolerated (None: a step holds until data comes back).
    pub inconclusive_limit: Option<u32>,
}

/// A check that was run: per-metric results and the verdict over them.
#[derive(Debug, Clone)]
pub struct Check {
    pub results: Vec<MetricResult>,
    pub verdict: Verdict,
    pub message: String,
    /// The rollout's `PreRollout` hooks were called at this check and all answered 2xx.
    pub pre_rollout_passed: bool,
}

pub use crate::conditions::Note;

#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// Records to upsert in status (matched by deployment and startedAt), before acting.
    pub records: Vec<RolloutRecord>,
    /// The change to make to the Deployment (the patch may still be empty).
    pub action: Option<Action>,
    pub notes: Vec<Note>,
    /// Added to the policy's totals together with the records.
    pub totals: Totals,
    /// A check is due: run it and call [`plan`] again with it.
    pub check_due: bool,
    /// When to look again at the latest, if nothing changes before.
    pub requeue: Option<Duration>,
}

/// Replicas on the new revision at `weight` percent of `replicas` (see [`step_shape`]).
pub fn canary_replicas(weight: i32, replicas: i32) -> i32 {
    step_shape(weight, replicas).0
}

/// The pods of a step at `weight` percent of `replicas`: (canary, stable). The canary's
/// share `canary / (canary + stable)` is as close to the weight as whole pods allow, with
/// at least one stable pod serving below 100 %, never fewer than `replicas` pods in all and
/// never more stable ones than `replicas`: a 1-replica Deployment runs one canary pod next
/// to its stable one (50 %), 10 % of 4 is one canary next to 4 stable (20 %). Ties go to
/// fewer pods.
pub fn step_shape(weight: i32, replicas: i32) -> (i32, i32) {
    let r = replicas.max(1);
    if weight >= 100 {
        return (r, 0);
    }
    let w = f64::from(weight.max(1)) / 100.0;
    let mut best = (1, r);
    let mut best_err = f64::MAX;
    for new in 1..=r {
        let lo = (r - new).max(1);
        let ideal = f64::from(new) * (1.0 - w) / w;
        for old in [ideal.floor(), ideal.ceil()] {
            let old = (old as i64).clamp(i64::from(lo), i64::from(r)) as i32;
            let err = (f64::from(new) / f64::from(new + old) - w).abs();
            let fewer = new + old < best.0 + best.1;
            if err < best_err - 1e-9 || ((err - best_err).abs() <= 1e-9 && fewer) {
                best = (new, old);
                best_err = err;
            }
        }
    }
    best
}

/// The Deployment's rolling-update settings for step `step` of `p`, its canary having
/// `canary_ready` ready pods. A step first adds canary pods next to the stable ones (the
/// previous step's stable pods all kept: `maxUnavailable` as it was, `maxSurge` up to the
/// step's canary pods); once they are ready, it removes stable pods down to the step's.
/// The canary pods never become Available (see `deployment::HOLD_MIN_READY_SECONDS`), so
/// the Deployment controller stops exactly there.
pub fn step_hold(p: &Policy, step: usize, replicas: i32, canary_ready: i32) -> Action {
    let r = replicas.max(1);
    let weight = |i: usize| p.steps.get(i).map_or(100, |s| s.0);
    let (new, old) = step_shape(weight(step), r);
    let old_before = match step {
        0 => r,
        _ => step_shape(weight(step - 1), r).1,
    };
    if canary_ready < new {
        let unavailable = r - old_before;
        Action::Hold {
            max_surge: (new - unavailable).max(0),
            max_unavailable: unavailable,
        }
    } else {
        Action::Hold {
            max_surge: new + old - r,
            max_unavailable: r - old,
        }
    }
}

fn ms_between(from: &Time, to: Timestamp) -> i64 {
    to.as_millisecond() - from.0.as_millisecond()
}

/// Decides the next move for one Deployment of the policy.
///
/// `active` is the record of the rollout in progress for this Deployment (not terminal).
/// `deployment` is None when it no longer exists; `governed` is false when the policy no
/// longer selects it or is being deleted.
pub fn plan(
    p: &Policy,
    active: Option<&RolloutRecord>,
    deployment: Option<&DeploymentView>,
    replica_sets: &[ReplicaSetView],
    governed: bool,
    now: Timestamp,
    check: Option<&Check>,
) -> Decision {
    let mut out = Decision::default();
    let Some(d) = deployment else {
        if let Some(r) = active {
            let mut r = r.clone();
            go(
                &mut r,
                RolloutPhase::Released,
                now,
                "the Deployment was deleted",
                &mut out,
            );
            r.finished_at = Some(Time(now));
            out.records.push(r);
        }
        return out;
    };
    if !governed {
        if let Some(r) = active {
            let mut r = r.clone();
            let saved = r.saved.clone().unwrap_or_else(|| d.settings.clone());
            go(
                &mut r,
                RolloutPhase::Released,
                now,
                "the policy no longer governs this Deployment; its own settings are restored and it is unpaused",
                &mut out,
            );
            r.finished_at = Some(Time(now));
            out.records.push(r);
            out.action = Some(Action::Restore { saved });
        } else if d.hold.as_deref() == Some(p.name.as_str()) {
            out.action = Some(Action::Restore {
                saved: d.settings.clone(),
            });
        }
        return out;
    }
    let Some(active) = active else {
        if d.hold.as_deref() == Some(p.name.as_str()) {
            if d.paused {
                start(p, d, replica_sets, now, None, &mut out);
            } else {
                // Unpaused by someone before a rollout started: it runs unanalysed; let go.
                out.action = Some(Action::Restore {
                    saved: d.settings.clone(),
                });
                out.notes.push(Note {
                    reason: "CanaryNotHeld".into(),
                    message: format!(
                        "{} was unpaused before its rollout was taken over; it rolls out without analysis",
                        d.name
                    ),
                    warning: true,
                });
            }
        }
        return out;
    };

    let mut r = active.clone();
    let current = replica_sets.iter().find(|rs| rs.template == d.template);
    let stable = r
        .stable_hash
        .as_ref()
        .and_then(|h| replica_sets.iter().find(|rs| &rs.hash == h));

    // The template changed again while this rollout ran. While rolling back, the template
    // is the canary's until the rollback lands, then the stable one's: only a third one
    // (a fix pushed during the rollback) is a change, and is not rolled back with it.
    let changed = match (&r.canary_hash, r.phase) {
        (Some(known), RolloutPhase::RollingBack) => {
            let canary = replica_sets.iter().find(|rs| &rs.hash == known);
            stable.is_some_and(|s| s.template != d.template)
                && canary.is_some_and(|c| c.template != d.template)
        }
        (Some(known), _) => current.map(|c| &c.hash) != Some(known),
        (None, _) => false,
    };
    if changed {
        let saved = r.saved.clone().unwrap_or_else(|| d.settings.clone());
        if current.is_some() && current.map(|c| &c.hash) == r.stable_hash.as_ref() {
            go(
                &mut r,
                RolloutPhase::Superseded,
                now,
                "the template was set back to the stable revision by hand",
                &mut out,
            );
            r.finished_at = Some(Time(now));
            r.exposure = Some(exposure(&r, d.replicas, now));
            out.records.push(r);
            out.action = Some(Action::Restore { saved });
        } else {
            go(
                &mut r,
                RolloutPhase::Superseded,
                now,
                "the template changed again; a new rollout takes over",
                &mut out,
            );
            r.finished_at = Some(Time(now));
            let carry = (r.stable_hash.clone(), r.stable_revision.clone(), saved);
            out.records.push(r);
            start(p, d, replica_sets, now, Some(carry), &mut out);
        }
        return out;
    }

    let step = (r.step.max(0) as usize).min(p.steps.len().saturating_sub(1));
    let (k, keep) = step_shape(p.steps[step].0, d.replicas);
    let saved = r.saved.clone().unwrap_or_else(|| d.settings.clone());
    match r.phase {
        RolloutPhase::Progressing => {
            let ready = current.map_or(0, |c| c.ready_replicas);
            out.action = Some(step_hold(p, step, d.replicas, ready));
            if let Some(c) = current {
                r.canary_hash = Some(c.hash.clone());
                r.revision = c.revision.clone().unwrap_or_default();
                // The stable side: every other ReplicaSet's pods.
                let others: i32 = replica_sets
                    .iter()
                    .filter(|rs| rs.hash != c.hash)
                    .map(|rs| rs.replicas)
                    .sum();
                if d.observed() && c.replicas == k && c.ready_replicas >= k && others == keep {
                    r.step_started_at = Some(Time(now));
                    r.last_check_at = None;
                    if r.step == 0 && r.checks == CheckCounts::default() {
                        out.totals.analyzed += 1;
                    }
                    let why = format!(
                        "step {}: {} ready on revision {} next to {keep} stable ({}% of the pods); analysing for {}",
                        r.step + 1,
                        pods(k),
                        r.revision,
                        share(k, keep),
                        crate::duration::format_duration(p.steps[step].1)
                    );
                    go(&mut r, RolloutPhase::Analyzing, now, &why, &mut out);
                    out.requeue = Some(Duration::ZERO);
                }
            }
            if r.phase == RolloutPhase::Progressing {
                // Since the step began moving pods (the latest transition to Progressing).
                let since = r
                    .transitions
                    .iter()
                    .rev()
                    .find(|t| t.phase == RolloutPhase::Progressing)
                    .map(|t| &t.at)
                    .or(r.started_at.as_ref())
                    .map(|t| ms_between(t, now).max(0) as u64)
                    .unwrap_or(0);
                let deadline = p.progress_deadline.as_millis() as u64;
                if since >= deadline {
                    let ready = current.map(|c| c.ready_replicas).unwrap_or(0);
                    let why = format!(
                        "step {}: {ready} of {k} canary replicas ready after {} (progressDeadline)",
                        r.step + 1,
                        crate::duration::format_duration(p.progress_deadline)
                    );
                    halt(p, &mut r, stable, saved, d.replicas, now, why, &mut out);
                } else {
                    out.requeue = Some(Duration::from_millis(deadline - since));
                }
            }
            out.records.push(r);
        }
        RolloutPhase::Analyzing | RolloutPhase::Inconclusive => {
            out.action = Some(step_hold(p, step, d.replicas, i32::MAX));
            // The first check of a step comes one interval after its pods are ready, so
            // that the new pods' series exist in Prometheus.
            let since = r
                .last_check_at
                .as_ref()
                .or(r.step_started_at.as_ref())
                .map(|t| ms_between(t, now))
                .unwrap_or(i64::MAX);
            let interval_ms = p.interval.as_millis() as i64;
            if since < interval_ms {
                out.requeue = Some(Duration::from_millis((interval_ms - since) as u64));
                out.records.push(r);
                return out;
            }
            let Some(check) = check else {
                out.check_due = true;
                out.records.push(r);
                return out;
            };
            r.last_check_at = Some(Time(now));
            r.metrics = check.results.clone();
            r.pre_rollout_done |= check.pre_rollout_passed;
            out.requeue = Some(p.interval);
            match check.verdict {
                Verdict::Pass => {
                    r.checks.passed += 1;
                    r.checks.inconclusive_in_a_row = 0;
                    if r.phase == RolloutPhase::Inconclusive {
                        // Analysis time counts only with data: the step starts over.
                        r.step_started_at = Some(Time(now));
                        go(
                            &mut r,
                            RolloutPhase::Analyzing,
                            now,
                            "data again; the step's analysis starts over",
                            &mut out,
                        );
                    }
                    let elapsed = r
                        .step_started_at
                        .as_ref()
                        .map(|t| ms_between(t, now))
                        .unwrap_or(0);
                    if elapsed >= p.steps[step].1.as_millis() as i64 {
                        if step + 1 < p.steps.len() {
                            r.step += 1;
                            let (k2, keep2) = step_shape(p.steps[step + 1].0, d.replicas);
                            r.canary_replicas = k2;
                            r.stable_replicas = keep2;
                            let why = format!(
                                "step {} passed; step {}: {} on the new revision next to {keep2} stable",
                                step + 1,
                                step + 2,
                                pods(k2)
                            );
                            go(&mut r, RolloutPhase::Progressing, now, &why, &mut out);
                            let ready = current.map_or(0, |c| c.ready_replicas);
                            out.action = Some(step_hold(p, step + 1, d.replicas, ready));
                            out.requeue = Some(Duration::ZERO);
                        } else {
                            go(
                                &mut r,
                                RolloutPhase::Promoting,
                                now,
                                "every step passed; the Deployment's own settings are restored and the rollout completes",
                                &mut out,
                            );
                            out.action = Some(Action::Restore { saved });
                            out.requeue = Some(Duration::ZERO);
                        }
                    }
                }
                Verdict::Inconclusive => {
                    r.checks.inconclusive += 1;
                    r.checks.inconclusive_in_a_row += 1;
                    if !r.was_inconclusive {
                        r.was_inconclusive = true;
                        out.totals.inconclusive += 1;
                    }
                    let n = r.checks.inconclusive_in_a_row;
                    if let Some(limit) = p.inconclusive_limit.filter(|l| n > *l) {
                        let why = format!(
                            "{n} inconclusive checks in a row ({limit} allowed): {}",
                            check.message
                        );
                        halt(p, &mut r, stable, saved, d.replicas, now, why, &mut out);
                    } else if r.phase != RolloutPhase::Inconclusive {
                        go(
                            &mut r,
                            RolloutPhase::Inconclusive,
                            now,
                            &check.message,
                            &mut out,
                        );
                    }
                }
                Verdict::Fail => {
                    r.checks.failed += 1;
                    r.checks.inconclusive_in_a_row = 0;
                    if r.first_failed_at.is_none() {
                        r.first_failed_at = Some(Time(now));
                    }
                    if r.checks.failed >= p.failure_limit {
                        let why = format!(
                            "{} failed check(s) of {} allowed: {}",
                            r.checks.failed, p.failure_limit, check.message
                        );
                        halt(p, &mut r, stable, saved, d.replicas, now, why, &mut out);
                    } else {
                        out.notes.push(Note {
                            reason: "CanaryCheckFailed".into(),
                            message: format!(
                                "{} ({} of {} failures allowed)",
                                check.message, r.checks.failed, p.failure_limit
                            ),
                            warning: true,
                        });
                    }
                }
            }
            out.records.push(r);
        }
        RolloutPhase::Promoting => {
            out.action = Some(Action::Restore { saved });
            if d.complete() && current.is_some_and(|c| Some(&c.hash) == r.canary_hash.as_ref()) {
                r.finished_at = Some(Time(now));
                out.totals.promoted += 1;
                let why = format!("all {} replicas run revision {}", d.replicas, r.revision);
                go(&mut r, RolloutPhase::Promoted, now, &why, &mut out);
            }
            out.records.push(r);
        }
        RolloutPhase::RollingBack => {
            match stable {
                Some(s) => {
                    out.action = Some(Action::Rollback {
                        template: s.template.clone(),
                        saved,
                    });
                    let canary_left = r
                        .canary_hash
                        .as_ref()
                        .and_then(|h| replica_sets.iter().find(|rs| &rs.hash == h))
                        .map(|rs| rs.replicas)
                        .unwrap_or(0);
                    if d.complete() && current.is_some_and(|c| c.hash == s.hash) && canary_left == 0
                    {
                        r.finished_at = Some(Time(now));
                        let e = exposure(&r, d.replicas, now);
                        out.totals.rolled_back += 1;
                        out.totals.exposure_replica_minutes += e.replica_minutes;
                        r.exposure = Some(e);
                        let why = format!(
                            "all {} replicas are back on revision {}",
                            d.replicas,
                            r.stable_revision.clone().unwrap_or_default()
                        );
                        go(&mut r, RolloutPhase::RolledBack, now, &why, &mut out);
                    }
                }
                None => {
                    go(
                        &mut r,
                        RolloutPhase::Held,
                        now,
                        "the previous revision's ReplicaSet is gone; held for a person",
                        &mut out,
                    );
                    out.action = Some(Action::Pause);
                }
            }
            out.records.push(r);
        }
        RolloutPhase::Held => {
            out.action = Some(Action::Pause);
            out.records.push(r);
        }
        RolloutPhase::Promoted
        | RolloutPhase::RolledBack
        | RolloutPhase::Superseded
        | RolloutPhase::Released
        | RolloutPhase::Unguarded => {}
    }
    out
}

/// Stops a bad rollout as the policy says: back to the stable revision (`Automatic`, while
/// its ReplicaSet exists), or held for a person.
#[allow(clippy::too_many_arguments)]
fn halt(
    p: &Policy,
    r: &mut RolloutRecord,
    stable: Option<&ReplicaSetView>,
    saved: SavedSettings,
    replicas: i32,
    now: Timestamp,
    why: String,
    out: &mut Decision,
) {
    match p.rollback {
        RollbackMode::Automatic => halt_to_stable(r, stable, saved, replicas, now, why, out),
        RollbackMode::Pause => hold(
            r,
            replicas,
            now,
            format!("{why}; held for a person (rollback: Pause)"),
            out,
        ),
    }
}

/// Back to the stable revision, or held for a person when its ReplicaSet is gone.
pub(super) fn halt_to_stable(
    r: &mut RolloutRecord,
    stable: Option<&ReplicaSetView>,
    saved: SavedSettings,
    replicas: i32,
    now: Timestamp,
    why: String,
    out: &mut Decision,
) {
    match stable {
        Some(s) => {
            let why = format!(
                "{why}; restoring revision {}",
                r.stable_revision.clone().unwrap_or_default()
            );
            go(r, RolloutPhase::RollingBack, now, &why, out);
            out.action = Some(Action::Rollback {
                template: s.template.clone(),
                saved,
            });
            out.requeue = Some(Duration::ZERO);
        }
        None => hold(
            r,
            replicas,
            now,
            format!(
                "{why}; the previous revision's ReplicaSet is gone, so the rollout is held for a person"
            ),
            out,
        ),
    }
}

/// Paused where it stands, for a person.
fn hold(r: &mut RolloutRecord, replicas: i32, now: Timestamp, why: String, out: &mut Decision) {
    go(r, RolloutPhase::Held, now, &why, out);
    let e = exposure(r, replicas, now);
    out.totals.held += 1;
    out.totals.exposure_replica_minutes += e.replica_minutes;
    r.exposure = Some(e);
    out.action = Some(Action::Pause);
}

/// The record of a revision that rolled out without the policy (`settled` is the template
/// hash the Deployment ran before, `current` the ReplicaSet it runs now).
pub fn unguarded(
    d: &DeploymentView,
    settled: &str,
    current: &ReplicaSetView,
    now: Timestamp,
) -> Decision {
    let mut out = Decision::default();
    let mut r = RolloutRecord {
        deployment: d.name.clone(),
        revision: current.revision.clone().unwrap_or_default(),
        phase: RolloutPhase::Unguarded,
        step: 0,
        canary_replicas: 0,
        stable_replicas: 0,
        checks: CheckCounts::default(),
        canary_hash: Some(current.hash.clone()),
        stable_hash: Some(settled.to_string()),
        stable_revision: None,
        saved: None,
        started_at: Some(Time(now)),
        step_started_at: None,
        last_check_at: None,
        first_failed_at: None,
        finished_at: Some(Time(now)),
        metrics: Vec::new(),
        exposure: None,
        was_inconclusive: false,
        message: None,
        transitions: Vec::new(),
        post_rollout: None,
        pre_rollout_done: false,
    };
    let why = format!(
        "revision {} rolled out without analysis: the policy did not hold the template change (the admission webhook was not reached: the operator was down or unreachable, with failurePolicy Ignore)",
        r.revision
    );
    go(&mut r, RolloutPhase::Unguarded, now, &why, &mut out);
    out.totals.unguarded += 1;
    out.records.push(r);
    out
}

/// Starts a rollout of the template the webhook held: records the stable revision and the
/// Deployment's own settings (or those carried over from a superseded rollout).
fn start(
    p: &Policy,
    d: &DeploymentView,
    replica_sets: &[ReplicaSetView],
    now: Timestamp,
    carry: Option<(
        Option<String>,
        Option<String>,
        crate::api::canary_policy::SavedSettings,
    )>,
    out: &mut Decision,
) {
    let (stable_hash, stable_revision, saved) = match carry {
        Some(c) => c,
        None => {
            // The template it ran when held (recorded by the webhook), else the ReplicaSet of
            // the Deployment's revision (a Deployment held by an older operator).
            let recorded = d.stable_template.as_ref().and_then(|digest| {
                replica_sets.iter().find(|rs| {
                    &template_digest(&rs.template) == digest && rs.template != d.template
                })
            });
            let stable = recorded.or_else(|| {
                replica_sets.iter().find(|rs| {
                    rs.revision.is_some() && rs.revision == d.revision && rs.template != d.template
                })
            });
            let Some(stable) = stable else {
                out.action = Some(Action::Restore {
                    saved: d.settings.clone(),
                });
                out.notes.push(Note {
                    reason: "CanaryNotStarted".into(),
                    message: format!(
                        "{} has no running previous revision to compare with; released without analysis",
                        d.name
                    ),
                    warning: true,
                });
                return;
            };
            (
                Some(stable.hash.clone()),
                stable.revision.clone(),
                d.settings.clone(),
            )
        }
    };
    let (k, keep) = step_shape(p.steps[0].0, d.replicas);
    let mut r = RolloutRecord {
        deployment: d.name.clone(),
        revision: String::new(),
        phase: RolloutPhase::Progressing,
        step: 0,
        canary_replicas: k,
        stable_replicas: keep,
        checks: CheckCounts::default(),
        canary_hash: None,
        stable_hash,
        stable_revision,
        saved: Some(saved),
        started_at: Some(Time(now)),
        step_started_at: None,
        last_check_at: None,
        first_failed_at: None,
        finished_at: None,
        metrics: Vec::new(),
        exposure: None,
        was_inconclusive: false,
        message: None,
        transitions: Vec::new(),
        post_rollout: None,
        pre_rollout_done: false,
    };
    let why = format!(
        "new template of {} held; step 1: {} on it next to {keep} stable",
        d.name,
        pods(k)
    );
    go(&mut r, RolloutPhase::Progressing, now, &why, out);
    out.records.push(r);
    out.action = Some(step_hold(p, 0, d.replicas, 0));
    out.requeue = Some(Duration::ZERO);
}

/// A rollout that just started (`fresh`) of a template the policy rolled back before
/// (`previous`, whose new revision was the ReplicaSet `rs`): a GitOps tool's self-heal
/// applying it again. Held, paused before any pod moves, for a person to revert it at its
/// source or to give an order; not rolled out and back again in a loop.
pub fn applied_again(
    fresh: &RolloutRecord,
    rs: &ReplicaSetView,
    previous: &RolloutRecord,
    replicas: i32,
    now: Timestamp,
) -> Decision {
    let mut out = Decision::default();
    let mut r = fresh.clone();
    r.canary_hash = Some(rs.hash.clone());
    r.revision = rs.revision.clone().unwrap_or_default();
    r.canary_replicas = 0;
    let failed = previous
        .transitions
        .iter()
        .find(|t| t.phase == RolloutPhase::RollingBack)
        .map(|t| format!(" ({})", t.reason))
        .unwrap_or_default();
    let when = previous
        .finished_at
        .as_ref()
        .map(|t| format!(" at {}", t.0))
        .unwrap_or_default();
    let why = format!(
        "this template was rolled back{when}{failed} and was applied again (a GitOps tool's self-heal?): held, not rolled out again; revert it where it comes from, or give an order (maturity-operator canary resume, promote or abort)"
    );
    hold(&mut r, replicas, now, why, &mut out);
    out.records.push(r);
    out
}

/// Moves `r` to `phase`, keeps the transition and the message, and notes an Event.
/// The move for one Deployment when the policy's author may not patch Deployments (`why`):
/// a rollout under way is held where it is (nothing promoted or rolled back, no check run)
/// with the reason; a Deployment the webhook held before any rollout started is let go (it
/// rolls out without analysis); one the policy no longer governs is given back as always.
pub fn unauthorized(
    p: &Policy,
    active: Option<&RolloutRecord>,
    deployment: Option<&DeploymentView>,
    governed: bool,
    now: Timestamp,
    why: &str,
) -> Decision {
    let (Some(d), true) = (deployment, governed) else {
        return plan(p, active, deployment, &[], governed, now, None);
    };
    let mut out = Decision::default();
    match active {
        Some(r) => {
            let why = format!("held: {why}");
            if r.message.as_deref() != Some(why.as_str()) {
                let mut r = r.clone();
                r.message = Some(why.clone());
                out.records.push(r);
                out.notes.push(Note {
                    reason: "CanaryHeld".into(),
                    message: format!("{}: {why}", d.name),
                    warning: true,
                });
            }
        }
        None if d.hold.as_deref() == Some(p.name.as_str()) => {
            out.action = Some(Action::Restore {
                saved: d.settings.clone(),
            });
            out.notes.push(Note {
                reason: "CanaryNotHeld".into(),
                message: format!("{}: {why}; it rolls out without analysis", d.name),
                warning: true,
            });
        }
        None => {}
    }
    out
}

pub(super) fn go(
    r: &mut RolloutRecord,
    phase: RolloutPhase,
    now: Timestamp,
    why: &str,
    out: &mut Decision,
) {
    r.phase = phase;
    r.message = Some(why.to_string());
    if r.transitions.len() >= MAX_TRANSITIONS {
        r.transitions.remove(1);
    }
    // The pods serving from this moment on, as seen: a step that starts moving pods still
    // has the previous step's (its own count from when they are ready: Analyzing).
    let (k, stable) = match phase {
        RolloutPhase::RolledBack
        | RolloutPhase::Released
        | RolloutPhase::Superseded
        | RolloutPhase::Promoted
        | RolloutPhase::Unguarded => (0, None),
        RolloutPhase::Progressing => r
            .transitions
            .last()
            .map_or((0, None), |t| (t.canary_replicas, t.stable_replicas)),
        _ => (r.canary_replicas, Some(r.stable_replicas)),
    };
    r.transitions.push(Transition {
        at: Time(now),
        phase,
        step: r.step,
        canary_replicas: k,
        stable_replicas: stable.filter(|_| k > 0),
        reason: why.to_string(),
    });
    out.notes.push(Note {
        reason: format!("Canary{phase:?}"),
        message: format!("{}: {why}", r.deployment),
        warning: matches!(
            phase,
            RolloutPhase::RollingBack
                | RolloutPhase::RolledBack
                | RolloutPhase::Held
                | RolloutPhase::Inconclusive
                | RolloutPhase::Unguarded
        ),
    });
}

/// Exposure of users to the new revision from the rollout's start until `now`: the
/// largest share of replicas it had, minutes, and replica-minutes (steps' targets over time).
pub fn exposure(r: &RolloutRecord, replicas: i32, now: Timestamp) -> Exposure {
    let mut replica_ms = 0f64;
    let mut max_share = 0f64;
    for (i, t) in r.transitions.iter().enumerate() {
        let until = r.transitions.get(i + 1).map(|n| n.at.0).unwrap_or(now);
        let ms = (until.as_millisecond() - t.at.0.as_millisecond()).max(0) as f64;
        replica_ms += ms * t.canary_replicas as f64;
        // The canary's share of the pods serving (records from before surge steps: of
        // `replicas`).
        let stable = t
            .stable_replicas
            .unwrap_or((replicas - t.canary_replicas).max(0));
        if t.canary_replicas > 0 {
            max_share =
                max_share.max(f64::from(t.canary_replicas) / f64::from(t.canary_replicas + stable));
        }
    }
    let minutes = r
        .started_at
        .as_ref()
        .map(|s| ms_between(s, now).max(0) as f64 / 60_000.0)
        .unwrap_or(0.0);
    Exposure {
        max_share_percent: round2(100.0 * max_share),
        minutes: round2(minutes),
        replica_minutes: round2(replica_ms / 60_000.0),
    }
}

/// "1 pod", "2 pods".
fn pods(n: i32) -> String {
    match n {
        1 => "1 pod".into(),
        n => format!("{n} pods"),
    }
}

/// `canary` of `canary + stable` pods, in percent (whole).
fn share(canary: i32, stable: i32) -> i64 {
    (100.0 * f64::from(canary) / f64::from((canary + stable).max(1))).round() as i64
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::canary_policy::{CheckResult, SavedSettings};
    use serde_json::json;

    fn policy() -> Policy {
        Policy {
            name: "p".into(),
            steps: vec![(25, Duration::from_secs(10)), (50, Duration::from_secs(10))],
            interval: Duration::from_secs(2),
            failure_limit: 1,
            rollback: RollbackMode::Automatic,
            progress_deadline: Duration::from_secs(600),
            inconclusive_limit: None,
        }
    }

    fn tmpl(image: &str) -> serde_json::Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}})
    }

    fn user_settings() -> SavedSettings {
        SavedSettings {
            strategy: r#"{"type":"RollingUpdate"}"#.into(),
            min_ready_seconds: None,
            progress_deadline_seconds: Some(600),
        }
    }

    /// A Deployment of 4 replicas whose template is `image`.
    fn dep(image: &str, paused: bool, hold: bool) -> DeploymentView {
        DeploymentView {
            name: "web".into(),
            uid: "uid-web".into(),
            created: None,
            resource_version: "1".into(),
            generation: 2,
            observed_generation: 2,
            replicas: 4,
            paused,
            revision: Some("1".into()),
            hold: hold.then(|| "p".to_string()),
            stable_template: None,
            template: tmpl(image),
            settings: user_settings(),
            status_replicas: 4,
            updated_replicas: 4,
            available_replicas: 4,
        }
    }

    fn rs(hash: &str, image: &str, rev: &str, replicas: i32, ready: i32) -> ReplicaSetView {
        ReplicaSetView {
            hash: hash.into(),
            revision: Some(rev.into()),
            replicas,
            ready_replicas: ready,
            available_replicas: ready,
            template: tmpl(image),
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn check(verdict: Verdict) -> Check {
        Check {
            results: vec![MetricResult {
                name: "errors".into(),
                query: "q".into(),
                value: Some(0.0),
                stable_value: None,
                stable_query: None,
                result: CheckResult::Pass,
                dry_run: false,
                message: None,
            }],
            verdict,
            message: format!("{verdict:?}"),
            pre_rollout_passed: false,
        }
    }

    #[test]
    fn weights_become_canary_and_stable_pods() {
        // (canary, stable): the share canary / (canary + stable) closest to the weight,
        // at least `replicas` pods, at most `replicas` stable ones, one stable below 100 %.
        assert_eq!(step_shape(25, 4), (1, 3), "25 % exactly");
        assert_eq!(step_shape(50, 4), (2, 2), "50 % exactly");
        assert_eq!(step_shape(75, 4), (3, 1), "75 % exactly");
        assert_eq!(
            step_shape(10, 4),
            (1, 4),
            "20 % (one extra pod) is closer than 25 %"
        );
        assert_eq!(
            step_shape(51, 4),
            (2, 2),
            "50 % is closer than 60 % or 75 %"
        );
        assert_eq!(
            step_shape(50, 3),
            (2, 2),
            "2 of 4 pods: 50 %, one extra pod"
        );
        assert_eq!(
            step_shape(10, 1),
            (1, 1),
            "one replica: one canary next to it"
        );
        assert_eq!(step_shape(99, 1), (1, 1));
        assert_eq!(step_shape(100, 4), (4, 0), "the last step: all");
        assert_eq!(step_shape(10, 10), (1, 9));
        assert_eq!(step_shape(50, 0), (1, 1), "no replicas counts as one");
        assert_eq!(canary_replicas(25, 4), 1);
    }

    #[test]
    fn the_share_users_saw_is_of_the_pods_serving() {
        let tr = |at: i64, canary: i32, stable: Option<i32>| -> serde_json::Value {
            json!({"at": Time(t(at)), "phase": "Analyzing", "step": 0, "canaryReplicas": canary,
                   "stableReplicas": stable, "reason": ""})
        };
        let record = |transitions: Vec<serde_json::Value>| -> RolloutRecord {
            serde_json::from_value(
                json!({"deployment": "web", "phase": "RolledBack", "step": 0,
                "startedAt": Time(t(0)), "transitions": transitions}),
            )
            .unwrap()
        };
        // One canary next to one stable pod (a 1-replica Deployment): 50 %, not 100 %.
        let e = exposure(&record(vec![tr(0, 1, Some(1)), tr(60, 0, None)]), 1, t(60));
        assert_eq!((e.max_share_percent, e.replica_minutes), (50.0, 1.0));
        // A record from before surge steps: the share of the replicas.
        let e = exposure(&record(vec![tr(0, 1, None), tr(30, 0, None)]), 4, t(60));
        assert_eq!((e.max_share_percent, e.replica_minutes), (25.0, 0.5));
    }

    #[test]
    fn a_step_adds_canary_pods_first_then_removes_stable_ones() {
        let mut p = policy(); // 25 % then 50 %
        // 4 replicas, step 1 (1 canary, 3 stable): first surge one canary pod, keeping all
        // 4 stable (maxUnavailable 0); once it is ready, one stable pod may go.
        let hold = |s, u| Action::Hold {
            max_surge: s,
            max_unavailable: u,
        };
        assert_eq!(step_hold(&p, 0, 4, 0), hold(1, 0));
        assert_eq!(step_hold(&p, 0, 4, 1), hold(0, 1));
        // Step 2 (2 canary, 2 stable): one more canary pod next to the 3 stable, then down
        // to 2 stable.
        assert_eq!(step_hold(&p, 1, 4, 1), hold(1, 1));
        assert_eq!(step_hold(&p, 1, 4, 2), hold(0, 2));
        // One replica: one canary pod next to the stable one, which keeps serving.
        assert_eq!(step_hold(&p, 0, 1, 0), hold(1, 0));
        assert_eq!(step_hold(&p, 0, 1, 1), hold(1, 0));
        // Never both zero (the API server refuses it).
        p.steps = vec![(10, Duration::from_secs(1)), (100, Duration::from_secs(1))];
        for replicas in 1..=12 {
            for step in 0..2 {
                for ready in 0..=replicas {
                    let Action::Hold {
                        max_surge,
                        max_unavailable,
                    } = step_hold(&p, step, replicas, ready)
                    else {
                        unreachable!()
                    };
                    assert!(
                        max_surge + max_unavailable > 0 && max_surge >= 0 && max_unavailable >= 0
                    );
                }
            }
        }
    }

    #[test]
    fn an_ungoverned_or_unheld_deployment_is_left_alone() {
        let d = dep("v1", false, false);
        let rss = [rs("a", "v1", "1", 4, 4)];
        let out = plan(&policy(), None, Some(&d), &rss, true, t(0), None);
        assert!(out.records.is_empty() && out.action.is_none() && out.notes.is_empty());
        let out = plan(&policy(), None, Some(&d), &rss, false, t(0), None);
        assert!(out.action.is_none());
    }

    /// Walks a good version through both steps to Promoted, with the state kept only in
    /// the records (as status would), and checks every action on the way.
    #[test]
    fn a_good_version_walks_every_step_to_promoted() {
        let p = policy();
        let mut d = dep("v2", true, true);
        let mut rss = vec![rs("a", "v1", "1", 4, 4)];
        let out = plan(&p, None, Some(&d), &rss, true, t(0), None);
        let mut r = out.records[0].clone();
        assert_eq!(r.phase, RolloutPhase::Progressing);
        assert_eq!(r.stable_hash.as_deref(), Some("a"));
        assert_eq!(r.saved, Some(user_settings()));
        assert_eq!(
            out.action,
            Some(Action::Hold {
                max_surge: 1,
                max_unavailable: 0
            })
        );

        // The Deployment controller made the new ReplicaSet with one ready pod.
        d.paused = false;
        d.revision = Some("2".into());
        rss = vec![rs("a", "v1", "1", 3, 3), rs("b", "v2", "2", 1, 1)];
        let out = plan(&p, Some(&r), Some(&d), &rss, true, t(1), None);
        r = out.records[0].clone();
        assert_eq!(r.phase, RolloutPhase::Analyzing);
        assert_eq!(r.canary_hash.as_deref(), Some("b"));
        assert_eq!(r.revision, "2");
        assert_eq!(out.totals.analyzed, 1);

        // Checks every 2 s, the first one interval after the pods are ready; the step lasts 10 s.
        let out = plan(&p, Some(&r), Some(&d), &rss, true, t(2), None);
        assert!(!out.check_due);
        let out = plan(&p, Some(&r), Some(&d), &rss, true, t(3), None);
        assert!(out.check_due);
        let mut now = 3;
        loop {
            let out = plan(
                &p,
                Some(&r),
                Some(&d),
                &rss,
                true,
                t(now),
                Some(&check(Verdict::Pass)),
            );
            r = out.records[0].clone();
            if r.phase == RolloutPhase::Progressing {
                assert_eq!(
                    out.action,
                    Some(Action::Hold {
                        max_surge: 1,
                        max_unavailable: 1
                    })
                );
                break;
            }
            // not due again before the interval
            let early = plan(&p, Some(&r), Some(&d), &rss, true, t(now + 1), None);
            assert!(!early.check_due);
            assert_eq!(early.requeue, Some(Duration::from_secs(1)));
            now += 2;
            assert!(now < 20, "step 1 never ended");
        }
        assert_eq!(now, 11, "step 1 ends at its first passing check after 10 s");
        assert_eq!(r.step, 1);

        rss = vec![rs("a", "v1", "1", 2, 2), rs("b", "v2", "2", 2, 2)];
        r = plan(&p, Some(&r), Some(&d), &rss, true, t(12), None).records[0].clone();
        assert_eq!(r.phase, RolloutPhase::Analyzing);
        let out = plan(
            &p,
            Some(&r),
            Some(&d),
            &rss,
            true,
            t(22),
            Some(&check(Verdict::Pass)),
        );
        r = out.records[0].clone();
        assert_eq!(r.phase, RolloutPhase::Promoting);
        assert_eq!(
            out.action,
            Some(Action::Restore {
                saved: user_settings()
            })
        );

        // Not Promoted until every replica runs the new revision.
        d.updated_replicas = 2;
        assert_eq!(
            plan(&p, Some(&r), Some(&d), &rss, true, t(23), None).records[0].phase,
            RolloutPhase::Promoting
        );
        d.updated_replicas = 4;
        rss = vec![rs("a", "v1", "1", 0, 0), rs("b", "v2", "2", 4, 4)];
        let out = plan(&p, Some(&r), Some(&d), &rss, true, t(24), None);
        r = out.records[0].clone();
        assert_eq!(r.phase, RolloutPhase::Promoted);
        assert_eq!(out.totals.promoted, 1);
        assert!(r.finished_at.is_some());
        assert_eq!(r.checks.passed, 6);
        let phases: Vec<_> = r.transitions.iter().map(|t| t.phase).collect();
        use RolloutPhase::*;
        assert_eq!(
            phases,
            [
                Progressing,
                Analyzing,
                Progressing,
                Analyzing,
                Promoting,
                Promoted
            ]
        );
        assert!(out.notes.iter().any(|n| n.reason == "CanaryPromoted"));
    }

    fn analysing() -> (RolloutRecord, DeploymentView, Vec<ReplicaSetView>) {
        let mut d = dep("v2", true, true);
        let rss = vec![rs("a", "v1", "1", 4, 4)];
        let r = plan(&policy(), None, Some(&d), &rss, true, t(0), None).records[0].clone();
        d.paused = false;
        let rss = vec![rs("a", "v1", "1", 3, 3), rs("b", "v2", "2", 1, 1)];
        let r = plan(&policy(), Some(&r), Some(&d), &rss, true, t(60), None).records[0].clone();
        assert_eq!(r.phase, RolloutPhase::Analyzing);
        (r, d, rss)
    }

    #[test]
    fn a_failed_check_rolls_back_to_the_stable_template() {
        let (r, mut d, mut rss) = analysing();
        let out = plan(
            &policy(),
            Some(&r),
            Some(&d),
            &rss,
            true,
            t(62),
            Some(&check(Verdict::Fail)),
        );
        let r = out.records[0].clone();
        assert_eq!(r.phase, RolloutPhase::RollingBack);
        assert_eq!(r.first_failed_at, Some(Time(t(62))));
        assert_eq!(
            out.action,
            Some(Action::Rollback {
                template: tmpl("v1"),
                saved: user_settings()
            })
        );
        // The Deployment controller brings the stable ReplicaSet back.
        d.template = tmpl("v1");
        rss = vec![rs("a", "v1", "3", 4, 4), rs("b", "v2", "2", 1, 1)];
        let out = plan(&policy(), Some(&r), Some(&d), &rss, true, t(63), None);
        assert_eq!(
            out.records[0].phase,
            RolloutPhase::RollingBack,
            "canary pod still there"
        );
        rss[1].replicas = 0;
        let out = plan(&policy(), Some(&r), Some(&d), &rss, true, t(64), None);
        let r = &out.records[0];
        assert_eq!(r.phase, RolloutPhase::RolledBack);
        assert_eq!(out.totals.rolled_back, 1);
        let e = r.exposure.clone().unwrap();
        assert_eq!(e.max_share_percent, 25.0);
        assert_eq!(e.minutes, round2(64.0 / 60.0));
        // 1 canary pod seen ready from 60 s (Analyzing) to 64 s (the rolled-back transition
        // carries 0); nothing of it served while Progressing from 0 s.
        assert_eq!(e.replica_minutes, round2(4.0 / 60.0));
    }

    #[test]
    fn a_new_template_applied_during_a_rollback_starts_its_own_rollout() {
        let (r, mut d, _) = analysing();
        let out = plan(
            &policy(),
            Some(&r),
            Some(&d),
            &[rs("a", "v1", "1", 3, 3), rs("b", "v2", "2", 1, 1)],
            true,
            t(62),
            Some(&check(Verdict::Fail)),
        );
        let r = out.records[0].clone();
        assert_eq!(r.phase, RolloutPhase::RollingBack);
        // Before the rollback lands someone applies v3, the fix; the webhook holds it
        // (paused, no ReplicaSet for it yet).
        d.template = tmpl("v3");
        d.paused = true;
        let rss = vec![rs("a", "v1", "1", 3, 3), rs("b", "v2", "2", 1, 1)];
        let out = plan(&policy(), Some(&r), Some(&d), &rss, true, t(63), None);
        assert_eq!(out.records.len(), 2, "{:?}", out.records);
        assert_eq!(out.records[0].phase, RolloutPhase::Superseded);
        assert_eq!(
            out.records[0].message.as_deref(),
            Some("the template changed again; a new rollout takes over")
        );
        let next = &out.records[1];
        assert_eq!(next.phase, RolloutPhase::Progressing);
        assert_eq!(next.stable_hash.as_deref(), Some("a"), "compared with v1");
        assert!(
            !matches!(out.action, Some(Action::Rollback { .. })),
            "v3 is not rolled back: {:?}",
            out.action
        );
        // The canary's own template (v2) while rolling back is the rollback not yet landed.
        d.template = tmpl("v2");
        let out = plan(&policy(), Some(&r), Some(&d), &rss, true, t(63), None);
        assert_eq!(out.records[0].phase, RolloutPhase::RollingBack);
        assert_eq!(
            out.action,
            Some(Action::Rollback {
                template: tmpl("v1"),
                saved: user_settings()
            })
        );
    }

    #[test]
    fn failure_limit_and_pause_mode() {
        let (r, d, rss) = analysing();
        let mut p = policy();
        p.failure_limit = 2;
        let out = plan(
            &p,
            Some(&r),
            Some(&d),
            &rss,
            true,
            t(62),
            Some(&check(Verdict::Fail)),
        );
        let r = out.records[0].clone();
        assert_eq!(r.phase, RolloutPhase::Analyzing);
        assert!(out.notes.iter().any(|n| n.reason == "CanaryCheckFailed"));
        p.rollback = RollbackMode::Pause;
        let out = plan(
            &p,
            Some(&r),
            Some(&d),
            &rss,
            true,
            t(64),
            Some(&check(Verdict::Fail)),
        );
        assert_eq!(out.records[0].phase, RolloutPhase::Held);
        assert_eq!(out.action, Some(Action::Pause));
        assert_eq!(out.totals.held, 1);
        assert_eq!(out.records[0].first_failed_at, Some(Time(t(62))));
    }

    #[test]
    fn an_inconclusive_limit_stops_the_rollout_as_the_policy_says() {
        let (r, d, rss) = analysing();
        let p = Policy {
            inconclusive_limit: Some(2),
            ..policy()
        };
        let at = |r: &RolloutRecord, s, v| {
            plan(&p, Some(r), Some(&d), &rss, true, t(s), Some(&check(v)))
        };
        // Two in a row are tolerated; a pass between them starts the count over.
        let mut r = r;
        for (s, v) in [
            (62, Verdict::Inconclusive),
            (64, Verdict::Inconclusive),
            (66, Verdict::Pass),
            (68, Verdict::Inconclusive),
            (70, Verdict::Inconclusive),
        ] {
            r = at(&r, s, v).records[0].clone();
            assert!(
                matches!(
                    r.phase,
                    RolloutPhase::Inconclusive | RolloutPhase::Analyzing
                ),
                "{s}: {:?}",
                r.phase
            );
        }
        assert_eq!(r.checks.inconclusive_in_a_row, 2);
        // The third in a row: back to the stable revision.
        let out = at(&r, 72, Verdict::Inconclusive);
        let r2 = out.records[0].clone();
        assert_eq!(r2.phase, RolloutPhase::RollingBack);
        assert_eq!(
            r2.message.as_deref(),
            Some("3 inconclusive checks in a row (2 allowed): Inconclusive; restoring revision 1")
        );
        assert!(matches!(out.action, Some(Action::Rollback { .. })));
        // With rollback: Pause, held for a person.
        let p = Policy {
            rollback: RollbackMode::Pause,
            ..p.clone()
        };
        let out = plan(
            &p,
            Some(&r),
            Some(&d),
            &rss,
            true,
            t(72),
            Some(&check(Verdict::Inconclusive)),
        );
        assert_eq!(out.records[0].phase, RolloutPhase::Held);
        assert_eq!(out.action, Some(Action::Pause));
    }

    #[test]
    fn a_step_whose_pods_never_get_ready_stops_at_the_progress_deadline() {
        let p = Policy {
            progress_deadline: Duration::from_secs(300),
            ..policy()
        };
        let mut d = dep("v2", true, true);
        let rss = vec![rs("a", "v1", "1", 4, 4)];
        let r = plan(&p, None, Some(&d), &rss, true, t(0), None).records[0].clone();
        assert_eq!(r.phase, RolloutPhase::Progressing);
        // The canary pod is created but never ready (its image cannot be pulled).
        d.paused = false;
        let rss = vec![rs("a", "v1", "1", 3, 3), rs("b", "v2", "2", 1, 0)];
        let out = plan(&p, Some(&r), Some(&d), &rss, true, t(200), None);
        let r = out.records[0].clone();
        assert_eq!(r.phase, RolloutPhase::Progressing);
        assert_eq!(
            out.requeue,
            Some(Duration::from_secs(100)),
            "looks again at the deadline"
        );
        let out = plan(&p, Some(&r), Some(&d), &rss, true, t(300), None);
        let r = out.records[0].clone();
        assert_eq!(r.phase, RolloutPhase::RollingBack);
        assert_eq!(
            r.message.as_deref(),
            Some(
                "step 1: 0 of 1 canary replicas ready after 5m (progressDeadline); restoring revision 1"
            )
        );
        assert!(matches!(out.action, Some(Action::Rollback { .. })));
    }

    #[test]
    fn no_data_holds_and_restarts_the_step_clock() {
        let (r, d, rss) = analysing();
        let p = policy();
        let mut r = r;
        for s in [62, 64, 66, 68, 70, 72, 74] {
            let out = plan(
                &p,
                Some(&r),
                Some(&d),
                &rss,
                true,
                t(s),
                Some(&check(Verdict::Inconclusive)),
            );
            r = out.records[0].clone();
            assert_eq!(r.phase, RolloutPhase::Inconclusive);
            assert_eq!(
                out.action,
                Some(Action::Hold {
                    max_surge: 0,
                    max_unavailable: 1
                })
            );
        }
        assert_eq!(r.checks.inconclusive, 7);
        assert_eq!(
            r.transitions
                .iter()
                .filter(|t| t.phase == RolloutPhase::Inconclusive)
                .count(),
            1,
            "one transition, not one per check"
        );
        let out = plan(
            &p,
            Some(&r),
            Some(&d),
            &rss,
            true,
            t(76),
            Some(&check(Verdict::Pass)),
        );
        r = out.records[0].clone();
        assert_eq!(
            r.phase,
            RolloutPhase::Analyzing,
            "step not passed: its clock restarted"
        );
        assert_eq!(r.step, 0);
        assert_eq!(r.step_started_at, Some(Time(t(76))));
    }

    #[test]
    fn losing_the_policy_restores_the_deployment() {
        let (r, d, rss) = analysing();
        let out = plan(&policy(), Some(&r), Some(&d), &rss, false, t(70), None);
        assert_eq!(out.records[0].phase, RolloutPhase::Released);
        assert_eq!(
            out.action,
            Some(Action::Restore {
                saved: user_settings()
            })
        );
        let out = plan(&policy(), Some(&r), None, &rss, true, t(70), None);
        assert_eq!(out.records[0].phase, RolloutPhase::Released);
        assert!(out.action.is_none());
    }

    #[test]
    fn a_newer_template_supersedes_the_running_rollout() {
        let (r, mut d, mut rss) = analysing();
        d.template = tmpl("v3");
        d.paused = true;
        let out = plan(&policy(), Some(&r), Some(&d), &rss, true, t(70), None);
        assert_eq!(out.records.len(), 2);
        assert_eq!(out.records[0].phase, RolloutPhase::Superseded);
        let new = &out.records[1];
        assert_eq!(new.phase, RolloutPhase::Progressing);
        assert_eq!(new.stable_hash.as_deref(), Some("a"));
        assert_eq!(
            new.saved,
            Some(user_settings()),
            "the user's settings, not the held ones"
        );
        // Set back to the stable revision by hand: the rollout ends and the Deployment is given back.
        d.template = tmpl("v1");
        rss[0].revision = Some("3".into());
        let out = plan(&policy(), Some(&r), Some(&d), &rss, true, t(70), None);
        assert_eq!(out.records.len(), 1);
        assert_eq!(out.records[0].phase, RolloutPhase::Superseded);
        assert!(matches!(out.action, Some(Action::Restore { .. })));
    }

    #[test]
    fn no_previous_revision_means_no_canary() {
        let d = dep("v2", true, true);
        let out = plan(&policy(), None, Some(&d), &[], true, t(0), None);
        assert!(out.records.is_empty());
        assert!(matches!(out.action, Some(Action::Restore { .. })));
        assert_eq!(out.notes[0].reason, "CanaryNotStarted");
    }
}

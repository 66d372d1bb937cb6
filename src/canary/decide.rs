//! CanaryPolicy's decision, from plain values: the policy (its status is the memory of
//! every rollout), the Deployments and ReplicaSets of its namespace, the namespace's other
//! policies and the checks that were run, to the new status (with `Ready`), the changes to
//! make to Deployments, the Events, and when to look again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::analysis::QueryVars;
use super::deployment::{Action, DeploymentView, ReplicaSetView};
use super::rollout::{self, Check, Policy};
use crate::api::CanaryPolicy;
use crate::api::canary_policy::{
    CanaryPolicyStatus, CheckResult, ControlRecord, Coverage, HookType, MetricResult, PostRollout,
    RolloutPhase, RolloutRecord, SavedSettings, Totals,
};
use crate::api::names::{CANARY_CONTROL_ANNOTATION, HOLD_ANNOTATION};
use crate::authz::{self, Permission};
use crate::conditions::{self, Cond, Note, Status};
use crate::prom::enforce::Tenancy;

/// How often an idle policy is looked at without any event.
pub const IDLE_REQUEUE: Duration = Duration::from_secs(300);
/// The soonest a policy is looked at again.
pub const MIN_REQUEUE: Duration = Duration::from_millis(200);

/// Everything read for one pass over a policy.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Read fresh (its status is the memory of every rollout).
    pub policy: CanaryPolicy,
    /// The policy is being deleted: give every Deployment back.
    pub deleting: bool,
    /// The Deployments and ReplicaSets of the policy's namespace.
    pub deployments: Vec<Deployment>,
    pub replica_sets: Vec<ReplicaSet>,
    /// The CanaryPolicies of the namespace (this one included): which one governs a Deployment.
    pub policies: Vec<CanaryPolicy>,
    /// The checks that were due ([`due_checks`]) and were run, by Deployment.
    pub checks: BTreeMap<String, Check>,
    /// How the metrics' queries are scoped to the policy's namespace.
    pub tenancy: Tenancy,
    /// Whether the policy's author may patch the namespace's Deployments ([`needs`]); read
    /// only when the policy has work ([`has_work`]).
    pub authority: authz::Verdict,
    /// The policy's proven author (who gave its order of the moment, if any); None when
    /// authors are not checked or not known.
    pub author: Option<String>,
    /// The hosts the operator calls hooks on (`--canary-hook-hosts`).
    pub hook_hosts: Vec<String>,
    /// The answers of the `PostRollout` hooks called for the ended rollouts of
    /// [`due_post_hooks`], by Deployment and start.
    pub post_hooks: Vec<PostHooksCalled>,
}

/// The `PostRollout` hooks' answers for one ended rollout.
#[derive(Clone, Debug)]
pub struct PostHooksCalled {
    pub deployment: String,
    pub started_at: Option<Time>,
    pub results: Vec<MetricResult>,
}

/// What the policy does in its namespace for its author: patch Deployments (hold a rollout,
/// pause it, roll it back, give it back).
pub fn needs(p: &CanaryPolicy) -> Vec<Permission> {
    vec![Permission {
        verb: "patch",
        group: "apps",
        resource: "deployments",
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
    }]
}

/// Whether a pass may change a Deployment: one is governed, held for the policy, or has a
/// rollout under way. Only then is the author's right asked for.
pub fn has_work(o: &Observed) -> bool {
    let governed = governed(o, usable(o).is_ok());
    !candidates(o, &governed).is_empty()
}

/// What to do after a pass.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Written before any action: the records must be in status before a Deployment changes.
    pub status: CanaryPolicyStatus,
    /// Changes to make to Deployments (each patch may still turn out empty).
    pub actions: Vec<(DeploymentView, Action)>,
    pub notes: Vec<Note>,
    pub requeue: Duration,
}

/// The spec as the state machine needs it, or why it cannot be used (a sentence for Ready):
/// among others, a metric whose query would read another namespace's series.
pub fn parse(p: &CanaryPolicy, tenancy: &Tenancy) -> Result<Policy, String> {
    scoped_metrics(p, tenancy)?;
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
    if !crate::selector::valid(&p.spec.selector) {
        return Err("selector: not a valid label selector".into());
    }
    if crate::selector::is_empty(&p.spec.selector) {
        return Err("selector: an empty selector would govern every Deployment of the namespace; name the labels".into());
    }
    let progress_deadline = match &p.spec.progress_deadline {
        None => DEFAULT_PROGRESS_DEADLINE,
        Some(d) => d.parse().map_err(|e| format!("progressDeadline: {e}"))?,
    };
    Ok(Policy {
        name: p.metadata.name.clone().unwrap_or_default(),
        steps,
        interval,
        failure_limit: p.spec.analysis.failure_limit.max(1) as u32,
        rollback: p.spec.rollback,
        progress_deadline,
        inconclusive_limit: p.spec.analysis.inconclusive_limit.map(|n| n.max(1) as u32),
    })
}

/// Every metric's queries (placeholders filled with stand-ins) can be scoped to the
/// policy's namespace; else the sentence (the admission webhook refuses such a policy).
pub fn scoped_metrics(p: &CanaryPolicy, tenancy: &Tenancy) -> Result<(), String> {
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let vars = QueryVars {
        namespace: ns.clone(),
        deployment: "deployment".into(),
        canary_hash: "canary".into(),
        stable_hash: "stable".into(),
        interval: p.spec.analysis.interval.as_str().to_string(),
    };
    for (i, m) in p.spec.analysis.metrics.iter().enumerate() {
        let queries = [
            vars.canary_query(m).ok(),
            vars.stable_query(m).and_then(Result::ok),
        ];
        for q in queries.into_iter().flatten() {
            tenancy
                .scope(&q, &ns)
                .map_err(|e| format!("analysis.metrics[{i}] ({}): {e}", m.name))?;
        }
    }
    if let Some(min) = &p.spec.analysis.min_requests
        && let Ok(q) = vars.traffic_query(min)
    {
        tenancy
            .scope(&q, &ns)
            .map_err(|e| format!("analysis.minRequests: {e}"))?;
    }
    Ok(())
}

/// The spec as the state machine needs it ([`parse`]), with hooks the operator may call
/// (on `--canary-hook-hosts`, with a usable timeout); or why not.
fn usable(o: &Observed) -> Result<Policy, String> {
    let p = parse(&o.policy, &o.tenancy)?;
    for (i, h) in o.policy.spec.hooks.iter().enumerate() {
        if let Some(why) = crate::delivery::refused_by(
            &h.url,
            &o.hook_hosts,
            "--canary-hook-hosts",
            "calls hooks on",
        ) {
            return Err(format!("hooks[{i}] ({}): {why}", h.name));
        }
        super::analysis::hook_timeout(h).map_err(|e| format!("hooks[{i}]: {e}"))?;
    }
    Ok(p)
}

/// One Deployment the pass looks at.
struct Candidate {
    name: String,
    view: Option<DeploymentView>,
    replica_sets: Vec<ReplicaSetView>,
    active: Option<RolloutRecord>,
    governed: bool,
}

fn name_of(d: &Deployment) -> String {
    d.metadata.name.clone().unwrap_or_default()
}

fn owned_by(rs: &ReplicaSet, d: &Deployment) -> bool {
    let uid = d.metadata.uid.as_deref();
    rs.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
}

/// The Deployments this policy governs now.
fn governed(o: &Observed, valid: bool) -> BTreeSet<String> {
    let name = o.policy.metadata.name.as_deref();
    let ns = o.policy.metadata.namespace.clone().unwrap_or_default();
    o.deployments
        .iter()
        .filter(|d| {
            !o.deleting
                && valid
                && super::governing(
                    o.policies.iter(),
                    &ns,
                    &d.metadata.labels.clone().unwrap_or_default(),
                )
                .is_some_and(|g| g.metadata.name.as_deref() == name)
        })
        .map(name_of)
        .collect()
}

/// The Deployments to look at: governed ones, those with a rollout in progress, those held
/// for this policy.
fn candidates(o: &Observed, governed: &BTreeSet<String>) -> Vec<Candidate> {
    let policy = o.policy.metadata.name.clone().unwrap_or_default();
    let status = o.policy.status.clone().unwrap_or_default();
    let mut names = governed.clone();
    names.extend(
        status
            .rollouts
            .iter()
            .filter(|r| !r.phase.is_terminal())
            .map(|r| r.deployment.clone()),
    );
    names.extend(
        o.deployments
            .iter()
            .filter(|d| {
                d.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(HOLD_ANNOTATION))
                    == Some(&policy)
            })
            .map(name_of),
    );
    names
        .into_iter()
        .map(|name| {
            let d = o.deployments.iter().find(|d| name_of(d) == name);
            Candidate {
                view: d.map(DeploymentView::from_deployment),
                replica_sets: d
                    .map(|d| {
                        o.replica_sets
                            .iter()
                            .filter(|rs| owned_by(rs, d))
                            .filter_map(ReplicaSetView::from_replica_set)
                            .collect()
                    })
                    .unwrap_or_default(),
                active: status
                    .rollouts
                    .iter()
                    .find(|r| r.deployment == name && !r.phase.is_terminal())
                    .cloned(),
                governed: governed.contains(&name),
                name,
            }
        })
        .collect()
}

/// How soon to look again at a held Deployment whose change the Deployment controller has
/// not synced yet (its status's observedGeneration is behind): a watch event usually comes
/// first.
const UNSYNCED_RECHECK: Duration = Duration::from_secs(2);

/// How long a step waits for its canary pods by default (Flagger's default too).
pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);

/// The rules a pass runs by: the spec's, or (invalid spec) one that only lets go.
fn rules(parsed: &Result<Policy, String>, name: &str) -> Policy {
    match parsed {
        Ok(p) => p.clone(),
        Err(_) => Policy {
            name: name.to_string(),
            steps: vec![(100, Duration::ZERO)],
            interval: Duration::from_secs(30),
            failure_limit: 1,
            rollback: Default::default(),
            progress_deadline: DEFAULT_PROGRESS_DEADLINE,
            inconclusive_limit: None,
        },
    }
}

/// The rollouts whose check is due at `now`: run them (canary and stable queries) and put
/// the results in [`Observed::checks`] before calling [`decide`].
pub fn due_checks(o: &Observed, now: Timestamp) -> Vec<(String, RolloutRecord)> {
    let parsed = usable(o);
    if parsed.is_err() || o.authority.denied().is_some() {
        return Vec::new();
    }
    let rules = rules(&parsed, "");
    let governed = governed(o, true);
    candidates(o, &governed)
        .into_iter()
        .filter_map(|c| {
            let d = rollout::plan(
                &rules,
                c.active.as_ref(),
                c.view.as_ref(),
                &c.replica_sets,
                c.governed,
                now,
                None,
            );
            Some((c.name, c.active?)).filter(|_| d.check_due)
        })
        .collect()
}

/// The ended rollouts whose `PostRollout` hooks are due (marked by an earlier pass): call
/// them and put their answers in [`Observed::post_hooks`] before calling [`decide`].
pub fn due_post_hooks(o: &Observed) -> Vec<RolloutRecord> {
    if usable(o).is_err() || o.authority.denied().is_some() {
        return Vec::new();
    }
    let Some(status) = &o.policy.status else {
        return Vec::new();
    };
    status
        .rollouts
        .iter()
        .filter(|r| r.post_rollout.as_ref().is_some_and(|p| !p.done))
        .cloned()
        .collect()
}

/// `PostRollout` hooks in `status`: a rollout that became Promoted or RolledBack in this
/// pass is marked due (status is written before they are called); one whose hooks were
/// called records their answers, with a warning Event when one did not answer 2xx.
fn post_rollout(
    status: &mut CanaryPolicyStatus,
    old: &CanaryPolicyStatus,
    o: &Observed,
    now: Timestamp,
    notes: &mut Vec<Note>,
) {
    let has_hooks = o
        .policy
        .spec
        .hooks
        .iter()
        .any(|h| h.kind == HookType::PostRollout);
    for r in status.rollouts.iter_mut() {
        if let Some(p) = r.post_rollout.as_mut().filter(|p| !p.done) {
            if let Some(called) = o
                .post_hooks
                .iter()
                .find(|c| c.deployment == r.deployment && c.started_at == r.started_at)
            {
                p.done = true;
                p.at = Some(Time(now));
                p.results = called.results.clone();
                for failed in p.results.iter().filter(|m| m.result == CheckResult::Fail) {
                    notes.push(Note::warning(
                        "PostRolloutHookFailed",
                        format!(
                            "{} after the rollout of {} revision {}: {}",
                            failed.name,
                            r.deployment,
                            r.revision,
                            failed.message.as_deref().unwrap_or("failed")
                        ),
                    ));
                }
            }
            continue;
        }
        let ended = matches!(r.phase, RolloutPhase::Promoted | RolloutPhase::RolledBack);
        let ended_before = old.rollouts.iter().any(|x| {
            x.deployment == r.deployment && x.started_at == r.started_at && x.phase == r.phase
        });
        if has_hooks && ended && !ended_before && r.post_rollout.is_none() {
            r.post_rollout = Some(PostRollout::default());
        }
    }
}

/// The pass: every candidate's rollout step, coverage, `Ready`, and when to look again.
pub fn decide(o: &Observed, now: Timestamp) -> Outcome {
    let name = o.policy.metadata.name.clone().unwrap_or_default();
    let parsed = usable(o);
    let rules = rules(&parsed, &name);
    let governed = governed(o, parsed.is_ok());
    let old = o.policy.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut out = Outcome {
        status: CanaryPolicyStatus::default(),
        actions: Vec::new(),
        notes: Vec::new(),
        requeue: IDLE_REQUEUE,
    };
    let mut order = pending_order(o);
    for c in candidates(o, &governed) {
        let check = o.checks.get(&c.name).filter(|_| parsed.is_ok());
        let plan = |check| {
            rollout::plan(
                &rules,
                c.active.as_ref(),
                c.view.as_ref(),
                &c.replica_sets,
                c.governed,
                now,
                check,
            )
        };
        let mut decision = match o.authority.denied() {
            Some(why) => rollout::unauthorized(
                &rules,
                c.active.as_ref(),
                c.view.as_ref(),
                c.governed,
                now,
                why,
            ),
            None => plan(None),
        };
        if decision.check_due && check.is_some() {
            decision = plan(check);
        }
        if let Some(pending) = order.as_mut().filter(|p| p.deployment() == Some(&c.name)) {
            match (&parsed, o.authority.denied(), &c.active, &c.view) {
                (Err(why), _, _, _) => pending.outcome = format!("not done: {why}"),
                (_, Some(why), _, _) => pending.outcome = format!("not done: {why}"),
                (Ok(_), None, Some(active), Some(view)) => {
                    let order = pending.request.as_ref().map(|r| r.order);
                    if let Ok(order) = order {
                        match super::control::apply(
                            &rules,
                            order,
                            active,
                            view,
                            &c.replica_sets,
                            now,
                            &pending.by(),
                        ) {
                            Ok(d) => {
                                pending.outcome = d.records[0].message.clone().unwrap_or_default();
                                pending.done = true;
                                decision = d;
                            }
                            Err(why) => pending.outcome = why,
                        }
                    }
                }
                _ => {}
            }
        }
        // A rollout that just started of a template the policy rolled back before.
        if let Some(view) = &c.view
            && let Some(fresh) = decision
                .records
                .iter()
                .find(|r| r.phase == RolloutPhase::Progressing && r.transitions.len() == 1)
            && let Some(rs) = c
                .replica_sets
                .iter()
                .find(|rs| rs.template == view.template)
            && let Some(previous) = status.rollouts.iter().find(|r| {
                r.deployment == c.name
                    && r.phase == RolloutPhase::RolledBack
                    && r.canary_hash.as_ref() == Some(&rs.hash)
                    // Of this Deployment, not of an earlier one of its name.
                    && view.created.is_none_or(|made| {
                        r.started_at.as_ref().is_some_and(|s| s.0 >= made)
                    })
            })
        {
            if view.observed() {
                let mut again = rollout::applied_again(fresh, rs, previous, view.replicas, now);
                again.records.extend(
                    decision
                        .records
                        .iter()
                        .filter(|r| r.started_at != fresh.started_at)
                        .cloned(),
                );
                decision = again;
            } else {
                // The Deployment controller numbers the ReplicaSet made new again when it
                // syncs the change: until then its revision is the rolled-back rollout's,
                // and the held record would carry that number. Wait (nothing moves).
                decision = rollout::Decision {
                    requeue: Some(UNSYNCED_RECHECK),
                    ..Default::default()
                };
            }
        }
        if let Some(view) = &c.view
            && c.governed
            && let Some(current) = c
                .replica_sets
                .iter()
                .find(|rs| rs.template == view.template)
        {
            let quiet = c.active.is_none()
                && decision.records.is_empty()
                && decision.action.is_none()
                && view.hold.is_none()
                && !view.paused;
            let ended = !decision.records.is_empty()
                && decision.records.iter().all(|r| r.phase.is_terminal());
            // An entry seen on an earlier Deployment of this name does not count.
            let same_object = status
                .settled_uids
                .get(&c.name)
                .is_none_or(|uid| *uid == view.uid);
            let settle = |status: &mut CanaryPolicyStatus| {
                status.settled.insert(c.name.clone(), current.hash.clone());
                status.settled_uids.insert(c.name.clone(), view.uid.clone());
            };
            match status.settled.get(&c.name).cloned().filter(|_| same_object) {
                // A template no rollout of the policy brought.
                Some(settled) if quiet && settled != current.hash => {
                    decision = rollout::unguarded(view, &settled, current, now);
                    settle(&mut status);
                }
                // First sight, or the end of a rollout.
                None if quiet => settle(&mut status),
                _ if ended => settle(&mut status),
                _ => {}
            }
        }
        if let Some(after) = decision.requeue {
            out.requeue = out.requeue.min(after.max(MIN_REQUEUE));
        }
        if decision.records.iter().any(|r| !r.phase.is_terminal()) {
            out.requeue = out.requeue.min(rules.interval);
        }
        // Giving back settings that are the hold's own (the Deployment's current ones, read
        // on a pass after an ended record was written but its patch did not land: a
        // conflict, a crash) would leave the Deployment stuck: give back the user's, as the
        // newest record of it saved them, else the Deployment defaults.
        if let Some(Action::Restore { saved } | Action::Rollback { saved, .. }) =
            &mut decision.action
            && super::deployment::is_hold(saved)
        {
            *saved = decision
                .records
                .iter()
                .chain(status.rollouts.iter())
                .filter(|r| r.deployment == c.name)
                .filter_map(|r| r.saved.clone())
                .find(|s| !super::deployment::is_hold(s))
                .unwrap_or_else(|| SavedSettings {
                    strategy: "{}".into(),
                    ..Default::default()
                });
        }
        if !decision.records.is_empty() {
            upsert(&mut status, decision.records, &decision.totals, &o.policy);
        }
        if let (Some(action), Some(view)) = (decision.action, c.view) {
            out.actions.push((view, action));
        }
        out.notes.extend(decision.notes);
    }
    if let Some(pending) = order {
        status.last_control = Some(pending.record(now));
    }
    if parsed.is_ok() && o.authority.denied().is_none() {
        post_rollout(&mut status, &old, o, now, &mut out.notes);
        // Due hooks are called at the next pass, once this status is written.
        if status
            .rollouts
            .iter()
            .any(|r| r.post_rollout.as_ref().is_some_and(|p| !p.done))
        {
            out.requeue = MIN_REQUEUE;
        }
    }
    status.settled.retain(|d, _| governed.contains(d));
    status.settled_uids.retain(|d, _| governed.contains(d));
    status.coverage = Some(Coverage {
        deployments: o.deployments.len() as u32,
        governed: governed.len() as u32,
    });
    let ready = match (&parsed, o.authority.denied()) {
        (Ok(_), Some(why)) => Cond::new("Ready", Status::False, "AuthorNotAllowed", why),
        (Ok(_), None) => Cond::new(
            "Ready",
            Status::True,
            "Watching",
            format!(
                "governing {} of {} Deployments in the namespace",
                governed.len(),
                o.deployments.len()
            ),
        ),
        (Err(why), _) => Cond::new("Ready", Status::False, "InvalidSpec", why.clone()),
    };
    let generation = o.policy.metadata.generation;
    status.common.conditions =
        conditions::merge(&status.common.conditions, &[ready], generation, &Time(now));
    status.common.observed_generation = generation;
    if status != old {
        status.common.last_evaluated = Some(Time(now));
    }
    out.status = status;
    out
}

/// An order on the policy not acted on yet.
struct Pending {
    value: String,
    request: Result<super::control::Request, String>,
    author: Option<String>,
    done: bool,
    outcome: String,
}

impl Pending {
    fn deployment(&self) -> Option<&String> {
        self.request.as_ref().ok().map(|r| &r.deployment)
    }

    fn by(&self) -> String {
        self.author
            .clone()
            .unwrap_or_else(|| "someone (authors are not checked)".into())
    }

    fn record(self, now: Timestamp) -> ControlRecord {
        ControlRecord {
            request: self.value,
            by: self.author,
            at: Time(now),
            done: self.done,
            outcome: self.outcome,
        }
    }
}

/// The policy's order (`maturity.sre.dev/canary-control`) when it is one status has not
/// recorded yet: each value acts once.
fn pending_order(o: &Observed) -> Option<Pending> {
    let value = o
        .policy
        .metadata
        .annotations
        .as_ref()?
        .get(CANARY_CONTROL_ANNOTATION)?
        .clone();
    let done = o
        .policy
        .status
        .as_ref()
        .and_then(|s| s.last_control.as_ref())
        .is_some_and(|c| c.request == value);
    if done {
        return None;
    }
    let request = super::control::parse(&value);
    let outcome = match &request {
        Ok(r) => format!("no rollout of {} is under way", r.deployment),
        Err(why) => why.clone(),
    };
    Some(Pending {
        value,
        request,
        author: o.author.clone(),
        done: false,
        outcome,
    })
}

/// Puts `records` into status (replacing the same rollout under way), adds `totals`, keeps
/// the newest first and at most `historyLimit` ended rollouts (every running one is kept).
pub fn upsert(
    status: &mut CanaryPolicyStatus,
    records: Vec<RolloutRecord>,
    add: &Totals,
    p: &CanaryPolicy,
) {
    for r in records {
        // The rollout under way of the Deployment (status keeps whole seconds: an ended one
        // may have started in the same second); a new one goes first, so that it stays the
        // latest among those of its second.
        match status.rollouts.iter_mut().find(|x| {
            x.deployment == r.deployment && x.started_at == r.started_at && !x.phase.is_terminal()
        }) {
            Some(x) => *x = r,
            None => status.rollouts.insert(0, r),
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
    t.unguarded += add.unguarded;
    t.exposure_replica_minutes =
        ((t.exposure_replica_minutes + add.exposure_replica_minutes) * 100.0).round() / 100.0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::canary_policy::{RolloutPhase, SavedSettings};
    use crate::canary::analysis::Verdict;
    use crate::testing::{CanaryBuilder, DeploymentBuilder, at, replica_set};
    use serde_json::json;

    /// Steps of 25 % and 50 % of 4 replicas (1 and 2 pods), 10 s each, a check every 2 s.
    fn policy() -> CanaryBuilder {
        CanaryBuilder::new("p")
            .selects("app", "web")
            .step(25, "10s")
            .step(50, "10s")
    }

    fn observed(
        policy: CanaryPolicy,
        deployments: Vec<Deployment>,
        replica_sets: Vec<ReplicaSet>,
    ) -> Observed {
        Observed {
            policies: vec![policy.clone()],
            policy,
            deleting: false,
            deployments,
            replica_sets,
            checks: BTreeMap::new(),
            tenancy: Tenancy::default(),
            authority: authz::Verdict::Allowed,
            author: Some("alice".into()),
            hook_hosts: vec!["hooks.test".into()],
            post_hooks: Vec::new(),
        }
    }

    fn ready(s: &CanaryPolicyStatus) -> (String, String, String) {
        let c = s
            .common
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    fn check(verdict: Verdict) -> Check {
        Check {
            results: Vec::new(),
            verdict,
            message: format!("{verdict:?}"),
            pre_rollout_passed: false,
        }
    }

    /// The Deployment's own settings as the state machine saves them (no strategy set).
    fn own_settings() -> SavedSettings {
        SavedSettings {
            strategy: "{}".into(),
            min_ready_seconds: None,
            progress_deadline_seconds: None,
        }
    }

    /// web on its new template v2 (held for p, unpaused) with `stable` pods on revision 1
    /// (v1, ReplicaSet a) and `canary` on revision 2 (v2, ReplicaSet b).
    fn rolling(stable: i32, canary: i32) -> (Deployment, Vec<ReplicaSet>) {
        let web = DeploymentBuilder::new("web", "v2")
            .held_for("p")
            .unpaused()
            .build();
        let rss = vec![
            replica_set(&web, "a", "v1", "1", stable, stable),
            replica_set(&web, "b", "v2", "2", canary, canary),
        ];
        (web, rss)
    }

    /// The status of `p` after web's rollout started at 0 and its first step's canary pods
    /// were ready at 10 s.
    fn analysing(p: impl Fn() -> CanaryBuilder, stable: i32, canary: i32) -> CanaryPolicyStatus {
        let held = DeploymentBuilder::new("web", "v2").held_for("p").build();
        let (web, rss) = rolling(stable, canary);
        let start = decide(
            &observed(p().build(), vec![held], vec![rss[0].clone()]),
            at(0),
        );
        decide(
            &observed(p().status(&start.status).build(), vec![web], rss),
            at(10),
        )
        .status
    }

    #[test]
    fn a_hook_on_a_host_the_operator_does_not_call_makes_the_policy_unusable() {
        let with_hook = |url: &str| {
            let mut p = policy().build();
            p.spec.hooks = vec![
                serde_json::from_value(json!({"name": "load", "type": "Rollout", "url": url}))
                    .unwrap(),
            ];
            p
        };
        let web = DeploymentBuilder::new("web", "v1").build();
        let ok = decide(
            &observed(
                with_hook("http://hooks.test/load"),
                vec![web.clone()],
                vec![],
            ),
            at(0),
        );
        assert_eq!(ready(&ok.status).1, "Watching");
        let out = decide(
            &observed(
                with_hook("http://kubernetes.default.svc/api"),
                vec![web],
                vec![],
            ),
            at(0),
        );
        assert_eq!(
            ready(&out.status),
            (
                "False".into(),
                "InvalidSpec".into(),
                "hooks[0] (load): host kubernetes.default.svc is not one the operator calls hooks on (--canary-hook-hosts: hooks.test)".into()
            )
        );
    }

    #[test]
    fn a_revision_that_rolled_out_without_the_policy_is_recorded_unguarded() {
        use crate::api::canary_policy::RolloutPhase;
        // First sight of web on v1 (ReplicaSet a): settled, nothing recorded.
        let v1 = DeploymentBuilder::new("web", "v1").build();
        let rss = vec![replica_set(&v1, "a", "v1", "1", 4, 4)];
        let first = decide(&observed(policy().build(), vec![v1], rss), at(0));
        assert_eq!(
            first.status.settled.get("web").map(String::as_str),
            Some("a")
        );
        assert!(first.status.rollouts.is_empty());
        // v2 rolled out while the webhook was not reached: not held, not paused.
        let v2 = DeploymentBuilder::new("web", "v2").build();
        let rss = vec![
            replica_set(&v2, "a", "v1", "1", 0, 0),
            replica_set(&v2, "b", "v2", "2", 4, 4),
        ];
        let o = observed(
            policy().status(&first.status).build(),
            vec![v2.clone()],
            rss.clone(),
        );
        let out = decide(&o, at(60));
        let r = &out.status.rollouts[0];
        assert_eq!(r.phase, RolloutPhase::Unguarded);
        assert_eq!(r.revision, "2");
        assert_eq!(
            r.message.as_deref(),
            Some(
                "revision 2 rolled out without analysis: the policy did not hold the template change (the admission webhook was not reached: the operator was down or unreachable, with failurePolicy Ignore)"
            )
        );
        assert_eq!(out.status.totals.as_ref().map(|t| t.unguarded), Some(1));
        assert_eq!(out.status.settled.get("web").map(String::as_str), Some("b"));
        assert!(out.actions.is_empty(), "nothing is done to the Deployment");
        assert!(
            out.notes
                .iter()
                .any(|n| n.reason == "CanaryUnguarded" && n.warning)
        );
        // A Deployment deleted and made again under the name, on v1: first sight of it,
        // not a revision rolled out unguarded.
        let remade = DeploymentBuilder::new("web", "v1")
            .remade("uid-web-2", at(90))
            .build();
        let remade_rss = vec![replica_set(&remade, "c", "v1", "1", 4, 4)];
        let fresh = decide(
            &observed(
                policy().status(&out.status).build(),
                vec![remade],
                remade_rss,
            ),
            at(100),
        );
        assert_eq!(
            fresh.status.rollouts, out.status.rollouts,
            "nothing recorded"
        );
        assert_eq!(
            fresh.status.settled.get("web").map(String::as_str),
            Some("c")
        );
        assert_eq!(
            fresh.status.settled_uids.get("web").map(String::as_str),
            Some("uid-web-2")
        );
        // Seen once: the next pass records nothing more.
        let again = decide(
            &observed(policy().status(&out.status).build(), vec![v2], rss),
            at(120),
        );
        assert_eq!(again.status, {
            let mut s = out.status.clone();
            s.common = again.status.common.clone();
            s
        });
        assert_eq!(again.status.rollouts.len(), 1);
    }

    #[test]
    fn a_rolled_back_template_applied_again_is_held_not_rolled_out_again() {
        use crate::api::canary_policy::RolloutPhase;
        // Roll v2 back: analysing, then a failed check, then every pod back on v1.
        let status = analysing(policy, 3, 1);
        let (web, rss) = rolling(3, 1);
        let mut o = observed(policy().status(&status).build(), vec![web], rss);
        o.checks.insert("web".into(), check(Verdict::Fail));
        let rolling_back = decide(&o, at(20)).status;
        let v1 = DeploymentBuilder::new("web", "v1")
            .held_for("p")
            .unpaused()
            .build();
        let back = vec![
            replica_set(&v1, "a", "v1", "3", 4, 4),
            replica_set(&v1, "b", "v2", "2", 0, 0),
        ];
        let rolled_back = decide(
            &observed(policy().status(&rolling_back).build(), vec![v1], back),
            at(30),
        )
        .status;
        assert_eq!(rolled_back.rollouts[0].phase, RolloutPhase::RolledBack);
        // A GitOps self-heal applies v2 again: the webhook holds it (paused); its
        // ReplicaSet b is the one that was rolled back.
        let again = DeploymentBuilder::new("web", "v2").held_for("p").build();
        // (the Deployment's revision is its builder's, 1: that of ReplicaSet a here)
        let rss = vec![
            replica_set(&again, "a", "v1", "1", 4, 4),
            replica_set(&again, "b", "v2", "2", 0, 0),
        ];
        // Before the Deployment controller has synced the change (generation 2, observed
        // 1), b still carries the rolled-back rollout's revision: nothing is recorded and
        // nothing moves yet; the controller looks again.
        let mut unsynced = again.clone();
        unsynced.metadata.generation = Some(2);
        let early = decide(
            &observed(
                policy().status(&rolled_back).build(),
                vec![unsynced],
                rss.clone(),
            ),
            at(40),
        );
        assert_eq!(early.status.rollouts, rolled_back.rollouts, "no record yet");
        assert!(early.actions.is_empty(), "{:?}", early.actions);
        assert!(
            early.requeue <= Duration::from_secs(5),
            "{:?}",
            early.requeue
        );
        let out = decide(
            &observed(policy().status(&rolled_back).build(), vec![again], rss),
            at(40),
        );
        let r = &out.status.rollouts[0];
        assert_eq!(r.phase, RolloutPhase::Held);
        assert_eq!(r.canary_hash.as_deref(), Some("b"));
        let why = r.message.clone().unwrap_or_default();
        assert!(
            why.starts_with("this template was rolled back at ")
                && why.contains("(1 failed check(s) of 1 allowed: Fail; restoring revision 1)")
                && why.contains("held, not rolled out again; revert it where it comes from"),
            "{why}"
        );
        assert_eq!(out.actions[0].1, Action::Pause, "no pod moves");
        assert_eq!(out.status.rollouts.len(), 2, "the earlier rollout is kept");
        // The Deployment deleted and made again (at 35 s, another uid) with v2, then held by
        // the webhook on a later change: a rollout of its own, not the earlier object's.
        let remade = DeploymentBuilder::new("web", "v2")
            .held_for("p")
            .remade("uid-web-2", at(35))
            .build();
        let rss = vec![
            replica_set(&remade, "a", "v1", "1", 4, 4),
            replica_set(&remade, "b", "v2", "2", 0, 0),
        ];
        let out = decide(
            &observed(policy().status(&rolled_back).build(), vec![remade], rss),
            at(40),
        );
        assert_eq!(out.status.rollouts[0].phase, RolloutPhase::Progressing);
    }

    #[test]
    fn an_order_acts_once_with_its_author_named_and_a_refused_one_says_why() {
        use crate::api::canary_policy::RolloutPhase;
        let status = analysing(policy, 3, 1);
        let (web, rss) = rolling(3, 1);
        let pass = |p: CanaryPolicy, author: Option<&str>, authority: authz::Verdict| {
            let mut o = observed(p, vec![web.clone()], rss.clone());
            o.author = author.map(str::to_string);
            o.authority = authority;
            decide(&o, at(20))
        };
        // Promote: every replica to the new revision, without more analysis.
        let out = pass(
            policy().order("promote web t1").status(&status).build(),
            Some("alice"),
            authz::Verdict::Allowed,
        );
        let r = &out.status.rollouts[0];
        assert_eq!(r.phase, RolloutPhase::Promoting);
        let c = out.status.last_control.clone().expect("the order recorded");
        assert_eq!(c.request, "promote web t1");
        assert_eq!(c.by.as_deref(), Some("alice"));
        assert!(c.done);
        assert_eq!(
            c.outcome,
            "promoted by alice: every replica moves to revision 2 without more analysis"
        );
        assert!(matches!(out.actions[0].1, Action::Restore { .. }));
        // The same value again does nothing more: it was acted on.
        let again = pass(
            policy().order("promote web t1").status(&out.status).build(),
            Some("alice"),
            authz::Verdict::Allowed,
        );
        assert_eq!(again.status.last_control, out.status.last_control);

        // Abort: back to the stable revision.
        let out = pass(
            policy().order("abort web t2").status(&status).build(),
            Some("bob"),
            authz::Verdict::Allowed,
        );
        assert_eq!(out.status.rollouts[0].phase, RolloutPhase::RollingBack);
        assert_eq!(
            out.status.last_control.as_ref().map(|c| c.outcome.as_str()),
            Some("aborted by bob; restoring revision 1")
        );
        // Given by someone who may not patch Deployments: not done, and why.
        let why = "mallory may not patch deployments in shop".to_string();
        let out = pass(
            policy().order("abort web t3").status(&status).build(),
            Some("mallory"),
            authz::Verdict::Denied(why.clone()),
        );
        let c = out.status.last_control.clone().unwrap();
        assert!(!c.done);
        assert_eq!(c.outcome, format!("not done: {why}"));
        assert_ne!(out.status.rollouts[0].phase, RolloutPhase::RollingBack);
        // Resume applies to held or inconclusive rollouts only; a Deployment with no
        // rollout and a bad order are answered too.
        for (order, outcome) in [
            (
                "resume web t4",
                "nothing to resume: the rollout of web is Analyzing",
            ),
            ("promote api t5", "no rollout of api is under way"),
            (
                "rollback web",
                "\"rollback\" is not an order: write `promote <deployment>`, `abort <deployment>` or `resume <deployment>`",
            ),
        ] {
            let out = pass(
                policy().order(order).status(&status).build(),
                Some("alice"),
                authz::Verdict::Allowed,
            );
            let c = out.status.last_control.unwrap();
            assert_eq!((c.done, c.outcome.as_str()), (false, outcome), "{order}");
        }
    }

    #[test]
    fn resume_starts_a_held_step_over() {
        use crate::api::canary_policy::RolloutPhase;
        let status = analysing(|| policy().pause_on_failure(), 3, 1);
        let (web, rss) = rolling(3, 1);
        let mut o = observed(
            policy().pause_on_failure().status(&status).build(),
            vec![web.clone()],
            rss.clone(),
        );
        o.checks.insert("web".into(), check(Verdict::Fail));
        let held = decide(&o, at(20)).status;
        assert_eq!(held.rollouts[0].phase, RolloutPhase::Held);
        let o = observed(
            policy()
                .pause_on_failure()
                .order("resume web t1")
                .status(&held)
                .build(),
            vec![web],
            rss,
        );
        let out = decide(&o, at(30));
        let r = &out.status.rollouts[0];
        assert_eq!(r.phase, RolloutPhase::Progressing);
        assert_eq!(r.checks.failed, 0, "the failures before are forgiven");
        assert_eq!(
            out.status.last_control.unwrap().outcome,
            "resumed by alice: step 1 starts over"
        );
        assert_eq!(
            out.actions[0].1,
            Action::Hold {
                max_surge: 1,
                max_unavailable: 0
            }
        );
    }

    #[test]
    fn an_order_is_part_of_what_the_author_is_proven_to_have_written() {
        let plain = policy().build();
        assert_eq!(
            crate::canary::authored(&plain),
            serde_json::to_value(&plain.spec).unwrap(),
            "without an order, the spec alone (earlier proofs hold)"
        );
        let ordered = policy().order("promote web t1").build();
        assert_eq!(
            crate::canary::authored(&ordered),
            json!({"spec": serde_json::to_value(&ordered.spec).unwrap(), "control": "promote web t1"})
        );
    }

    #[test]
    fn a_valid_policy_watches_what_it_governs_and_a_second_pass_changes_nothing() {
        let web = DeploymentBuilder::new("web", "v1").build();
        let api = DeploymentBuilder::new("api", "v1").build();
        let o = observed(policy().build(), vec![web.clone(), api.clone()], vec![]);
        let out = decide(&o, at(100));
        assert_eq!(
            ready(&out.status),
            (
                "True".into(),
                "Watching".into(),
                "governing 1 of 2 Deployments in the namespace".into()
            )
        );
        assert_eq!(
            out.status.coverage,
            Some(Coverage {
                deployments: 2,
                governed: 1
            })
        );
        assert_eq!(out.status.common.observed_generation, Some(1));
        assert_eq!(out.status.common.last_evaluated, Some(Time(at(100))));
        assert!(out.actions.is_empty() && out.notes.is_empty());
        assert_eq!(out.requeue, Duration::from_secs(300));

        let again = observed(policy().status(&out.status).build(), vec![web, api], vec![]);
        let out2 = decide(&again, at(200));
        assert_eq!(
            out2.status, out.status,
            "nothing changed: no new lastEvaluated"
        );
    }

    #[test]
    fn a_metric_reading_another_namespace_makes_the_spec_invalid_unless_single_tenant() {
        let p = policy()
            .query(r#"sum(rate(http_requests_total{namespace="bank", pod_template_hash="{{canary_hash}}"}[1m]))"#)
            .build();
        let out = decide(&observed(p.clone(), vec![], vec![]), at(0));
        assert_eq!(
            ready(&out.status),
            (
                "False".into(),
                "InvalidSpec".into(),
                r#"analysis.metrics[0] (errors): the query may only read namespace shop: its matcher namespace="bank" would read other namespaces' series"#.into()
            )
        );
        let mut single = observed(p, vec![], vec![]);
        single.tenancy = Tenancy::Single;
        assert_eq!(ready(&decide(&single, at(0)).status).1, "Watching");
        // Without a namespace matcher the query is scoped, not refused.
        let unscoped = policy().query("sum(rate(http_requests_total[1m]))").build();
        assert_eq!(
            ready(&decide(&observed(unscoped, vec![], vec![]), at(0)).status).1,
            "Watching"
        );
    }

    #[test]
    fn the_oldest_policy_governs_a_deployment_both_select() {
        let web = DeploymentBuilder::new("web", "v1").build();
        let older = CanaryBuilder::new("q")
            .selects("app", "web")
            .step(50, "10s")
            .created(at(-10))
            .build();
        let mut o = observed(policy().build(), vec![web], vec![]);
        o.policies.push(older);
        let out = decide(&o, at(100));
        assert_eq!(
            ready(&out.status).2,
            "governing 0 of 1 Deployments in the namespace"
        );
    }

    #[test]
    fn an_invalid_spec_is_not_ready_and_gives_held_deployments_back() {
        let held = DeploymentBuilder::new("web", "v2").held_for("p").build();
        let o = observed(policy().interval("0s").build(), vec![held], vec![]);
        let out = decide(&o, at(100));
        assert_eq!(
            ready(&out.status),
            (
                "False".into(),
                "InvalidSpec".into(),
                "analysis.interval must be longer than zero".into()
            )
        );
        assert_eq!(out.actions.len(), 1);
        assert_eq!(out.actions[0].0.name, "web");
        assert_eq!(
            out.actions[0].1,
            Action::Restore {
                saved: own_settings()
            }
        );
        assert!(due_checks(&o, at(100)).is_empty());

        let unselective = CanaryBuilder::new("p").step(50, "10s").build();
        let out = decide(&observed(unselective, vec![], vec![]), at(100));
        assert_eq!(
            ready(&out.status).2,
            "selector: an empty selector would govern every Deployment of the namespace; name the labels"
        );
    }

    #[test]
    fn a_held_template_is_rolled_out_checked_when_due_and_rolled_back_on_a_failed_check() {
        // Pass 1: the webhook held web's new template v2; revision 1 (v1) runs 4 pods.
        let held = DeploymentBuilder::new("web", "v2").held_for("p").build();
        let stable = replica_set(&held, "a", "v1", "1", 4, 4);
        let out = decide(
            &observed(policy().build(), vec![held.clone()], vec![stable]),
            at(100),
        );
        let r = &out.status.rollouts[0];
        assert_eq!(r.phase, RolloutPhase::Progressing);
        assert_eq!((r.step, r.canary_replicas), (0, 1));
        assert_eq!(r.stable_hash.as_deref(), Some("a"));
        assert_eq!(r.started_at, Some(Time(at(100))));
        assert_eq!(
            out.actions[0].1,
            Action::Hold {
                max_surge: 1,
                max_unavailable: 0
            }
        );
        assert_eq!(out.notes[0].reason, "CanaryProgressing");
        assert_eq!(
            out.notes[0].message,
            "web: new template of web held; step 1: 1 pod on it next to 3 stable"
        );
        assert_eq!(out.requeue, MIN_REQUEUE);

        // Pass 2: the canary pod of revision 2 (v2) is ready: analysis starts.
        let web = DeploymentBuilder::new("web", "v2")
            .held_for("p")
            .unpaused()
            .build();
        let rss = vec![
            replica_set(&web, "a", "v1", "1", 3, 3),
            replica_set(&web, "b", "v2", "2", 1, 1),
        ];
        let o = observed(
            policy().status(&out.status).build(),
            vec![web.clone()],
            rss.clone(),
        );
        let out = decide(&o, at(160));
        let r = &out.status.rollouts[0];
        assert_eq!(r.phase, RolloutPhase::Analyzing);
        assert_eq!(r.canary_hash.as_deref(), Some("b"));
        assert_eq!(r.revision, "2");
        assert_eq!(out.status.totals.as_ref().unwrap().analyzed, 1);

        // One second later the first check (one 2 s interval after the pods were ready) is
        // not due yet; at two seconds it is.
        let o = observed(
            policy().status(&out.status).build(),
            vec![web.clone()],
            rss.clone(),
        );
        assert!(due_checks(&o, at(161)).is_empty());
        assert_eq!(decide(&o, at(161)).requeue, Duration::from_secs(1));
        let due = due_checks(&o, at(162));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, "web");

        // A due check that could not be run yet changes nothing.
        assert_eq!(decide(&o, at(162)).status, o.policy.status.clone().unwrap());

        // The check failed (failure limit 1): back to revision 1's template.
        let mut o = o;
        o.checks.insert("web".into(), check(Verdict::Fail));
        let out = decide(&o, at(162));
        let r = &out.status.rollouts[0];
        assert_eq!(r.phase, RolloutPhase::RollingBack);
        assert_eq!(r.checks.failed, 1);
        assert_eq!(
            out.actions[0].1,
            Action::Rollback {
                template: json!({"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "c", "image": "v1"}]}}),
                saved: own_settings(),
            }
        );
        assert!(out.notes[0].warning);
        assert_eq!(out.requeue, MIN_REQUEUE);
    }

    #[test]
    fn an_author_who_may_not_patch_deployments_holds_the_rollout_and_lets_new_holds_go() {
        let why = "author system:serviceaccount:shop:dev may not patch deployments in shop";
        let denied = |mut o: Observed| {
            o.authority = authz::Verdict::Denied(why.into());
            o
        };
        // A rollout under way (analysing, a check due and even failed): nothing is rolled
        // back, promoted or checked; it is held with the reason, once.
        let status = analysing(policy, 3, 1);
        let (web, rss) = rolling(3, 1);
        let mut o = denied(observed(
            policy().status(&status).build(),
            vec![web.clone()],
            rss.clone(),
        ));
        assert!(due_checks(&o, at(100)).is_empty(), "no Prometheus query");
        o.checks.insert("web".into(), check(Verdict::Fail));
        let out = decide(&o, at(100));
        assert!(out.actions.is_empty(), "{:?}", out.actions);
        let r = &out.status.rollouts[0];
        assert_eq!(r.phase, RolloutPhase::Analyzing);
        assert_eq!(r.message.as_deref(), Some(format!("held: {why}").as_str()));
        assert_eq!(r.checks.failed, 0);
        assert_eq!(
            ready(&out.status),
            ("False".into(), "AuthorNotAllowed".into(), why.into())
        );
        assert_eq!(out.notes[0].reason, "CanaryHeld");
        let again = denied(observed(
            policy().status(&out.status).build(),
            vec![web],
            rss,
        ));
        let out2 = decide(&again, at(200));
        assert_eq!(out2.status, out.status, "held once: no second write");
        assert!(out2.notes.is_empty());

        // A template the webhook held before a rollout started is let go, unanalysed.
        let held = DeploymentBuilder::new("web", "v2").held_for("p").build();
        let stable = replica_set(&held, "a", "v1", "1", 4, 4);
        let out = decide(
            &denied(observed(policy().build(), vec![held], vec![stable])),
            at(100),
        );
        assert!(out.status.rollouts.is_empty());
        assert!(matches!(out.actions[0].1, Action::Restore { .. }));
        assert_eq!(out.notes[0].reason, "CanaryNotHeld");
    }

    #[test]
    fn the_stable_template_recorded_at_hold_time_survives_a_renumbering() {
        use crate::api::names::STABLE_TEMPLATE_ANNOTATION;
        use crate::canary::deployment::template_digest;
        // v1 ran as ReplicaSet a; v2 (ReplicaSet b, rolled back earlier) is applied again and
        // held. Before the operator looks, the paused Deployment controller makes b the new
        // revision 4: the Deployment's revision is b's, and no ReplicaSet of the Deployment's
        // revision has another template.
        let v1 = DeploymentBuilder::new("web", "v1").build();
        let a = replica_set(&v1, "a", "v1", "3", 4, 4);
        let b = replica_set(&v1, "b", "v2", "4", 0, 0);
        let stable = template_digest(
            &crate::canary::deployment::ReplicaSetView::from_replica_set(&a)
                .unwrap()
                .template,
        );
        let renumbered = || {
            DeploymentBuilder::new("web", "v2")
                .held_for("p")
                .annotation("deployment.kubernetes.io/revision", "4")
        };
        // Without a record the rollout cannot start: released without analysis.
        let out = decide(
            &observed(
                policy().build(),
                vec![renumbered().build()],
                vec![a.clone(), b.clone()],
            ),
            at(0),
        );
        assert!(out.status.rollouts.is_empty());
        assert_eq!(out.notes[0].reason, "CanaryNotStarted");
        // With the webhook's record, a is the stable revision and the rollout starts.
        let held = renumbered()
            .annotation(STABLE_TEMPLATE_ANNOTATION, &stable)
            .build();
        let out = decide(&observed(policy().build(), vec![held], vec![a, b]), at(0));
        let r = &out.status.rollouts[0];
        assert_eq!(r.phase, RolloutPhase::Progressing);
        assert_eq!(r.stable_hash.as_deref(), Some("a"));
        assert_eq!(r.stable_revision.as_deref(), Some("3"));
        assert_eq!(
            out.actions[0].1,
            Action::Hold {
                max_surge: 1,
                max_unavailable: 0
            }
        );
    }

    #[test]
    fn a_step_that_passed_for_its_whole_time_moves_to_the_next_weight() {
        let (web, rss) = rolling(3, 1);
        // The step is 10 s long: a passing check at 20 s (10 s after the pods were ready).
        let mut o = observed(
            policy().status(&analysing(policy, 3, 1)).build(),
            vec![web],
            rss,
        );
        o.checks.insert("web".into(), check(Verdict::Pass));
        let out = decide(&o, at(20));
        let r = &out.status.rollouts[0];
        assert_eq!(r.phase, RolloutPhase::Progressing);
        assert_eq!((r.step, r.canary_replicas), (1, 2));
        assert_eq!(
            out.actions[0].1,
            Action::Hold {
                max_surge: 1,
                max_unavailable: 1
            }
        );
        assert_eq!(
            r.message.as_deref(),
            Some("step 1 passed; step 2: 2 pods on the new revision next to 2 stable")
        );
    }

    #[test]
    fn the_last_step_passing_promotes_once_every_replica_runs_the_new_revision() {
        let one_step = || {
            CanaryBuilder::new("p")
                .selects("app", "web")
                .step(50, "10s")
        };
        let (web, rss) = rolling(2, 2);
        let status = analysing(one_step, 2, 2);
        let mut o = observed(one_step().status(&status).build(), vec![web.clone()], rss);
        o.checks.insert("web".into(), check(Verdict::Pass));
        let promoting = decide(&o, at(20));
        assert_eq!(promoting.status.rollouts[0].phase, RolloutPhase::Promoting);
        assert_eq!(
            promoting.actions[0].1,
            Action::Restore {
                saved: own_settings()
            }
        );
        // The Deployment controller finished: 4 of 4 on revision 2, the old ReplicaSet empty.
        let done = vec![
            replica_set(&web, "a", "v1", "1", 0, 0),
            replica_set(&web, "b", "v2", "2", 4, 4),
        ];
        let o = observed(
            one_step().status(&promoting.status).build(),
            vec![web],
            done,
        );
        let out = decide(&o, at(25));
        let r = &out.status.rollouts[0];
        assert_eq!(r.phase, RolloutPhase::Promoted);
        assert_eq!(r.finished_at, Some(Time(at(25))));
        assert_eq!(r.message.as_deref(), Some("all 4 replicas run revision 2"));
        assert_eq!(out.status.totals.as_ref().unwrap().promoted, 1);
        assert!(
            due_checks(&o, at(100)).is_empty(),
            "an ended rollout is never checked"
        );
    }

    #[test]
    fn a_policy_being_deleted_releases_its_running_rollout() {
        let (web, rss) = rolling(3, 1);
        let mut o = observed(
            policy().status(&analysing(policy, 3, 1)).build(),
            vec![web],
            rss,
        );
        o.deleting = true;
        let out = decide(&o, at(30));
        let r = &out.status.rollouts[0];
        assert_eq!(r.phase, RolloutPhase::Released);
        assert_eq!(r.finished_at, Some(Time(at(30))));
        assert_eq!(
            out.actions[0].1,
            Action::Restore {
                saved: own_settings()
            }
        );
        assert_eq!(out.status.coverage.as_ref().unwrap().governed, 0);
        // The Released record is written but the patch did not land (a conflict, a crash):
        // the next pass finds no rollout under way and the Deployment still held, with the
        // hold's settings. It gives back the user's settings the record saved, not those.
        let mut held = rolling(3, 1).0;
        let spec = held.spec.as_mut().unwrap();
        spec.min_ready_seconds = Some(crate::canary::deployment::HOLD_MIN_READY_SECONDS);
        spec.progress_deadline_seconds = Some(i32::MAX);
        spec.strategy = serde_json::from_value(
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
        )
        .unwrap();
        let mut o = observed(
            policy().status(&out.status).build(),
            vec![held.clone()],
            rolling(3, 1).1,
        );
        o.deleting = true;
        let again = decide(&o, at(31));
        assert_eq!(again.status.rollouts[0].phase, RolloutPhase::Released);
        assert_eq!(
            again.actions[0].1,
            Action::Restore {
                saved: own_settings()
            }
        );
        // The same when the policy stays but a promotion's restore did not land: the
        // Deployment, unpaused and held, is given back with the user's settings.
        let mut promoted = out.status.clone();
        promoted.rollouts[0].phase = RolloutPhase::Promoted;
        promoted.rollouts[0].saved = Some(SavedSettings {
            strategy: r#"{"type":"Recreate"}"#.into(),
            min_ready_seconds: Some(5),
            progress_deadline_seconds: None,
        });
        let o = observed(policy().status(&promoted).build(), vec![held], vec![]);
        let again = decide(&o, at(31));
        assert_eq!(
            again.actions.first().map(|a| a.1.clone()),
            Some(Action::Restore {
                saved: promoted.rollouts[0].saved.clone().unwrap()
            })
        );
    }

    #[test]
    fn post_rollout_hooks_are_due_once_a_rollout_ends_and_their_answers_recorded() {
        let record = |phase: RolloutPhase| -> RolloutRecord {
            serde_json::from_value(json!({"deployment": "web", "phase": phase, "step": 0,
                                          "revision": "3", "startedAt": at(10).to_string()}))
            .unwrap()
        };
        let mut p = policy().build();
        p.spec.hooks = vec![
            serde_json::from_value(
                json!({"name": "notify", "type": "PostRollout", "url": "http://hooks.test/n"}),
            )
            .unwrap(),
        ];
        let web = DeploymentBuilder::new("web", "v1").build();
        let mut o = observed(p, vec![web], vec![]);
        let status = |rollouts| CanaryPolicyStatus {
            rollouts,
            ..Default::default()
        };
        let old = status(vec![record(RolloutPhase::Analyzing)]);
        let mut new = status(vec![record(RolloutPhase::Promoted)]);
        let mut notes = Vec::new();
        // Ended in this pass: due, nothing called yet.
        post_rollout(&mut new, &old, &o, at(20), &mut notes);
        assert_eq!(new.rollouts[0].post_rollout, Some(PostRollout::default()));
        o.policy.status = Some(new.clone());
        assert_eq!(due_post_hooks(&o).len(), 1);
        // Called: the answer is kept, a failure is a warning Event.
        o.post_hooks = vec![PostHooksCalled {
            deployment: "web".into(),
            started_at: Some(Time(at(10))),
            results: vec![MetricResult {
                name: "hook notify (PostRollout)".into(),
                query: "http://hooks.test/n".into(),
                value: None,
                stable_value: None,
                stable_query: None,
                result: CheckResult::Fail,
                dry_run: false,
                message: Some("answered 503".into()),
            }],
        }];
        let before = new.clone();
        post_rollout(&mut new, &before, &o, at(21), &mut notes);
        let done = new.rollouts[0].post_rollout.clone().unwrap();
        assert!(done.done);
        assert_eq!(done.at, Some(Time(at(21))));
        assert_eq!(done.results.len(), 1);
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].reason, "PostRolloutHookFailed");
        assert_eq!(
            notes[0].message,
            "hook notify (PostRollout) after the rollout of web revision 3: answered 503"
        );
        o.policy.status = Some(new.clone());
        assert!(due_post_hooks(&o).is_empty(), "called once");
        // A rollout that had ended before the pass is not due again, nor a Held one.
        let mut again = status(vec![record(RolloutPhase::RolledBack)]);
        post_rollout(&mut again.clone(), &again.clone(), &o, at(30), &mut notes);
        let held_old = status(vec![record(RolloutPhase::Analyzing)]);
        let mut held = status(vec![record(RolloutPhase::Held)]);
        post_rollout(&mut held, &held_old, &o, at(30), &mut notes);
        assert_eq!(held.rollouts[0].post_rollout, None);
        post_rollout(
            &mut again,
            &status(vec![record(RolloutPhase::RolledBack)]),
            &o,
            at(30),
            &mut notes,
        );
        assert_eq!(again.rollouts[0].post_rollout, None);
    }

    #[test]
    fn two_rollouts_started_in_one_second_stay_apart() {
        let record = |phase: RolloutPhase, message: &str| -> RolloutRecord {
            serde_json::from_value(json!({"deployment": "web", "phase": phase, "step": 0,
                                          "startedAt": at(10).to_string(), "message": message}))
            .unwrap()
        };
        let mut status = CanaryPolicyStatus {
            rollouts: vec![record(RolloutPhase::RolledBack, "first")],
            ..Default::default()
        };
        let p = policy().build();
        // A second rollout starts in the same (whole) second: it goes first, the ended one
        // is kept.
        upsert(
            &mut status,
            vec![record(RolloutPhase::Progressing, "second")],
            &Totals::default(),
            &p,
        );
        // Its next move replaces it, not the ended one.
        upsert(
            &mut status,
            vec![record(RolloutPhase::Held, "second, held")],
            &Totals::default(),
            &p,
        );
        let seen: Vec<(RolloutPhase, String)> = status
            .rollouts
            .iter()
            .map(|r| (r.phase, r.message.clone().unwrap()))
            .collect();
        assert_eq!(
            seen,
            [
                (RolloutPhase::Held, "second, held".to_string()),
                (RolloutPhase::RolledBack, "first".to_string())
            ]
        );
    }

    #[test]
    fn history_keeps_every_running_rollout_and_the_newest_ended_ones() {
        let record = |start: i64, phase: RolloutPhase| -> RolloutRecord {
            serde_json::from_value(json!({"deployment": "web", "phase": phase, "step": 0,
                                          "startedAt": at(start).to_string()}))
            .unwrap()
        };
        let mut status = CanaryPolicyStatus {
            rollouts: vec![
                record(10, RolloutPhase::Promoted),
                record(20, RolloutPhase::Promoted),
                record(30, RolloutPhase::Analyzing),
            ],
            totals: Some(Totals {
                exposure_replica_minutes: 1.004,
                promoted: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        let add = Totals {
            promoted: 1,
            exposure_replica_minutes: 2.003,
            ..Default::default()
        };
        let p = policy().history_limit(2).build();
        upsert(
            &mut status,
            vec![record(40, RolloutPhase::Promoted)],
            &add,
            &p,
        );
        let starts: Vec<Timestamp> = status
            .rollouts
            .iter()
            .map(|r| r.started_at.clone().unwrap().0)
            .collect();
        assert_eq!(starts, [at(40), at(30), at(20)]);
        let t = status.totals.unwrap();
        assert_eq!(t.promoted, 3);
        assert_eq!(t.exposure_replica_minutes, 3.01);
    }
}

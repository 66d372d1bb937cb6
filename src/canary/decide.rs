//! CanaryPolicy's decision, from plain values: the policy (its status is the memory of
//! every rollout), the Deployments and ReplicaSets of its namespace, the namespace's other
//! policies and the checks that were run, to the new status (with `Ready`), the changes to
//! make to Deployments, the Events, and when to look again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::deployment::{Action, DeploymentView, ReplicaSetView};
use super::rollout::{self, Check, Policy};
use crate::api::CanaryPolicy;
use crate::api::canary_policy::{CanaryPolicyStatus, Coverage, RolloutRecord, Totals};
use crate::api::names::HOLD_ANNOTATION;
use crate::conditions::{self, Cond, Note, Status};

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

/// The spec as the state machine needs it, or why it cannot be used (a sentence for Ready).
pub fn parse(p: &CanaryPolicy) -> Result<Policy, String> {
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
    Ok(Policy {
        name: p.metadata.name.clone().unwrap_or_default(),
        steps,
        interval,
        failure_limit: p.spec.analysis.failure_limit.max(1) as u32,
        rollback: p.spec.rollback,
    })
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
        },
    }
}

/// The rollouts whose check is due at `now`: run them (canary and stable queries) and put
/// the results in [`Observed::checks`] before calling [`decide`].
pub fn due_checks(o: &Observed, now: Timestamp) -> Vec<(String, RolloutRecord)> {
    let parsed = parse(&o.policy);
    if parsed.is_err() {
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

/// The pass: every candidate's rollout step, coverage, `Ready`, and when to look again.
pub fn decide(o: &Observed, now: Timestamp) -> Outcome {
    let name = o.policy.metadata.name.clone().unwrap_or_default();
    let parsed = parse(&o.policy);
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
    for c in candidates(o, &governed) {
        let check = o.checks.get(&c.name).filter(|_| parsed.is_ok());
        let mut decision = rollout::plan(
            &rules,
            c.active.as_ref(),
            c.view.as_ref(),
            &c.replica_sets,
            c.governed,
            now,
            None,
        );
        if decision.check_due && check.is_some() {
            decision = rollout::plan(
                &rules,
                c.active.as_ref(),
                c.view.as_ref(),
                &c.replica_sets,
                c.governed,
                now,
                check,
            );
        }
        if let Some(after) = decision.requeue {
            out.requeue = out.requeue.min(after.max(MIN_REQUEUE));
        }
        if decision.records.iter().any(|r| !r.phase.is_terminal()) {
            out.requeue = out.requeue.min(rules.interval);
        }
        if !decision.records.is_empty() {
            upsert(&mut status, decision.records, &decision.totals, &o.policy);
        }
        if let (Some(action), Some(view)) = (decision.action, c.view) {
            out.actions.push((view, action));
        }
        out.notes.extend(decision.notes);
    }
    status.coverage = Some(Coverage {
        deployments: o.deployments.len() as u32,
        governed: governed.len() as u32,
    });
    let ready = match &parsed {
        Ok(_) => Cond::new(
            "Ready",
            Status::True,
            "Watching",
            format!(
                "governing {} of {} Deployments in the namespace",
                governed.len(),
                o.deployments.len()
            ),
        ),
        Err(why) => Cond::new("Ready", Status::False, "InvalidSpec", why.clone()),
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

/// Puts `records` into status (replacing the same rollout), adds `totals`, keeps the newest
/// first and at most `historyLimit` ended rollouts (every running one is kept).
pub fn upsert(
    status: &mut CanaryPolicyStatus,
    records: Vec<RolloutRecord>,
    add: &Totals,
    p: &CanaryPolicy,
) {
    for r in records {
        match status
            .rollouts
            .iter_mut()
            .find(|x| x.deployment == r.deployment && x.started_at == r.started_at)
        {
            Some(x) => *x = r,
            None => status.rollouts.push(r),
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
    t.exposure_replica_minutes =
        ((t.exposure_replica_minutes + add.exposure_replica_minutes) * 100.0).round() / 100.0;
}

//! A person's orders for a rollout: promote it now, abort it (back to the stable revision),
//! or resume a held or inconclusive one. Set as the CanaryPolicy's
//! `maturity.sre.dev/canary-control` annotation (`<action> <deployment> [token]`, what
//! `maturity-operator canary` writes); the admission webhook records who set it as the
//! policy's author, so an order acts with the rights of the person who gave it and names
//! them in status. Pure.

use jiff::Timestamp;

use super::deployment::{Action, DeploymentView, ReplicaSetView};
use super::rollout::{Decision, Policy, go, halt_to_stable, step_hold, step_shape};
use crate::api::canary_policy::{RolloutPhase, RolloutRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Every replica to the new revision now, without more analysis.
    Promote,
    /// Back to the stable revision now (held when its ReplicaSet is gone).
    Abort,
    /// A held or inconclusive rollout starts its current step over.
    Resume,
}

/// An order as the annotation gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub order: Order,
    pub deployment: String,
}

/// The annotation's value as an order, or why it is not one.
pub fn parse(value: &str) -> Result<Request, String> {
    let mut words = value.split_whitespace();
    let order = match words.next() {
        Some("promote") => Order::Promote,
        Some("abort") => Order::Abort,
        Some("resume") => Order::Resume,
        other => {
            return Err(format!(
                "{:?} is not an order: write `promote <deployment>`, `abort <deployment>` or `resume <deployment>`",
                other.unwrap_or_default()
            ));
        }
    };
    let deployment = words
        .next()
        .ok_or_else(|| format!("{value:?} names no Deployment"))?
        .to_string();
    Ok(Request { order, deployment })
}

/// Carries out `order` on the active rollout `r` for `by` (who gave it: a sentence part,
/// e.g. `alice`): the decision (records, action, notes) and the outcome for status. None
/// when the rollout is in no phase the order applies to (the outcome says why).
pub fn apply(
    p: &Policy,
    order: Order,
    r: &RolloutRecord,
    d: &DeploymentView,
    replica_sets: &[ReplicaSetView],
    now: Timestamp,
    by: &str,
) -> Result<Decision, String> {
    use RolloutPhase::*;
    let mut out = Decision::default();
    let mut r = r.clone();
    let saved = r.saved.clone().unwrap_or_else(|| d.settings.clone());
    match (order, r.phase) {
        (Order::Promote, Progressing | Analyzing | Inconclusive | Held) => {
            let why = format!(
                "promoted by {by}: every replica moves to revision {} without more analysis",
                r.revision
            );
            go(&mut r, Promoting, now, &why, &mut out);
            out.action = Some(Action::Restore { saved });
        }
        (Order::Abort, Progressing | Analyzing | Inconclusive | Held) => {
            let stable = r
                .stable_hash
                .as_ref()
                .and_then(|h| replica_sets.iter().find(|rs| &rs.hash == h));
            halt_to_stable(
                &mut r,
                stable,
                saved,
                d.replicas,
                now,
                format!("aborted by {by}"),
                &mut out,
            );
        }
        (Order::Resume, Held | Inconclusive) => {
            let step = (r.step.max(0) as usize).min(p.steps.len().saturating_sub(1));
            let (k, keep) = step_shape(p.steps[step].0, d.replicas);
            r.checks.failed = 0;
            r.checks.inconclusive_in_a_row = 0;
            r.canary_replicas = k;
            r.stable_replicas = keep;
            let why = format!("resumed by {by}: step {} starts over", step + 1);
            go(&mut r, Progressing, now, &why, &mut out);
            out.action = Some(step_hold(p, step, d.replicas, 0));
        }
        (order, phase) => {
            return Err(format!(
                "nothing to {}: the rollout of {} is {phase:?}",
                match order {
                    Order::Promote => "promote",
                    Order::Abort => "abort",
                    Order::Resume => "resume",
                },
                r.deployment
            ));
        }
    }
    out.requeue = Some(std::time::Duration::ZERO);
    out.records.push(r);
    Ok(out)
}

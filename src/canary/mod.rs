//! The pure core of CanaryPolicy: which Deployments a policy governs, what the admission
//! webhook does to a template change, how a check is judged, and the rollout state machine.
//! Nothing here talks to a cluster or to Prometheus; `controllers::canary_policy` does:
//! it observes, calls [`decide::decide`], and acts.

pub mod admission;
pub mod analysis;
pub mod control;
pub mod decide;
pub mod deployment;
pub mod rollout;

use std::collections::BTreeMap;

use crate::api::CanaryPolicy;

/// What the author of a policy is proven to have written (the admission webhook's proof,
/// [`crate::authz`]): its spec, and with it the person's order of the moment
/// (`maturity.sre.dev/canary-control`), so that whoever sets an order is recorded as the
/// author and it acts with their rights only. Without an order, the spec alone (as before
/// orders existed: earlier proofs still hold).
pub fn authored(p: &CanaryPolicy) -> serde_json::Value {
    let spec = serde_json::to_value(&p.spec).unwrap_or_default();
    match p
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::api::names::CANARY_CONTROL_ANNOTATION))
    {
        Some(order) => serde_json::json!({"spec": spec, "control": order}),
        None => spec,
    }
}

/// Does `policy` select a Deployment with these labels? An unusable selector selects nothing.
pub fn selects(policy: &CanaryPolicy, labels: &BTreeMap<String, String>) -> bool {
    crate::selector::selects_some(&policy.spec.selector, labels)
}

/// The policy that governs a Deployment when several select it: the oldest, then by name.
pub fn governing<'a>(
    policies: impl IntoIterator<Item = &'a CanaryPolicy>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Option<&'a CanaryPolicy> {
    policies
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| selects(p, labels))
        .min_by(|a, b| {
            let key = |p: &CanaryPolicy| {
                (
                    p.metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.as_millisecond()),
                    p.metadata.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        })
}

//! What the admission webhook does to a Deployment update: when a governed Deployment's
//! pod template changes, it pauses the Deployment and names the policy, so the new
//! revision waits for the controller instead of rolling out at once.

use serde_json::{Value, json};

use super::deployment::{
    DeploymentView, HOLD_ANNOTATION, STABLE_TEMPLATE_ANNOTATION, escape, template_digest,
};
use crate::api::CanaryPolicy;
use crate::authz::{Authority, Authors};

/// Whether an update is the operator's own (its rollback or restore), let through unheld:
/// sent by the operator's identity (the admission request's user, which the API server
/// authenticated) under its field manager. A field-manager name alone is not enough:
/// anyone can send `--field-manager=maturity-operator`.
pub fn operators_own(
    field_manager: Option<&str>,
    user: Option<&str>,
    operator: Option<&str>,
) -> bool {
    field_manager == Some(crate::api::names::FIELD_MANAGER)
        && operator.is_some()
        && user == operator
}

/// Whether the governing `policy` may hold a Deployment's new template: its author is
/// proven (when authors are checked) and was not found unable to patch Deployments at the
/// policy's current generation (`Ready=False AuthorNotAllowed`). A policy whose author may
/// not patch Deployments must not stop anyone's rollout.
pub fn may_hold(policy: &CanaryPolicy, authors: &Authors) -> bool {
    let ns = policy.metadata.namespace.clone().unwrap_or_default();
    if let Authority::Unknown(_) = authors.of(
        "CanaryPolicy",
        &ns,
        policy.metadata.annotations.as_ref(),
        &super::authored(policy),
    ) {
        return false;
    }
    let refused = policy.status.as_ref().is_some_and(|s| {
        s.common.conditions.iter().any(|c| {
            c.type_ == "Ready"
                && c.reason == "AuthorNotAllowed"
                && c.observed_generation == policy.metadata.generation
        })
    });
    !refused
}

/// The JSON Patch to apply to `new` (a Deployment update), or None to let it through as is.
///
/// `policy` is the governing policy of the new object's labels (None: not governed);
/// `own`: the update is the operator's own ([`operators_own`]). The hold records which
/// template is the stable one: the one the Deployment ran until this change (or, when it
/// was already held, the one recorded then).
pub fn hold_patch(old: &Value, new: &Value, policy: Option<&str>, own: bool) -> Option<Vec<Value>> {
    let policy = policy?;
    if own {
        return None;
    }
    if old.pointer("/spec/template") == new.pointer("/spec/template") {
        return None;
    }
    // A user who pauses a Deployment themselves keeps control of it.
    if new.pointer("/spec/paused").and_then(Value::as_bool) == Some(true)
        && new
            .pointer(&format!(
                "/metadata/annotations/{}",
                escape(HOLD_ANNOTATION)
            ))
            .is_none()
    {
        return None;
    }
    let mut ops = vec![json!({"op": "add", "path": "/spec/paused", "value": true})];
    if new.pointer("/metadata/annotations").is_none() {
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
    }
    ops.push(json!({
        "op": "add",
        "path": format!("/metadata/annotations/{}", escape(HOLD_ANNOTATION)),
        "value": policy,
    }));
    let annotation = |v: &Value, key: &str| {
        v.pointer(&format!("/metadata/annotations/{}", escape(key)))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let stable = match annotation(old, HOLD_ANNOTATION) {
        Some(_) => annotation(old, STABLE_TEMPLATE_ANNOTATION),
        None => serde_json::from_value::<k8s_openapi::api::apps::v1::Deployment>(old.clone())
            .ok()
            .map(|d| template_digest(&DeploymentView::from_deployment(&d).template)),
    };
    if let Some(stable) = stable {
        ops.push(json!({
            "op": "add",
            "path": format!("/metadata/annotations/{}", escape(STABLE_TEMPLATE_ANNOTATION)),
            "value": stable,
        }));
    }
    Some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(image: &str, paused: bool, annotations: Option<Value>) -> Value {
        let mut d = json!({"metadata": {"name": "web"}, "spec": {"paused": paused,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
        if let Some(a) = annotations {
            d["metadata"]["annotations"] = a;
        }
        d
    }

    #[test]
    fn a_template_change_of_a_governed_deployment_is_held() {
        let ops = hold_patch(
            &dep("v1", false, None),
            &dep("v2", false, None),
            Some("p"),
            false,
        )
        .unwrap();
        let mut patched = dep("v2", false, None);
        json_patch::patch(
            &mut patched,
            &serde_json::from_value::<json_patch::Patch>(Value::Array(ops)).unwrap(),
        )
        .unwrap();
        assert_eq!(patched["spec"]["paused"], true);
        assert_eq!(patched["metadata"]["annotations"][HOLD_ANNOTATION], "p");
        // existing annotations are kept
        let ops = hold_patch(
            &dep("v1", false, None),
            &dep("v2", false, Some(json!({"a": "b"}))),
            Some("p"),
            false,
        )
        .unwrap();
        assert_eq!(
            ops.len(),
            3,
            "paused, the policy, the stable template: {ops:?}"
        );
    }

    #[test]
    fn a_hold_records_the_template_that_ran_before_as_the_stable_one() {
        use crate::canary::deployment::ReplicaSetView;
        use crate::testing::{DeploymentBuilder, replica_set};
        let v1 = DeploymentBuilder::new("web", "v1").build();
        let v2 = DeploymentBuilder::new("web", "v2").build();
        let (old, new) = (
            serde_json::to_value(&v1).unwrap(),
            serde_json::to_value(&v2).unwrap(),
        );
        let ops = hold_patch(&old, &new, Some("p"), false).unwrap();
        let mut patched = new.clone();
        json_patch::patch(
            &mut patched,
            &serde_json::from_value::<json_patch::Patch>(Value::Array(ops)).unwrap(),
        )
        .unwrap();
        let recorded = patched["metadata"]["annotations"][STABLE_TEMPLATE_ANNOTATION]
            .as_str()
            .unwrap()
            .to_string();
        // The digest is that of the ReplicaSet the Deployment controller made from v1 (its
        // template carries the pod-template-hash label, which the view leaves out), not v2's.
        let rs_v1 =
            ReplicaSetView::from_replica_set(&replica_set(&v1, "a", "v1", "1", 4, 4)).unwrap();
        let rs_v2 =
            ReplicaSetView::from_replica_set(&replica_set(&v1, "b", "v2", "2", 0, 0)).unwrap();
        assert_eq!(recorded, template_digest(&rs_v1.template));
        assert_ne!(recorded, template_digest(&rs_v2.template));
        assert_eq!(recorded.len(), 32);

        // Held again before its rollout ended (v3 over v2): the first stable template stays.
        let v3 = DeploymentBuilder::new("web", "v3").build();
        let ops = hold_patch(
            &patched,
            &serde_json::to_value(&v3).unwrap(),
            Some("p"),
            false,
        )
        .unwrap();
        assert!(
            ops.contains(&json!({"op": "add",
                "path": format!("/metadata/annotations/{}", escape(STABLE_TEMPLATE_ANNOTATION)),
                "value": recorded})),
            "{ops:?}"
        );
    }

    #[test]
    fn everything_else_passes_untouched() {
        let (v1, v2) = (dep("v1", false, None), dep("v2", false, None));
        assert!(hold_patch(&v1, &v2, None, false).is_none(), "not governed");
        assert!(
            hold_patch(&v1, &v1, Some("p"), false).is_none(),
            "template unchanged (scale, labels...)"
        );
        assert!(
            hold_patch(&v1, &v2, Some("p"), true).is_none(),
            "the operator's own rollback"
        );
        assert!(
            hold_patch(&v1, &dep("v2", true, None), Some("p"), false).is_none(),
            "paused by the user"
        );
        // already held (a newer template during a rollout): held again
        let held = Some(json!({HOLD_ANNOTATION: "p"}));
        assert!(
            hold_patch(
                &dep("v1", true, held.clone()),
                &dep("v2", true, held),
                Some("p"),
                false
            )
            .is_some()
        );
    }

    #[test]
    fn only_the_operators_identity_under_its_field_manager_is_its_own() {
        let fm = Some(crate::api::names::FIELD_MANAGER);
        let op = Some("system:serviceaccount:ops:maturity-operator");
        assert!(operators_own(fm, op, op));
        // Anyone can name the field manager: a tenant doing so is held.
        assert!(!operators_own(
            fm,
            Some("system:serviceaccount:tenant-a:dev"),
            op
        ));
        // The operator under another field manager (kubectl by hand with its token).
        assert!(!operators_own(Some("kubectl"), op, op));
        // The operator's identity unknown: nothing is exempt.
        assert!(!operators_own(fm, None, None));
        assert!(!operators_own(fm, op, None));
    }
}

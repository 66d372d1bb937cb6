//! What the admission webhook does to a Deployment update: when a governed Deployment's
//! pod template changes, it pauses the Deployment and names the policy, so the new
//! revision waits for the controller instead of rolling out at once.

use serde_json::{Value, json};

use super::deployment::{HOLD_ANNOTATION, escape};

/// The JSON Patch to apply to `new` (a Deployment update), or None to let it through as is.
///
/// `policy` is the governing policy of the new object's labels (None: not governed).
/// `field_manager` comes from the request's options.
pub fn hold_patch(
    old: &Value,
    new: &Value,
    policy: Option<&str>,
    field_manager: Option<&str>,
) -> Option<Vec<Value>> {
    let policy = policy?;
    if field_manager == Some(crate::api::names::FIELD_MANAGER) {
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
    Some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(image: &str, paused: bool, annotations: Option<Value>) -> Value {
        let mut d = json!({"metadata": {"name": "web"}, "spec": {"paused": paused,
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
            Some("kubectl"),
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
            None,
        )
        .unwrap();
        assert_eq!(ops.len(), 2);
    }

    #[test]
    fn everything_else_passes_untouched() {
        let (v1, v2) = (dep("v1", false, None), dep("v2", false, None));
        assert!(hold_patch(&v1, &v2, None, None).is_none(), "not governed");
        assert!(
            hold_patch(&v1, &v1, Some("p"), None).is_none(),
            "template unchanged (scale, labels...)"
        );
        assert!(
            hold_patch(&v1, &v2, Some("p"), Some(crate::api::names::FIELD_MANAGER)).is_none(),
            "the operator's own rollback"
        );
        assert!(
            hold_patch(&v1, &dep("v2", true, None), Some("p"), None).is_none(),
            "paused by the user"
        );
        // already held (a newer template during a rollout): held again
        let held = Some(json!({HOLD_ANNOTATION: "p"}));
        assert!(
            hold_patch(
                &dep("v1", true, held.clone()),
                &dep("v2", true, held),
                Some("p"),
                None
            )
            .is_some()
        );
    }
}

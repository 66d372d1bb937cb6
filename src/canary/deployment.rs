//! What the rollout logic sees of a Deployment and its ReplicaSets, and the one way it
//! changes a Deployment: a JSON Patch built from an [`Action`], empty when nothing differs.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use serde_json::{Value, json};

use crate::api::canary_policy::SavedSettings;

/// Annotation the admission webhook puts on a Deployment it paused for a policy; it stays
/// while that policy's rollout runs and is removed when the Deployment is given back.
pub use crate::api::names::{HOLD_ANNOTATION, STABLE_TEMPLATE_ANNOTATION};
/// Written by the Deployment controller on the Deployment and each ReplicaSet.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const HASH_LABEL: &str = "pod-template-hash";
/// `minReadySeconds` while held: new pods are Ready but never Available, so the
/// Deployment controller neither scales the new ReplicaSet past the step nor the old one down.
pub const HOLD_MIN_READY_SECONDS: i32 = i32::MAX - 1;
/// `progressDeadlineSeconds` while held: MaxInt32 means "no deadline" to the Deployment controller.
pub const HOLD_PROGRESS_DEADLINE_SECONDS: i32 = i32::MAX;

/// Whether `s` are the hold's own settings (its "never" minReadySeconds, which no user
/// sets) rather than the user's.
pub fn is_hold(s: &SavedSettings) -> bool {
    s.min_ready_seconds == Some(HOLD_MIN_READY_SECONDS)
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentView {
    pub name: String,
    /// The object's uid: a Deployment deleted and made again under its name is another one.
    pub uid: String,
    /// When this object was made (None: not known).
    pub created: Option<jiff::Timestamp>,
    pub resource_version: String,
    pub generation: i64,
    pub observed_generation: i64,
    /// `spec.replicas` (1 when unset).
    pub replicas: i32,
    pub paused: bool,
    pub revision: Option<String>,
    /// The policy named by [`HOLD_ANNOTATION`].
    pub hold: Option<String>,
    /// [`STABLE_TEMPLATE_ANNOTATION`]: the [`template_digest`] of the template it ran when
    /// it was held.
    pub stable_template: Option<String>,
    pub template: Value,
    pub settings: SavedSettings,
    /// status.replicas / updatedReplicas / availableReplicas.
    pub status_replicas: i32,
    pub updated_replicas: i32,
    pub available_replicas: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSetView {
    pub hash: String,
    pub revision: Option<String>,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    /// The pod template without the `pod-template-hash` label.
    pub template: Value,
}

/// A short digest of a pod template as the views hold it (typed, then JSON with sorted
/// keys): the same for a Deployment's template and the ReplicaSet made from it.
pub fn template_digest(template: &Value) -> String {
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
    d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl DeploymentView {
    pub fn from_deployment(d: &Deployment) -> Self {
        let spec = d.spec.clone().unwrap_or_default();
        let status = d.status.clone().unwrap_or_default();
        let ann = d.metadata.annotations.clone().unwrap_or_default();
        Self {
            name: d.metadata.name.clone().unwrap_or_default(),
            uid: d.metadata.uid.clone().unwrap_or_default(),
            created: d.metadata.creation_timestamp.as_ref().map(|t| t.0),
            resource_version: d.metadata.resource_version.clone().unwrap_or_default(),
            generation: d.metadata.generation.unwrap_or(0),
            observed_generation: status.observed_generation.unwrap_or(0),
            replicas: spec.replicas.unwrap_or(1),
            paused: spec.paused.unwrap_or(false),
            revision: ann.get(REVISION_ANNOTATION).cloned(),
            hold: ann.get(HOLD_ANNOTATION).cloned(),
            stable_template: ann.get(STABLE_TEMPLATE_ANNOTATION).cloned(),
            template: serde_json::to_value(&spec.template).unwrap_or(Value::Null),
            settings: SavedSettings {
                strategy: spec
                    .strategy
                    .as_ref()
                    .and_then(|s| serde_json::to_string(s).ok())
                    .unwrap_or_else(|| "{}".into()),
                min_ready_seconds: spec.min_ready_seconds,
                progress_deadline_seconds: spec.progress_deadline_seconds,
            },
            status_replicas: status.replicas.unwrap_or(0),
            updated_replicas: status.updated_replicas.unwrap_or(0),
            available_replicas: status.available_replicas.unwrap_or(0),
        }
    }

    /// The Deployment controller has seen the latest spec.
    pub fn observed(&self) -> bool {
        self.observed_generation >= self.generation
    }

    /// Every replica runs the current template and is available; no old pods are left.
    pub fn complete(&self) -> bool {
        self.observed()
            && self.updated_replicas == self.replicas
            && self.status_replicas == self.replicas
            && self.available_replicas == self.replicas
    }
}

impl ReplicaSetView {
    pub fn from_replica_set(rs: &ReplicaSet) -> Option<Self> {
        let labels = rs.metadata.labels.clone().unwrap_or_default();
        let hash = labels.get(HASH_LABEL)?.clone();
        let spec = rs.spec.clone()?;
        let status = rs.status.clone().unwrap_or_default();
        let mut template = serde_json::to_value(spec.template.unwrap_or_default()).ok()?;
        if let Some(labels) = template
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.remove(HASH_LABEL);
            if labels.is_empty() {
                template
                    .pointer_mut("/metadata")
                    .and_then(Value::as_object_mut)
                    .map(|m| m.remove("labels"));
            }
        }
        Some(Self {
            hash,
            revision: rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION_ANNOTATION).cloned()),
            replicas: spec.replicas.unwrap_or(1),
            ready_replicas: status.ready_replicas.unwrap_or(0),
            available_replicas: status.available_replicas.unwrap_or(0),
            template,
        })
    }
}

/// A change to a governed Deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Hold the rollout at a step: rolling update with these maxSurge and maxUnavailable
    /// (see `rollout::step_hold`), minReadySeconds "never", unpaused.
    Hold {
        max_surge: i32,
        max_unavailable: i32,
    },
    /// Keep the Deployment paused where it is (analysis failed, `rollback: Pause`).
    Pause,
    /// Give the Deployment back: its own settings, unpaused, the hold annotation removed.
    Restore { saved: SavedSettings },
    /// Restore the previous revision's template (as `kubectl rollout undo` does), then give back.
    Rollback {
        template: Value,
        saved: SavedSettings,
    },
}

/// The JSON Patch that makes `d` what `action` wants; empty when it already is. It starts
/// with a `test` of the resourceVersion, so a Deployment changed meanwhile is not overwritten.
pub fn patch_for(d: &DeploymentView, action: &Action) -> Vec<Value> {
    let mut ops = Vec::new();
    let (strategy, min_ready, deadline, paused, hold): (
        Value,
        Option<i32>,
        Option<i32>,
        bool,
        bool,
    ) = match action {
        Action::Hold {
            max_surge,
            max_unavailable,
        } => (
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable}}),
            Some(HOLD_MIN_READY_SECONDS),
            Some(HOLD_PROGRESS_DEADLINE_SECONDS),
            false,
            true,
        ),
        Action::Pause => (
            parse_strategy(&d.settings.strategy),
            d.settings.min_ready_seconds,
            d.settings.progress_deadline_seconds,
            true,
            true,
        ),
        Action::Restore { saved } | Action::Rollback { saved, .. } => (
            parse_strategy(&saved.strategy),
            saved.min_ready_seconds,
            saved.progress_deadline_seconds,
            false,
            false,
        ),
    };
    if let Action::Rollback { template, .. } = action
        && &d.template != template
    {
        ops.push(json!({"op": "replace", "path": "/spec/template", "value": template}));
    }
    if parse_strategy(&d.settings.strategy) != strategy {
        ops.push(json!({"op": "add", "path": "/spec/strategy", "value": strategy}));
    }
    set_int(
        &mut ops,
        "/spec/minReadySeconds",
        d.settings.min_ready_seconds,
        min_ready,
    );
    set_int(
        &mut ops,
        "/spec/progressDeadlineSeconds",
        d.settings.progress_deadline_seconds,
        deadline,
    );
    if d.paused != paused {
        ops.push(json!({"op": "add", "path": "/spec/paused", "value": paused}));
    }
    if !hold && d.hold.is_some() {
        ops.push(json!({"op": "remove", "path": format!("/metadata/annotations/{}", escape(HOLD_ANNOTATION))}));
    }
    if !hold && d.stable_template.is_some() {
        ops.push(json!({"op": "remove", "path": format!("/metadata/annotations/{}", escape(STABLE_TEMPLATE_ANNOTATION))}));
    }
    if ops.is_empty() {
        return ops;
    }
    let mut out = vec![
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": d.resource_version}),
    ];
    out.extend(ops);
    out
}

fn parse_strategy(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

fn set_int(ops: &mut Vec<Value>, path: &str, have: Option<i32>, want: Option<i32>) {
    match (have, want) {
        (a, b) if a == b => {}
        (Some(_), None) => ops.push(json!({"op": "remove", "path": path})),
        (_, Some(v)) => ops.push(json!({"op": "add", "path": path, "value": v})),
        (None, None) => {}
    }
}

/// JSON Pointer escaping of one path segment.
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> DeploymentView {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "resourceVersion": "42", "generation": 3,
                         "annotations": {REVISION_ANNOTATION: "2", HOLD_ANNOTATION: "p"}},
            "spec": {"replicas": 4, "paused": true,
                     "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "progressDeadlineSeconds": 600,
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "v2"}]}}},
            "status": {"observedGeneration": 3, "replicas": 4, "updatedReplicas": 0, "availableReplicas": 4}
        }))
        .unwrap();
        DeploymentView::from_deployment(&d)
    }

    #[test]
    fn view_reads_what_the_logic_needs() {
        let v = view();
        assert_eq!(v.replicas, 4);
        assert!(v.paused);
        assert_eq!(v.revision.as_deref(), Some("2"));
        assert_eq!(v.hold.as_deref(), Some("p"));
        assert_eq!(v.settings.progress_deadline_seconds, Some(600));
        assert_eq!(v.settings.min_ready_seconds, None);
        assert!(v.settings.strategy.contains("25%"));
        assert!(v.observed());
        assert!(!v.complete());
    }

    #[test]
    fn replica_set_template_drops_the_hash_label() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "labels": {"app": "web", HASH_LABEL: "abc"},
                         "annotations": {REVISION_ANNOTATION: "1"}},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", HASH_LABEL: "abc"}},
                                  "spec": {"containers": [{"name": "c", "image": "v2"}]}}},
            "status": {"replicas": 4, "readyReplicas": 3, "availableReplicas": 2}
        }))
        .unwrap();
        let r = ReplicaSetView::from_replica_set(&rs).unwrap();
        assert_eq!(r.hash, "abc");
        assert_eq!(r.revision.as_deref(), Some("1"));
        assert_eq!(
            (r.replicas, r.ready_replicas, r.available_replicas),
            (4, 3, 2)
        );
        // Equal to the Deployment's template: this is the ReplicaSet of that template.
        assert_eq!(r.template, view().template);
    }

    #[test]
    fn hold_patch_sets_the_step_and_unpauses() {
        let p = patch_for(
            &view(),
            &Action::Hold {
                max_surge: 0,
                max_unavailable: 1,
            },
        );
        assert_eq!(p[0]["op"], "test");
        assert_eq!(p[0]["value"], "42");
        let find = |path: &str| p.iter().find(|o| o["path"] == path).cloned();
        assert_eq!(
            find("/spec/strategy").unwrap()["value"]["rollingUpdate"],
            json!({"maxSurge": 0, "maxUnavailable": 1})
        );
        assert_eq!(
            find("/spec/minReadySeconds").unwrap()["value"],
            HOLD_MIN_READY_SECONDS
        );
        assert_eq!(
            find("/spec/progressDeadlineSeconds").unwrap()["value"],
            i32::MAX
        );
        assert_eq!(find("/spec/paused").unwrap()["value"], false);
        assert!(find("/metadata/annotations/maturity.sre.dev~1canary-policy").is_none());
    }

    #[test]
    fn restore_gives_back_exactly_what_was_saved() {
        let saved = view().settings;
        let mut held = view();
        held.settings = SavedSettings {
            strategy:
                r#"{"type":"RollingUpdate","rollingUpdate":{"maxSurge":0,"maxUnavailable":1}}"#
                    .into(),
            min_ready_seconds: Some(HOLD_MIN_READY_SECONDS),
            progress_deadline_seconds: Some(HOLD_PROGRESS_DEADLINE_SECONDS),
        };
        held.paused = false;
        let p = patch_for(
            &held,
            &Action::Restore {
                saved: saved.clone(),
            },
        );
        let find = |path: &str| p.iter().find(|o| o["path"] == path).cloned();
        assert_eq!(
            find("/spec/strategy").unwrap()["value"],
            serde_json::from_str::<Value>(&saved.strategy).unwrap()
        );
        assert_eq!(find("/spec/minReadySeconds").unwrap()["op"], "remove");
        assert_eq!(find("/spec/progressDeadlineSeconds").unwrap()["value"], 600);
        assert!(find("/spec/paused").is_none(), "already unpaused");
        assert_eq!(
            find("/metadata/annotations/maturity.sre.dev~1canary-policy").unwrap()["op"],
            "remove"
        );
        // Nothing to do once restored: no write.
        let mut done = view();
        done.paused = false;
        done.hold = None;
        assert!(patch_for(&done, &Action::Restore { saved }).is_empty());
    }

    #[test]
    fn rollback_replaces_the_whole_template() {
        let v = view();
        let old = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "v1"}]}});
        let p = patch_for(
            &v,
            &Action::Rollback {
                template: old.clone(),
                saved: v.settings.clone(),
            },
        );
        assert_eq!(
            p[1],
            json!({"op": "replace", "path": "/spec/template", "value": old})
        );
        assert!(
            p.iter()
                .any(|o| o["path"] == "/spec/paused" && o["value"] == false)
        );
    }
}

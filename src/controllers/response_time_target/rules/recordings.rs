//! The operator's own PrometheusRule: one pair of recording rules per indicator shape.

use std::collections::{BTreeMap, BTreeSet};

use super::{RuleSync, api_resource, hash_of};
use crate::api::names::RECORDINGS_RULE;
use crate::controllers::Context;
use crate::slo::batch::GroupKey;
use crate::slo::recordings;
use crate::slo::rules::rule_labels;

impl RuleSync {
    /// Brings the operator's own PrometheusRule (in `namespace`) in line with the groups:
    /// one pair of recording rules per indicator shape, reading only its members'
    /// `tenant_label` values. Returns the writes made.
    pub async fn sync_recordings(
        &mut self,
        ctx: &Context,
        groups: &[(GroupKey, BTreeSet<String>)],
        namespace: &str,
        tenant_label: Option<&str>,
    ) -> usize {
        if !self.crd_served(ctx).await {
            return 0;
        }
        let group = recording_group(groups, tenant_label);
        let labels = rule_labels(None, &self.labels);
        let hash = hash_of(&(&group, &labels));
        if self.recordings == Some(hash) {
            return 0;
        }
        let object = serde_json::json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {
                "name": RECORDINGS_RULE,
                "namespace": namespace,
                "labels": labels,
            },
            "spec": {"groups": [group]},
        });
        match ctx
            .kube
            .dynamic_apply(namespace, RECORDINGS_RULE, &api_resource(), &object)
            .await
        {
            Ok(_) => {
                self.recordings = Some(hash);
                1
            }
            Err(e) => {
                tracing::warn!(namespace, error = %e, "applying the recordings PrometheusRule failed");
                0
            }
        }
    }
}

/// The rule group of the recordings: one pair per shape (groups of one shape and other
/// windows share it), every namespace of the shape's members, evaluated every 5 minutes.
pub fn recording_group(
    groups: &[(GroupKey, BTreeSet<String>)],
    tenant_label: Option<&str>,
) -> serde_json::Value {
    let mut shapes: BTreeMap<String, (&GroupKey, BTreeSet<&str>)> = BTreeMap::new();
    for (key, tenants) in groups {
        let e = shapes
            .entry(recordings::shape_id(key))
            .or_insert((key, BTreeSet::new()));
        e.1.extend(tenants.iter().map(String::as_str));
    }
    let rules: Vec<recordings::Recording> = shapes
        .values()
        .flat_map(|(key, tenants)| recordings::rules(key, tenant_label, tenants))
        .collect();
    serde_json::json!({
        "name": RECORDINGS_RULE,
        "interval": crate::duration::format_duration(recordings::STEP),
        "rules": rules,
    })
}

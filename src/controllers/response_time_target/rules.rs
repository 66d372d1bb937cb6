//! Burn-rate alerts as `monitoring.coreos.com/v1` PrometheusRule objects, one per
//! ResponseTimeTarget with `alerting.burnRateAlerts: true`, owned by the target (so they go
//! when it goes), and only when that CRD is served (the Prometheus Operator is installed;
//! checked again every few minutes). Applied with server-side apply only when the rules
//! changed; deleted when alerts are switched off.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::core::{ApiResource, GroupVersionKind};
use kube::{Resource, ResourceExt};

use crate::api::ResponseTimeTarget;
use crate::slo::rules::burn_rate_group;

use crate::api::names::{MANAGED_BY, MANAGED_BY_LABEL, MANAGED_BY_SELECTOR, RECORDINGS_RULE};
use crate::k8s::Kube;
use crate::slo::batch::GroupKey;
use crate::slo::recordings;

/// How often the PrometheusRule CRD is looked for again.
pub const RECHECK: Duration = Duration::from_secs(300);

/// Name of the PrometheusRule of a target.
pub fn rule_name(target: &str) -> String {
    crate::api::names::burn_rate_rule(target)
}

pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PrometheusRule"),
        "prometheusrules",
    )
}

pub struct RuleSync {
    kube: Kube,
    /// The rules' expressions are scoped to their target's namespace by this.
    tenancy: crate::prom::enforce::Tenancy,
    served: Option<(bool, Instant)>,
    /// Hash of what was last applied, by target uid (0: a rule of ours exists, content unknown).
    applied: HashMap<String, u64>,
    /// The generation each target's rule is in line with, by uid: a target is looked at
    /// again only when its spec changed.
    synced: HashMap<String, Option<i64>>,
    /// Hash of the recordings last applied (None: none known).
    recordings: Option<u64>,
}

impl RuleSync {
    pub fn new(kube: Kube, tenancy: crate::prom::enforce::Tenancy) -> Self {
        Self {
            kube,
            tenancy,
            served: None,
            applied: HashMap::new(),
            synced: HashMap::new(),
            recordings: None,
        }
    }

    async fn crd_served(&mut self) -> bool {
        if let Some((served, at)) = self.served
            && at.elapsed() < RECHECK
        {
            return served;
        }
        let served = self
            .kube
            .dynamic_metadata(&api_resource(), "", 1)
            .await
            .is_ok();
        if self.served.map(|(s, _)| s) != Some(served) {
            tracing::info!(served, "PrometheusRule CRD (monitoring.coreos.com/v1)");
            self.applied.clear();
            self.synced.clear();
            self.recordings = None;
            if served {
                // Rules of ours that exist already (e.g. from before a restart), by owner.
                if let Ok(list) = self
                    .kube
                    .dynamic_metadata(&api_resource(), MANAGED_BY_SELECTOR, 0)
                    .await
                {
                    for rule in list {
                        for owner in rule.metadata.owner_references.unwrap_or_default() {
                            self.applied.insert(owner.uid, 0);
                        }
                    }
                }
            }
        }
        self.served = Some((served, Instant::now()));
        served
    }

    /// Whether the recordings per shape were applied (so reading them may answer).
    pub fn recording(&self) -> bool {
        self.recordings.is_some()
    }

    /// Brings the operator's own PrometheusRule (in `namespace`) in line with the groups:
    /// one pair of recording rules per indicator shape, reading only its members'
    /// `tenant_label` values. Returns the writes made.
    pub async fn sync_recordings(
        &mut self,
        groups: &[(GroupKey, BTreeSet<String>)],
        namespace: &str,
        tenant_label: Option<&str>,
    ) -> usize {
        if !self.crd_served().await {
            return 0;
        }
        let group = recording_group(groups, tenant_label);
        let hash = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            serde_json::to_string(&group)
                .unwrap_or_default()
                .hash(&mut h);
            h.finish()
        };
        if self.recordings == Some(hash) {
            return 0;
        }
        let object = serde_json::json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {
                "name": RECORDINGS_RULE,
                "namespace": namespace,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY},
            },
            "spec": {"groups": [group]},
        });
        match self
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

    /// Forgets what it knew of targets that are gone (their rules go with them: they are
    /// owned by the target).
    pub fn forget(&mut self, gone: &[String]) {
        for uid in gone {
            self.applied.remove(uid);
            self.synced.remove(uid);
        }
    }

    /// Brings every target's PrometheusRule in line with its spec; returns the writes made.
    pub async fn sync(&mut self, targets: &[Arc<ResponseTimeTarget>]) -> usize {
        if !self.crd_served().await {
            return 0;
        }
        let mut writes = 0;
        for t in targets {
            let Some(uid) = t.metadata.uid.as_deref() else {
                continue;
            };
            if self.synced.get(uid) == Some(&t.metadata.generation) {
                continue;
            }
            let uid = uid.to_string();
            let group = burn_rate_group(t, &self.tenancy).ok().flatten();
            let hash = group.as_ref().map(|g| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                serde_json::to_string(g).unwrap_or_default().hash(&mut h);
                h.finish()
            });
            let previous = self.applied.get(&uid).copied();
            let ns = t.namespace().unwrap_or_default();
            let name = rule_name(&t.name_any());
            match (group, hash) {
                (Some(group), Some(hash)) if previous != Some(hash) => {
                    let owner = t
                        .controller_owner_ref(&())
                        .map(|o| vec![o])
                        .unwrap_or_default();
                    let object = serde_json::json!({
                        "apiVersion": "monitoring.coreos.com/v1",
                        "kind": "PrometheusRule",
                        "metadata": {
                            "name": name,
                            "namespace": ns,
                            "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                            "ownerReferences": owner,
                        },
                        "spec": {"groups": [group]},
                    });
                    match self
                        .kube
                        .dynamic_apply(&ns, &name, &api_resource(), &object)
                        .await
                    {
                        Ok(_) => {
                            self.applied.insert(uid.clone(), hash);
                            self.synced.insert(uid, t.metadata.generation);
                            writes += 1;
                        }
                        Err(e) => {
                            tracing::warn!(%name, error = %e, "applying PrometheusRule failed")
                        }
                    }
                }
                (None, _) if previous.is_some() => {
                    match self.kube.dynamic_delete(&ns, &name, &api_resource()).await {
                        Ok(_) | Err(crate::k8s::Error::Api(kube::Error::Api(_))) => {
                            self.applied.remove(&uid);
                            self.synced.insert(uid, t.metadata.generation);
                            writes += 1;
                        }
                        Err(e) => {
                            tracing::warn!(%name, error = %e, "deleting PrometheusRule failed")
                        }
                    }
                }
                _ => {
                    self.synced.insert(uid, t.metadata.generation);
                }
            }
        }
        writes
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

//! Burn-rate alerts as `monitoring.coreos.com/v1` PrometheusRule objects, one per
//! ResponseTimeTarget with `alerting.burnRateAlerts: true`, owned by the target (so they go
//! when it goes), and only when that CRD is served (the Prometheus Operator is installed;
//! checked again every few minutes). Applied with server-side apply only when the rules or
//! the target's labels changed; deleted when alerts are switched off. Each rule carries the
//! target's labels and `--prometheus-rule-label`s, so a Prometheus's `ruleSelector` can
//! select it; Prometheus's rules API is then asked whether it loaded the rule, and the
//! target's `AlertsLoaded` condition says so (`slo::rules::alerts_condition`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::core::{ApiResource, GroupVersionKind};
use kube::{Resource, ResourceExt};

use super::super::Context;
use crate::api::ResponseTimeTarget;
use crate::slo::rules::{AlertsSeen, overdue, prometheus_rule, rule_labels};

use crate::api::names::{MANAGED_BY_SELECTOR, RECORDINGS_RULE};
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
    /// The rules' expressions are scoped to their target's namespace by this.
    tenancy: crate::prom::enforce::Tenancy,
    /// Labels of every generated rule (`--prometheus-rule-label`).
    labels: BTreeMap<String, String>,
    served: Option<(bool, Instant)>,
    /// Hash of what was last applied, by target uid (0: a rule of ours exists, content unknown).
    applied: HashMap<String, u64>,
    /// The generation and labels each target's rule is in line with, by uid: a target is
    /// looked at again only when its spec or its labels changed.
    synced: HashMap<String, (Option<i64>, u64)>,
    /// What is known of each alerting target's rule in Prometheus, by uid, with its group.
    seen: HashMap<String, (AlertsSeen, String)>,
    /// When Prometheus's rules API was last asked about rules not shown yet, and about
    /// overdue ones.
    checked: (Option<Instant>, Option<Instant>),
    /// Hash of the recordings last applied (None: none known).
    recordings: Option<u64>,
}

/// How often Prometheus's rules API is asked about rules written and not shown yet (only
/// while there are some); rules overdue are asked about every [`RECHECK`].
pub const LOAD_CHECK: Duration = Duration::from_secs(5);

/// Rule groups asked about in one request (their names go in the URL).
const GROUPS_PER_CHECK: usize = 40;

fn hash_of(v: &impl serde::Serialize) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(v).unwrap_or_default().hash(&mut h);
    h.finish()
}

impl RuleSync {
    pub fn new(tenancy: crate::prom::enforce::Tenancy, labels: BTreeMap<String, String>) -> Self {
        Self {
            tenancy,
            labels,
            served: None,
            applied: HashMap::new(),
            synced: HashMap::new(),
            seen: HashMap::new(),
            checked: (None, None),
            recordings: None,
        }
    }

    async fn crd_served(&mut self, ctx: &Context) -> bool {
        if let Some((served, at)) = self.served
            && at.elapsed() < RECHECK
        {
            return served;
        }
        let served = ctx
            .kube
            .dynamic_metadata(&api_resource(), "", 1)
            .await
            .is_ok();
        if self.served.map(|(s, _)| s) != Some(served) {
            tracing::info!(served, "PrometheusRule CRD (monitoring.coreos.com/v1)");
            self.applied.clear();
            self.synced.clear();
            self.seen.clear();
            self.recordings = None;
            if served {
                // Rules of ours that exist already (e.g. from before a restart), by owner.
                if let Ok(list) = ctx
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

    /// What is known of a target's alerts in Prometheus (None: nothing yet, or it asks for none).
    pub fn seen(&self, uid: &str) -> Option<&AlertsSeen> {
        self.seen.get(uid).map(|(s, _)| s)
    }

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

    /// Forgets what it knew of targets that are gone (their rules go with them: they are
    /// owned by the target).
    pub fn forget(&mut self, gone: &[String]) {
        for uid in gone {
            self.applied.remove(uid);
            self.synced.remove(uid);
            self.seen.remove(uid);
        }
    }

    /// Brings every target's PrometheusRule in line with its spec and labels; returns the
    /// writes made and the uids whose alerts' state changed (their status says it).
    pub async fn sync(
        &mut self,
        ctx: &Context,
        targets: &[Arc<ResponseTimeTarget>],
    ) -> (usize, Vec<String>) {
        let served = self.crd_served(ctx).await;
        let now = ctx.clock.now();
        let mut writes = 0;
        let mut changed = Vec::new();
        for t in targets {
            let Some(uid) = t.metadata.uid.as_deref() else {
                continue;
            };
            let key = (t.metadata.generation, hash_of(&t.metadata.labels));
            if self.synced.get(uid) == Some(&key) {
                continue;
            }
            let uid = uid.to_string();
            let alerting = t.spec.alerting.as_ref().is_some_and(|a| a.burn_rate_alerts);
            if !served {
                if alerting {
                    self.see(&uid, AlertsSeen::NoRuleKind, String::new(), &mut changed);
                }
                self.synced.insert(uid, key);
                continue;
            }
            let object = prometheus_rule(t, &self.tenancy, &self.labels);
            let hash = match &object {
                Ok(Some(o)) => Some(hash_of(o)),
                _ => None,
            };
            let previous = self.applied.get(&uid).copied();
            let ns = t.namespace().unwrap_or_default();
            let name = rule_name(&t.name_any());
            match (object, hash) {
                (Err(e), _) => {
                    self.see(
                        &uid,
                        AlertsSeen::NotWritten(e.to_string()),
                        String::new(),
                        &mut changed,
                    );
                    self.synced.insert(uid, key);
                }
                (Ok(Some(mut object)), Some(hash)) if previous != Some(hash) => {
                    let owner = t
                        .controller_owner_ref(&())
                        .map(|o| vec![o])
                        .unwrap_or_default();
                    object["metadata"]["ownerReferences"] = serde_json::json!(owner);
                    let group_name = object["spec"]["groups"][0]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    match ctx
                        .kube
                        .dynamic_apply(&ns, &name, &api_resource(), &object)
                        .await
                    {
                        Ok(_) => {
                            self.applied.insert(uid.clone(), hash);
                            self.see(
                                &uid,
                                AlertsSeen::Written { since: now },
                                group_name,
                                &mut changed,
                            );
                            self.synced.insert(uid, key);
                            writes += 1;
                        }
                        Err(e) => {
                            tracing::warn!(%name, error = %e, "applying PrometheusRule failed");
                            let why = format!("PrometheusRule {name} could not be written: {e}");
                            self.see(
                                &uid,
                                AlertsSeen::NotWritten(why),
                                String::new(),
                                &mut changed,
                            );
                        }
                    }
                }
                (Ok(None), _) if previous.is_some() => {
                    match ctx.kube.dynamic_delete(&ns, &name, &api_resource()).await {
                        Ok(_) | Err(crate::k8s::Error::Api(kube::Error::Api(_))) => {
                            self.applied.remove(&uid);
                            self.seen.remove(&uid);
                            self.synced.insert(uid, key);
                            writes += 1;
                        }
                        Err(e) => {
                            tracing::warn!(%name, error = %e, "deleting PrometheusRule failed")
                        }
                    }
                }
                (Ok(group), _) => {
                    if group.is_none() {
                        self.seen.remove(&uid);
                    }
                    self.synced.insert(uid, key);
                }
            }
        }
        (writes, changed)
    }

    fn see(&mut self, uid: &str, seen: AlertsSeen, group: String, changed: &mut Vec<String>) {
        let before = self.seen.insert(uid.to_string(), (seen.clone(), group));
        if before.map(|(s, _)| s) != Some(seen) {
            changed.push(uid.to_string());
        }
    }

    /// Asks Prometheus's rules API about the rules written and not shown yet (every
    /// [`LOAD_CHECK`]; overdue ones every [`RECHECK`]): only such rules are asked about.
    /// Returns the uids whose rules are shown now. (A rule turning overdue needs no call:
    /// the target's next evaluation says it.)
    pub async fn check_loaded(&mut self, ctx: &Context) -> Vec<String> {
        let grace = ctx.settings.rules_load_grace;
        let now = ctx.clock.now();
        let due = |at: Option<Instant>, every: Duration| at.is_none_or(|at| at.elapsed() >= every);
        let (pending_due, late_due) = (
            due(self.checked.0, LOAD_CHECK),
            due(self.checked.1, RECHECK),
        );
        let mut asked: Vec<(&String, &String)> = Vec::new();
        let (mut pending, mut late) = (false, false);
        for (uid, (seen, group)) in &self.seen {
            if let AlertsSeen::Written { since } = seen {
                if overdue(*since, now, grace) {
                    if late_due {
                        asked.push((uid, group));
                        late = true;
                    }
                } else if pending_due {
                    asked.push((uid, group));
                    pending = true;
                }
            }
        }
        let mut changed = Vec::new();
        if asked.is_empty() {
            return changed;
        }
        if pending {
            self.checked.0 = Some(Instant::now());
        }
        if late {
            self.checked.1 = Some(Instant::now());
        }
        let mut shown = std::collections::HashSet::new();
        for chunk in asked.chunks(GROUPS_PER_CHECK) {
            let names: Vec<&str> = chunk.iter().map(|(_, g)| g.as_str()).collect();
            match ctx.prom.rule_groups(&names).await {
                Ok(groups) => shown.extend(groups),
                Err(e) => {
                    tracing::debug!(error = %e, "asking Prometheus which rules it has loaded failed");
                    return changed;
                }
            }
        }
        changed.extend(
            asked
                .iter()
                .filter(|(_, g)| shown.contains(g.as_str()))
                .map(|(uid, _)| (*uid).clone()),
        );
        for uid in &changed {
            if let Some((seen, _)) = self.seen.get_mut(uid) {
                *seen = AlertsSeen::Loaded;
            }
        }
        changed
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

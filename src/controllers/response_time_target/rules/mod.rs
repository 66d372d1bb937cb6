//! Burn-rate alerts as `monitoring.coreos.com/v1` PrometheusRule objects, one per
//! ResponseTimeTarget with `alerting.burnRateAlerts: true`, owned by the target (so they go
//! when it goes), and only when that CRD is served (the Prometheus Operator is installed;
//! checked again every few minutes). Applied with server-side apply only when the rules or
//! the target's labels changed; deleted when alerts are switched off. Each rule carries the
//! target's labels and `--prometheus-rule-label`s, so a Prometheus's `ruleSelector` can
//! select it; Prometheus's rules API is then asked whether it loaded the rule, and the
//! target's `AlertsLoaded` condition says so (`slo::rules::alerts_condition`).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::core::{ApiResource, GroupVersionKind};

mod apply;
mod loaded;
mod recordings;

pub use loaded::LOAD_CHECK;
pub use recordings::recording_group;

use super::super::Context;
use crate::api::ResponseTimeTarget;
use crate::slo::rules::AlertsSeen;

use crate::api::names::MANAGED_BY_SELECTOR;

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
    /// Targets whose alerts' state changed since the last [`RuleSync::sync`].
    changed: Vec<String>,
    /// Targets whose rule is written and not shown by Prometheus yet: the only ones
    /// [`RuleSync::check_loaded`] looks at.
    unconfirmed: std::collections::BTreeSet<String>,
}

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
            changed: Vec::new(),
            unconfirmed: Default::default(),
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
            self.unconfirmed.clear();
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

    /// Forgets what it knew of targets that are gone (their rules go with them: they are
    /// owned by the target).
    pub fn forget(&mut self, gone: &[String]) {
        for uid in gone {
            self.applied.remove(uid);
            self.synced.remove(uid);
            self.unsee(uid);
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
        let mut writes = 0;
        for t in targets {
            let Some(uid) = t.metadata.uid.clone() else {
                continue;
            };
            // Hashed as they are: this runs for every target whenever the cache moved.
            let key = (t.metadata.generation, {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                t.metadata.labels.hash(&mut h);
                h.finish()
            });
            if self.synced.get(&uid) == Some(&key) {
                continue;
            }
            let done = if served {
                let (w, done) = self.sync_one(ctx, t, &uid).await;
                writes += w;
                done
            } else {
                if t.spec.alerting.as_ref().is_some_and(|a| a.burn_rate_alerts) {
                    self.see(&uid, AlertsSeen::NoRuleKind, String::new());
                }
                true
            };
            if done {
                self.synced.insert(uid, key);
            }
        }
        (writes, std::mem::take(&mut self.changed))
    }

    /// Forgets what was known of a target's alerts (it asks for none, or it is gone).
    fn unsee(&mut self, uid: &str) {
        self.seen.remove(uid);
        self.unconfirmed.remove(uid);
    }

    /// Records what is known of a target's alerts (and that its status must say it, when
    /// that changed).
    fn see(&mut self, uid: &str, seen: AlertsSeen, group: String) {
        if matches!(seen, AlertsSeen::Written { .. }) {
            self.unconfirmed.insert(uid.to_string());
        } else {
            self.unconfirmed.remove(uid);
        }
        let before = self.seen.insert(uid.to_string(), (seen.clone(), group));
        if before.map(|(s, _)| s) != Some(seen) {
            self.changed.push(uid.to_string());
        }
    }
}

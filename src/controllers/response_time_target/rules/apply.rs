//! One target's PrometheusRule brought in line with its spec and labels.

use kube::{Resource, ResourceExt};

use super::{AlertsSeen, RuleSync, api_resource, hash_of, rule_name};
use crate::api::ResponseTimeTarget;
use crate::controllers::Context;
use crate::slo::rules::prometheus_rule;

impl RuleSync {
    /// Applies (or deletes) `t`'s rule when it differs from what was applied; returns the
    /// writes made and whether `t` is in line (false: a write failed, try again).
    pub(super) async fn sync_one(
        &mut self,
        ctx: &Context,
        t: &ResponseTimeTarget,
        uid: &str,
    ) -> (usize, bool) {
        let object = prometheus_rule(t, &self.tenancy, &self.labels);
        let hash = match &object {
            Ok(Some(o)) => Some(hash_of(o)),
            _ => None,
        };
        let previous = self.applied.get(uid).copied();
        let ns = t.namespace().unwrap_or_default();
        let name = rule_name(&t.name_any());
        match (object, hash) {
            (Err(e), _) => {
                self.see(uid, AlertsSeen::NotWritten(e.to_string()), String::new());
                (0, true)
            }
            (Ok(Some(mut object)), Some(hash)) if previous != Some(hash) => {
                let owner = t
                    .controller_owner_ref(&())
                    .map(|o| vec![o])
                    .unwrap_or_default();
                object["metadata"]["ownerReferences"] = serde_json::json!(owner);
                let group = object["spec"]["groups"][0]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                match ctx
                    .kube
                    .dynamic_apply(&ns, &name, &api_resource(), &object)
                    .await
                {
                    Ok(_) => {
                        self.applied.insert(uid.to_string(), hash);
                        let since = ctx.clock.now();
                        self.see(uid, AlertsSeen::Written { since }, group);
                        (1, true)
                    }
                    Err(e) => {
                        tracing::warn!(%name, error = %e, "applying PrometheusRule failed");
                        let why = format!("PrometheusRule {name} could not be written: {e}");
                        self.see(uid, AlertsSeen::NotWritten(why), String::new());
                        (0, false)
                    }
                }
            }
            (Ok(None), _) if previous.is_some() => {
                match ctx.kube.dynamic_delete(&ns, &name, &api_resource()).await {
                    Ok(_) | Err(crate::k8s::Error::Api(kube::Error::Api(_))) => {
                        self.applied.remove(uid);
                        self.unsee(uid);
                        (1, true)
                    }
                    Err(e) => {
                        tracing::warn!(%name, error = %e, "deleting PrometheusRule failed");
                        (0, false)
                    }
                }
            }
            (Ok(group), _) => {
                if group.is_none() {
                    self.unsee(uid);
                }
                (0, true)
            }
        }
    }
}

//! CanaryPolicy's metrics: coverage, rollout totals and exposure to failed revisions, per
//! policy, from its status.

use std::collections::BTreeMap;

use prometheus::{GaugeVec, IntGaugeVec};

use crate::api::canary_policy::CanaryPolicyStatus;
use crate::metrics::Metrics;

const POLICY: &[&str] = &["namespace", "policy"];
const FAILED: &[&str] = &["namespace", "policy", "deployment", "revision"];

#[derive(Clone)]
pub struct CanaryMetrics {
    /// Deployments in the policy's namespace (scope=namespace) and governed by it.
    deployments: IntGaugeVec,
    /// The status totals by outcome.
    rollouts: IntGaugeVec,
    exposure_replica_minutes: GaugeVec,
    failed_exposure_share: GaugeVec,
    failed_exposure_minutes: GaugeVec,
}

impl CanaryMetrics {
    pub fn new(m: &Metrics) -> Self {
        Self {
            deployments: m.int_gauges(
                "maturity_canary_deployments",
                "Deployments in the policy's namespace (scope=namespace) and governed by it (scope=governed).",
                &["namespace", "policy", "scope"],
            ),
            rollouts: m.int_gauges(
                "maturity_canary_rollouts",
                "Rollouts since the policy was created, by outcome (analyzed, promoted, rolled_back, held, inconclusive, unguarded).",
                &["namespace", "policy", "outcome"],
            ),
            exposure_replica_minutes: m.gauges(
                "maturity_canary_exposure_replica_minutes",
                "Replica-minutes served by revisions whose canary failed, since the policy was created.",
                POLICY,
            ),
            failed_exposure_share: m.gauges(
                "maturity_canary_failed_exposure_share_percent",
                "Largest share of replicas a failed revision had, per failed rollout kept in status.",
                FAILED,
            ),
            failed_exposure_minutes: m.gauges(
                "maturity_canary_failed_exposure_minutes",
                "Minutes users were exposed to a failed revision, per failed rollout kept in status.",
                FAILED,
            ),
        }
    }

    /// The status figures as metrics (removed when the policy goes away).
    pub fn export(&self, ns: &str, name: &str, s: &CanaryPolicyStatus, deleting: bool) {
        let cov = s.coverage.clone().unwrap_or_default();
        let totals = s.totals.clone().unwrap_or_default();
        let scopes = [("namespace", cov.deployments), ("governed", cov.governed)];
        let outcomes = [
            ("analyzed", totals.analyzed),
            ("promoted", totals.promoted),
            ("rolled_back", totals.rolled_back),
            ("held", totals.held),
            ("inconclusive", totals.inconclusive),
            ("unguarded", totals.unguarded),
        ];
        let failed: BTreeMap<(String, String), (f64, f64)> = s
            .rollouts
            .iter()
            .filter_map(|r| {
                let e = r.exposure.as_ref()?;
                Some((
                    (r.deployment.clone(), r.revision.clone()),
                    (e.max_share_percent, e.minutes),
                ))
            })
            .collect();
        if deleting {
            for (scope, _) in scopes {
                let _ = self.deployments.remove_label_values(&[ns, name, scope]);
            }
            for (o, _) in outcomes {
                let _ = self.rollouts.remove_label_values(&[ns, name, o]);
            }
            let _ = self
                .exposure_replica_minutes
                .remove_label_values(&[ns, name]);
            for (d, rev) in failed.keys() {
                let _ = self
                    .failed_exposure_share
                    .remove_label_values(&[ns, name, d, rev]);
                let _ = self
                    .failed_exposure_minutes
                    .remove_label_values(&[ns, name, d, rev]);
            }
            return;
        }
        for (scope, v) in scopes {
            self.deployments
                .with_label_values(&[ns, name, scope])
                .set(v as i64);
        }
        for (o, v) in outcomes {
            self.rollouts
                .with_label_values(&[ns, name, o])
                .set(v as i64);
        }
        self.exposure_replica_minutes
            .with_label_values(&[ns, name])
            .set(totals.exposure_replica_minutes);
        for ((d, rev), (share, minutes)) in failed {
            self.failed_exposure_share
                .with_label_values(&[ns, name, &d, &rev])
                .set(share);
            self.failed_exposure_minutes
                .with_label_values(&[ns, name, &d, &rev])
                .set(minutes);
        }
    }
}

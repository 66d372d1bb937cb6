//! The operator's own metrics, served on `/metrics` in the Prometheus text format.

use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric the operator exports, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Objects of each kind the operator sees, by kind.
    pub watched_resources: IntGaugeVec,
    /// Prometheus queries by kind (instant, range, get) and outcome (ok or the error category).
    pub prometheus_queries: IntCounterVec,
    /// Duration of Prometheus queries by kind.
    pub prometheus_query_duration: HistogramVec,
    /// Status writes to the API server, by kind of resource.
    pub status_writes: IntCounterVec,
    /// Reconciles (evaluations) that failed and are retried, by controller.
    pub reconcile_errors: IntCounterVec,
    /// Evaluation cycles of each controller and how long they took.
    pub cycle_duration: HistogramVec,
    /// Per ResponseTimeTarget (labels namespace, name, service, request_class).
    pub rtt_attainment: GaugeVec,
    pub rtt_objective: GaugeVec,
    pub rtt_error_budget_remaining: GaugeVec,
    /// As above plus `window`.
    pub rtt_burn_rate: GaugeVec,
    /// As above plus `state` (met, missed, unknown, error): 1 for the current state.
    pub rtt_state: GaugeVec,
    /// Admission webhook answers by outcome (held, allowed).
    pub webhook_requests: IntCounterVec,
    /// Per CanaryPolicy (namespace, policy): Deployments in its namespace and governed by it.
    pub canary_deployments: IntGaugeVec,
    /// Per CanaryPolicy plus `outcome` (analyzed, promoted, rolled_back, held, inconclusive): the status totals.
    pub canary_rollouts: IntGaugeVec,
    /// Per CanaryPolicy: replica-minutes served by failed revisions (status totals).
    pub canary_exposure_replica_minutes: GaugeVec,
    /// Per failed rollout in status (namespace, policy, deployment, revision): share and minutes.
    pub canary_failed_exposure_share: GaugeVec,
    pub canary_failed_exposure_minutes: GaugeVec,
    /// Per DrillSchedule (namespace, drill) plus `result`: the status summary.
    pub drill_runs: IntGaugeVec,
    /// Per DrillSchedule: recovery time of the latest run that recovered.
    pub drill_last_recovery_seconds: GaugeVec,
    /// Per MaturityAssessment (namespace, assessment): the overall level.
    pub maturity_level: IntGaugeVec,
    /// Per MaturityAssessment plus `capability`.
    pub maturity_capability_level: IntGaugeVec,
    /// Per MaturityAssessment plus `state`: practices in that state.
    pub maturity_practices: IntGaugeVec,
    /// Per MaturityAssessment plus `level`, `capability`, `practice`: 1 per missing practice.
    pub maturity_next_level_missing: IntGaugeVec,
    /// The missing-practice series exported last per assessment, so a practice that is no
    /// longer missing (or an assessment that is gone) loses its series.
    missing_exported: std::sync::Arc<std::sync::Mutex<MissingSeries>>,
    /// 1 while this process holds the leader-election Lease (or runs without election).
    pub leader: IntGauge,
}

type MissingSeries = std::collections::HashMap<(String, String), Vec<[String; 5]>>;

/// Labels of the per-policy canary series.
pub const CANARY_LABELS: &[&str] = &["namespace", "policy"];

/// Labels of the per-target series.
pub const RTT_LABELS: &[&str] = &["namespace", "name", "service", "request_class"];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let info = IntGaugeVec::new(
            Opts::new("maturity_operator_info", "Build information; always 1."),
            &["version"],
        )
        .expect("static metric definition");
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "maturity_operator_reconcile_errors_total",
                "Reconciles (evaluations) that failed and are retried, by controller and category (NotFound, Conflict, Forbidden, Timeout, NotLeader, ...).",
            ),
            &["controller", "category"],
        )
        .expect("static metric definition");
        let leader = IntGauge::new(
            "maturity_operator_leader",
            "1 while this process holds the leader-election Lease and reconciles (always 1 without leader election), 0 on a standby.",
        )
        .expect("static metric definition");
        let watched_resources = IntGaugeVec::new(
            Opts::new(
                "maturity_operator_watched_resources",
                "Custom resources of each kind the operator currently sees.",
            ),
            &["kind"],
        )
        .expect("static metric definition");
        let prometheus_queries = IntCounterVec::new(
            Opts::new(
                "maturity_operator_prometheus_queries_total",
                "Prometheus queries sent, by kind and outcome.",
            ),
            &["kind", "outcome"],
        )
        .expect("static metric definition");
        let prometheus_query_duration = HistogramVec::new(
            HistogramOpts::new(
                "maturity_operator_prometheus_query_duration_seconds",
                "Time from sending a Prometheus query to its answer (or failure).",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["kind"],
        )
        .expect("static metric definition");
        let status_writes = IntCounterVec::new(
            Opts::new(
                "maturity_operator_status_writes_total",
                "Status writes to the API server, by kind (a cycle that changes nothing writes nothing).",
            ),
            &["kind"],
        )
        .expect("static metric definition");
        let cycle_duration = HistogramVec::new(
            HistogramOpts::new(
                "maturity_operator_cycle_duration_seconds",
                "Duration of reconciles (evaluation cycles), by controller (the kind) and outcome (ok, or the error's category).",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["controller", "outcome"],
        )
        .expect("static metric definition");
        let gauge = |name: &str, help: &str, extra: &[&str]| {
            let labels: Vec<&str> = RTT_LABELS.iter().chain(extra).copied().collect();
            GaugeVec::new(Opts::new(name, help), &labels).expect("static metric definition")
        };
        let rtt_attainment = gauge(
            "maturity_rtt_attainment_percent",
            "Percent of good events over the target's window.",
            &[],
        );
        let rtt_objective = gauge(
            "maturity_rtt_objective_percent",
            "The target's objective.",
            &[],
        );
        let rtt_error_budget_remaining = gauge(
            "maturity_rtt_error_budget_remaining_ratio",
            "Fraction of the window's error budget left (negative when overspent).",
            &[],
        );
        let rtt_burn_rate = gauge(
            "maturity_rtt_burn_rate",
            "Error budget burn rate over a lookback window (1 spends the budget exactly over the target's window).",
            &["window"],
        );
        let rtt_state = gauge(
            "maturity_rtt_state",
            "1 for the target's current state (met, missed, unknown, error), 0 for the others.",
            &["state"],
        );
        let webhook_requests = IntCounterVec::new(
            Opts::new(
                "maturity_operator_webhook_requests_total",
                "Admission requests for Deployments, by outcome (held: a new template paused for its canary; allowed: passed untouched).",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let canary_deployments = IntGaugeVec::new(
            Opts::new(
                "maturity_canary_deployments",
                "Deployments in the policy's namespace (scope=namespace) and governed by it (scope=governed).",
            ),
            &["namespace", "policy", "scope"],
        )
        .expect("static metric definition");
        let canary_rollouts = IntGaugeVec::new(
            Opts::new(
                "maturity_canary_rollouts",
                "Rollouts since the policy was created, by outcome (analyzed, promoted, rolled_back, held, inconclusive).",
            ),
            &["namespace", "policy", "outcome"],
        )
        .expect("static metric definition");
        let canary_exposure_replica_minutes = GaugeVec::new(
            Opts::new(
                "maturity_canary_exposure_replica_minutes",
                "Replica-minutes served by revisions whose canary failed, since the policy was created.",
            ),
            CANARY_LABELS,
        )
        .expect("static metric definition");
        let failed = ["namespace", "policy", "deployment", "revision"];
        let canary_failed_exposure_share = GaugeVec::new(
            Opts::new(
                "maturity_canary_failed_exposure_share_percent",
                "Largest share of replicas a failed revision had, per failed rollout kept in status.",
            ),
            &failed,
        )
        .expect("static metric definition");
        let canary_failed_exposure_minutes = GaugeVec::new(
            Opts::new(
                "maturity_canary_failed_exposure_minutes",
                "Minutes users were exposed to a failed revision, per failed rollout kept in status.",
            ),
            &failed,
        )
        .expect("static metric definition");
        let drill_runs = IntGaugeVec::new(
            Opts::new(
                "maturity_drill_runs",
                "Drill runs kept in the DrillSchedule's summary, by result (passed, failed, aborted, skipped).",
            ),
            &["namespace", "drill", "result"],
        )
        .expect("static metric definition");
        let drill_last_recovery_seconds = GaugeVec::new(
            Opts::new(
                "maturity_drill_last_recovery_seconds",
                "Seconds from injection to recovery (target Available, steady state holding) of the latest run that recovered.",
            ),
            &["namespace", "drill"],
        )
        .expect("static metric definition");
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition")
        };
        let maturity_level = int_gauge(
            "maturity_level",
            "Overall maturity level of the assessment's scope (the lowest capability level, 1-5).",
            &["namespace", "assessment"],
        );
        let maturity_capability_level = int_gauge(
            "maturity_capability_level",
            "Maturity level of one capability (ORG, CX, BIZ, COMM, RESP).",
            &["namespace", "assessment", "capability"],
        );
        let maturity_practices = int_gauge(
            "maturity_practices",
            "Practices of the model by state (met, not_met, unknown, exempt, expired).",
            &["namespace", "assessment", "state"],
        );
        let maturity_next_level_missing = int_gauge(
            "maturity_next_level_missing",
            "1 for each practice the assessment's next level misses (the list in status.nextLevel).",
            &["namespace", "assessment", "level", "capability", "practice"],
        );
        for m in [
            Box::new(info) as Box<dyn prometheus::core::Collector>,
            Box::new(watched_resources.clone()),
            Box::new(prometheus_queries.clone()),
            Box::new(prometheus_query_duration.clone()),
            Box::new(status_writes.clone()),
            Box::new(cycle_duration.clone()),
            Box::new(rtt_attainment.clone()),
            Box::new(rtt_objective.clone()),
            Box::new(rtt_error_budget_remaining.clone()),
            Box::new(rtt_burn_rate.clone()),
            Box::new(rtt_state.clone()),
            Box::new(webhook_requests.clone()),
            Box::new(canary_deployments.clone()),
            Box::new(canary_rollouts.clone()),
            Box::new(canary_exposure_replica_minutes.clone()),
            Box::new(canary_failed_exposure_share.clone()),
            Box::new(canary_failed_exposure_minutes.clone()),
            Box::new(drill_runs.clone()),
            Box::new(drill_last_recovery_seconds.clone()),
            Box::new(maturity_level.clone()),
            Box::new(maturity_capability_level.clone()),
            Box::new(maturity_practices.clone()),
            Box::new(maturity_next_level_missing.clone()),
            Box::new(leader.clone()),
            Box::new(reconcile_errors.clone()),
        ] {
            registry.register(m).expect("metric registered once");
        }
        Self {
            registry,
            watched_resources,
            prometheus_queries,
            prometheus_query_duration,
            status_writes,
            cycle_duration,
            rtt_attainment,
            rtt_objective,
            rtt_error_budget_remaining,
            rtt_burn_rate,
            rtt_state,
            webhook_requests,
            canary_deployments,
            canary_rollouts,
            canary_exposure_replica_minutes,
            canary_failed_exposure_share,
            canary_failed_exposure_minutes,
            drill_runs,
            drill_last_recovery_seconds,
            maturity_level,
            maturity_capability_level,
            maturity_practices,
            maturity_next_level_missing,
            missing_exported: Default::default(),
            leader,
            reconcile_errors,
        }
    }

    /// Exports the practices `namespace/assessment`'s next level misses (`(level,
    /// practice id)`; none: the series go), replacing what was exported for it before.
    pub fn set_next_level_missing(
        &self,
        namespace: &str,
        assessment: &str,
        missing: &[(i32, &str)],
    ) {
        let series: Vec<[String; 5]> = missing
            .iter()
            .map(|(level, practice)| {
                let capability = practice.split('-').next().unwrap_or(practice);
                [
                    namespace.to_string(),
                    assessment.to_string(),
                    level.to_string(),
                    capability.to_string(),
                    practice.to_string(),
                ]
            })
            .collect();
        let Ok(mut exported) = self.missing_exported.lock() else {
            return;
        };
        let key = (namespace.to_string(), assessment.to_string());
        for old in exported.remove(&key).unwrap_or_default() {
            if !series.contains(&old) {
                let labels: Vec<&str> = old.iter().map(String::as_str).collect();
                let _ = self
                    .maturity_next_level_missing
                    .remove_label_values(&labels);
            }
        }
        for s in &series {
            let labels: Vec<&str> = s.iter().map(String::as_str).collect();
            self.maturity_next_level_missing
                .with_label_values(&labels)
                .set(1);
        }
        if !series.is_empty() {
            exported.insert(key, series);
        }
    }

    /// Removes every series of an assessment that is gone.
    pub fn forget_assessment(&self, namespace: &str, assessment: &str) {
        let _ = self
            .maturity_level
            .remove_label_values(&[namespace, assessment]);
        for c in crate::model::Capability::ALL {
            let _ = self.maturity_capability_level.remove_label_values(&[
                namespace,
                assessment,
                c.id(),
            ]);
        }
        for state in ["met", "not_met", "unknown", "exempt", "expired"] {
            let _ = self
                .maturity_practices
                .remove_label_values(&[namespace, assessment, state]);
        }
        self.set_next_level_missing(namespace, assessment, &[]);
    }

    pub fn record_query(&self, kind: &str, outcome: &str, took: Duration) {
        self.prometheus_queries
            .with_label_values(&[kind, outcome])
            .inc();
        self.prometheus_query_duration
            .with_label_values(&[kind])
            .observe(took.as_secs_f64());
    }

    /// The current values in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text encoder.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(m: &Metrics, prefix: &str) -> Vec<String> {
        m.render()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(String::from)
            .collect()
    }

    #[test]
    fn missing_practices_are_replaced_and_forgotten() {
        let m = Metrics::new();
        m.set_next_level_missing("shop", "payments", &[(2, "ORG-2.1"), (2, "RESP-2.3")]);
        m.set_next_level_missing("shop", "other", &[(3, "CX-3.1")]);
        let got = lines(&m, "maturity_next_level_missing{");
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.contains(&"maturity_next_level_missing{assessment=\"payments\",capability=\"ORG\",level=\"2\",namespace=\"shop\",practice=\"ORG-2.1\"} 1".to_string()), "{got:?}");
        // ORG-2.1 is met now: its series goes, the other assessment's stays.
        m.set_next_level_missing("shop", "payments", &[(2, "RESP-2.3")]);
        let got = lines(&m, "maturity_next_level_missing{");
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(!got.iter().any(|l| l.contains("ORG-2.1")), "{got:?}");
        m.maturity_level
            .with_label_values(&["shop", "payments"])
            .set(1);
        m.maturity_capability_level
            .with_label_values(&["shop", "payments", "ORG"])
            .set(1);
        m.forget_assessment("shop", "payments");
        assert!(
            lines(&m, "maturity_")
                .iter()
                .all(|l| !l.contains("\"payments\""))
        );
        assert_eq!(lines(&m, "maturity_next_level_missing{").len(), 1);
    }
}

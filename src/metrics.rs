//! The operator's metrics, served on `/metrics` in the Prometheus text format: the
//! operator-wide ones here; each kind's own in `controllers/<kind>/metrics.rs`, registered
//! in the same registry when its controller starts.

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
    /// Admission webhook answers by outcome (held, allowed).
    pub webhook_requests: IntCounterVec,
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
        let webhook_requests = IntCounterVec::new(
            Opts::new(
                "maturity_operator_webhook_requests_total",
                "Admission requests for Deployments, by outcome (held: a new template paused for its canary; allowed: passed untouched).",
            ),
            &["outcome"],
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
            Box::new(webhook_requests.clone()),
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
            webhook_requests,
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

    /// Registers a kind's metric (a controller registers its own when it starts, so its
    /// families sit next to the kind); registering one name twice keeps the first.
    pub fn register<C>(&self, c: C) -> C
    where
        C: prometheus::core::Collector + Clone + 'static,
    {
        if let Err(e) = self.registry.register(Box::new(c.clone())) {
            tracing::debug!(error = %e, "metric registered before");
        }
        c
    }

    /// A gauge family of a kind, registered.
    pub fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        self.register(
            GaugeVec::new(Opts::new(name, help), labels).expect("static metric definition"),
        )
    }

    /// An integer gauge family of a kind, registered.
    pub fn int_gauges(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.register(
            IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition"),
        )
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

//! The operator's own metrics, served on `/metrics` in the Prometheus text format.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
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
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let info = IntGaugeVec::new(
            Opts::new("maturity_operator_info", "Build information; always 1."),
            &["version"],
        )
        .expect("static metric definition");
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
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
        for m in [
            Box::new(info) as Box<dyn prometheus::core::Collector>,
            Box::new(watched_resources.clone()),
            Box::new(prometheus_queries.clone()),
            Box::new(prometheus_query_duration.clone()),
        ] {
            registry.register(m).expect("metric registered once");
        }
        Self {
            registry,
            watched_resources,
            prometheus_queries,
            prometheus_query_duration,
        }
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

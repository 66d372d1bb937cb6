//! The operator's metrics, served on `/metrics` in the Prometheus text format: the
//! operator-wide ones here; each kind's own in `controllers/<kind>/metrics.rs`, registered
//! in the same registry when its controller starts.

use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Text appended to `/metrics` after the registry's families (families kept outside the
/// registry, e.g. the per-target ones, which are cheaper as plain rows than as series).
pub type Renderer = std::sync::Arc<dyn Fn(&mut String) + Send + Sync>;

/// Every metric the operator exports, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    renderers: std::sync::Arc<std::sync::Mutex<Vec<Renderer>>>,
    /// Objects of each kind the operator sees, by kind.
    pub watched_resources: IntGaugeVec,
    /// Prometheus queries by kind (instant, range, get) and outcome (ok or the error category).
    pub prometheus_queries: IntCounterVec,
    /// Duration of Prometheus queries by kind.
    pub prometheus_query_duration: HistogramVec,
    /// Status writes to the API server, by kind of resource.
    pub status_writes: IntCounterVec,
    pub status_writes_deferred: IntCounterVec,
    /// Reconciles (evaluations) that failed and are retried, by controller.
    pub reconcile_errors: IntCounterVec,
    /// Evaluation cycles of each controller and how long they took.
    pub cycle_duration: HistogramVec,
    /// Admission webhook answers by outcome (held, allowed).
    pub webhook_requests: IntCounterVec,
    /// Reviews of `/metrics` callers' tokens sent to the API server (cache misses), by result.
    pub metrics_auth_reviews: IntCounterVec,
    /// 1 while this process holds the leader-election Lease (or runs without election).
    pub leader: IntGauge,
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
        let status_writes_deferred = IntCounterVec::new(
            Opts::new(
                "maturity_operator_status_writes_deferred_total",
                "Status writes deferred because the object used up its write budget (5 in a row, then one per 10 s, outside a drill run or canary rollout under way), by kind.",
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
        let metrics_auth_reviews = IntCounterVec::new(
            Opts::new(
                "maturity_operator_metrics_auth_reviews_total",
                "Callers of /metrics whose bearer token was reviewed by the API server (TokenReview, then SubjectAccessReview; cached decisions are not counted), by result (allowed, forbidden, unauthenticated, error).",
            ),
            &["result"],
        )
        .expect("static metric definition");
        for m in [
            Box::new(info) as Box<dyn prometheus::core::Collector>,
            Box::new(watched_resources.clone()),
            Box::new(prometheus_queries.clone()),
            Box::new(prometheus_query_duration.clone()),
            Box::new(status_writes.clone()),
            Box::new(status_writes_deferred.clone()),
            Box::new(cycle_duration.clone()),
            Box::new(webhook_requests.clone()),
            Box::new(metrics_auth_reviews.clone()),
            Box::new(leader.clone()),
            Box::new(reconcile_errors.clone()),
        ] {
            registry.register(m).expect("metric registered once");
        }
        Self {
            registry,
            renderers: Default::default(),
            watched_resources,
            prometheus_queries,
            prometheus_query_duration,
            status_writes,
            status_writes_deferred,
            cycle_duration,
            webhook_requests,
            metrics_auth_reviews,
            leader,
            reconcile_errors,
        }
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

    /// Adds families rendered by `r` to `/metrics`.
    pub fn add_renderer(&self, r: Renderer) {
        self.renderers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    }

    /// The current values in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text encoder.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        let mut text = String::from_utf8(buf).unwrap_or_default();
        let renderers = self
            .renderers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for r in renderers {
            r(&mut text);
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

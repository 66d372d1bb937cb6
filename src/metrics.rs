//! The operator's own metrics, served on `/metrics` in the Prometheus text format.

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

/// Every metric the operator exports, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Objects of each kind the operator sees, by kind.
    pub watched_resources: IntGaugeVec,
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
        registry
            .register(Box::new(info))
            .expect("metric registered once");
        registry
            .register(Box::new(watched_resources.clone()))
            .expect("metric registered once");
        Self {
            registry,
            watched_resources,
        }
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

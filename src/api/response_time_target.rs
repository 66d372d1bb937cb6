//! ResponseTimeTarget: the response and handling time a class of requests must meet
//! (model practice RESP-4.1), measured through Prometheus over a rolling window.
// Every printcolumn(...) repeats the same keys, which clippy mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, DurationString, PromQl};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "maturity.sre.dev",
    version = "v1alpha1",
    kind = "ResponseTimeTarget",
    namespaced,
    // Checked on create only (the name cannot change): an object made before the rule can
    // still be updated, and so lose its finalizer.
    validation = kube::core::Rule { optional_old_self: Some(true), ..kube::core::Rule::new("oldSelf.hasValue() || size(self.metadata.name) <= 230").message("the name must be at most 230 characters: the operator names its Events, reports and rules after it") },
    status = "ResponseTimeTargetStatus",
    shortname = "rtt",
    category = "maturity",
    doc = "Response and handling time a class of requests of a service must meet, measured over a rolling window.",
    printcolumn(name = "Service", type_ = "string", json_path = ".spec.service"),
    printcolumn(name = "Class", type_ = "string", json_path = ".spec.requestClass"),
    printcolumn(name = "Objective", type_ = "number", json_path = ".spec.objective"),
    printcolumn(
        name = "Attainment",
        type_ = "number",
        json_path = ".status.attainment"
    ),
    printcolumn(
        name = "Budget",
        type_ = "number",
        json_path = ".status.errorBudgetRemaining",
        description = "fraction of the error budget left"
    ),
    printcolumn(
        name = "Met",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"ObjectiveMet\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ResponseTimeTargetSpec {
    /// The service the requests go to.
    #[schemars(length(min = 1, max = 253))]
    pub service: String,
    /// The class of request this target covers (one target per class), e.g. `interactive`, `batch`.
    #[schemars(length(min = 1, max = 63))]
    pub request_class: String,
    /// Team or person who owns the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Percent of events that must be good over the window, strictly between 0 and 100.
    #[x_kube(validation = Rule::new("self > 0.0 && self < 100.0").message("objective must be a percentage strictly between 0 and 100, e.g. 99.5"))]
    #[x_kube(validation = Rule::new("self <= 99.9999").message("objective must be at most 99.9999 (six nines): a smaller error budget cannot be measured"))]
    pub objective: f64,
    /// Rolling window, e.g. `28d`.
    #[x_kube(validation = Rule::new("self.matches('[1-9]')").message("window must be longer than zero"))]
    #[x_kube(validation = Rule::new(super::common::duration_at_most(super::common::LONGEST_WINDOW)).message("window must be at most 400d"))]
    pub window: DurationString,
    /// How good events are counted: exactly one of `latency`, `ratio`, `alertResolution`.
    pub indicator: Indicator,
    /// Requests per second below which the window is "low traffic": the result is Unknown, not a breach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0").message("minRequestRate must not be negative"))]
    pub min_request_rate: Option<f64>,
    /// How often the target is evaluated (default `1m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_interval: Option<DurationString>,
    /// Burn-rate alerting generated for this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerting: Option<Alerting>,
}

/// Exactly one way of telling good events from bad.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.latency) ? 1 : 0) + (has(self.ratio) ? 1 : 0) + (has(self.alertResolution) ? 1 : 0) == 1").message("indicator must set exactly one of latency, ratio or alertResolution"))]
pub struct Indicator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyIndicator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<RatioIndicator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_resolution: Option<AlertResolutionIndicator>,
}

/// Requests answered within `threshold`, read from a Prometheus histogram.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LatencyIndicator {
    /// Histogram metric name without suffix; `<name>_bucket` and `<name>_count` are used.
    #[x_kube(validation = Rule::new("self.matches('^[a-zA-Z_:][a-zA-Z0-9_:]*$')").message("histogram must be a Prometheus metric name such as http_request_duration_seconds (no selector, no _bucket suffix)"))]
    #[schemars(length(max = 200))]
    pub histogram: String,
    /// Label matchers added to every series, e.g. `{job="checkout", route!="/healthz"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('{') && self.endsWith('}')").message("selector must be label matchers in braces, e.g. {job=\"checkout\"}"))]
    #[schemars(length(max = 1024))]
    pub selector: Option<String>,
    /// A request is good when answered within this time; must be a bucket boundary of the histogram.
    pub threshold: DurationString,
}

/// Good and total events from two counters.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RatioIndicator {
    /// Counter (or sum of counters) of good events, e.g. `http_requests_total{code!~"5.."}`.
    pub good: PromQl,
    /// Counter of all events.
    pub total: PromQl,
}

/// Incident handling time, from Prometheus's `ALERTS` series.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertResolutionIndicator {
    /// Label matchers on `ALERTS`, e.g. `{severity="critical", namespace="shop"}`.
    #[x_kube(validation = Rule::new("self.startsWith('{') && self.endsWith('}')").message("selector must be label matchers in braces, e.g. {severity=\"critical\"}"))]
    #[schemars(length(max = 1024))]
    pub selector: String,
    /// An alert is handled well when resolved within this time.
    pub resolve_within: DurationString,
}

/// Multi-window multi-burn-rate alerts (SRE Workbook) generated for the target.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Alerting {
    #[serde(default)]
    pub burn_rate_alerts: bool,
    /// Runbook linked from every generated alert.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "runbookURL"
    )]
    #[x_kube(validation = Rule::new("self.matches('^https?://')").message("runbookURL must be an http(s) URL"))]
    #[schemars(length(max = 2048))]
    pub runbook_url: Option<String>,
    /// Extra labels put on every generated alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// What the operator measured.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseTimeTargetStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Percent of good events over the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attainment: Option<f64>,
    /// Fraction of the window's error budget left (negative when overspent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_budget_remaining: Option<f64>,
    /// Burn rate per lookback window (`5m`, `1h`, `6h`, `1d`, `3d`); 1.0 spends the budget exactly over the window.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub burn_rates: BTreeMap<String, f64>,
    /// Good and total events over the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventCounts>,
    /// Handling-time figures for `alertResolution` indicators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<ResolutionFigures>,
    /// The resolved PromQL of each query, for debugging.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub queries: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventCounts {
    pub good: f64,
    pub total: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolutionFigures {
    /// Alerts resolved in the window.
    pub resolved: u32,
    /// Of those, resolved within `resolveWithin`.
    pub within_target: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90_seconds: Option<f64>,
}

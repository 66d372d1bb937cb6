//! CanaryPolicy: gray releases of the Deployments it selects, held at each step while
//! Prometheus analysis runs, and rolled back when the new revision is bad (CX-4.3, CX-4.4).
// Every printcolumn(...) repeats the same keys, which clippy mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, DurationString, PromQl};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "maturity.sre.dev",
    version = "v1alpha1",
    kind = "CanaryPolicy",
    namespaced,
    // Checked on create only (the name cannot change): an object made before the rule can
    // still be updated, and so lose its finalizer.
    validation = kube::core::Rule { optional_old_self: Some(true), ..kube::core::Rule::new("oldSelf.hasValue() || size(self.metadata.name) <= 230").message("the name must be at most 230 characters: the operator names its Events, reports and rules after it") },
    status = "CanaryPolicyStatus",
    shortname = "cpol",
    category = "maturity",
    doc = "Gray releases of the Deployments it selects (same namespace), analysed through Prometheus and rolled back when bad.",
    printcolumn(
        name = "Governed",
        type_ = "integer",
        json_path = ".status.coverage.governed"
    ),
    printcolumn(
        name = "Latest",
        type_ = "string",
        json_path = ".status.rollouts[0].phase",
        description = "phase of the most recent rollout"
    ),
    printcolumn(
        name = "Promoted",
        type_ = "integer",
        json_path = ".status.totals.promoted"
    ),
    printcolumn(
        name = "RolledBack",
        type_ = "integer",
        json_path = ".status.totals.rolledBack"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CanaryPolicySpec {
    /// Deployments of this namespace governed by the policy (must name labels).
    #[x_kube(validation = Rule::new("(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)").message("the selector must name labels: an empty selector would govern every Deployment of the namespace"))]
    pub selector: LabelSelector,
    /// Share of replicas on the new revision at each step, and how long each step is analysed.
    /// Weights increase strictly and end at or below 100; after the last step the rollout completes.
    #[schemars(length(min = 1, max = 20))]
    #[x_kube(validation = Rule::new("self.all(s, s.weight >= 1 && s.weight <= 100)").message("every step weight must be between 1 and 100 (percent of replicas on the new revision)"))]
    #[x_kube(validation = Rule::new("self.map(s, s.weight).isSorted() && self.all(a, self.exists_one(b, b.weight == a.weight))").message("step weights must increase strictly from one step to the next, e.g. 10, 50, 100"))]
    pub steps: Vec<CanaryStep>,
    pub analysis: Analysis,
    /// What happens when analysis fails: `Automatic` restores the previous revision, `Pause` holds the rollout for a person.
    #[serde(default)]
    pub rollback: RollbackMode,
    /// The longest a step waits for its canary pods to be ready (default 10m, as Flagger's
    /// `progressDeadlineSeconds`); then the rollout is stopped as by a failed analysis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('[1-9]')").message("progressDeadline must be longer than zero"))]
    pub progress_deadline: Option<DurationString>,
    /// Rollout records kept in status (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub history_limit: Option<i32>,
    /// HTTP hooks called with the analysis (Flagger's webhook shape): a load generator or an
    /// acceptance test runs with the canary; an answer other than 2xx fails the check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.name == a.name))").message("hook names must be unique"))]
    pub hooks: Vec<Hook>,
}

/// One HTTP hook: a POST of the rollout's JSON (`name`, `namespace`, `deployment`,
/// `phase`, `step`, `revision`, `checksum`, `metadata`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.url.startsWith('http://') || self.url.startsWith('https://')").message("a hook's url must be http:// or https://"))]
pub struct Hook {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// `PreRollout`: at the checks of a rollout until it answers 2xx (a failure fails the
    /// check); `Rollout`: at every check; `PostRollout`: once the rollout is Promoted or
    /// RolledBack (its answer is recorded, it changes nothing).
    #[serde(rename = "type")]
    pub kind: HookType,
    /// Its host must be one the operator's `--canary-hook-hosts` allows.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// How long the hook may take to answer (default 10s, at most 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationString>,
    /// Sent as given, e.g. the load generator's command.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum HookType {
    PreRollout,
    Rollout,
    PostRollout,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percent of replicas on the new revision during this step.
    pub weight: i32,
    /// How long this step is analysed before moving on.
    pub analyze: DurationString,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    /// Time between checks; also the value of `{{interval}}` in queries.
    #[x_kube(validation = Rule::new("self.matches('[1-9]')").message("analysis interval must be longer than zero"))]
    pub interval: DurationString,
    /// Checks run at every interval.
    #[schemars(length(min = 1, max = 20))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.name == a.name))").message("metric names must be unique within the analysis"))]
    pub metrics: Vec<AnalysisMetric>,
    /// Failed checks tolerated before the rollout is stopped (default 1: the first failure stops it).
    #[serde(default = "default_failure_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_limit: i32,
    /// What a check with no data means.
    #[serde(default)]
    pub on_no_data: OnNoData,
    /// Inconclusive checks in a row tolerated; the next stops the rollout as a failed
    /// analysis does. Without it, an inconclusive step holds until data comes back (or a
    /// person promotes or aborts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub inconclusive_limit: Option<i32>,
    /// Too few requests to judge: until the canary has served `count` requests in an
    /// interval, a check is inconclusive, whatever its metrics say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<MinRequests>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.count >= 1.0").message("minRequests.count must be at least 1"))]
#[x_kube(validation = Rule::new("!self.query.contains('{{hash}}')").message("minRequests.query counts the canary's requests: use {{canary_hash}}, not {{hash}}"))]
pub struct MinRequests {
    /// The canary's requests over the interval, e.g.
    /// `sum(increase(http_requests_total{namespace="{{namespace}}",pod_template_hash="{{canary_hash}}"}[{{interval}}]))`.
    pub query: PromQl,
    pub count: f64,
}

fn default_failure_limit() -> i32 {
    1
}

/// One check: absolute bounds (`min`/`max`) or a comparison with the stable revision (`compare`).
///
/// Queries are templates: `{{namespace}}`, `{{deployment}}`, `{{canary_hash}}`,
/// `{{stable_hash}}`, `{{interval}}`; a `compare` query uses `{{hash}}`, run once per revision.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.compare) != (has(self.min) || has(self.max))").message("a metric sets either min/max (absolute bounds) or compare (against the stable revision), exactly one of the two"))]
#[x_kube(validation = Rule::new("!has(self.min) || !has(self.max) || self.min <= self.max").message("min must not be greater than max"))]
#[x_kube(validation = Rule::new("!has(self.compare) || self.query.contains('{{hash}}')").message("a compare query must contain {{hash}}: it is run once with the canary's and once with the stable revision's pod-template-hash"))]
#[x_kube(validation = Rule::new("has(self.compare) || !self.query.contains('{{hash}}')").message("{{hash}} is only set in compare metrics; use {{canary_hash}} or {{stable_hash}} with min/max"))]
pub struct AnalysisMetric {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    pub query: PromQl,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<Compare>,
    /// Record the result, never act on it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.maxWorsePercent) || has(self.maxWorseBy)").message("compare needs a margin: maxWorsePercent (relative to the stable value), maxWorseBy (absolute), or both"))]
#[x_kube(validation = Rule::new("!has(self.maxWorsePercent) || self.maxWorsePercent >= 0.0").message("maxWorsePercent must not be negative"))]
#[x_kube(validation = Rule::new("!has(self.maxWorseBy) || self.maxWorseBy >= 0.0").message("maxWorseBy must not be negative"))]
pub struct Compare {
    /// Which way is worse: `HigherIsWorse` (errors, latency: the default) or `LowerIsWorse`
    /// (success rate, throughput).
    #[serde(default)]
    pub direction: Direction,
    /// The canary may be worse than the stable revision by this percent of the stable value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_worse_percent: Option<f64>,
    /// The canary may be worse than the stable revision by this much, whatever the stable
    /// value (a stable value of 0 allows no relative margin). It fails only when it is worse
    /// by more than both margins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_worse_by: Option<f64>,
}

/// Which way a compared metric gets worse.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Direction {
    #[default]
    HigherIsWorse,
    LowerIsWorse,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum OnNoData {
    /// Hold the step and say so in status.
    #[default]
    Inconclusive,
    Fail,
    Pass,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RollbackMode {
    #[default]
    Automatic,
    Pause,
}

/// Where a rollout stands. Terminal phases: Promoted, RolledBack, Superseded, Released,
/// Unguarded.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RolloutPhase {
    /// The step's share of replicas is being moved to the new revision.
    Progressing,
    /// The step's pods are ready; checks run every interval.
    Analyzing,
    /// The last check had no data: the step holds, nothing is promoted or rolled back.
    Inconclusive,
    /// Every step passed; the user's Deployment settings are restored and the rollout completes.
    Promoting,
    Promoted,
    /// Analysis failed; the previous revision's template is being restored.
    RollingBack,
    RolledBack,
    /// Analysis failed with `rollback: Pause`: the Deployment stays paused for a person.
    Held,
    /// The template changed again before this rollout ended; a new rollout took over.
    Superseded,
    /// The policy stopped governing the Deployment (policy deleted, labels changed,
    /// Deployment deleted); its own settings were restored and it was unpaused.
    Released,
    /// A new revision rolled out without the policy: the admission webhook did not hold it
    /// (the operator was down or unreachable with `failurePolicy: Ignore`). Recorded when
    /// seen; nothing was analysed.
    Unguarded,
}

impl RolloutPhase {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Promoted | Self::RolledBack | Self::Superseded | Self::Released | Self::Unguarded
        )
    }

    /// The operator is acting on the rollout (not ended, not held for a person).
    pub fn is_under_way(self) -> bool {
        !self.is_terminal() && self != Self::Held
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryPolicyStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Most recent first, at most `historyLimit` ended ones plus those still running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<RolloutRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totals: Option<Totals>,
    /// The pod-template hash each governed Deployment ran when the policy last saw it
    /// settled (its first sight, or the end of a rollout): a newer one that no rollout
    /// brought is [`RolloutPhase::Unguarded`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settled: BTreeMap<String, String>,
    /// The uid of the Deployment each `settled` entry was seen on: one deleted and made
    /// again under its name starts afresh.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settled_uids: BTreeMap<String, String>,
    /// The latest order of a person (`maturity.sre.dev/canary-control`), acted on once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_control: Option<ControlRecord>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlRecord {
    /// The annotation's value, as set.
    pub request: String,
    /// Who set it, as the admission webhook recorded them (absent when authors are not
    /// checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    pub at: Time,
    /// Whether the order was carried out.
    pub done: bool,
    /// What was done, or why nothing was.
    pub outcome: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord {
    pub deployment: String,
    /// Deployment revision (`deployment.kubernetes.io/revision`) being rolled out, once known.
    #[serde(default)]
    pub revision: String,
    pub phase: RolloutPhase,
    /// Index of the current step (0-based).
    pub step: i32,
    /// Pods on the new revision at this step.
    #[serde(default)]
    pub canary_replicas: i32,
    /// Pods on the stable revision kept next to them at this step.
    #[serde(default)]
    pub stable_replicas: i32,
    #[serde(default)]
    pub checks: CheckCounts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_hash: Option<String>,
    /// The revision to return to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// The Deployment's own rollout settings, saved before the first change and restored at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved: Option<SavedSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the current step's pods were ready and its analysis began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_at: Option<Time>,
    /// Time of the first failed check (the clock of the rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failed_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Results of the latest check, one per metric, with the query as sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricResult>,
    /// How much users saw of a failed revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<Exposure>,
    /// Was any check of this rollout inconclusive.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub was_inconclusive: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Every phase change, oldest first (at most 30).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
    /// Its `PreRollout` hooks answered 2xx at a check: they are not called again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_rollout_done: bool,
    /// The `PostRollout` hooks of a rollout that ended: due, then called (at least once: an
    /// operator stopped between the call and the status write calls them again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_rollout: Option<PostRollout>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostRollout {
    /// The hooks were called and their answers are below.
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<MetricResult>,
}

/// The fields of a Deployment's spec the operator changes during a rollout, as they were.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavedSettings {
    /// `spec.strategy` as the user had it (JSON).
    pub strategy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CheckResult {
    Pass,
    Fail,
    /// The query returned nothing (or NaN); `onNoData` decides.
    NoData,
    /// The query could not be run or gave more than one series; the step holds.
    Error,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    pub name: String,
    /// The query as sent (canary revision).
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// `compare` metrics: the stable revision's value and query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_query: Option<String>,
    pub result: CheckResult,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Exposure {
    /// Largest share of the Deployment's replicas on the failed revision, in percent.
    pub max_share_percent: f64,
    /// Minutes from the first pod of the failed revision to the end of the rollback
    /// (or until now while held).
    pub minutes: f64,
    /// Replica-minutes served by the failed revision (pods times minutes).
    pub replica_minutes: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub at: Time,
    pub phase: RolloutPhase,
    pub step: i32,
    /// Pods of the new revision serving from this moment on, as seen (a Progressing step
    /// still has the previous step's until its own are ready).
    #[serde(default)]
    pub canary_replicas: i32,
    /// Stable pods next to them (absent in records from before surge steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_replicas: Option<i32>,
    pub reason: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckCounts {
    pub passed: u32,
    pub failed: u32,
    pub inconclusive: u32,
    /// Inconclusive checks since the last conclusive one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inconclusive_in_a_row: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    /// Deployments in the namespace.
    pub deployments: u32,
    /// Of those, selected by this policy.
    pub governed: u32,
}

/// Rollouts since the policy was created (not bounded by the history).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Rollouts that started analysis.
    pub analyzed: u32,
    pub promoted: u32,
    pub rolled_back: u32,
    /// Rollouts held by a failure for a person to decide (`rollback: Pause`).
    #[serde(default)]
    pub held: u32,
    /// Rollouts with at least one inconclusive check.
    pub inconclusive: u32,
    /// Revisions that rolled out without the policy (the webhook did not hold them).
    #[serde(default)]
    pub unguarded: u32,
    /// Exposure summed over failed rollouts.
    #[serde(default)]
    pub exposure_replica_minutes: f64,
}

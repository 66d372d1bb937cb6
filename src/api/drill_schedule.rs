//! DrillSchedule: regular, unannounced failover drills on a workload of the same
//! namespace, that always restore what they changed (ORG-5.4, RESP-5.1).
// Every printcolumn(...) repeats the same keys, which clippy mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, MicroTime, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, CronString, DurationString, PromQl};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "maturity.sre.dev",
    version = "v1alpha1",
    kind = "DrillSchedule",
    namespaced,
    // Checked on create only (the name cannot change): an object made before the rule can
    // still be updated, and so lose its finalizer.
    validation = kube::core::Rule { optional_old_self: Some(true), ..kube::core::Rule::new("oldSelf.hasValue() || size(self.metadata.name) <= 230").message("the name must be at most 230 characters: the operator names its Events, reports and rules after it") },
    status = "DrillScheduleStatus",
    shortname = "drill",
    category = "maturity",
    doc = "Regular, unannounced failover drills on a workload of the same namespace; what a drill changes is always restored.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspended", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(
        name = "LastResult",
        type_ = "string",
        json_path = ".status.runs[0].result"
    ),
    printcolumn(
        name = "LastRun",
        type_ = "date",
        json_path = ".status.runs[0].startedAt"
    ),
    printcolumn(
        name = "Passed",
        type_ = "integer",
        json_path = ".status.summary.passed"
    ),
    printcolumn(
        name = "Failed",
        type_ = "integer",
        json_path = ".status.summary.failed"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DrillScheduleSpec {
    /// When drills may start (cron, five fields), in `timeZone`.
    pub schedule: CronString,
    /// IANA time zone of the schedule, e.g. `Asia/Shanghai` (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$')").message("timeZone must be an IANA time zone name such as UTC or Asia/Shanghai"))]
    #[schemars(length(max = 64))]
    pub time_zone: Option<String>,
    /// The real start is random within [slot, slot + jitter].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(super::common::duration_at_most(super::common::LONGEST_WINDOW)).message("jitter must be at most 400d"))]
    pub jitter: Option<DurationString>,
    /// `false` (the default): status shows only the window, never the exact start.
    #[serde(default)]
    pub announce: bool,
    #[serde(default)]
    pub suspend: bool,
    /// Periods in which no drill starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub blackouts: Vec<Blackout>,
    /// A slot missed by more than this (operator down, blackout) is skipped (default `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(super::common::duration_at_most(super::common::LONGEST_WINDOW)).message("startingDeadline must be at most 400d"))]
    pub starting_deadline: Option<DurationString>,
    /// The workload drilled, in this namespace.
    pub target: DrillTarget,
    /// Exactly one of `podKill`, `scaleDown`, `failover`, `nodeFailure`, `zoneFailure`.
    pub action: DrillAction,
    /// Checks that must hold before a drill starts, are watched during it (a breach while the
    /// fault holds aborts), and must hold again after it (recovery).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub steady_state: Vec<Check>,
    /// Checks that abort the drill and restore at once when breached, watched every
    /// `checkInterval` from the injection to the recovery; checks that cannot be read three
    /// times in a row abort too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub abort_when: Vec<Check>,
    /// How often checks run during a drill (default `15s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(super::common::duration_at_most(super::common::LONGEST_HOLD)).message("checkInterval must be at most 1d"))]
    pub check_interval: Option<DurationString>,
    /// Target recovery time: a run that recovers later is Failed.
    #[x_kube(validation = Rule::new(super::common::duration_at_most(super::common::LONGEST_HOLD)).message("recoveryDeadline must be at most 1d"))]
    pub recovery_deadline: DurationString,
    /// Runs kept in status (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub history_limit: Option<i32>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Blackout {
    /// Start of each blackout (cron, in the drill's `timeZone`).
    pub schedule: CronString,
    #[x_kube(validation = Rule::new(super::common::duration_at_most(super::common::LONGEST_WINDOW)).message("a blackout's duration must be at most 400d"))]
    pub duration: DurationString,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum WorkloadKind {
    #[default]
    Deployment,
    StatefulSet,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
        }
    }
}

/// A workload of the drill's namespace, by name or by selector (exactly one).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.name) != has(self.selector)").message("target sets exactly one of name or selector"))]
pub struct DrillTarget {
    #[serde(default)]
    pub kind: WorkloadKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.podKill) ? 1 : 0) + (has(self.scaleDown) ? 1 : 0) + (has(self.failover) ? 1 : 0) + (has(self.nodeFailure) ? 1 : 0) + (has(self.zoneFailure) ? 1 : 0) == 1").message("action must set exactly one of podKill, scaleDown, failover, nodeFailure or zoneFailure"))]
pub struct DrillAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_kill: Option<PodKill>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScaleDown>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_failure: Option<NodeFailure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_failure: Option<ZoneFailure>,
}

/// Fail one node that runs the target, for `hold`: cordon it and delete the target's pods
/// on it (as a failed node loses them); then uncordon it. Only the target's pods are
/// deleted; the author needs `patch nodes` (cluster-wide) and `delete pods` here.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeFailure {
    #[x_kube(validation = Rule::new(super::common::duration_at_most(super::common::LONGEST_HOLD)).message("nodeFailure.hold must be at most 1d"))]
    pub hold: DurationString,
}

/// Fail a zone for `hold`: every node carrying the zone label value is cordoned and the
/// target's pods on them deleted; then they are uncordoned.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ZoneFailure {
    #[x_kube(validation = Rule::new(super::common::duration_at_most(super::common::LONGEST_HOLD)).message("zoneFailure.hold must be at most 1d"))]
    pub hold: DurationString,
    /// The zone (the label's value); default: the zone of a node running the target, drawn
    /// at random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub zone: Option<String>,
    /// The node label naming the zone (default `topology.kubernetes.io/zone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 317))]
    pub zone_label: Option<String>,
}

/// The node label of zones, unless a zoneFailure names another.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Delete pods of the target: `count` pods, or `percent` of them (rounded up).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.count) != has(self.percent)").message("podKill sets exactly one of count or percent"))]
pub struct PodKill {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub percent: Option<i32>,
}

/// Scale the target to `replicas` for `hold`, then back to what it had.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaleDown {
    #[schemars(range(min = 0))]
    pub replicas: i32,
    #[x_kube(validation = Rule::new(super::common::duration_at_most(super::common::LONGEST_HOLD)).message("scaleDown.hold must be at most 1d"))]
    pub hold: DurationString,
}

/// Point a Service of this namespace at a standby set for `hold`, then back.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.toSelector.size() > 0").message("failover.toSelector must name at least one label of the standby pods"))]
pub struct Failover {
    #[schemars(length(min = 1, max = 63))]
    pub service: String,
    /// The Service's selector during the drill.
    pub to_selector: BTreeMap<String, String>,
    #[x_kube(validation = Rule::new(super::common::duration_at_most(super::common::LONGEST_HOLD)).message("failover.hold must be at most 1d"))]
    pub hold: DurationString,
}

/// A PromQL check with bounds (at least one of `min`, `max`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.min) || has(self.max)").message("a check needs min, max or both"))]
#[x_kube(validation = Rule::new("!has(self.min) || !has(self.max) || self.min <= self.max").message("min must not be greater than max"))]
pub struct Check {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    pub query: PromQl,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RunResult {
    Passed,
    Failed,
    Aborted,
    Skipped,
}

/// Where the run under way stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DrillPhase {
    /// What will be restored is in status; the fault is being injected.
    Injecting,
    /// The fault holds (scaleDown, failover) until `restoreAt`; checks run every interval.
    Holding,
    /// What was changed is being put back.
    Restoring,
    /// Waiting for the target to be Available and the steady state to hold again.
    Recovering,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillScheduleStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The window in which the next drill starts (its exact start only when `announce: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window: Option<Window>,
    /// The run under way, with what must be restored (written before anything is changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveRun>,
    /// Most recent first, at most `historyLimit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<DrillSummary>,
    /// The last `maturity.sre.dev/run-now` annotation value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_now: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    pub start: Time,
    pub end: Time,
    /// The exact start, only with `announce: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_start: Option<Time>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveRun {
    pub started_at: MicroTime,
    pub phase: DrillPhase,
    /// Kind and name of the workload drilled.
    pub target: String,
    /// What must be put back: replicas, a Service selector; the pods chosen to be killed.
    #[serde(default)]
    pub saved: SavedState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected_at: Option<MicroTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_at: Option<MicroTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_at: Option<MicroTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_at: Option<MicroTime>,
    /// Why the run is being stopped early (a breached check, the stop annotation, deletion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_reason: Option<String>,
    /// The operator process that started the run; another one resumed it when it differs.
    #[serde(default)]
    pub instance: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed: Option<String>,
    /// Started by the `maturity.sre.dev/run-now` annotation, not by the schedule: such a
    /// run is announced by whoever asked for it, so it never counts as unannounced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub run_now: bool,
    /// Rounds of checks in a row that could not be read (no data, a failed query); the
    /// third aborts the run.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unknown_checks: u32,
    /// Since when the steady state holds without a break (the injection, or the first
    /// holding check after one that did not hold): the steady state's part of the recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady_since: Option<MicroTime>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavedState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub killed_pods: Vec<String>,
    /// Their uids: a pod recreated under the same name (a StatefulSet's) is a new one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub killed_uids: Vec<String>,
    /// The nodes of a node or zone failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Those of them the drill cordoned (they were schedulable): uncordoned to restore. A
    /// node cordoned before the drill stays cordoned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cordoned: Vec<String>,
    /// The zone of a zone failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub started_at: Time,
    pub result: RunResult,
    /// Kind and name of the workload drilled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// When the fault was injected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected_at: Option<MicroTime>,
    /// Injection to recovery: the last of the target's replicas Ready again (from the pods'
    /// own Ready times, whole seconds as the API keeps them, never a pod that was killed)
    /// and the steady state holding again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_seconds: Option<f64>,
    /// Injection to the changed state put back (scaleDown, failover, aborts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Started by the run-now annotation (see [`ActiveRun::run_now`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub run_now: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillSummary {
    pub passed: u32,
    pub failed: u32,
    pub aborted: u32,
    pub skipped: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_passed: Option<Time>,
    /// Consecutive passed runs up to the latest.
    pub pass_streak: u32,
}

//! MaturityAssessment: the level a namespace's workloads have reached on the built-in
//! maturity model, from measured evidence and people's attestations, and what is missing
//! for the next level. Pipelines gate on its `TargetLevelMet` condition.
// Every printcolumn(...) repeats the same keys, which clippy mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, DateString, DurationString, PromQl};

/// CEL pattern of a practice ID such as `ORG-2.3` or `RESP-4.1`.
pub const PRACTICE_ID_PATTERN: &str = "^(ORG|CX|BIZ|COMM|RESP)-[2-5]\\\\.[0-9]{1,2}$";

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "maturity.sre.dev",
    version = "v1alpha1",
    kind = "MaturityAssessment",
    namespaced,
    // Checked on create only (the name cannot change): an object made before the rule can
    // still be updated, and so lose its finalizer.
    validation = kube::core::Rule { optional_old_self: Some(true), ..kube::core::Rule::new("oldSelf.hasValue() || size(self.metadata.name) <= 230").message("the name must be at most 230 characters: the operator names its Events, reports and rules after it") },
    status = "MaturityAssessmentStatus",
    shortname = "ma",
    category = "maturity",
    doc = "The maturity level reached by the workloads of a namespace, with evidence and what is missing for the next level.",
    printcolumn(name = "Level", type_ = "integer", json_path = ".status.level"),
    printcolumn(name = "Target", type_ = "integer", json_path = ".spec.targetLevel"),
    printcolumn(
        name = "TargetMet",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"TargetLevelMet\")].status"
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
#[x_kube(validation = Rule::new("!has(self.attestations) || !has(self.exemptions) || self.attestations.all(a, !self.exemptions.exists(e, e.practice == a.practice))").message("a practice is either attested or exempt, not both"))]
pub struct MaturityAssessmentSpec {
    /// Built-in model (only `customer-service` today).
    #[serde(default)]
    pub model: ModelName,
    /// Workloads of this namespace that are assessed (all when empty).
    #[serde(default)]
    pub scope: Scope,
    /// Level the `TargetLevelMet` condition checks (1-5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub target_level: Option<i32>,
    /// Practices people vouch for, with the evidence and how often it must be reviewed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.practice == a.practice))").message("each practice may be attested only once"))]
    pub attestations: Vec<Attestation>,
    /// Practices that do not apply, with a reason and an expiry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.practice == a.practice))").message("each practice may be exempted only once"))]
    pub exemptions: Vec<Exemption>,
    /// Business signals the model asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<Signals>,
    /// Reports the operator produces for this scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reports: Option<Reports>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ModelName {
    #[default]
    #[serde(rename = "customer-service")]
    CustomerService,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Attestation {
    /// Practice ID from the model, e.g. `ORG-2.3`.
    #[x_kube(validation = Rule::new(format!("self.matches('{PRACTICE_ID_PATTERN}')")).message("practice must be a practice ID of the model such as ORG-2.3 or RESP-4.1 (see `maturity-operator model`)"))]
    #[schemars(length(max = 16))]
    pub practice: String,
    /// Who vouched for it: written by the operator's admission webhook from the user who
    /// applied the entry (a value typed here is overwritten).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub by: Option<String>,
    /// Where the evidence is (a link or a sentence).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.trim() != ''").message("an attestation needs its evidence: a link or a sentence"))]
    pub evidence: String,
    /// The day the practice was seen in place (today or earlier: a later date is refused).
    pub attested_at: DateString,
    /// The attestation expires this long after `attestedAt` (default `90d`, at most the
    /// practice's maximum validity in the model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_every: Option<DurationString>,
    /// Written by the webhook: its proof that `by` applied this entry. An entry without a
    /// valid proof is Unverified and does not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub proof: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Exemption {
    #[x_kube(validation = Rule::new(format!("self.matches('{PRACTICE_ID_PATTERN}')")).message("practice must be a practice ID of the model such as COMM-5.2 (see `maturity-operator model`)"))]
    #[schemars(length(max = 16))]
    pub practice: String,
    #[x_kube(validation = Rule::new("self.trim() != ''").message("an exemption needs a reason"))]
    #[schemars(length(max = 1024))]
    pub reason: String,
    /// The exemption lapses after this date (at most 180 days after it was requested).
    pub until: DateString,
    /// `true`, set by the approver (a user other than the requester who may `approve`
    /// `maturityassessments/exemptions` in the namespace), approves; the webhook checks and
    /// records who. `false` withdraws an approval; left out, the recorded one stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved: Option<bool>,
    /// Written by the webhook: who asked for the exemption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub requested_by: Option<String>,
    /// Written by the webhook: the day it was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_on: Option<DateString>,
    /// Written by the webhook: who approved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub approved_by: Option<String>,
    /// Written by the webhook: the day it was approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_on: Option<DateString>,
    /// Written by the webhook: its proof of the request and the approval. An exemption
    /// without a valid proof or an approval is Unverified and does not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub proof: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Signals {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub satisfaction: Option<SatisfactionSignal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complaints: Option<ComplaintsSignal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demand: Option<DemandSignal>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SatisfactionSignal {
    pub query: PromQl,
    /// The signal is within target when at least this.
    pub min: f64,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ComplaintsSignal {
    /// Complaints per category, e.g. `sum by (category) (increase(complaints_total[1d]))`.
    pub query: PromQl,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DemandSignal {
    /// Current demand, e.g. requests per second.
    pub query: PromQl,
    /// Capacity in the same unit.
    pub capacity: PromQl,
    /// How far ahead demand is forecast and compared with capacity.
    pub horizon: DurationString,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Reports {
    #[serde(default)]
    pub weekly: bool,
    #[serde(default)]
    pub monthly: bool,
    /// Where each report is delivered (an HTTP POST of its JSON). A report counts for the
    /// level (CX-3.4, COMM-3.2) once delivered: the receiver answered 2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<ReportWebhook>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReportWebhook {
    /// `https://` or `http://` URL of the receiver; its host must be one the operator
    /// allows (`--report-webhook-hosts`).
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("reports.webhook.url must be an http:// or https:// URL"))]
    pub url: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PracticeState {
    Met,
    NotMet,
    Unknown,
    Exempt,
    Expired,
    /// An attestation or exemption the operator's webhook did not record (it was bypassed
    /// or down, or the entry was changed by hand), or an exemption not approved yet.
    Unverified,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EvidenceKind {
    Measured,
    Attested,
    Exempted,
    None,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaturityAssessmentStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Overall level: the lowest capability level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<CapabilityStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_level: Option<NextLevel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reports: Option<ReportTimes>,
    /// When the operator last evaluated the assessment, refreshed at least every 10 minutes
    /// even when nothing changed: a gate (`maturity-operator check`) treats an older one as
    /// stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<Time>,
    /// Each change of the level or of the practices that count, oldest first (the last 60):
    /// what the reports' history of a period is made from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<LevelChange>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LevelChange {
    pub at: Time,
    /// The overall level after the change.
    pub level: i32,
    /// Practices that count (Met or Exempt) since, with their evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gained: Vec<PracticeChange>,
    /// Practices that stopped counting, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<PracticeChange>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PracticeChange {
    pub practice: String,
    /// The evidence (gained) or why it stopped counting (lost), shortened.
    pub detail: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityStatus {
    /// Capability ID: ORG, CX, BIZ, COMM or RESP.
    pub id: String,
    pub level: i32,
    #[serde(default)]
    pub practices: Vec<PracticeStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PracticeStatus {
    pub id: String,
    pub state: PracticeState,
    pub evidence: EvidenceKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NextLevel {
    pub level: i32,
    #[serde(default)]
    pub missing: Vec<MissingPractice>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MissingPractice {
    pub practice: String,
    pub why: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportTimes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_weekly: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_monthly: Option<Time>,
    /// The ConfigMap holding the latest reports (`weekly.md`, `weekly.json`, `monthly.md`, `monthly.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// The last `maturity.sre.dev/report-now` annotation value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_report_now: Option<String>,
    /// When the last weekly report was delivered to `spec.reports.webhook` (answered 2xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly_delivered: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_delivered: Option<Time>,
    /// The last delivery attempt and its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<DeliveryRecord>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    /// `weekly` or `monthly`.
    pub period: String,
    pub at: Time,
    /// The receiver's answer (`HTTP 204`) or why there was none.
    pub result: String,
    pub delivered: bool,
}

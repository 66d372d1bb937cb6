//! Names the operator and its users share: annotation keys, labels, finalizers, the field
//! manager and the names of objects the operator creates. One place, so a key is never
//! spelled twice.

/// The name the operator writes under: the field manager of its API writes, the reporter
/// of its Events; the admission webhook never holds a write made under it.
pub const FIELD_MANAGER: &str = "maturity-operator";

/// The label on every object the operator creates, with [`MANAGED_BY`] as its value.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = FIELD_MANAGER;
/// `app.kubernetes.io/managed-by=maturity-operator`, as a label selector.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=maturity-operator";

/// On a CanaryPolicy: held Deployments are given back before it goes away.
pub const CANARY_FINALIZER: &str = "maturity.sre.dev/canary-release";
/// On a DrillSchedule: what a drill changed is restored before it goes away.
pub const DRILL_FINALIZER: &str = "maturity.sre.dev/drill-restore";

/// On a Deployment: the CanaryPolicy whose rollout holds it.
pub const HOLD_ANNOTATION: &str = "maturity.sre.dev/canary-policy";
/// On a held Deployment: a digest of the pod template it ran when the webhook held it (the
/// stable revision, recorded at hold time so that no renumbering of ReplicaSets loses it).
pub const STABLE_TEMPLATE_ANNOTATION: &str = "maturity.sre.dev/canary-stable-template";
/// On a DrillSchedule or a namespace: [`STOP_VALUE`] ends every drill there (restoring first).
pub const STOP_ANNOTATION: &str = "maturity.sre.dev/drills";
pub const STOP_VALUE: &str = "stop";
/// On a CanaryPolicy: a person's order for one Deployment's rollout, `<promote|abort|resume>
/// <deployment> [token]` (a new value acts once; `maturity-operator canary` writes one). The
/// admission webhook records who set it as the policy's author ([`crate::canary::authored`]).
pub const CANARY_CONTROL_ANNOTATION: &str = "maturity.sre.dev/canary-control";
/// On a DrillSchedule: any new value starts a run now.
pub const RUN_NOW_ANNOTATION: &str = "maturity.sre.dev/run-now";
/// On a DrillSchedule or CanaryPolicy: the user who last wrote its spec, recorded by the
/// admission webhook from the request (never typed); with their groups (a JSON list) and
/// the operator's proof that they wrote this spec ([`crate::authz`]).
pub const AUTHOR_ANNOTATION: &str = "maturity.sre.dev/author";
pub const AUTHOR_GROUPS_ANNOTATION: &str = "maturity.sre.dev/author-groups";
pub const AUTHOR_PROOF_ANNOTATION: &str = "maturity.sre.dev/author-proof";
/// The Secret (in the operator's namespace) that holds the key of the authors' proofs.
pub const AUTHOR_KEY_SECRET: &str = "maturity-operator-author-key";
/// On a MaturityAssessment: any new value produces its enabled reports now.
pub const REPORT_NOW_ANNOTATION: &str = "maturity.sre.dev/report-now";

/// Labels that name a workload's owner (ORG-2.1).
pub const OWNER_LABELS: &[&str] = &[
    "maturity.sre.dev/owner",
    "owner",
    "team",
    "app.kubernetes.io/team",
];
/// Annotations that name a workload's contact (ORG-3.1).
pub const CONTACT_ANNOTATIONS: &[&str] = &["maturity.sre.dev/contact", "contact"];
/// Labels or annotations that mark a workload as managed by GitOps (RESP-3.2, ORG-3.4).
pub const GITOPS_MARKS: &[&str] = &[
    "argocd.argoproj.io/instance",
    "argocd.argoproj.io/tracking-id",
    "kustomize.toolkit.fluxcd.io/name",
    "helm.toolkit.fluxcd.io/name",
];
/// Labels by which GitOps tools track what belongs to an application (a trailing `*`: a
/// prefix). Generated objects do not copy them from the object they are made for: Argo CD
/// or Flux would prune the generated object or count it as part of the application.
pub const GITOPS_TRACKING_LABELS: &[&str] = &[
    "app.kubernetes.io/instance",
    "argocd.argoproj.io/*",
    "kustomize.toolkit.fluxcd.io/*",
    "helm.toolkit.fluxcd.io/*",
];

/// The ConfigMap that holds an assessment's reports.
pub fn report_config_map(assessment: &str) -> String {
    format!("{assessment}-report")
}

/// The PrometheusRule that holds a ResponseTimeTarget's burn-rate alerts.
pub fn burn_rate_rule(target: &str) -> String {
    format!("{target}-burn-rate")
}

/// The operator's own PrometheusRule: the recording rules per indicator shape.
pub const RECORDINGS_RULE: &str = "maturity-operator-recordings";

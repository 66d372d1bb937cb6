//! Evidence from the tools teams already run, each read from its own objects (plain JSON as
//! the API server returns them) and, for SLOs, its own recorded series:
//!
//! - SLOs ([`slos`]): Sloth `PrometheusServiceLevel` and Pyrra `ServiceLevelObjective`
//!   count like ResponseTimeTargets (RESP-4.1), met from the tool's recorded series; the
//!   tool's own burn-rate alerts of them count for RESP-2.3.
//! - Canaries ([`canaries`]): Flagger `Canary` and Argo Rollouts `Rollout` with analysis
//!   count for coverage (CX-4.3); their analysed releases, promotions and halted bad
//!   releases count as the CanaryPolicy's do (CX-4.3, CX-4.4, ORG-5.1).
//! - Drills ([`drills`]): Chaos Mesh `Schedule` / `Workflow` and Litmus `ChaosSchedule` /
//!   `ChaosEngine` / `ChaosResult`: a schedule is an unannounced drill, with its runs'
//!   verdicts; a run applied by hand is an announced one (ORG-5.4, RESP-5.1).
//!
//! A kind that is not served (the tool is not installed) is simply absent. Pure.

pub mod canaries;
pub mod drills;
pub mod slos;

use jiff::Timestamp;
use serde_json::Value;

use super::evidence::{DrillFact, TargetFact};

/// A kind of another project, as the API server serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolKind {
    pub tool: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

const fn kind(
    tool: &'static str,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
) -> ToolKind {
    ToolKind {
        tool,
        group,
        version,
        kind,
        plural,
    }
}

pub const SLOTH_SLO: ToolKind = kind(
    "Sloth",
    "sloth.slok.dev",
    "v1",
    "PrometheusServiceLevel",
    "prometheusservicelevels",
);
pub const PYRRA_SLO: ToolKind = kind(
    "Pyrra",
    "pyrra.dev",
    "v1alpha1",
    "ServiceLevelObjective",
    "servicelevelobjectives",
);
pub const FLAGGER_CANARY: ToolKind =
    kind("Flagger", "flagger.app", "v1beta1", "Canary", "canaries");
pub const ARGO_ROLLOUT: ToolKind = kind(
    "Argo Rollouts",
    "argoproj.io",
    "v1alpha1",
    "Rollout",
    "rollouts",
);
pub const ARGO_ANALYSIS_RUN: ToolKind = kind(
    "Argo Rollouts",
    "argoproj.io",
    "v1alpha1",
    "AnalysisRun",
    "analysisruns",
);
pub const CHAOS_SCHEDULE: ToolKind = kind(
    "Chaos Mesh",
    "chaos-mesh.org",
    "v1alpha1",
    "Schedule",
    "schedules",
);
pub const CHAOS_WORKFLOW: ToolKind = kind(
    "Chaos Mesh",
    "chaos-mesh.org",
    "v1alpha1",
    "Workflow",
    "workflows",
);
pub const LITMUS_SCHEDULE: ToolKind = kind(
    "Litmus",
    "litmuschaos.io",
    "v1alpha1",
    "ChaosSchedule",
    "chaosschedules",
);
pub const LITMUS_ENGINE: ToolKind = kind(
    "Litmus",
    "litmuschaos.io",
    "v1alpha1",
    "ChaosEngine",
    "chaosengines",
);
pub const LITMUS_RESULT: ToolKind = kind(
    "Litmus",
    "litmuschaos.io",
    "v1alpha1",
    "ChaosResult",
    "chaosresults",
);

/// Every kind read, in the order observed.
pub const KINDS: [ToolKind; 10] = [
    SLOTH_SLO,
    PYRRA_SLO,
    FLAGGER_CANARY,
    ARGO_ROLLOUT,
    ARGO_ANALYSIS_RUN,
    CHAOS_SCHEDULE,
    CHAOS_WORKFLOW,
    LITMUS_SCHEDULE,
    LITMUS_ENGINE,
    LITMUS_RESULT,
];

/// A namespace's objects of each kind of [`KINDS`] (none of a kind that is not served).
#[derive(Debug, Clone, Default)]
pub struct Objects {
    by_kind: Vec<Vec<Value>>,
}

impl Objects {
    /// From the objects of each kind of [`KINDS`], in that order.
    pub fn new(by_kind: Vec<Vec<Value>>) -> Self {
        Self { by_kind }
    }

    pub fn of(&self, k: ToolKind) -> &[Value] {
        KINDS
            .iter()
            .position(|x| *x == k)
            .and_then(|i| self.by_kind.get(i))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// What the tools' objects add to the evidence (the SLOs' objectives are read from
/// Prometheus by the caller: [`slos::ToolSlo::budget_query`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolEvidence {
    pub slos: Vec<slos::ToolSlo>,
    pub canary: canaries::ToolCanaries,
    pub drills: Vec<DrillFact>,
}

pub fn read(o: &Objects) -> ToolEvidence {
    let mut slos = slos::sloth(o.of(SLOTH_SLO));
    slos.extend(slos::pyrra(o.of(PYRRA_SLO)));
    let mut canary = canaries::flagger(o.of(FLAGGER_CANARY));
    canary.add(canaries::argo(o.of(ARGO_ROLLOUT), o.of(ARGO_ANALYSIS_RUN)));
    let mut drills = drills::chaos_mesh(o.of(CHAOS_SCHEDULE), o.of(CHAOS_WORKFLOW));
    drills.extend(drills::litmus(
        o.of(LITMUS_SCHEDULE),
        o.of(LITMUS_ENGINE),
        o.of(LITMUS_RESULT),
    ));
    ToolEvidence {
        slos,
        canary,
        drills,
    }
}

/// The SLOs as targets, each met as its tool's recorded series say (`met`, by SLO: None
/// while there is no such series).
pub fn targets(
    slos: &[slos::ToolSlo],
    met: impl Fn(&slos::ToolSlo) -> Option<bool>,
) -> Vec<TargetFact> {
    slos.iter()
        .map(|s| TargetFact {
            name: s.name.clone(),
            objective_met: met(s),
            burn_alerts: Vec::new(),
            tool_alerts: Some(s.alerts.clone()),
        })
        .collect()
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn time(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(|t| t.parse().ok())
}

fn uid(o: &Value) -> &str {
    o["metadata"]["uid"].as_str().unwrap_or_default()
}

/// The name and uid of the object of `kind` (of API group `group`) that owns `o`, by its
/// owner references (the uid too: a reference naming an object it does not own is not
/// counted, and the garbage collector removes the object it is on).
fn owner<'a>(o: &'a Value, group: &str, kind: &str) -> Option<(&'a str, &'a str)> {
    o["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| {
            r["kind"] == kind
                && r["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.split('/').next() == Some(group))
        })
        .and_then(|r| Some((r["name"].as_str()?, r["uid"].as_str()?)))
}

//! Evidence from the tools teams already run, each read from its own objects (plain JSON as
//! the API server returns them) and, for SLOs, its own recorded series:
//!
//! - Sloth `PrometheusServiceLevel` (sloth.slok.dev/v1): each SLO counts like a
//!   ResponseTimeTarget (RESP-4.1), met while Sloth's
//!   `slo:period_error_budget_remaining:ratio` is not below 0; its alerts count for RESP-2.3
//!   when Prometheus evaluates an alert over Sloth's `slo:sli_error:ratio_rate*` series of
//!   that SLO ([`super::evidence::is_sloth_alert`]).
//! - Flagger `Canary` (flagger.app/v1beta1): a canary policy for the Deployment it targets
//!   (CX-4.3); its last analysis counts as analysed, `Succeeded` as promoted, `Failed` as a
//!   bad release halted and rolled back (CX-4.3, CX-4.4, ORG-5.1).
//! - Chaos Mesh `Schedule` and `Workflow` (chaos-mesh.org/v1alpha1): a Schedule is an
//!   unannounced drill (nobody starts its runs by hand); a Workflow run passed when it is
//!   `Accomplished` and was not aborted; the Workflows a Schedule made are its scheduled
//!   runs; a Workflow applied by hand is an announced run (ORG-5.4, RESP-5.1).
//!
//! A kind that is not served (the tool is not installed) is simply absent. Pure.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::evidence::DrillFact;

/// A kind of another project, as the API server serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolKind {
    pub tool: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

pub const SLOTH_SLO: ToolKind = ToolKind {
    tool: "Sloth",
    group: "sloth.slok.dev",
    version: "v1",
    kind: "PrometheusServiceLevel",
    plural: "prometheusservicelevels",
};
pub const FLAGGER_CANARY: ToolKind = ToolKind {
    tool: "Flagger",
    group: "flagger.app",
    version: "v1beta1",
    kind: "Canary",
    plural: "canaries",
};
pub const CHAOS_SCHEDULE: ToolKind = ToolKind {
    tool: "Chaos Mesh",
    group: "chaos-mesh.org",
    version: "v1alpha1",
    kind: "Schedule",
    plural: "schedules",
};
pub const CHAOS_WORKFLOW: ToolKind = ToolKind {
    tool: "Chaos Mesh",
    group: "chaos-mesh.org",
    version: "v1alpha1",
    kind: "Workflow",
    plural: "workflows",
};

/// Every kind read, in the order observed.
pub const KINDS: [ToolKind; 4] = [SLOTH_SLO, FLAGGER_CANARY, CHAOS_SCHEDULE, CHAOS_WORKFLOW];

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

fn time(v: &Value) -> Option<Timestamp> {
    v.as_str().and_then(|t| t.parse().ok())
}

/// One SLO of a Sloth PrometheusServiceLevel.
#[derive(Debug, Clone, PartialEq)]
pub struct SlothSlo {
    /// `<object>/<slo>`, as shown in status.
    pub name: String,
    pub service: String,
    pub slo: String,
}

impl SlothSlo {
    /// Sloth's `sloth_id` label of the SLO's series and alerts.
    pub fn id(&self) -> String {
        format!("{}-{}", self.service, self.slo)
    }
}

/// The SLOs of PrometheusServiceLevels.
pub fn sloth_slos(objects: &[Value]) -> Vec<SlothSlo> {
    let mut out = Vec::new();
    for o in objects {
        let service = o["spec"]["service"].as_str().unwrap_or_default();
        for slo in o["spec"]["slos"].as_array().into_iter().flatten() {
            let slo = slo["name"].as_str().unwrap_or_default();
            if service.is_empty() || slo.is_empty() {
                continue;
            }
            out.push(SlothSlo {
                name: format!("{}/{slo}", name(o)),
                service: service.to_string(),
                slo: slo.to_string(),
            });
        }
    }
    out
}

/// A PromQL string literal of `s` (quotes and backslashes escaped).
fn literal(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The query of the error budget Sloth reports left for the SLOs of `service`, by SLO:
/// the lowest of the series that match (a series another namespace records under the same
/// names can only lower it).
pub fn sloth_budget_query(service: &str) -> String {
    format!(
        "min by (sloth_slo) (slo:period_error_budget_remaining:ratio{{sloth_service={}}})",
        literal(service)
    )
}

/// What Flagger Canaries add to the canary evidence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlaggerFacts {
    pub canaries: usize,
    pub analyzed: u32,
    pub promoted: u32,
    pub rolled_back: u32,
    /// The Deployments they target.
    pub governed: BTreeSet<String>,
}

pub fn flagger(objects: &[Value]) -> FlaggerFacts {
    let mut f = FlaggerFacts::default();
    for o in objects {
        f.canaries += 1;
        let target = &o["spec"]["targetRef"];
        if target["kind"].as_str().unwrap_or("Deployment") == "Deployment"
            && let Some(n) = target["name"].as_str()
        {
            f.governed.insert(n.to_string());
        }
        match o["status"]["phase"].as_str() {
            Some("Succeeded") => {
                f.analyzed += 1;
                f.promoted += 1;
            }
            Some("Failed") => {
                f.analyzed += 1;
                f.rolled_back += 1;
            }
            _ => {}
        }
    }
    f
}

/// A Chaos Mesh Workflow's verdict: Some(end) when it passed (Accomplished, not aborted).
fn workflow_passed(w: &Value) -> Option<Timestamp> {
    let accomplished = w["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Accomplished" && c["status"] == "True");
    let aborted = w["metadata"]["annotations"]["workflow.chaos-mesh.org/abort"] == "true";
    (accomplished && !aborted)
        .then(|| time(&w["status"]["endTime"]))
        .flatten()
}

/// The name of the Schedule that made `w`, if one did.
fn made_by_schedule(w: &Value) -> Option<&str> {
    w["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| {
            r["kind"] == "Schedule"
                && r["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("chaos-mesh.org/"))
        })
        .and_then(|r| r["name"].as_str())
}

/// Chaos Mesh drills: each Schedule (unannounced) with its Workflows' verdicts, and each
/// Workflow applied by hand (announced).
pub fn chaos_drills(schedules: &[Value], workflows: &[Value]) -> Vec<DrillFact> {
    let mut out = Vec::new();
    for s in schedules {
        let passes: Vec<Timestamp> = workflows
            .iter()
            .filter(|w| made_by_schedule(w) == Some(name(s)))
            .filter_map(workflow_passed)
            .collect();
        let last = passes.iter().max().copied();
        out.push(DrillFact {
            name: format!("Chaos Mesh Schedule {}", name(s)),
            unannounced: true,
            last_passed: last,
            last_scheduled_pass: last,
        });
    }
    for w in workflows.iter().filter(|w| made_by_schedule(w).is_none()) {
        out.push(DrillFact {
            name: format!("Chaos Mesh Workflow {}", name(w)),
            unannounced: false,
            last_passed: workflow_passed(w),
            last_scheduled_pass: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::evidence::is_sloth_alert;
    use serde_json::json;

    #[test]
    fn sloth_slos_and_their_queries_and_alerts() {
        let psl = json!({
            "metadata": {"name": "checkout"},
            "spec": {"service": "check\"out", "slos": [{"name": "availability"}, {"name": "latency"}, {}]}
        });
        let slos = sloth_slos(&[psl]);
        assert_eq!(slos.len(), 2);
        assert_eq!(slos[0].name, "checkout/availability");
        assert_eq!(slos[0].id(), "check\"out-availability");
        // The service name cannot break out of the label matcher.
        assert_eq!(
            sloth_budget_query("check\"out"),
            r#"min by (sloth_slo) (slo:period_error_budget_remaining:ratio{sloth_service="check\"out"})"#
        );
        assert!(is_sloth_alert(
            r#"(max(slo:sli_error:ratio_rate5m{sloth_id="shop-availability",sloth_service="shop"} > (14.4 * 0.001)) without (sloth_window))"#,
            "shop-availability"
        ));
        // Labels anyone can type on a constant are not Sloth's alert, nor is a branch of
        // constants beside Sloth's series, nor another SLO's series.
        for forged in [
            r#"vector(1) > 0 and on() absent(x{sloth_id="shop-availability"})"#,
            r#"slo:sli_error:ratio_rate5m{sloth_id="shop-availability"} > 0.1 or vector(1)"#,
            r#"slo:sli_error:ratio_rate5m{sloth_id="shop-availability"} > 0.1 or up"#,
            r#"slo:sli_error:ratio_rate5m{sloth_id="other-availability"} > 0.1"#,
            r#"slo:sli_error:ratio_rate5m{sloth_id=~"shop-availability|x"} > 0.1"#,
            "1 > 0",
        ] {
            assert!(!is_sloth_alert(forged, "shop-availability"), "{forged}");
        }
    }

    #[test]
    fn flagger_phases_count_as_analysed_promoted_and_rolled_back() {
        let canary = |target: &str, phase: Option<&str>| {
            json!({
                "metadata": {"name": target},
                "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}},
                "status": phase.map(|p| json!({"phase": p})).unwrap_or(json!({}))
            })
        };
        let f = flagger(&[
            canary("a", Some("Succeeded")),
            canary("b", Some("Failed")),
            canary("c", Some("Progressing")),
            canary("d", None),
        ]);
        assert_eq!(
            (f.canaries, f.analyzed, f.promoted, f.rolled_back),
            (4, 2, 1, 1)
        );
        assert_eq!(f.governed.len(), 4);
    }

    #[test]
    fn chaos_mesh_schedules_are_unannounced_drills_with_their_workflows_verdicts() {
        let wf = |name: &str, owner: Option<&str>, accomplished: bool, aborted: bool, end: &str| {
            json!({
                "metadata": {
                    "name": name,
                    "annotations": if aborted { json!({"workflow.chaos-mesh.org/abort": "true"}) } else { json!({}) },
                    "ownerReferences": owner.map(|o| json!([{"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "Schedule", "name": o, "uid": "u"}])).unwrap_or(json!([]))
                },
                "status": {
                    "endTime": end,
                    "conditions": [{"type": "Accomplished", "status": if accomplished {"True"} else {"False"}}]
                }
            })
        };
        let schedule = json!({"metadata": {"name": "weekly-kill"}});
        let drills = chaos_drills(
            &[schedule],
            &[
                wf(
                    "weekly-kill-1",
                    Some("weekly-kill"),
                    true,
                    false,
                    "2026-11-20T10:00:00Z",
                ),
                wf(
                    "weekly-kill-2",
                    Some("weekly-kill"),
                    true,
                    true,
                    "2026-11-27T10:00:00Z",
                ),
                wf(
                    "weekly-kill-3",
                    Some("weekly-kill"),
                    false,
                    false,
                    "2026-12-01T10:00:00Z",
                ),
                wf("by-hand", None, true, false, "2026-12-02T10:00:00Z"),
            ],
        );
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(
            drills,
            [
                DrillFact {
                    name: "Chaos Mesh Schedule weekly-kill".into(),
                    unannounced: true,
                    // The aborted and the unfinished runs did not pass.
                    last_passed: Some(at("2026-11-20T10:00:00Z")),
                    last_scheduled_pass: Some(at("2026-11-20T10:00:00Z")),
                },
                DrillFact {
                    name: "Chaos Mesh Workflow by-hand".into(),
                    unannounced: false,
                    last_passed: Some(at("2026-12-02T10:00:00Z")),
                    last_scheduled_pass: None,
                },
            ]
        );
    }
}

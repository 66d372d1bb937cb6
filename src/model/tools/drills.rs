//! Drills of Chaos Mesh and Litmus: a schedule is an unannounced drill (nobody starts its
//! runs by hand), with its runs' verdicts; a run applied by hand is an announced one.
//!
//! - Chaos Mesh `Schedule` and `Workflow` (chaos-mesh.org/v1alpha1): a Workflow run passed
//!   when it is `Accomplished` and was not aborted; the Workflows a Schedule made (its owner
//!   reference) are its scheduled runs.
//! - Litmus `ChaosSchedule`, `ChaosEngine` and `ChaosResult` (litmuschaos.io/v1alpha1): the
//!   ChaosEngines a ChaosSchedule made (its owner reference) are its scheduled runs. An
//!   engine passed when it is `completed` and every experiment of it has the verdict `Pass`,
//!   from its ChaosResult (`spec.engine`, and the engine's uid in the `chaosUID` label when
//!   the result carries it) or, without one, from the engine's status; it passed at the
//!   latest `lastUpdateTime` of its experiments.

use jiff::Timestamp;
use serde_json::Value;

use super::{name, owner, time, uid};
use crate::model::evidence::DrillFact;

/// A schedule's drill from its runs (each Some(end) when it passed).
fn scheduled(name: String, passes: impl Iterator<Item = Option<Timestamp>>) -> DrillFact {
    let last = passes.flatten().max();
    DrillFact {
        name,
        unannounced: true,
        last_passed: last,
        last_scheduled_pass: last,
    }
}

fn by_hand(name: String, passed: Option<Timestamp>) -> DrillFact {
    DrillFact {
        name,
        unannounced: false,
        last_passed: passed,
        last_scheduled_pass: None,
    }
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

/// Chaos Mesh drills: each Schedule (unannounced) with its Workflows' verdicts, and each
/// Workflow applied by hand (announced).
pub fn chaos_mesh(schedules: &[Value], workflows: &[Value]) -> Vec<DrillFact> {
    fn made_by(w: &Value) -> Option<(&str, &str)> {
        owner(w, "chaos-mesh.org", "Schedule")
    }
    let mut out: Vec<DrillFact> = schedules
        .iter()
        .map(|s| {
            let runs = workflows
                .iter()
                .filter(|w| made_by(w) == Some((name(s), uid(s))));
            scheduled(
                format!("Chaos Mesh Schedule {}", name(s)),
                runs.map(workflow_passed),
            )
        })
        .collect();
    out.extend(workflows.iter().filter(|w| made_by(w).is_none()).map(|w| {
        by_hand(
            format!("Chaos Mesh Workflow {}", name(w)),
            workflow_passed(w),
        )
    }));
    out
}

/// A Litmus ChaosEngine's verdict: Some(time) when it passed.
fn engine_passed(engine: &Value, results: &[Value]) -> Option<Timestamp> {
    if engine["status"]["engineStatus"] != "completed" {
        return None;
    }
    let uid = engine["metadata"]["uid"].as_str();
    let experiments = engine["status"]["experiments"].as_array()?;
    let verdict = |exp| experiment_verdict(engine, uid, exp, results);
    let all_passed =
        !experiments.is_empty() && experiments.iter().all(|e| verdict(e) == Some("Pass"));
    all_passed
        .then(|| {
            experiments
                .iter()
                .filter_map(|e| time(&e["lastUpdateTime"]))
                .max()
        })
        .flatten()
}

/// The verdict of one experiment of an engine: its ChaosResult's, or the engine's status's
/// when it has none.
fn experiment_verdict<'a>(
    engine: &Value,
    uid: Option<&str>,
    exp: &'a Value,
    results: &'a [Value],
) -> Option<&'a str> {
    let from_result = results.iter().find(|r| {
        r["spec"]["engine"] == engine["metadata"]["name"]
            && r["spec"]["experiment"] == exp["name"]
            && r["metadata"]["labels"]["chaosUID"]
                .as_str()
                .is_none_or(|l| Some(l) == uid)
    });
    match from_result {
        Some(r) => r["status"]["experimentStatus"]["verdict"].as_str(),
        None => exp["verdict"].as_str(),
    }
}

/// Litmus drills: each ChaosSchedule (unannounced) with its ChaosEngines' verdicts, and
/// each ChaosEngine applied by hand (announced).
pub fn litmus(schedules: &[Value], engines: &[Value], results: &[Value]) -> Vec<DrillFact> {
    fn made_by(e: &Value) -> Option<(&str, &str)> {
        owner(e, "litmuschaos.io", "ChaosSchedule")
    }
    let mut out: Vec<DrillFact> = schedules
        .iter()
        .map(|s| {
            let runs = engines
                .iter()
                .filter(|e| made_by(e) == Some((name(s), uid(s))));
            scheduled(
                format!("Litmus ChaosSchedule {}", name(s)),
                runs.map(|e| engine_passed(e, results)),
            )
        })
        .collect();
    out.extend(engines.iter().filter(|e| made_by(e).is_none()).map(|e| {
        by_hand(
            format!("Litmus ChaosEngine {}", name(e)),
            engine_passed(e, results),
        )
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn chaos_mesh_schedules_are_unannounced_drills_with_their_workflows_verdicts() {
        let wf = |name: &str, owner: Option<&str>, accomplished: bool, aborted: bool, end: &str| {
            json!({
                "metadata": {
                    "name": name,
                    "annotations": if aborted { json!({"workflow.chaos-mesh.org/abort": "true"}) } else { json!({}) },
                    "ownerReferences": owner.map(|o| json!([{"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "Schedule", "name": o, "uid": "s1"}])).unwrap_or(json!([]))
                },
                "status": {
                    "endTime": end,
                    "conditions": [{"type": "Accomplished", "status": if accomplished {"True"} else {"False"}}]
                }
            })
        };
        let schedule = json!({"metadata": {"name": "weekly-kill", "uid": "s1"}});
        let drills = chaos_mesh(
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
                // Names the Schedule, but not its uid: neither its run nor one by hand.
                {
                    let mut w = wf(
                        "forged",
                        Some("weekly-kill"),
                        true,
                        false,
                        "2026-12-03T10:00:00Z",
                    );
                    w["metadata"]["ownerReferences"][0]["uid"] = json!("another");
                    w
                },
            ],
        );
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

    fn engine(name: &str, schedule: Option<&str>, status: &str, experiments: Value) -> Value {
        json!({
            "metadata": {
                "name": name, "uid": format!("uid-{name}"),
                "ownerReferences": schedule.map(|s| json!([{"apiVersion": "litmuschaos.io/v1alpha1", "kind": "ChaosSchedule", "name": s, "uid": "s1", "controller": true}])).unwrap_or(json!([]))
            },
            "spec": {"engineState": "active", "experiments": [{"name": "pod-delete"}]},
            "status": {"engineStatus": status, "experiments": experiments}
        })
    }

    fn exp(verdict: &str, at: &str) -> Value {
        json!([{"name": "pod-delete", "runner": "r", "experimentPod": "p", "status": "Completed", "verdict": verdict, "lastUpdateTime": at}])
    }

    fn result(engine: &str, uid: Option<&str>, verdict: &str) -> Value {
        json!({
            "metadata": {"name": format!("{engine}-pod-delete"), "labels": uid.map(|u| json!({"chaosUID": u})).unwrap_or(json!({}))},
            "spec": {"engine": engine, "experiment": "pod-delete"},
            "status": {"experimentStatus": {"phase": "Completed", "verdict": verdict}}
        })
    }

    #[test]
    fn litmus_schedules_are_unannounced_drills_with_their_engines_verdicts() {
        let schedule = json!({"metadata": {"name": "nightly", "uid": "s1"}});
        let engines = [
            engine(
                "nightly-1764000000",
                Some("nightly"),
                "completed",
                exp("Pass", "2026-11-25T02:00:00Z"),
            ),
            // Its ChaosResult says Fail, whatever the engine's status says.
            engine(
                "nightly-1764600000",
                Some("nightly"),
                "completed",
                exp("Pass", "2026-12-02T02:00:00Z"),
            ),
            // Still running.
            engine(
                "nightly-1764700000",
                Some("nightly"),
                "initialized",
                exp("Awaited", "2026-12-03T02:00:00Z"),
            ),
            engine(
                "by-hand",
                None,
                "completed",
                exp("Pass", "2026-12-01T09:00:00Z"),
            ),
            // Its result is another engine's of the same name (another uid): the engine's
            // own status is read instead.
            engine(
                "stopped",
                None,
                "stopped",
                exp("Stopped", "2026-12-01T10:00:00Z"),
            ),
        ];
        let results = [
            result("nightly-1764000000", Some("uid-nightly-1764000000"), "Pass"),
            result("nightly-1764600000", Some("uid-nightly-1764600000"), "Fail"),
            result("by-hand", Some("uid-of-an-older-by-hand"), "Fail"),
        ];
        let drills = litmus(&[schedule], &engines, &results);
        assert_eq!(
            drills,
            [
                DrillFact {
                    name: "Litmus ChaosSchedule nightly".into(),
                    unannounced: true,
                    last_passed: Some(at("2026-11-25T02:00:00Z")),
                    last_scheduled_pass: Some(at("2026-11-25T02:00:00Z")),
                },
                DrillFact {
                    name: "Litmus ChaosEngine by-hand".into(),
                    unannounced: false,
                    last_passed: Some(at("2026-12-01T09:00:00Z")),
                    last_scheduled_pass: None,
                },
                DrillFact {
                    name: "Litmus ChaosEngine stopped".into(),
                    unannounced: false,
                    last_passed: None,
                    last_scheduled_pass: None,
                },
            ]
        );
    }
}

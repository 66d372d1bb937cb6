//! Canaries of Flagger and Argo Rollouts: what they add to the CanaryPolicies' evidence.
//!
//! - Flagger `Canary` (flagger.app/v1beta1): a canary policy for the Deployment it targets;
//!   its last analysis counts as analysed, `Succeeded` as promoted, `Failed` as a bad
//!   release halted and rolled back.
//! - Argo Rollouts `Rollout` (argoproj.io/v1alpha1) with analysis (a canary's background or
//!   step analysis, a blue-green's pre- or post-promotion analysis): a canary policy, and a
//!   workload governed by it (as is the Deployment its `workloadRef` names). A release is a
//!   revision of the Rollout (the `rollout.argoproj.io/revision` annotation Argo puts on
//!   the AnalysisRuns it makes for it): analysed once one of its AnalysisRuns ended; halted
//!   and rolled back when one `Failed` or ended in `Error` (Argo aborts the update), or the
//!   Rollout shows it aborted; promoted when it is the Rollout's revision, every run of it
//!   `Successful`, and the Rollout `Healthy`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{name, owner, uid};

/// What the tools' canaries add to the canary evidence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCanaries {
    pub canaries: usize,
    pub analyzed: u32,
    pub promoted: u32,
    pub rolled_back: u32,
    /// The Deployments they govern, by name.
    pub governed: BTreeSet<String>,
}

impl ToolCanaries {
    pub fn add(&mut self, o: ToolCanaries) {
        self.canaries += o.canaries;
        self.analyzed += o.analyzed;
        self.promoted += o.promoted;
        self.rolled_back += o.rolled_back;
        self.governed.extend(o.governed);
    }
}

pub fn flagger(objects: &[Value]) -> ToolCanaries {
    let mut f = ToolCanaries::default();
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

/// The annotation Argo Rollouts keeps a Rollout's revision in, and copies onto the
/// AnalysisRuns it makes for that revision.
const REVISION: &str = "rollout.argoproj.io/revision";

/// Does the Rollout analyse its releases?
pub fn rollout_analysed(r: &Value) -> bool {
    let canary = &r["spec"]["strategy"]["canary"];
    let blue_green = &r["spec"]["strategy"]["blueGreen"];
    canary["analysis"].is_object()
        || canary["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["analysis"].is_object())
        || blue_green["prePromotionAnalysis"].is_object()
        || blue_green["postPromotionAnalysis"].is_object()
}

fn revision(o: &Value) -> Option<&str> {
    o["metadata"]["annotations"][REVISION].as_str()
}

pub fn argo(rollouts: &[Value], runs: &[Value]) -> ToolCanaries {
    let mut f = ToolCanaries::default();
    // Each release's runs' phases, by Rollout (name and uid) and revision.
    let mut releases: BTreeMap<((&str, &str), &str), Vec<&str>> = BTreeMap::new();
    for run in runs {
        if let (Some(rollout), Some(rev)) = (owner(run, "argoproj.io", "Rollout"), revision(run)) {
            releases
                .entry((rollout, rev))
                .or_default()
                .push(run["status"]["phase"].as_str().unwrap_or_default());
        }
    }
    for r in rollouts.iter().filter(|r| rollout_analysed(r)) {
        f.canaries += 1;
        if r["spec"]["workloadRef"]["kind"] == "Deployment"
            && let Some(n) = r["spec"]["workloadRef"]["name"].as_str()
        {
            f.governed.insert(n.to_string());
        }
        let current = revision(r);
        let aborted = r["status"]["abort"] == true;
        let mut current_counted = false;
        let me = (name(r), uid(r));
        for ((_, rev), phases) in releases
            .range((me, "")..)
            .take_while(|((owner, _), _)| *owner == me)
        {
            let is_current = Some(*rev) == current;
            let failed = phases.iter().any(|p| matches!(*p, "Failed" | "Error"));
            let ended = phases
                .iter()
                .any(|p| matches!(*p, "Successful" | "Failed" | "Error" | "Inconclusive"));
            let halted_by_hand = is_current && aborted;
            if !ended && !halted_by_hand {
                continue;
            }
            f.analyzed += 1;
            current_counted |= is_current;
            if failed || halted_by_hand {
                f.rolled_back += 1;
            } else if is_current
                && r["status"]["phase"] == "Healthy"
                && phases.iter().all(|p| *p == "Successful")
            {
                f.promoted += 1;
            }
        }
        // Aborted by hand before any analysis ran: halted all the same.
        if aborted && !current_counted {
            f.analyzed += 1;
            f.rolled_back += 1;
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    fn rollout(name: &str, strategy: Value, revision: &str, phase: &str, abort: bool) -> Value {
        json!({
            "metadata": {"name": name, "uid": format!("uid-{name}"), "annotations": {REVISION: revision}},
            "spec": {"strategy": strategy, "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": format!("{name}-deploy")}},
            "status": {"phase": phase, "abort": abort}
        })
    }

    fn run(rollout: &str, revision: &str, phase: &str) -> Value {
        json!({
            "metadata": {
                "name": format!("{rollout}-{revision}-x"),
                "annotations": {REVISION: revision},
                "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": rollout, "uid": format!("uid-{rollout}"), "controller": true}]
            },
            "status": {"phase": phase}
        })
    }

    #[test]
    fn argo_rollouts_with_analysis_count_their_releases_verdicts() {
        let steps = json!({"canary": {"steps": [{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "errors"}]}}]}});
        let background =
            json!({"canary": {"analysis": {"templates": [{"templateName": "errors"}]}}});
        let blue_green = json!({"blueGreen": {"activeService": "a", "prePromotionAnalysis": {"templates": [{"templateName": "smoke"}]}}});
        let bare = json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}});
        let rollouts = [
            // Revision 1 failed its analysis, 2 passed and is live.
            rollout("web", steps, "2", "Healthy", false),
            // Revision 3 is being analysed; 2 passed its two step runs but was superseded.
            rollout("api", background, "3", "Progressing", false),
            // Aborted by hand before any analysis ran.
            rollout("pay", blue_green, "5", "Degraded", true),
            // No analysis: not a canary policy, its runs are not looked at.
            rollout("bare", bare, "1", "Healthy", false),
        ];
        let runs = [
            run("web", "1", "Failed"),
            run("web", "2", "Successful"),
            run("api", "2", "Successful"),
            run("api", "2", "Successful"),
            run("api", "3", "Running"),
            run("bare", "1", "Failed"),
            // Names the Rollout, but not its uid (a run of an earlier Rollout of that name).
            {
                let mut r = run("web", "2", "Failed");
                r["metadata"]["ownerReferences"][0]["uid"] = json!("uid-of-an-older-web");
                r
            },
            // Not made by a Rollout.
            json!({"metadata": {"name": "x", "annotations": {REVISION: "1"}}, "status": {"phase": "Failed"}}),
        ];
        let f = argo(&rollouts, &runs);
        // Worked out by hand: web 1 (rolled back), web 2 (promoted), api 2 (analysed,
        // superseded: neither), pay 5 (aborted: rolled back).
        assert_eq!(
            (f.canaries, f.analyzed, f.promoted, f.rolled_back),
            (3, 4, 1, 2)
        );
        assert_eq!(
            f.governed,
            BTreeSet::from([
                "api-deploy".to_string(),
                "pay-deploy".into(),
                "web-deploy".into()
            ])
        );
        assert!(!rollout_analysed(&rollouts[3]));
    }
}

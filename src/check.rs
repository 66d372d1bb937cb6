//! The CI gate: `maturity-operator check <assessment>` reads an assessment's status and
//! says, in a table and an exit code, whether its level reaches the wanted one.

use std::fmt::Write as _;

use kube::Api;

use crate::api::MaturityAssessment;
use crate::api::maturity_assessment::PracticeState;

/// The level is at least the wanted one.
pub const EXIT_MET: u8 = 0;
/// The level is below the wanted one.
pub const EXIT_BELOW: u8 = 1;
/// The level could not be evaluated (no such assessment, no status yet, Ready False,
/// the API unreachable). (2 is clap's usage error.)
pub const EXIT_UNKNOWN: u8 = 3;

/// The verdict on `a` for `min_level` (default: its `targetLevel`), as (exit code, text).
pub fn verdict(a: &MaturityAssessment, min_level: Option<i32>) -> (u8, String) {
    let name = format!(
        "{}/{}",
        a.metadata.namespace.as_deref().unwrap_or_default(),
        a.metadata.name.as_deref().unwrap_or_default()
    );
    let Some(status) = &a.status else {
        return (
            EXIT_UNKNOWN,
            format!(
                "MaturityAssessment {name} has not been evaluated yet (no status); is the operator running?\n"
            ),
        );
    };
    let Some(level) = status.level else {
        return (
            EXIT_UNKNOWN,
            format!("MaturityAssessment {name} has no level in its status yet\n"),
        );
    };
    let mut out = String::new();
    let want = min_level.or(a.spec.target_level);
    let _ = writeln!(
        out,
        "MaturityAssessment {name}: level {level}{}",
        want.map(|w| format!(" (wanted {w})")).unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "{:<11}{:>6}{:>6}{:>9}{:>9}{:>8}{:>9}",
        "CAPABILITY", "LEVEL", "MET", "NOT MET", "UNKNOWN", "EXEMPT", "EXPIRED"
    );
    for c in &status.capabilities {
        let n = |s: PracticeState| c.practices.iter().filter(|p| p.state == s).count();
        let _ = writeln!(
            out,
            "{:<11}{:>6}{:>6}{:>9}{:>9}{:>8}{:>9}",
            c.id,
            c.level,
            n(PracticeState::Met),
            n(PracticeState::NotMet),
            n(PracticeState::Unknown),
            n(PracticeState::Exempt),
            n(PracticeState::Expired)
        );
    }
    if let Some(next) = &status.next_level {
        let _ = writeln!(out, "level {} misses:", next.level);
        for m in &next.missing {
            let _ = writeln!(out, "  {:<9}{}", m.practice, m.why);
        }
    }
    let ready = status.common.conditions.iter().find(|c| c.type_ == "Ready");
    if let Some(r) = ready.filter(|r| r.status == "False") {
        let _ = writeln!(
            out,
            "not evaluated completely: {} ({})",
            r.message, r.reason
        );
        return (EXIT_UNKNOWN, out);
    }
    match want {
        None => (EXIT_MET, out),
        Some(w) if level >= w => (EXIT_MET, out),
        Some(w) => {
            let _ = writeln!(out, "below the wanted level {w}");
            (EXIT_BELOW, out)
        }
    }
}

/// Fetches the assessment and gives the verdict; API failures are "could not evaluate".
pub async fn check(
    client: kube::Client,
    namespace: &str,
    name: &str,
    min_level: Option<i32>,
) -> (u8, String) {
    let api: Api<MaturityAssessment> = Api::namespaced(client, namespace);
    match api.get_opt(name).await {
        Ok(Some(a)) => verdict(&a, min_level),
        Ok(None) => (
            EXIT_UNKNOWN,
            format!("no MaturityAssessment {name} in namespace {namespace}\n"),
        ),
        Err(e) => (
            EXIT_UNKNOWN,
            format!("cannot read MaturityAssessment {namespace}/{name}: {e}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assessment(status: serde_json::Value, target: Option<i32>) -> MaturityAssessment {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "MaturityAssessment",
            "metadata": {"name": "pay", "namespace": "shop"},
            "spec": {"targetLevel": target},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn exit_codes() {
        let evaluated = serde_json::json!({
            "level": 2,
            "capabilities": [{"id": "ORG", "level": 2, "practices": [{"id": "ORG-2.1", "state": "Met", "evidence": "Measured"}]}],
            "nextLevel": {"level": 3, "missing": [{"practice": "ORG-3.1", "why": "NotMet: 0 of 2 workloads with a contact"}]},
            "conditions": [{"type": "Ready", "status": "True", "reason": "Evaluated", "message": "level 2", "lastTransitionTime": "2026-11-25T00:00:00Z"}]
        });
        let (code, text) = verdict(&assessment(evaluated.clone(), Some(2)), None);
        assert_eq!(code, EXIT_MET, "{text}");
        assert!(text.contains("ORG-3.1"), "{text}");
        assert_eq!(
            verdict(&assessment(evaluated.clone(), Some(2)), Some(3)).0,
            EXIT_BELOW
        );
        assert_eq!(
            verdict(&assessment(evaluated.clone(), Some(3)), None).0,
            EXIT_BELOW
        );
        assert_eq!(
            verdict(&assessment(serde_json::Value::Null, Some(2)), None).0,
            EXIT_UNKNOWN
        );
        let mut degraded = evaluated;
        degraded["conditions"][0]["status"] = "False".into();
        degraded["conditions"][0]["reason"] = "PrometheusUnreachable".into();
        let (code, text) = verdict(&assessment(degraded, Some(1)), None);
        assert_eq!(code, EXIT_UNKNOWN);
        assert!(text.contains("PrometheusUnreachable"), "{text}");
    }
}

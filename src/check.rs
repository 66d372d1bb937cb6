//! The CI gate: `maturity-operator check <assessment>` reads an assessment's status and
//! says, in a table and an exit code, whether its level reaches the wanted one. A status
//! the operator has not refreshed lately (its heartbeat is older than `--max-age`) or that
//! is of an older generation of the spec is stale: exit 3, never a green gate.

use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;

use kube::Api;

use crate::api::MaturityAssessment;
use crate::api::maturity_assessment::PracticeState;

/// The level is at least the wanted one.
pub const EXIT_MET: u8 = 0;
/// The level is below the wanted one.
pub const EXIT_BELOW: u8 = 1;
/// The level could not be evaluated (no such assessment, no status yet, Ready False, a
/// stale status, the API unreachable). (2 is clap's usage error.)
pub const EXIT_UNKNOWN: u8 = 3;
/// The default `--max-age` of the heartbeat: three times the operator's refresh period.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 60);

/// Why the status of `a` is stale on `now`, or None: its heartbeat is missing or older than
/// `max_age`, or it was not evaluated for the spec's generation.
pub fn staleness(a: &MaturityAssessment, now: Timestamp, max_age: Duration) -> Option<String> {
    let status = a.status.as_ref()?;
    let Some(beat) = &status.heartbeat else {
        return Some("stale: the status has no heartbeat (the operator that wrote it is older than this check, or stopped before its first pass)".into());
    };
    let age = now.duration_since(beat.0);
    let minutes = age.as_secs() / 60;
    if age.as_secs() >= 0 && age.unsigned_abs() > max_age {
        return Some(format!(
            "stale: last evaluated {minutes} min ago (heartbeat {}, at most {} min old wanted; the operator refreshes it every {} min): is the operator running?",
            beat.0,
            max_age.as_secs() / 60,
            crate::model::decide::HEARTBEAT_EVERY.as_secs() / 60
        ));
    }
    match (a.metadata.generation, status.common.observed_generation) {
        (Some(g), observed) if observed != Some(g) => Some(format!(
            "stale: the spec's generation {g} was not evaluated yet (the status is of generation {}): is the operator running?",
            observed
                .map(|o| o.to_string())
                .unwrap_or_else(|| "none".into())
        )),
        _ => None,
    }
}

/// The verdict on `a` for `min_level` (default: its `targetLevel`) on `now`, as (exit code,
/// text); a status older than `max_age` is stale ([`staleness`]).
pub fn verdict(
    a: &MaturityAssessment,
    min_level: Option<i32>,
    now: Timestamp,
    max_age: Duration,
) -> (u8, String) {
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
        "{:<11}{:>6}{:>6}{:>9}{:>9}{:>8}{:>9}{:>12}",
        "CAPABILITY", "LEVEL", "MET", "NOT MET", "UNKNOWN", "EXEMPT", "EXPIRED", "UNVERIFIED"
    );
    for c in &status.capabilities {
        let n = |s: PracticeState| c.practices.iter().filter(|p| p.state == s).count();
        let _ = writeln!(
            out,
            "{:<11}{:>6}{:>6}{:>9}{:>9}{:>8}{:>9}{:>12}",
            c.id,
            c.level,
            n(PracticeState::Met),
            n(PracticeState::NotMet),
            n(PracticeState::Unknown),
            n(PracticeState::Exempt),
            n(PracticeState::Expired),
            n(PracticeState::Unverified)
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
    if let Some(why) = staleness(a, now, max_age) {
        let _ = writeln!(out, "{why}");
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

/// What `check` found: the exit code, the text of `-o table`, and what `-o json|yaml` show.
pub struct Verdict {
    pub code: u8,
    pub text: String,
    /// `namespace/name`.
    pub assessment: String,
    /// The assessment read (None: it could not be read).
    pub read: Option<MaturityAssessment>,
    pub min_level: Option<i32>,
}

impl Verdict {
    /// The verdict as an object: result (Met, Below, Unknown), exit code, level and wanted
    /// level, the message's last line, and the status's capabilities and next level.
    pub fn object(&self) -> serde_json::Value {
        let result = match self.code {
            EXIT_MET => "Met",
            EXIT_BELOW => "Below",
            _ => "Unknown",
        };
        let status = self.read.as_ref().and_then(|a| a.status.as_ref());
        serde_json::json!({
            "assessment": self.assessment,
            "result": result,
            "exitCode": self.code,
            "level": status.and_then(|s| s.level),
            "wanted": self.min_level.or(self.read.as_ref().and_then(|a| a.spec.target_level)),
            "message": self.text.lines().last().unwrap_or_default(),
            "capabilities": status.map(|s| &s.capabilities),
            "nextLevel": status.and_then(|s| s.next_level.as_ref()),
        })
    }
}

/// Fetches the assessment and gives the verdict; API failures are "could not evaluate".
pub async fn check(
    client: kube::Client,
    namespace: &str,
    name: &str,
    min_level: Option<i32>,
    max_age: Duration,
) -> Verdict {
    let api: Api<MaturityAssessment> = Api::namespaced(client, namespace);
    let (read, (code, text)) = match api.get_opt(name).await {
        Ok(Some(a)) => {
            let v = verdict(&a, min_level, crate::clock::Clock::system().now(), max_age);
            (Some(a), v)
        }
        Ok(None) => (
            None,
            (
                EXIT_UNKNOWN,
                format!("no MaturityAssessment {name} in namespace {namespace}\n"),
            ),
        ),
        Err(e) => (
            None,
            (
                EXIT_UNKNOWN,
                format!("cannot read MaturityAssessment {namespace}/{name}: {e}\n"),
            ),
        ),
    };
    Verdict {
        code,
        text,
        assessment: format!("{namespace}/{name}"),
        read,
        min_level,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-25T01:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn verdict(a: &MaturityAssessment, min_level: Option<i32>) -> (u8, String) {
        super::verdict(a, min_level, now(), DEFAULT_MAX_AGE)
    }

    fn assessment(status: serde_json::Value, target: Option<i32>) -> MaturityAssessment {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "MaturityAssessment",
            "metadata": {"name": "pay", "namespace": "shop", "generation": 2},
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
            "observedGeneration": 2,
            "heartbeat": "2026-11-25T00:45:00Z",
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
        let mut degraded = evaluated.clone();
        degraded["conditions"][0]["status"] = "False".into();
        degraded["conditions"][0]["reason"] = "PrometheusUnreachable".into();
        let (code, text) = verdict(&assessment(degraded, Some(1)), None);
        assert_eq!(code, EXIT_UNKNOWN);
        assert!(text.contains("PrometheusUnreachable"), "{text}");
    }

    #[test]
    fn a_stale_status_is_never_a_green_gate() {
        let fresh = serde_json::json!({
            "level": 3, "capabilities": [], "observedGeneration": 2,
            "heartbeat": "2026-11-25T00:30:00Z",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Evaluated", "message": "level 3", "lastTransitionTime": "2026-11-25T00:00:00Z"}]
        });
        // 30 minutes old: just within the default bound.
        assert_eq!(
            verdict(&assessment(fresh.clone(), Some(2)), None).0,
            EXIT_MET
        );
        // 42 minutes old.
        let mut old = fresh.clone();
        old["heartbeat"] = "2026-11-25T00:18:00Z".into();
        let (code, text) = verdict(&assessment(old.clone(), Some(2)), None);
        assert_eq!(code, EXIT_UNKNOWN, "{text}");
        assert!(text.contains("stale: last evaluated 42 min ago"), "{text}");
        // A larger --max-age accepts it.
        let (code, _) = super::verdict(
            &assessment(old, Some(2)),
            None,
            now(),
            Duration::from_secs(3600),
        );
        assert_eq!(code, EXIT_MET);
        // The spec changed (generation 2) and the status is of generation 1.
        let mut behind = fresh.clone();
        behind["observedGeneration"] = 1.into();
        let (code, text) = verdict(&assessment(behind, Some(2)), None);
        assert_eq!(code, EXIT_UNKNOWN);
        assert!(text.contains("stale: the spec's generation 2 was not evaluated yet (the status is of generation 1)"), "{text}");
        // No heartbeat at all.
        let mut none = fresh;
        none.as_object_mut().unwrap().remove("heartbeat");
        let (code, text) = verdict(&assessment(none, Some(2)), None);
        assert_eq!(code, EXIT_UNKNOWN);
        assert!(
            text.contains("stale: the status has no heartbeat"),
            "{text}"
        );
    }
}

//! MaturityAssessment's metrics: the level, each capability's level, the practices by
//! state, and one series per practice the next level misses; an assessment that is gone
//! loses its series.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use prometheus::IntGaugeVec;

use crate::api::maturity_assessment::{MaturityAssessmentStatus, PracticeState};
use crate::metrics::Metrics;
use crate::model::Capability;

const STATES: [&str; 6] = [
    "met",
    "not_met",
    "unknown",
    "exempt",
    "expired",
    "unverified",
];

type MissingSeries = HashMap<(String, String), Vec<[String; 5]>>;

#[derive(Clone)]
pub struct MaturityMetrics {
    level: IntGaugeVec,
    capability_level: IntGaugeVec,
    practices: IntGaugeVec,
    next_level_missing: IntGaugeVec,
    /// The missing-practice series exported last per assessment, so a practice that is no
    /// longer missing (or an assessment that is gone) loses its series.
    missing_exported: Arc<Mutex<MissingSeries>>,
}

/// The `state` label of a practice state.
fn state_label(s: PracticeState) -> &'static str {
    match s {
        PracticeState::Met => "met",
        PracticeState::NotMet => "not_met",
        PracticeState::Unknown => "unknown",
        PracticeState::Exempt => "exempt",
        PracticeState::Expired => "expired",
        PracticeState::Unverified => "unverified",
    }
}

impl MaturityMetrics {
    pub fn new(m: &Metrics) -> Self {
        Self {
            level: m.int_gauges(
                "maturity_level",
                "Overall maturity level of the assessment's scope (the lowest capability level, 1-5).",
                &["namespace", "assessment"],
            ),
            capability_level: m.int_gauges(
                "maturity_capability_level",
                "Maturity level of one capability (ORG, CX, BIZ, COMM, RESP).",
                &["namespace", "assessment", "capability"],
            ),
            practices: m.int_gauges(
                "maturity_practices",
                "Practices of the model by state (met, not_met, unknown, exempt, expired, unverified).",
                &["namespace", "assessment", "state"],
            ),
            next_level_missing: m.int_gauges(
                "maturity_next_level_missing",
                "1 for each practice the assessment's next level misses (the list in status.nextLevel).",
                &["namespace", "assessment", "level", "capability", "practice"],
            ),
            missing_exported: Default::default(),
        }
    }

    /// The status as metrics.
    pub fn export(&self, ns: &str, name: &str, s: &MaturityAssessmentStatus) {
        self.level
            .with_label_values(&[ns, name])
            .set(s.level.unwrap_or(0) as i64);
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for c in &s.capabilities {
            self.capability_level
                .with_label_values(&[ns, name, &c.id])
                .set(c.level as i64);
            for p in &c.practices {
                *counts.entry(state_label(p.state)).or_default() += 1;
            }
        }
        for state in STATES {
            self.practices
                .with_label_values(&[ns, name, state])
                .set(counts.get(state).copied().unwrap_or(0));
        }
        let missing: Vec<(i32, &str)> = s
            .next_level
            .iter()
            .flat_map(|n| n.missing.iter().map(|p| (n.level, p.practice.as_str())))
            .collect();
        self.set_next_level_missing(ns, name, &missing);
    }

    /// Exports the practices `namespace/assessment`'s next level misses (`(level,
    /// practice id)`; none: the series go), replacing what was exported for it before.
    pub fn set_next_level_missing(
        &self,
        namespace: &str,
        assessment: &str,
        missing: &[(i32, &str)],
    ) {
        let series: Vec<[String; 5]> = missing
            .iter()
            .map(|(level, practice)| {
                let capability = practice.split('-').next().unwrap_or(practice);
                [
                    namespace.to_string(),
                    assessment.to_string(),
                    level.to_string(),
                    capability.to_string(),
                    practice.to_string(),
                ]
            })
            .collect();
        let Ok(mut exported) = self.missing_exported.lock() else {
            return;
        };
        let key = (namespace.to_string(), assessment.to_string());
        for old in exported.remove(&key).unwrap_or_default() {
            if !series.contains(&old) {
                let labels: Vec<&str> = old.iter().map(String::as_str).collect();
                let _ = self.next_level_missing.remove_label_values(&labels);
            }
        }
        for s in &series {
            let labels: Vec<&str> = s.iter().map(String::as_str).collect();
            self.next_level_missing.with_label_values(&labels).set(1);
        }
        if !series.is_empty() {
            exported.insert(key, series);
        }
    }

    /// Removes every series of an assessment that is gone.
    pub fn forget(&self, namespace: &str, assessment: &str) {
        let _ = self.level.remove_label_values(&[namespace, assessment]);
        for c in Capability::ALL {
            let _ = self
                .capability_level
                .remove_label_values(&[namespace, assessment, c.id()]);
        }
        for state in STATES {
            let _ = self
                .practices
                .remove_label_values(&[namespace, assessment, state]);
        }
        self.set_next_level_missing(namespace, assessment, &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(m: &Metrics, prefix: &str) -> Vec<String> {
        m.render()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(String::from)
            .collect()
    }

    #[test]
    fn missing_practices_are_replaced_and_forgotten() {
        let m = Metrics::new();
        let mm = MaturityMetrics::new(&m);
        mm.set_next_level_missing("shop", "payments", &[(2, "ORG-2.1"), (2, "RESP-2.3")]);
        mm.set_next_level_missing("shop", "other", &[(3, "CX-3.1")]);
        let got = lines(&m, "maturity_next_level_missing{");
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.contains(&"maturity_next_level_missing{assessment=\"payments\",capability=\"ORG\",level=\"2\",namespace=\"shop\",practice=\"ORG-2.1\"} 1".to_string()), "{got:?}");
        // ORG-2.1 is met now: its series goes, the other assessment's stays.
        mm.set_next_level_missing("shop", "payments", &[(2, "RESP-2.3")]);
        let got = lines(&m, "maturity_next_level_missing{");
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(!got.iter().any(|l| l.contains("ORG-2.1")), "{got:?}");
        mm.level.with_label_values(&["shop", "payments"]).set(1);
        mm.capability_level
            .with_label_values(&["shop", "payments", "ORG"])
            .set(1);
        mm.forget("shop", "payments");
        assert!(
            lines(&m, "maturity_")
                .iter()
                .all(|l| !l.contains("\"payments\""))
        );
        assert_eq!(lines(&m, "maturity_next_level_missing{").len(), 1);
    }
}

//! Weekly and monthly perception / operations reports (CX-3.4, COMM-3.2): the level and
//! its change, SLO attainment and budgets, canaries, drills, complaint and satisfaction
//! figures, the demand forecast, and recommendations in business language (RESP-3.3).
//! Pure: the controller gathers the figures and stores the result in a ConfigMap.

use serde::Serialize;

use super::{level_name, practice};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Weekly,
    Monthly,
}

impl Period {
    pub fn key(self) -> &'static str {
        match self {
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
    }

    /// Days between two reports.
    pub fn days(self) -> i64 {
        match self {
            Period::Weekly => 7,
            Period::Monthly => 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetFigures {
    pub name: String,
    pub attainment_percent: Option<f64>,
    pub objective_percent: f64,
    pub error_budget_remaining: Option<f64>,
    pub objective_met: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillFigures {
    pub name: String,
    pub passed: u32,
    pub failed: u32,
    pub aborted: u32,
    pub last_recovery_seconds: Option<f64>,
}

/// Everything a report says, as JSON (`<period>.json`); the Markdown renders it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub assessment: String,
    pub namespace: String,
    pub period: Period,
    pub generated_at: String,
    pub level: i32,
    /// The level of the previous report of this period, if any.
    pub previous_level: Option<i32>,
    /// Satisfaction and complaints (all categories) in the previous report: the trend.
    pub previous_satisfaction: Option<f64>,
    pub previous_complaints: Option<f64>,
    /// (capability, level)
    pub capabilities: Vec<(String, i32)>,
    pub targets: Vec<TargetFigures>,
    pub canary_analyzed: u32,
    pub canary_promoted: u32,
    pub canary_rolled_back: u32,
    pub drills: Vec<DrillFigures>,
    pub satisfaction: Option<f64>,
    /// (category, complaints in the last day)
    pub complaints: Vec<(String, f64)>,
    /// (forecast, capacity)
    pub demand: Option<(f64, f64)>,
    pub recommendations: Vec<String>,
    /// The period, not a snapshot: the level at its start, end and lowest, practices gained
    /// and lost, and what expires in the next period.
    pub history: super::history::PeriodHistory,
    /// Every exemption of the spec: who asked, who approved, until when, and its state.
    pub exemptions: Vec<ExemptionLine>,
}

/// An exemption as a report shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExemptionLine {
    pub practice: String,
    pub requested_by: Option<String>,
    pub approved_by: Option<String>,
    pub until: String,
    /// Exempt, Unverified (not recorded or not approved) or Expired.
    pub state: String,
}

/// Recommendations in business language from what the next level misses.
pub fn recommendations(next: Option<&crate::api::maturity_assessment::NextLevel>) -> Vec<String> {
    let Some(next) = next else {
        return vec!["Every practice of the model is in place: keep the reviews current so attestations do not expire.".into()];
    };
    next.missing
        .iter()
        .take(8)
        .map(|m| {
            let title = practice(&m.practice).map(|p| p.title).unwrap_or("");
            format!("To reach level {}: {} ({}).", next.level, title, m.practice)
        })
        .collect()
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "n/a".into())
}

/// " (previous report x, up)" when there is a previous value.
fn trend(now: Option<f64>, before: Option<f64>, digits: usize) -> String {
    match (now, before) {
        (Some(n), Some(b)) => {
            let dir = if n > b {
                "up"
            } else if n < b {
                "down"
            } else {
                "unchanged"
            };
            format!(" (previous report {b:.digits$}, {dir})")
        }
        _ => String::new(),
    }
}

impl Report {
    fn history_markdown(&self) -> String {
        let h = &self.history;
        let start = h
            .start_level
            .map(|l| l.to_string())
            .unwrap_or_else(|| "not recorded".into());
        let mut out = format!(
            "\n## The period ({} to {})\n\nLevel at the start {start}, at the end {}, lowest {}.\n",
            h.from, h.to, h.end_level, h.lowest_level
        );
        for (title, list) in [("Gained", &h.gained), ("Lost", &h.lost)] {
            if list.is_empty() {
                out.push_str(&format!("{title}: none.\n"));
                continue;
            }
            out.push_str(&format!("{title}:\n"));
            for m in list {
                out.push_str(&format!("- {} {}: {}\n", m.on, m.practice, m.detail));
            }
        }
        if h.expiring.is_empty() {
            out.push_str("Nothing attested or exempted ends in the next period.\n");
        } else {
            out.push_str("Ending in the next period (review or ask again):\n");
            for e in &h.expiring {
                out.push_str(&format!("- {} {} ends {}\n", e.practice, e.what, e.on));
            }
        }
        out
    }

    /// Complaints of every category together.
    pub fn complaints_total(&self) -> f64 {
        self.complaints.iter().map(|(_, n)| n).sum()
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "# {} operations report: {}/{}\n\nGenerated {}.\n\n## Level\n\n",
            match self.period {
                Period::Weekly => "Weekly",
                Period::Monthly => "Monthly",
            },
            self.namespace,
            self.assessment,
            self.generated_at
        );
        let change = match self.previous_level {
            Some(p) if p < self.level => format!(" (up from {p})"),
            Some(p) if p > self.level => format!(" (down from {p})"),
            Some(_) => " (unchanged)".into(),
            None => String::new(),
        };
        out.push_str(&format!(
            "Level **{}** ({}){change}.\n\n| capability | level |\n|---|---|\n",
            self.level,
            level_name(self.level.clamp(1, 5) as u8)
        ));
        for (c, l) in &self.capabilities {
            out.push_str(&format!("| {c} | {l} |\n"));
        }
        out.push_str(&self.history_markdown());
        if !self.exemptions.is_empty() {
            out.push_str("\n## Exemptions\n\n| practice | requested by | approved by | until | state |\n|---|---|---|---|---|\n");
            for e in &self.exemptions {
                let who = |w: &Option<String>| w.clone().unwrap_or_else(|| "-".into());
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    e.practice,
                    who(&e.requested_by),
                    who(&e.approved_by),
                    e.until,
                    e.state
                ));
            }
        }
        out.push_str("\n## Service levels\n\n");
        if self.targets.is_empty() {
            out.push_str("No response-time targets are declared.\n");
        } else {
            out.push_str("| target | attainment % | objective % | budget left | met |\n|---|---|---|---|---|\n");
            for t in &self.targets {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    t.name,
                    fmt_opt(t.attainment_percent, 3),
                    t.objective_percent,
                    fmt_opt(t.error_budget_remaining, 2),
                    match t.objective_met {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "unknown",
                    }
                ));
            }
        }
        out.push_str(&format!(
            "\n## Releases\n\n{} rollouts analysed by canary, {} promoted, {} rolled back before reaching all users.\n",
            self.canary_analyzed, self.canary_promoted, self.canary_rolled_back
        ));
        out.push_str("\n## Drills\n\n");
        if self.drills.is_empty() {
            out.push_str("No drills are scheduled.\n");
        } else {
            for d in &self.drills {
                out.push_str(&format!(
                    "- {}: {} passed, {} failed, {} aborted; last recovery {} s\n",
                    d.name,
                    d.passed,
                    d.failed,
                    d.aborted,
                    fmt_opt(d.last_recovery_seconds, 2)
                ));
            }
        }
        out.push_str("\n## Customers\n\n");
        out.push_str(&format!(
            "Satisfaction: {}{}.\n",
            fmt_opt(self.satisfaction, 2),
            trend(self.satisfaction, self.previous_satisfaction, 2)
        ));
        if self.complaints.is_empty() {
            out.push_str("Complaints: none recorded by category.\n");
        } else {
            out.push_str("Complaints in the last day by category:");
            for (c, n) in &self.complaints {
                out.push_str(&format!(" {c} {n:.0};"));
            }
            out.push_str(&format!(
                " in all {:.0}{}.\n",
                self.complaints_total(),
                trend(Some(self.complaints_total()), self.previous_complaints, 0)
            ));
        }
        match self.demand {
            Some((f, c)) => out.push_str(&format!(
                "Demand forecast {f:.2} against capacity {c:.2}.\n"
            )),
            None => out.push_str("No demand forecast is declared.\n"),
        }
        out.push_str("\n## Recommendations\n\n");
        for r in &self.recommendations {
            out.push_str(&format!("- {r}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::maturity_assessment::{MissingPractice, NextLevel};

    #[test]
    fn a_report_shows_the_figures_and_speaks_business() {
        let next = NextLevel {
            level: 3,
            missing: vec![MissingPractice {
                practice: "ORG-3.1".into(),
                why: "NotMet: 0 of 2 workloads with a contact".into(),
            }],
        };
        let r = Report {
            assessment: "payments".into(),
            namespace: "shop".into(),
            period: Period::Weekly,
            generated_at: "2026-11-25T00:00:00Z".into(),
            level: 2,
            previous_level: Some(1),
            previous_satisfaction: Some(4.5),
            previous_complaints: Some(5.0),
            capabilities: vec![("ORG".into(), 2)],
            targets: vec![TargetFigures {
                name: "pay".into(),
                attainment_percent: Some(99.95),
                objective_percent: 99.9,
                error_budget_remaining: Some(0.5),
                objective_met: Some(true),
            }],
            canary_analyzed: 3,
            canary_promoted: 2,
            canary_rolled_back: 1,
            drills: vec![],
            satisfaction: Some(4.6),
            complaints: vec![("billing".into(), 3.0)],
            demand: None,
            recommendations: recommendations(Some(&next)),
            history: super::super::history::PeriodHistory {
                from: "2026-11-18T00:00:00Z".into(),
                to: "2026-11-25T00:00:00Z".into(),
                start_level: Some(1),
                end_level: 2,
                lowest_level: 1,
                gained: vec![super::super::history::Moved {
                    on: "2026-11-20".into(),
                    practice: "ORG-2.1".into(),
                    detail: "2 of 2 workloads with an owner label".into(),
                }],
                lost: vec![],
                expiring: vec![super::super::history::Expiring {
                    practice: "ORG-2.3".into(),
                    what: "attestation".into(),
                    on: "2026-11-30".into(),
                }],
            },
            exemptions: vec![ExemptionLine {
                practice: "COMM-5.2".into(),
                requested_by: Some("alice".into()),
                approved_by: Some("bob".into()),
                until: "2027-01-01".into(),
                state: "Exempt".into(),
            }],
        };
        let md = r.markdown();
        for want in [
            "## The period (2026-11-18T00:00:00Z to 2026-11-25T00:00:00Z)",
            "Level at the start 1, at the end 2, lowest 1.",
            "- 2026-11-20 ORG-2.1: 2 of 2 workloads with an owner label",
            "Lost: none.",
            "- ORG-2.3 attestation ends 2026-11-30",
            "| COMM-5.2 | alice | bob | 2027-01-01 | Exempt |",
            "Level **2** (Managed) (up from 1)",
            "| pay | 99.950 | 99.9 | 0.50 | yes |",
            "3 rollouts analysed",
            "Satisfaction: 4.60 (previous report 4.50, up)",
            "billing 3; in all 3 (previous report 5, down)",
            "To reach level 3: A fixed interface person",
        ] {
            assert!(md.contains(want), "{want} missing from\n{md}");
        }
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["level"], 2);
        assert_eq!(json["period"], "weekly");
    }
}

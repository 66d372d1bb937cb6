//! The level's history: every change of the level or of the practices that count, kept in
//! the assessment's status (the last [`MAX_CHANGES`]), and what one report period saw of it:
//! the level at its start and end, the lowest, the practices gained and lost with their
//! date and evidence, and what expires in the next period. Pure.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;

use super::evaluate::{attestation_expiry, exemption_end};
use crate::api::maturity_assessment::{
    LevelChange, MaturityAssessmentSpec, MaturityAssessmentStatus, PracticeChange, PracticeState,
};
use crate::attest::Verified;

/// Changes kept in status: a year of weekly changes and more.
pub const MAX_CHANGES: usize = 60;
/// A practice's detail is kept this long at most in a change.
pub const DETAIL_CHARS: usize = 160;

/// The practices that count (Met or Exempt), with their detail.
fn counting(s: &MaturityAssessmentStatus) -> BTreeMap<String, String> {
    s.capabilities
        .iter()
        .flat_map(|c| &c.practices)
        .filter(|p| matches!(p.state, PracticeState::Met | PracticeState::Exempt))
        .map(|p| (p.id.clone(), p.detail.clone().unwrap_or_default()))
        .collect()
}

fn short(s: &str) -> String {
    match s.char_indices().nth(DETAIL_CHARS) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Appends to `new.changes` what changed since `old`: the level, or the practices that
/// count. Nothing when neither changed, so an idle assessment writes nothing.
pub fn record(old: &MaturityAssessmentStatus, new: &mut MaturityAssessmentStatus, now: Timestamp) {
    let (before, after) = (counting(old), counting(new));
    if old.level == new.level && before.keys().eq(after.keys()) {
        return;
    }
    let states: BTreeMap<&str, String> = new
        .capabilities
        .iter()
        .flat_map(|c| &c.practices)
        .map(|p| {
            (
                p.id.as_str(),
                format!("{:?}: {}", p.state, p.detail.as_deref().unwrap_or("")),
            )
        })
        .collect();
    let change = LevelChange {
        at: Time(now),
        level: new.level.unwrap_or(1),
        gained: after
            .iter()
            .filter(|(id, _)| !before.contains_key(*id))
            .map(|(id, detail)| PracticeChange {
                practice: id.clone(),
                detail: short(detail),
            })
            .collect(),
        lost: before
            .keys()
            .filter(|id| !after.contains_key(*id))
            .map(|id| PracticeChange {
                practice: id.clone(),
                detail: short(states.get(id.as_str()).map(String::as_str).unwrap_or("")),
            })
            .collect(),
    };
    new.changes.push(change);
    let extra = new.changes.len().saturating_sub(MAX_CHANGES);
    new.changes.drain(..extra);
}

/// A practice gained or lost in a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Moved {
    pub on: String,
    pub practice: String,
    pub detail: String,
}

/// An attestation or exemption that ends in the next period.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Expiring {
    pub practice: String,
    /// `attestation` or `exemption`.
    pub what: String,
    pub on: String,
}

/// What a report period saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeriodHistory {
    pub from: String,
    pub to: String,
    /// The level when the period began (None: no history that old).
    pub start_level: Option<i32>,
    pub end_level: i32,
    pub lowest_level: i32,
    pub gained: Vec<Moved>,
    pub lost: Vec<Moved>,
    /// Attestations and exemptions that end within the next period.
    pub expiring: Vec<Expiring>,
}

/// The period `(from, to]` of `changes`, ending at `level`; `expiring` from `spec`'s
/// recorded entries ending within `next_days` after `to`.
pub fn period(
    changes: &[LevelChange],
    (from, to): (Timestamp, Timestamp),
    level: i32,
    (spec, verified): (&MaturityAssessmentSpec, &Verified),
    next_days: i64,
) -> PeriodHistory {
    let start_level = changes.iter().rfind(|c| c.at.0 <= from).map(|c| c.level);
    let within: Vec<&LevelChange> = changes
        .iter()
        .filter(|c| c.at.0 > from && c.at.0 <= to)
        .collect();
    let lowest = within
        .iter()
        .map(|c| c.level)
        .chain(start_level)
        .chain([level])
        .min()
        .unwrap_or(level);
    let moved = |pick: fn(&LevelChange) -> &Vec<PracticeChange>| -> Vec<Moved> {
        within
            .iter()
            .flat_map(|c| {
                pick(c).iter().map(|p| Moved {
                    on: crate::clock::utc_date(c.at.0).to_string(),
                    practice: p.practice.clone(),
                    detail: p.detail.clone(),
                })
            })
            .collect()
    };
    PeriodHistory {
        from: from.to_string(),
        to: to.to_string(),
        start_level,
        end_level: level,
        lowest_level: lowest,
        gained: moved(|c| &c.gained),
        lost: moved(|c| &c.lost),
        expiring: expiring(spec, verified, crate::clock::utc_date(to), next_days),
    }
}

/// Recorded attestations and approved exemptions that end in `[today, today + days]`.
pub fn expiring(
    spec: &MaturityAssessmentSpec,
    verified: &Verified,
    today: Date,
    days: i64,
) -> Vec<Expiring> {
    let last = crate::clock::add_days(today, days);
    let soon = |d: Date| d >= today && d <= last;
    let mut out: Vec<Expiring> = spec
        .attestations
        .iter()
        .filter(|a| verified.attestations.contains(&a.practice))
        .filter_map(|a| {
            let (_, end) = attestation_expiry(super::practice(&a.practice)?, a).ok()?;
            soon(end).then(|| Expiring {
                practice: a.practice.clone(),
                what: "attestation".into(),
                on: end.to_string(),
            })
        })
        .collect();
    out.extend(
        spec.exemptions
            .iter()
            .filter(|e| verified.exemptions.contains(&e.practice) && e.approved_by.is_some())
            .filter_map(|e| {
                let end = exemption_end(e)?;
                soon(end).then(|| Expiring {
                    practice: e.practice.clone(),
                    what: "exemption".into(),
                    on: end.to_string(),
                })
            }),
    );
    out.sort_by(|a, b| (&a.on, &a.practice).cmp(&(&b.on, &b.practice)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::maturity_assessment::{CapabilityStatus, EvidenceKind, PracticeStatus};
    use crate::testing::{AssessmentBuilder, ts};

    fn status(level: i32, met: &[&str]) -> MaturityAssessmentStatus {
        let practices = ["ORG-2.1", "ORG-2.2"]
            .iter()
            .map(|id| PracticeStatus {
                id: id.to_string(),
                state: if met.contains(id) {
                    PracticeState::Met
                } else {
                    PracticeState::NotMet
                },
                evidence: EvidenceKind::Measured,
                detail: Some(format!("{id} detail")),
            })
            .collect();
        MaturityAssessmentStatus {
            level: Some(level),
            capabilities: vec![CapabilityStatus {
                id: "ORG".into(),
                level,
                practices,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_change_of_the_level_or_of_what_counts_is_recorded_and_nothing_else() {
        let t = ts("2026-11-20T10:00:00Z");
        let mut same = status(1, &[]);
        record(&status(1, &[]), &mut same, t);
        assert!(same.changes.is_empty(), "nothing changed: nothing recorded");
        let mut up = status(2, &["ORG-2.1"]);
        record(&status(1, &[]), &mut up, t);
        assert_eq!(up.changes.len(), 1);
        let c = &up.changes[0];
        assert_eq!((c.level, c.at.0), (2, t));
        assert_eq!(
            c.gained,
            vec![PracticeChange {
                practice: "ORG-2.1".into(),
                detail: "ORG-2.1 detail".into()
            }]
        );
        assert!(c.lost.is_empty());
        let mut down = status(1, &[]);
        down.changes = up.changes.clone();
        record(&up, &mut down, ts("2026-11-21T10:00:00Z"));
        assert_eq!(down.changes.len(), 2);
        assert_eq!(
            down.changes[1].lost,
            vec![PracticeChange {
                practice: "ORG-2.1".into(),
                detail: "NotMet: ORG-2.1 detail".into()
            }]
        );
        // At most MAX_CHANGES are kept, the oldest go first.
        let mut many = status(1, &[]);
        for i in 0..(MAX_CHANGES + 5) {
            let (old, mut new) = if i % 2 == 0 {
                (status(1, &[]), status(2, &["ORG-2.1"]))
            } else {
                (status(2, &["ORG-2.1"]), status(1, &[]))
            };
            new.changes = many.changes.clone();
            record(&old, &mut new, ts("2026-11-20T10:00:00Z"));
            many = new;
        }
        assert_eq!(many.changes.len(), MAX_CHANGES);
    }

    #[test]
    fn a_period_has_its_start_end_lowest_gains_losses_and_what_ends_next() {
        let change = |at: &str, level: i32, gained: &[&str], lost: &[&str]| LevelChange {
            at: Time(ts(at)),
            level,
            gained: gained
                .iter()
                .map(|p| PracticeChange {
                    practice: p.to_string(),
                    detail: "e".into(),
                })
                .collect(),
            lost: lost
                .iter()
                .map(|p| PracticeChange {
                    practice: p.to_string(),
                    detail: "why".into(),
                })
                .collect(),
        };
        let changes = vec![
            change("2026-11-10T00:00:00Z", 1, &[], &[]),
            change("2026-11-19T00:00:00Z", 2, &["ORG-2.1"], &[]),
            change("2026-11-21T00:00:00Z", 1, &[], &["ORG-2.1"]),
            change("2026-11-23T00:00:00Z", 2, &["ORG-2.1"], &[]),
        ];
        // Attested 2026-09-01, reviewed by default every 90 days: ends 2026-11-30
        // (Sep 29 + Oct 31 + Nov 30 = 90). Exempt until 2026-12-01. Both within the next 7
        // days of 2026-11-25 (to 2026-12-02); an unrecorded attestation is not listed.
        let a = AssessmentBuilder::new("a")
            .attest("ORG-2.3", "2026-09-01")
            .attest("ORG-2.4", "2026-09-01")
            .exempt("COMM-5.2")
            .build();
        let mut spec = a.spec.clone();
        spec.exemptions[0].until = crate::api::common::DateString::new("2026-12-01");
        let verified = Verified {
            attestations: ["ORG-2.3".to_string()].into(),
            exemptions: ["COMM-5.2".to_string()].into(),
        };
        let h = period(
            &changes,
            (ts("2026-11-18T00:00:00Z"), ts("2026-11-25T00:00:00Z")),
            2,
            (&spec, &verified),
            7,
        );
        assert_eq!(
            (h.start_level, h.end_level, h.lowest_level),
            (Some(1), 2, 1)
        );
        let days = |m: &[Moved]| {
            m.iter()
                .map(|m| (m.on.clone(), m.practice.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            days(&h.gained),
            vec![
                ("2026-11-19".into(), "ORG-2.1".into()),
                ("2026-11-23".into(), "ORG-2.1".into())
            ]
        );
        assert_eq!(days(&h.lost), vec![("2026-11-21".into(), "ORG-2.1".into())]);
        assert_eq!(
            h.expiring,
            vec![
                Expiring {
                    practice: "ORG-2.3".into(),
                    what: "attestation".into(),
                    on: "2026-11-30".into()
                },
                Expiring {
                    practice: "COMM-5.2".into(),
                    what: "exemption".into(),
                    on: "2026-12-01".into()
                },
            ]
        );
        // A period before any history: no start level.
        let h = period(
            &changes,
            (ts("2026-11-01T00:00:00Z"), ts("2026-11-08T00:00:00Z")),
            1,
            (&spec, &verified),
            7,
        );
        assert_eq!((h.start_level, h.lowest_level), (None, 1));
    }
}

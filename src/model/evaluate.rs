//! From evidence to a level, without a cluster: each practice's state from what was
//! measured, attested or exempted; a capability's level is the highest L such that every
//! practice at levels 2..L is Met or Exempt; the overall level is the lowest capability
//! level; and what the next level is missing.

use std::collections::BTreeMap;

use jiff::civil::Date;

use super::{Capability, Evidence, PRACTICES, Practice};
use crate::api::maturity_assessment::{
    Attestation, CapabilityStatus, EvidenceKind, Exemption, MissingPractice, NextLevel,
    PracticeState, PracticeStatus,
};

/// Review period of an attestation that sets none.
pub const DEFAULT_REVIEW_DAYS: i64 = 90;

/// What a measured signal decided for a practice.
#[derive(Debug, Clone, PartialEq)]
pub enum Measurement {
    Met(String),
    NotMet(String),
    /// The signal could not be read (e.g. Prometheus unreachable); never counts as Met.
    Unknown(String),
    /// Nothing the signal measures is in scope (no object of the kind it reads): no data
    /// either way, so a current recorded attestation counts; without one, NotMet.
    Absent(String),
}

fn date(s: &str) -> Option<Date> {
    s.parse().ok()
}

/// The longest `reviewEvery` the API takes (two years); the practice's maximum validity
/// ([`Practice::max_validity_days`]) bounds how long an attestation counts.
pub const MAX_REVIEW_DAYS: u64 = 730;

/// `reviewEvery` in whole days (the default when unset), or why it cannot be used.
fn review_days(r: Option<&crate::api::common::DurationString>) -> Result<i64, String> {
    let Some(r) = r else {
        return Ok(DEFAULT_REVIEW_DAYS);
    };
    let d = r
        .parse()
        .map_err(|e| format!("reviewEvery {:?}: {e}", r.as_str()))?;
    let days = d.as_secs() / 86_400;
    if days > MAX_REVIEW_DAYS {
        return Err(format!(
            "reviewEvery {} is longer than {MAX_REVIEW_DAYS}d (two years)",
            r.as_str()
        ));
    }
    Ok(days as i64)
}

/// An attestation or exemption of the spec, and whether the operator's webhook recorded
/// it as it is ([`crate::attest::verify`]).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a, T> {
    pub entry: &'a T,
    pub recorded: bool,
}

/// An attestation's date and the last day it counts: `reviewEvery` (default 90 days) after
/// it, at most the practice's maximum validity; or why it has none.
pub fn attestation_expiry(p: &Practice, a: &Attestation) -> Result<(Date, Date), String> {
    let review = review_days(a.review_every.as_ref())?.min(p.max_validity_days());
    let at = date(a.attested_at.as_str())
        .ok_or_else(|| format!("its date {:?} is not a date", a.attested_at.as_str()))?;
    Ok((at, crate::clock::add_days(at, review)))
}

/// The last day an exemption holds: its `until`, at most 180 days after its request (the
/// webhook refuses a longer one; an older record is held to the same bound).
pub fn exemption_end(e: &Exemption) -> Option<Date> {
    let until = date(e.until.as_str())?;
    let asked = e.requested_on.as_ref().and_then(|d| date(d.as_str()))?;
    Some(until.min(crate::clock::add_days(
        asked,
        crate::attest::MAX_EXEMPTION_DAYS,
    )))
}

/// The sentence of an entry the webhook did not record.
fn not_recorded(what: &str, id: &str) -> String {
    format!(
        "the {what} of {id} was not recorded by the operator's admission webhook (it was bypassed or down, or the entry was changed by hand since): it does not count; apply the entry again while the operator runs"
    )
}

/// Why a lapsed claim does not count: Expired or Unverified, with the sentence.
type Lapsed = Option<(PracticeState, String)>;

/// An exemption's state: Exempt (with the sentence), or why it does not count.
fn exemption_state(
    id: &str,
    claim: Claim<Exemption>,
    today: Date,
) -> Result<String, (PracticeState, String)> {
    let e = claim.entry;
    if !claim.recorded {
        return Err((PracticeState::Unverified, not_recorded("exemption", id)));
    }
    let requester = e.requested_by.as_deref().unwrap_or("nobody");
    let asked = e.requested_on.as_ref().and_then(|d| date(d.as_str()));
    let Some(approver) = e.approved_by.as_deref() else {
        return Err((
            PracticeState::Unverified,
            format!(
                "the exemption of {id} was requested by {requester} and is not approved yet: a user other than {requester} who may approve exemptions sets approved: true"
            ),
        ));
    };
    let (Some(until), Some(asked)) = (exemption_end(e), asked) else {
        return Err((
            PracticeState::Expired,
            format!("the exemption's date {:?} is not a date", e.until.as_str()),
        ));
    };
    if until < today {
        return Err((
            PracticeState::Expired,
            format!("the exemption lapsed on {until}"),
        ));
    }
    let on = e
        .approved_on
        .as_ref()
        .map(|d| format!(" on {}", d.as_str()))
        .unwrap_or_default();
    Ok(format!(
        "exempt until {until} (requested by {requester} on {asked}, approved by {approver}{on}): {}",
        e.reason
    ))
}

/// An attestation's state: Met (with the sentence), or why it does not count.
fn attestation_state(
    p: &Practice,
    claim: Claim<Attestation>,
    today: Date,
) -> Result<String, (PracticeState, String)> {
    let a = claim.entry;
    if !claim.recorded {
        return Err((PracticeState::Unverified, not_recorded("attestation", p.id)));
    }
    let by = a.by.as_deref().unwrap_or("nobody");
    let expired = |why: String| Err((PracticeState::Expired, why));
    let (at, expires) = match attestation_expiry(p, a) {
        Ok(x) => x,
        Err(why) => return expired(format!("the attestation by {by} does not count: {why}")),
    };
    if at > crate::clock::add_days(today, crate::attest::CLOCK_SKEW_DAYS) {
        return Err((
            PracticeState::Unverified,
            format!("the attestation by {by} is dated {at}, in the future: it does not count"),
        ));
    }
    if expires < today {
        return expired(format!(
            "attested by {by} on {at}, review due {expires} has passed"
        ));
    }
    Ok(format!(
        "attested by {by} on {at} (review by {expires}): {}",
        a.evidence
    ))
}

/// The state of one practice on `today`.
///
/// Order of precedence: a running, recorded and approved exemption; a measurement that
/// decided from real data (Met or NotMet: a measured NotMet is not overridden by an
/// attestation); a current recorded attestation (it also beats a measurement that found
/// nothing to measure, [`Measurement::Absent`]); then Expired or Unverified (a lapsed or
/// unrecorded attestation or exemption and nothing else), Unknown (the signal could not be
/// read) or NotMet.
pub fn practice_state(
    p: &Practice,
    measured: Option<&Measurement>,
    attestation: Option<Claim<Attestation>>,
    exemption: Option<Claim<Exemption>>,
    today: Date,
) -> PracticeStatus {
    let status = |state, evidence, detail: String| PracticeStatus {
        id: p.id.to_string(),
        state,
        evidence,
        detail: Some(detail),
    };
    let mut lapsed: Lapsed = None;
    if let Some(e) = exemption {
        match exemption_state(p.id, e, today) {
            Ok(why) => return status(PracticeState::Exempt, EvidenceKind::Exempted, why),
            Err(why) => lapsed = Some(why),
        }
    }
    match measured {
        Some(Measurement::Met(why)) => {
            return status(PracticeState::Met, EvidenceKind::Measured, why.clone());
        }
        Some(Measurement::NotMet(why)) => {
            return status(PracticeState::NotMet, EvidenceKind::Measured, why.clone());
        }
        _ => {}
    }
    if let Some(a) = attestation {
        match attestation_state(p, a, today) {
            Ok(why) => return status(PracticeState::Met, EvidenceKind::Attested, why),
            Err(why) => lapsed = Some(why),
        }
    }
    if let Some((state, why)) = lapsed {
        return status(state, EvidenceKind::None, why);
    }
    match measured {
        Some(Measurement::Unknown(why)) => {
            status(PracticeState::Unknown, EvidenceKind::None, why.clone())
        }
        Some(Measurement::Absent(why)) => status(
            PracticeState::NotMet,
            EvidenceKind::Measured,
            format!("{why}; not attested"),
        ),
        _ => {
            let why = match p.evidence {
                Evidence::Attested => "not attested".to_string(),
                _ if measured.is_none() => format!(
                    "no measurement of this signal yet ({}); not attested",
                    p.signal
                ),
                _ => "not attested".to_string(),
            };
            status(PracticeState::NotMet, EvidenceKind::None, why)
        }
    }
}

fn counts(s: PracticeState) -> bool {
    matches!(s, PracticeState::Met | PracticeState::Exempt)
}

/// The highest L such that every practice of `capability` at levels 2..=L counts (Met or
/// Exempt); 1 when a level-2 practice does not.
pub fn capability_level(capability: Capability, states: &BTreeMap<&str, PracticeState>) -> u8 {
    let mut level = 1;
    for l in 2..=5u8 {
        let all = PRACTICES
            .iter()
            .filter(|p| p.capability == capability && p.level == l)
            .all(|p| states.get(p.id).copied().is_some_and(counts));
        if !all {
            break;
        }
        level = l;
    }
    level
}

/// Status of every capability, the overall level (the lowest), and what the next level is
/// missing: the practices at or below it, in capabilities below it, that do not count yet.
pub fn assess(practices: &[PracticeStatus]) -> (u8, Vec<CapabilityStatus>, Option<NextLevel>) {
    let states: BTreeMap<&str, PracticeState> =
        practices.iter().map(|p| (p.id.as_str(), p.state)).collect();
    let mut caps = Vec::new();
    let mut overall = 5u8;
    for c in Capability::ALL {
        let level = capability_level(c, &states);
        overall = overall.min(level);
        caps.push(CapabilityStatus {
            id: c.id().to_string(),
            level: level as i32,
            practices: practices
                .iter()
                .filter(|p| p.id.starts_with(&format!("{}-", c.id())))
                .cloned()
                .collect(),
        });
    }
    let next = (overall < 5).then(|| {
        let target = overall + 1;
        let missing = PRACTICES
            .iter()
            .filter(|p| p.level <= target)
            .filter(|p| !states.get(p.id).copied().is_some_and(counts))
            .map(|p| {
                let have = practices.iter().find(|s| s.id == p.id);
                let state = have
                    .map(|s| format!("{:?}", s.state))
                    .unwrap_or_else(|| "NotMet".into());
                let detail = have.and_then(|s| s.detail.clone()).unwrap_or_default();
                let how = match p.evidence {
                    Evidence::Measured => format!("needs: {}", p.signal),
                    Evidence::Attested => "needs an attestation".to_string(),
                    Evidence::Both => format!("needs: {}, or an attestation", p.signal),
                };
                MissingPractice {
                    practice: p.id.to_string(),
                    why: format!("{state}: {detail}; {how}"),
                }
            })
            .collect();
        NextLevel {
            level: target as i32,
            missing,
        }
    });
    (overall, caps, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::{DateString, DurationString};

    fn today() -> Date {
        "2026-11-25".parse().unwrap()
    }

    fn attest(id: &str, at: &str, review: Option<&str>) -> Attestation {
        Attestation {
            practice: id.into(),
            by: Some("lead@example.com".into()),
            evidence: "https://wiki/review".into(),
            attested_at: DateString::new(at),
            review_every: review.map(DurationString::new),
            proof: None,
        }
    }

    /// Requested on 2026-11-01, approved by another user.
    fn exempt(id: &str, until: &str) -> Exemption {
        Exemption {
            practice: id.into(),
            reason: "no customers of that kind".into(),
            until: DateString::new(until),
            approved: Some(true),
            requested_by: Some("alice".into()),
            requested_on: Some(DateString::new("2026-11-01")),
            approved_by: Some("bob".into()),
            approved_on: Some(DateString::new("2026-11-02")),
            proof: None,
        }
    }

    /// An entry as the webhook recorded it.
    fn proven<T>(entry: &T) -> Option<Claim<'_, T>> {
        Some(Claim {
            entry,
            recorded: true,
        })
    }

    fn p(id: &str) -> &'static Practice {
        super::super::practice(id).unwrap()
    }

    #[test]
    fn attestations_expire_and_exemptions_hold_until_their_date() {
        let s = practice_state(
            p("ORG-2.4"),
            None,
            proven(&attest("ORG-2.4", "2026-10-01", None)),
            None,
            today(),
        );
        assert_eq!(
            (s.state, s.evidence),
            (PracticeState::Met, EvidenceKind::Attested)
        );
        let s = practice_state(
            p("ORG-2.4"),
            None,
            proven(&attest("ORG-2.4", "2026-08-01", None)),
            None,
            today(),
        );
        assert_eq!(s.state, PracticeState::Expired, "{:?}", s.detail);
        let s = practice_state(
            p("ORG-2.4"),
            None,
            proven(&attest("ORG-2.4", "2026-11-01", Some("7d"))),
            None,
            today(),
        );
        assert_eq!(s.state, PracticeState::Expired, "a 7-day review period");
        let s = practice_state(
            p("COMM-5.2"),
            None,
            None,
            proven(&exempt("COMM-5.2", "2026-11-25")),
            today(),
        );
        assert_eq!(
            (s.state, s.evidence),
            (PracticeState::Exempt, EvidenceKind::Exempted)
        );
        let s = practice_state(
            p("COMM-5.2"),
            None,
            None,
            proven(&exempt("COMM-5.2", "2026-11-24")),
            today(),
        );
        assert_eq!(s.state, PracticeState::Expired);
        let s = practice_state(p("COMM-5.2"), None, None, None, today());
        assert_eq!(s.state, PracticeState::NotMet);
    }

    #[test]
    fn only_what_the_webhook_recorded_counts_and_within_the_models_bounds() {
        fn unrecorded<T>(entry: &T) -> Option<Claim<'_, T>> {
            Some(Claim {
                entry,
                recorded: false,
            })
        }
        let a = attest("ORG-2.4", "2026-11-20", None);
        let s = practice_state(p("ORG-2.4"), None, unrecorded(&a), None, today());
        assert_eq!(
            (s.state, s.evidence),
            (PracticeState::Unverified, EvidenceKind::None)
        );
        assert!(
            s.detail
                .unwrap()
                .contains("not recorded by the operator's admission webhook")
        );
        let e = exempt("COMM-5.2", "2026-12-31");
        let s = practice_state(p("COMM-5.2"), None, None, unrecorded(&e), today());
        assert_eq!(s.state, PracticeState::Unverified);
        // Recorded but not approved.
        let mut asked = exempt("COMM-5.2", "2026-12-31");
        asked.approved_by = None;
        let s = practice_state(p("COMM-5.2"), None, None, proven(&asked), today());
        assert_eq!(s.state, PracticeState::Unverified);
        assert!(
            s.detail
                .unwrap()
                .contains("requested by alice and is not approved yet")
        );
        // Approved: who asked, who approved, until when.
        let s = practice_state(p("COMM-5.2"), None, None, proven(&e), today());
        assert_eq!(s.state, PracticeState::Exempt);
        assert_eq!(
            s.detail.unwrap(),
            "exempt until 2026-12-31 (requested by alice on 2026-11-01, approved by bob on 2026-11-02): no customers of that kind"
        );
        // Requested 2026-05-01 until 2027-01-01: it counts 180 days from the request, to
        // 2026-10-28 (May 30 + Jun 30 + Jul 31 + Aug 31 + Sep 30 + Oct 28 = 180), lapsed by today.
        let mut old = exempt("COMM-5.2", "2027-01-01");
        old.requested_on = Some(DateString::new("2026-05-01"));
        let s = practice_state(p("COMM-5.2"), None, None, proven(&old), today());
        assert_eq!(
            (s.state, s.detail.as_deref()),
            (
                PracticeState::Expired,
                Some("the exemption lapsed on 2026-10-28")
            )
        );
        // A level-5 practice counts 90 days at most, whatever reviewEvery says: attested
        // 2026-08-20, review 700d, expired on 2026-11-18 (Aug 11 + Sep 30 + Oct 31 + Nov 18 = 90).
        let long = attest("ORG-5.4", "2026-08-20", Some("700d"));
        let s = practice_state(p("ORG-5.4"), None, proven(&long), None, today());
        assert_eq!(s.state, PracticeState::Expired, "{:?}", s.detail);
        assert!(
            s.detail
                .unwrap()
                .contains("review due 2026-11-18 has passed")
        );
        // A level-2 practice with the same dates still counts (180 days: to 2027-02-16).
        let long = attest("ORG-2.4", "2026-08-20", Some("700d"));
        let s = practice_state(p("ORG-2.4"), None, proven(&long), None, today());
        assert_eq!(s.state, PracticeState::Met);
        assert!(s.detail.unwrap().contains("review by 2027-02-16"));
        // Dated after tomorrow: does not count.
        let future = attest("ORG-2.4", "2026-11-27", None);
        let s = practice_state(p("ORG-2.4"), None, proven(&future), None, today());
        assert_eq!(s.state, PracticeState::Unverified);
        let tomorrow = attest("ORG-2.4", "2026-11-26", None);
        let s = practice_state(p("ORG-2.4"), None, proven(&tomorrow), None, today());
        assert_eq!(s.state, PracticeState::Met);
    }

    #[test]
    fn a_measurement_decides_and_unknown_never_counts() {
        let m = Measurement::NotMet("2 of 5 Deployments governed".into());
        let s = practice_state(p("CX-4.3"), Some(&m), None, None, today());
        assert_eq!(
            (s.state, s.evidence),
            (PracticeState::NotMet, EvidenceKind::Measured)
        );
        // an attestation does not override a measured NotMet
        let s = practice_state(
            p("ORG-2.1"),
            Some(&Measurement::NotMet("x".into())),
            proven(&attest("ORG-2.1", "2026-11-01", None)),
            None,
            today(),
        );
        assert_eq!(s.state, PracticeState::NotMet);
        // but fills in when the signal cannot be read
        let s = practice_state(
            p("ORG-2.1"),
            Some(&Measurement::Unknown("Prometheus unreachable".into())),
            proven(&attest("ORG-2.1", "2026-11-01", None)),
            None,
            today(),
        );
        assert_eq!(
            (s.state, s.evidence),
            (PracticeState::Met, EvidenceKind::Attested)
        );
        let s = practice_state(
            p("RESP-4.1"),
            Some(&Measurement::Unknown("Prometheus unreachable".into())),
            None,
            None,
            today(),
        );
        assert_eq!(s.state, PracticeState::Unknown);
        // Nothing of the kind measured in scope: an attestation counts; without one, NotMet
        // with the reason.
        let absent = Measurement::Absent("no CanaryPolicy in scope".into());
        let s = practice_state(
            p("CX-4.3"),
            Some(&absent),
            proven(&attest("CX-4.3", "2026-11-01", None)),
            None,
            today(),
        );
        assert_eq!(
            (s.state, s.evidence),
            (PracticeState::Met, EvidenceKind::Attested)
        );
        let s = practice_state(p("CX-4.3"), Some(&absent), None, None, today());
        assert_eq!(
            (s.state, s.detail.as_deref()),
            (
                PracticeState::NotMet,
                Some("no CanaryPolicy in scope; not attested")
            )
        );
        let mut states = BTreeMap::new();
        for q in PRACTICES
            .iter()
            .filter(|q| q.capability == Capability::Resp)
        {
            states.insert(q.id, PracticeState::Met);
        }
        assert_eq!(capability_level(Capability::Resp, &states), 5);
        states.insert("RESP-4.1", PracticeState::Unknown);
        assert_eq!(capability_level(Capability::Resp, &states), 3);
    }

    /// Every practice of the model through the evaluation: all Met gives 5 everywhere;
    /// taking away any one practice lowers exactly its capability to one below its level,
    /// and nextLevel names it.
    #[test]
    fn every_practice_counts_for_exactly_its_capability_and_level() {
        let all_met: Vec<PracticeStatus> = PRACTICES
            .iter()
            .map(|p| practice_state(p, Some(&Measurement::Met("ok".into())), None, None, today()))
            .collect();
        let (overall, caps, next) = assess(&all_met);
        assert_eq!(overall, 5);
        assert!(caps.iter().all(|c| c.level == 5));
        assert!(next.is_none());
        for (i, p) in PRACTICES.iter().enumerate() {
            let mut one_missing = all_met.clone();
            one_missing[i] = practice_state(
                p,
                Some(&Measurement::NotMet("gone".into())),
                None,
                None,
                today(),
            );
            let (overall, caps, next) = assess(&one_missing);
            let expected = p.level - 1;
            assert_eq!(overall, expected, "{}", p.id);
            for c in &caps {
                let want = if c.id == p.capability.id() {
                    expected as i32
                } else {
                    5
                };
                assert_eq!(c.level, want, "{} lowers {}", p.id, c.id);
            }
            let next = next.expect("a next level");
            assert_eq!(next.level, p.level as i32);
            assert_eq!(next.missing.len(), 1, "{}", p.id);
            assert_eq!(next.missing[0].practice, p.id);
            assert!(
                next.missing[0].why.starts_with("NotMet: gone"),
                "{}",
                next.missing[0].why
            );
        }
    }

    #[test]
    fn nothing_declared_is_level_one_with_level_two_missing() {
        let none: Vec<PracticeStatus> = PRACTICES
            .iter()
            .map(|p| practice_state(p, None, None, None, today()))
            .collect();
        let (overall, caps, next) = assess(&none);
        assert_eq!(overall, 1);
        assert!(caps.iter().all(|c| c.level == 1));
        let next = next.unwrap();
        assert_eq!(next.level, 2);
        let level2 = PRACTICES.iter().filter(|p| p.level == 2).count();
        assert_eq!(next.missing.len(), level2);
    }
}

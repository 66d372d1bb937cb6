//! Who attested a practice and who approved an exemption, recorded by the operator and not
//! typed by the user. Plain values: the admission webhook calls [`record`]; the
//! MaturityAssessment controller calls [`verify`] and the model decides from its answer.
//!
//! On every create and update of a MaturityAssessment the webhook writes, into each new or
//! changed entry, the user the API server authenticated (`attestations[].by`,
//! `exemptions[].requestedBy` / `approvedBy`, a value typed there is overwritten) and a
//! proof: an HMAC-SHA256 under the operator's key over the namespace, the assessment, and
//! the whole entry. An entry written while the webhook was bypassed or down, or changed by
//! hand afterwards, does not match its proof: it is Unverified and does not count.
//!
//! An exemption counts only once approved by another user than the one who requested it,
//! one who may `approve` `maturityassessments/exemptions` in the namespace (the webhook
//! asks a SubjectAccessReview, as Kubernetes does for certificate signing requests).

use std::collections::BTreeSet;

use jiff::civil::Date;
use serde_json::{Value, json};

use crate::api::common::DateString;
use crate::api::maturity_assessment::{Attestation, Exemption, MaturityAssessmentSpec};
use crate::authz::Key;

/// How far in the future an attestation may be dated (clocks and time zones differ).
pub const CLOCK_SKEW_DAYS: i64 = 1;
/// The longest exemption: its `until` is at most this many days after it was requested.
pub const MAX_EXEMPTION_DAYS: i64 = 180;
/// The permission an approver holds: this verb on this subresource of assessments.
pub const APPROVE_VERB: &str = "approve";
pub const APPROVE_RESOURCE: &str = "maturityassessments";
pub const APPROVE_SUBRESOURCE: &str = "exemptions";

/// The message an attestation's proof binds: everything in it, where it is.
fn attestation_message(namespace: &str, name: &str, a: &Attestation) -> Value {
    json!([
        "attestation",
        namespace,
        name,
        a.practice,
        a.by,
        a.evidence,
        a.attested_at.as_str(),
        a.review_every.as_ref().map(|r| r.as_str().to_string()),
    ])
}

/// The message an exemption's proof binds: the request, and the approval when there is one.
fn exemption_message(namespace: &str, name: &str, e: &Exemption) -> Value {
    json!([
        "exemption",
        namespace,
        name,
        e.practice,
        e.reason,
        e.until.as_str(),
        e.requested_by,
        e.requested_on.as_ref().map(|d| d.as_str().to_string()),
        e.approved_by,
        e.approved_on.as_ref().map(|d| d.as_str().to_string()),
    ])
}

/// The practices whose attestations and exemptions carry the webhook's valid proof.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    pub attestations: BTreeSet<String>,
    pub exemptions: BTreeSet<String>,
}

/// Which entries of `spec` the webhook recorded, as they are now (None: no key, so none).
pub fn verify(
    key: Option<&Key>,
    namespace: &str,
    name: &str,
    spec: &MaturityAssessmentSpec,
) -> Verified {
    let Some(key) = key else {
        return Verified::default();
    };
    let proven = |message: Value, proof: &Option<String>| {
        proof.as_deref().is_some_and(|p| key.verifies(&message, p))
    };
    Verified {
        attestations: spec
            .attestations
            .iter()
            .filter(|a| proven(attestation_message(namespace, name, a), &a.proof))
            .map(|a| a.practice.clone())
            .collect(),
        exemptions: spec
            .exemptions
            .iter()
            .filter(|e| proven(exemption_message(namespace, name, e), &e.proof))
            .map(|e| e.practice.clone())
            .collect(),
    }
}

/// What the webhook does to an admitted assessment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recording {
    /// JSON Patch operations that write the recorded identities and proofs.
    pub ops: Vec<Value>,
    /// Practices whose exemption the requesting user approves in this change: admitted only
    /// when the user may approve (a SubjectAccessReview).
    pub approvals: Vec<String>,
}

/// The user of an admission request, as the API server authenticated them.
#[derive(Debug, Clone, Copy)]
pub struct Recorder<'a> {
    pub key: &'a Key,
    pub namespace: &'a str,
    pub name: &'a str,
    pub user: &'a str,
    pub today: Date,
}

/// The recording of `new` (an update of `old`, or a create), or why it is refused (a
/// sentence). Only new or changed entries are recorded; an entry as it was is left as it
/// was, proven or not, so the operator's own changes (finalizers) never record anything.
pub fn record(
    r: &Recorder,
    old: Option<&MaturityAssessmentSpec>,
    new: &MaturityAssessmentSpec,
) -> Result<Recording, String> {
    let mut out = Recording::default();
    for (i, a) in new.attestations.iter().enumerate() {
        if old.is_some_and(|o| o.attestations.contains(a)) {
            continue;
        }
        admissible_attestation(a, r.today)?;
        let mut recorded = a.clone();
        recorded.by = Some(r.user.to_string());
        recorded.proof = Some(
            r.key
                .sign(&attestation_message(r.namespace, r.name, &recorded)),
        );
        out.ops.push(
            json!({"op": "replace", "path": format!("/spec/attestations/{i}"), "value": recorded}),
        );
    }
    for (i, e) in new.exemptions.iter().enumerate() {
        if old.is_some_and(|o| o.exemptions.contains(e)) {
            continue;
        }
        let before = old
            .and_then(|o| o.exemptions.iter().find(|x| x.practice == e.practice))
            .filter(|x| same_request(x, e))
            .filter(|x| proven_exemption(r, x));
        let recorded = match before {
            Some(before) => decided(r, before, e, &mut out.approvals)?,
            None => requested(r, e)?,
        };
        out.ops.push(
            json!({"op": "replace", "path": format!("/spec/exemptions/{i}"), "value": recorded}),
        );
    }
    Ok(out)
}

fn proven_exemption(r: &Recorder, e: &Exemption) -> bool {
    e.proof.as_deref().is_some_and(|p| {
        r.key
            .verifies(&exemption_message(r.namespace, r.name, e), p)
    })
}

/// `e` with the webhook's proof of it (the proof binds every other field).
fn sealed(r: &Recorder, mut e: Exemption) -> Exemption {
    e.proof = Some(r.key.sign(&exemption_message(r.namespace, r.name, &e)));
    e
}

/// The same exemption asked for: practice, reason and date unchanged.
fn same_request(a: &Exemption, b: &Exemption) -> bool {
    a.practice == b.practice && a.reason == b.reason && a.until == b.until
}

fn date(d: &DateString) -> Option<Date> {
    d.as_str().parse().ok()
}

/// An attestation may be admitted: dated today or earlier (within the clock skew), and
/// reviewed at least as often as its practice's maximum validity.
fn admissible_attestation(a: &Attestation, today: Date) -> Result<(), String> {
    let p = &a.practice;
    let Some(at) = date(&a.attested_at) else {
        return Err(format!(
            "the attestation of {p}: attestedAt {:?} is not a date",
            a.attested_at.as_str()
        ));
    };
    if at > crate::clock::add_days(today, CLOCK_SKEW_DAYS) {
        return Err(format!(
            "the attestation of {p} is dated {at}, in the future (today is {today}): an attestation records what was seen, so date it today or earlier"
        ));
    }
    let Some(practice) = crate::model::practice(p) else {
        return Err(format!(
            "{p} is not a practice of the model (see `maturity-operator model`)"
        ));
    };
    if let Some(r) = &a.review_every {
        let days = r.parse().map(|d| d.as_secs() / 86_400).unwrap_or(u64::MAX);
        let max = practice.max_validity_days();
        if days > max as u64 {
            return Err(format!(
                "the attestation of {p}: reviewEvery {} is longer than the practice's maximum validity of {max}d (a level-{} practice is looked at again at least that often; see `maturity-operator model`)",
                r.as_str(),
                practice.level
            ));
        }
    }
    Ok(())
}

/// A new request (or a changed one): recorded as asked by the user, not approved (an
/// approval is a later change, by another user).
fn requested(r: &Recorder, e: &Exemption) -> Result<Exemption, String> {
    let p = &e.practice;
    let Some(until) = date(&e.until) else {
        return Err(format!(
            "the exemption of {p}: until {:?} is not a date",
            e.until.as_str()
        ));
    };
    let latest = crate::clock::add_days(r.today, MAX_EXEMPTION_DAYS);
    if until > latest {
        return Err(format!(
            "the exemption of {p} runs until {until}, more than {MAX_EXEMPTION_DAYS} days from today ({today}): an exemption lasts at most {MAX_EXEMPTION_DAYS} days, then it is asked for again (until {latest} at the latest)",
            today = r.today
        ));
    }
    let mut recorded = e.clone();
    recorded.requested_by = Some(r.user.to_string());
    recorded.requested_on = Some(DateString::new(r.today.to_string()));
    recorded.approved = None;
    recorded.approved_by = None;
    recorded.approved_on = None;
    Ok(sealed(r, recorded))
}

/// The same request as `before` (recorded), approved or withdrawn now, or only retyped.
fn decided(
    r: &Recorder,
    before: &Exemption,
    e: &Exemption,
    approvals: &mut Vec<String>,
) -> Result<Exemption, String> {
    let mut recorded = before.clone();
    match (e.approved, before.approved_by.is_some()) {
        (Some(true), false) => {
            let requester = before.requested_by.as_deref().unwrap_or_default();
            if requester == r.user {
                return Err(format!(
                    "{} requested the exemption of {}, so may not approve it: another user who may approve exemptions does (separation of duties)",
                    r.user, e.practice
                ));
            }
            recorded.approved = Some(true);
            recorded.approved_by = Some(r.user.to_string());
            recorded.approved_on = Some(DateString::new(r.today.to_string()));
            approvals.push(e.practice.clone());
        }
        (Some(false), true) => {
            recorded.approved = None;
            recorded.approved_by = None;
            recorded.approved_on = None;
        }
        // Only the recorded fields were typed over or left out (a manifest applied again):
        // they are written back as recorded.
        _ => return Ok(recorded),
    }
    Ok(sealed(r, recorded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::DurationString;

    fn key() -> Key {
        Key::from_bytes(&[3u8; 32]).unwrap()
    }

    fn today() -> Date {
        "2026-12-02".parse().unwrap()
    }

    fn recorder<'a>(key: &'a Key, user: &'a str) -> Recorder<'a> {
        Recorder {
            key,
            namespace: "shop",
            name: "payments",
            user,
            today: today(),
        }
    }

    fn attestation(practice: &str, at: &str) -> Attestation {
        Attestation {
            practice: practice.into(),
            by: Some("the CEO".into()),
            evidence: "https://wiki.example/oncall".into(),
            attested_at: DateString::new(at),
            review_every: None,
            proof: None,
        }
    }

    fn exemption(practice: &str, until: &str) -> Exemption {
        Exemption {
            practice: practice.into(),
            reason: "no public customers".into(),
            until: DateString::new(until),
            approved: None,
            requested_by: Some("someone else".into()),
            requested_on: None,
            approved_by: Some("typed approver".into()),
            approved_on: None,
            proof: None,
        }
    }

    fn spec(attestations: Vec<Attestation>, exemptions: Vec<Exemption>) -> MaturityAssessmentSpec {
        serde_json::from_value(json!({
            "attestations": attestations,
            "exemptions": exemptions,
        }))
        .unwrap()
    }

    /// `new` as admitted by `user`: the recording applied to it.
    fn admit(
        user: &str,
        old: Option<&MaturityAssessmentSpec>,
        new: &MaturityAssessmentSpec,
    ) -> Result<(MaturityAssessmentSpec, Vec<String>), String> {
        let k = key();
        let rec = record(&recorder(&k, user), old, new)?;
        let mut doc = json!({"spec": new});
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(rec.ops)).unwrap();
        json_patch::patch(&mut doc, &patch).unwrap();
        Ok((
            serde_json::from_value(doc["spec"].clone()).unwrap(),
            rec.approvals,
        ))
    }

    fn verified(s: &MaturityAssessmentSpec) -> Verified {
        verify(Some(&key()), "shop", "payments", s)
    }

    #[test]
    fn the_user_of_the_request_is_recorded_over_a_typed_one_and_proven() {
        let (s, _) = admit(
            "alice",
            None,
            &spec(vec![attestation("ORG-3.1", "2026-11-30")], vec![]),
        )
        .unwrap();
        assert_eq!(s.attestations[0].by.as_deref(), Some("alice"));
        assert_eq!(
            verified(&s).attestations,
            BTreeSet::from(["ORG-3.1".to_string()])
        );
        // Changed by hand afterwards (the webhook bypassed): the proof no longer matches.
        for change in [
            |a: &mut Attestation| a.by = Some("the CEO".into()),
            |a: &mut Attestation| a.attested_at = DateString::new("2026-12-01"),
            |a: &mut Attestation| a.evidence = "trust me".into(),
            |a: &mut Attestation| a.review_every = Some(DurationString::new("180d")),
            |a: &mut Attestation| a.practice = "ORG-3.2".into(),
        ] {
            let mut t = s.clone();
            change(&mut t.attestations[0]);
            assert!(verified(&t).attestations.is_empty(), "{t:?}");
        }
        // Another key, another assessment, another namespace: not proven.
        let other = Key::from_bytes(&[4u8; 32]).unwrap();
        assert!(
            verify(Some(&other), "shop", "payments", &s)
                .attestations
                .is_empty()
        );
        assert!(
            verify(Some(&key()), "shop", "other", &s)
                .attestations
                .is_empty()
        );
        assert!(
            verify(Some(&key()), "other", "payments", &s)
                .attestations
                .is_empty()
        );
        assert!(verify(None, "shop", "payments", &s).attestations.is_empty());
        // A typed proof is not a proof.
        let mut forged = spec(vec![attestation("ORG-3.1", "2026-11-30")], vec![]);
        forged.attestations[0].proof = Some(format!("v1:{}", "00".repeat(32)));
        assert!(verified(&forged).attestations.is_empty());
    }

    #[test]
    fn an_unchanged_entry_is_left_as_it_was_so_the_operators_updates_record_nothing() {
        let unproven = spec(
            vec![attestation("ORG-3.1", "2026-11-30")],
            vec![exemption("COMM-5.2", "2027-01-01")],
        );
        let rec = record(
            &recorder(&key(), "system:serviceaccount:mo:operator"),
            Some(&unproven),
            &unproven,
        )
        .unwrap();
        assert_eq!(rec, Recording::default());
    }

    #[test]
    fn future_dates_and_long_reviews_are_refused_with_a_sentence() {
        // today + 1 day of clock skew is accepted; the day after is not.
        assert!(
            admit(
                "alice",
                None,
                &spec(vec![attestation("ORG-3.1", "2026-12-03")], vec![])
            )
            .is_ok()
        );
        let e = admit(
            "alice",
            None,
            &spec(vec![attestation("ORG-3.1", "2099-01-01")], vec![]),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "the attestation of ORG-3.1 is dated 2099-01-01, in the future (today is 2026-12-02): an attestation records what was seen, so date it today or earlier"
        );
        assert!(
            admit(
                "alice",
                None,
                &spec(vec![attestation("ORG-3.1", "2026-12-04")], vec![])
            )
            .is_err()
        );
        // ORG-3.1 is a level-3 practice: 180 days at most; ORG-5.4 (level 5): 90 days.
        let mut a = attestation("ORG-3.1", "2026-11-30");
        a.review_every = Some(DurationString::new("180d"));
        assert!(admit("alice", None, &spec(vec![a.clone()], vec![])).is_ok());
        a.review_every = Some(DurationString::new("181d"));
        let e = admit("alice", None, &spec(vec![a], vec![])).unwrap_err();
        assert!(
            e.contains("reviewEvery 181d is longer than the practice's maximum validity of 180d"),
            "{e}"
        );
        let mut a = attestation("ORG-5.4", "2026-11-30");
        a.review_every = Some(DurationString::new("91d"));
        assert!(
            admit("alice", None, &spec(vec![a], vec![]))
                .unwrap_err()
                .contains("maximum validity of 90d")
        );
    }

    #[test]
    fn an_exemption_is_requested_by_one_user_and_approved_by_another() {
        // 2026-12-02 + 180 days = 2027-05-31 (Dec 29 + Jan 31 + Feb 28 + Mar 31 + Apr 30 + 31 = 180).
        let too_long = admit(
            "alice",
            None,
            &spec(vec![], vec![exemption("COMM-5.2", "2027-06-01")]),
        )
        .unwrap_err();
        assert!(
            too_long.contains("more than 180 days from today (2026-12-02)")
                && too_long.contains("until 2027-05-31 at the latest"),
            "{too_long}"
        );
        let (asked, approvals) = admit(
            "alice",
            None,
            &spec(vec![], vec![exemption("COMM-5.2", "2027-05-31")]),
        )
        .unwrap();
        assert!(approvals.is_empty());
        let e = &asked.exemptions[0];
        assert_eq!(
            (
                e.requested_by.as_deref(),
                e.requested_on.as_ref().map(|d| d.as_str())
            ),
            (Some("alice"), Some("2026-12-02"))
        );
        assert_eq!(
            (e.approved, e.approved_by.as_deref()),
            (None, None),
            "a typed approver is dropped"
        );
        assert_eq!(
            verified(&asked).exemptions.len(),
            1,
            "the request is proven"
        );

        // Approved in the change that asks: recorded as a request only.
        let mut both = spec(vec![], vec![exemption("COMM-5.2", "2027-01-01")]);
        both.exemptions[0].approved = Some(true);
        let (only_asked, approvals) = admit("alice", None, &both).unwrap();
        assert!(approvals.is_empty());
        assert_eq!(
            (
                only_asked.exemptions[0].approved,
                only_asked.exemptions[0].approved_by.as_deref()
            ),
            (None, None)
        );

        // The requester approves: refused.
        let mut approve = asked.clone();
        approve.exemptions[0].approved = Some(true);
        let e = admit("alice", Some(&asked), &approve).unwrap_err();
        assert_eq!(
            e,
            "alice requested the exemption of COMM-5.2, so may not approve it: another user who may approve exemptions does (separation of duties)"
        );

        // Another user approves: recorded, and asked to be checked (a SubjectAccessReview).
        let (approved, approvals) = admit("bob", Some(&asked), &approve).unwrap();
        assert_eq!(approvals, vec!["COMM-5.2".to_string()]);
        let e = &approved.exemptions[0];
        assert_eq!(
            (e.requested_by.as_deref(), e.approved_by.as_deref()),
            (Some("alice"), Some("bob"))
        );
        assert_eq!(verified(&approved).exemptions.len(), 1);

        // Changing the date afterwards is a new request, by whoever changes it, unapproved.
        let mut longer = approved.clone();
        longer.exemptions[0].until = DateString::new("2027-02-01");
        let (re, approvals) = admit("bob", Some(&approved), &longer).unwrap();
        assert!(approvals.is_empty());
        let e = &re.exemptions[0];
        assert_eq!(
            (
                e.approved,
                e.requested_by.as_deref(),
                e.approved_by.as_deref()
            ),
            (None, Some("bob"), None)
        );

        // Typing an approver over the recorded one writes the recorded one back.
        let mut typed = approved.clone();
        typed.exemptions[0].approved_by = Some("the CEO".into());
        let (back, approvals) = admit("mallory", Some(&approved), &typed).unwrap();
        assert!(approvals.is_empty());
        assert_eq!(back.exemptions[0].approved_by.as_deref(), Some("bob"));

        // The manifest applied again without the recorded fields keeps them all.
        let mut again = approved.clone();
        let x = &mut again.exemptions[0];
        (
            x.approved,
            x.requested_by,
            x.requested_on,
            x.approved_by,
            x.approved_on,
            x.proof,
        ) = (None, None, None, None, None, None);
        let (kept, approvals) = admit("argocd", Some(&approved), &again).unwrap();
        assert!(approvals.is_empty());
        assert_eq!(kept, approved);

        // Withdrawing the approval keeps the request.
        let mut withdraw = approved.clone();
        withdraw.exemptions[0].approved = Some(false);
        let (w, _) = admit("bob", Some(&approved), &withdraw).unwrap();
        assert_eq!(
            (
                w.exemptions[0].requested_by.as_deref(),
                w.exemptions[0].approved_by.as_deref()
            ),
            (Some("alice"), None)
        );
        assert_eq!(verified(&w).exemptions.len(), 1);
    }
}

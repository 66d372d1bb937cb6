//! Property tests (issue 14): arbitrary inputs to the duration language, the time
//! arithmetic, the drill schedule, PromQL templating and the model's evaluation never panic,
//! and their invariants hold. The properties are stated from the rules, not from the code:
//! a window never ends before it starts, a drawn start lies inside its window, an expired
//! attestation never counts, and a level never exceeds what its practices give.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use maturity_operator::api::DrillSchedule;
use maturity_operator::api::common::{DateString, DurationString};
use maturity_operator::api::maturity_assessment::{
    Attestation, EvidenceKind, PracticeState, PracticeStatus,
};
use maturity_operator::clock;
use maturity_operator::drill::schedule::Schedule;
use maturity_operator::duration::{format_duration, parse_duration};
use maturity_operator::model::PRACTICES;
use maturity_operator::model::evaluate::{Claim, assess, capability_level, practice_state};
use maturity_operator::prom::template::render;
use proptest::prelude::*;

/// Strings made of the duration language's characters (and a few others).
fn duration_like() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[0-9msdhwx. -]{0,40}").unwrap()
}

/// Instants from 1970 to 2100, in milliseconds.
fn instant() -> impl Strategy<Value = Timestamp> {
    (0i64..4_102_444_800_000).prop_map(|ms| Timestamp::from_millisecond(ms).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_string_parses_or_is_refused_and_what_parses_formats_back(s in duration_like()) {
        if let Ok(d) = parse_duration(&s) {
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn every_duration_in_milliseconds_round_trips(ms in 0u64..u64::MAX / 2) {
        let d = Duration::from_millis(ms);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn time_arithmetic_saturates_instead_of_wrapping(
        t in instant(),
        secs in 0u64..u64::MAX,
    ) {
        let d = Duration::from_secs(secs);
        let later = clock::add(t, d);
        let earlier = clock::sub(t, d);
        prop_assert!(later >= t, "{t} + {d:?} = {later}");
        prop_assert!(earlier <= t, "{t} - {d:?} = {earlier}");
    }

    #[test]
    fn a_window_never_ends_before_it_starts_and_the_start_lies_inside(
        cron in prop::sample::select(vec![
            "* * * * *", "*/7 * * * *", "0 10 * * 1-5", "30 2 * * 0", "0 0 1 * *",
            "0 0 29 2 *", "15 3 1 1 *", "0 */6 * * *",
        ]),
        tz in prop::sample::select(vec!["UTC", "Europe/Berlin", "Asia/Shanghai", "America/New_York", "Australia/Lord_Howe"]),
        jitter_ms in 0u64..(400 * 86_400_000),
        blackout in prop::option::of((prop::sample::select(vec!["0 0 * * *", "0 12 * * 6"]), 1u64..(30 * 86_400_000))),
        after in instant(),
        random in any::<u64>(),
    ) {
        let mut spec = serde_json::json!({
            "schedule": cron, "timeZone": tz, "jitter": format_duration(Duration::from_millis(jitter_ms)),
            "target": {"name": "web"}, "action": {"podKill": {"count": 1}}, "recoveryDeadline": "1m",
        });
        if let Some((c, ms)) = blackout {
            spec["blackouts"] = serde_json::json!([{"schedule": c, "duration": format_duration(Duration::from_millis(ms))}]);
        }
        let d: DrillSchedule = serde_json::from_value(serde_json::json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "DrillSchedule",
            "metadata": {"name": "d", "namespace": "n"}, "spec": spec,
        })).unwrap();
        let s = Schedule::parse(&d).unwrap();
        if let Ok(w) = s.next_window(after) {
            prop_assert!(w.start > after, "the next window starts after {after}: {w:?}");
            prop_assert!(w.end >= w.start, "{w:?}");
            let start = s.pick_start(w, random);
            prop_assert!(w.start <= start && start <= w.end, "{start} outside {w:?}");
        }
    }

    #[test]
    fn templating_never_panics(
        template in proptest::string::string_regex("[a-z{}\"= ]{0,60}").unwrap(),
        value in "[a-z0-9-]{0,10}",
    ) {
        let vars = BTreeMap::from([("namespace", value.clone()), ("target", value)]);
        let _ = render(&template, &vars);
    }

    #[test]
    fn an_expired_attestation_never_counts(
        practice in 0usize..PRACTICES.len(),
        attested in (1970i16..2100, 1i8..=12, 1i8..=31),
        review_ms in prop::option::of(0u64..(800 * 86_400_000)),
        today in (1970i16..2100, 1i8..=12, 1i8..=28),
        recorded in any::<bool>(),
    ) {
        let p = &PRACTICES[practice];
        let attested_at = format!("{:04}-{:02}-{:02}", attested.0, attested.1, attested.2);
        let a = Attestation {
            practice: p.id.to_string(),
            by: Some("alice".into()),
            evidence: "x".into(),
            attested_at: DateString(attested_at.clone()),
            review_every: review_ms.map(|ms| DurationString(format_duration(Duration::from_millis(ms)))),
            proof: None,
        };
        let today = Date::new(today.0, today.1, today.2).unwrap();
        let st = practice_state(p, None, Some(Claim { entry: &a, recorded }), None, today);
        if st.evidence == EvidenceKind::Attested {
            prop_assert_eq!(st.state, PracticeState::Met);
            prop_assert!(recorded, "an attestation the webhook did not record never counts");
            // Counted only on a real date, within reviewEvery (90 days when unset, at most
            // 730) and within the practice's maximum validity (180 days at levels 2-3, 120
            // at 4, 90 at 5), and not dated after tomorrow... by the rule, not the code:
            let at: Date = attested_at.parse().expect("only a real date is counted");
            let days = review_ms.map(|ms| ms / 86_400_000).unwrap_or(90);
            prop_assert!(days <= 730, "a reviewEvery over two years never counts");
            let max = match p.level { 2 | 3 => 180, 4 => 120, _ => 90 };
            let expires = at.checked_add(jiff::Span::new().days(days.min(max) as i64)).unwrap();
            prop_assert!(today <= expires, "{today} is after {expires}: expired, yet counted");
            let tomorrow = today.checked_add(jiff::Span::new().days(1)).unwrap();
            prop_assert!(at <= tomorrow, "dated {at}, after tomorrow ({tomorrow}), yet counted");
        }
    }

    #[test]
    fn a_level_never_exceeds_what_its_practices_give(
        states in prop::collection::vec(
            prop::sample::select(vec![
                PracticeState::Met, PracticeState::NotMet, PracticeState::Unknown,
                PracticeState::Exempt, PracticeState::Expired, PracticeState::Unverified,
            ]),
            PRACTICES.len(),
        ),
    ) {
        let practices: Vec<PracticeStatus> = PRACTICES
            .iter()
            .zip(&states)
            .map(|(p, s)| PracticeStatus {
                id: p.id.to_string(),
                state: *s,
                evidence: EvidenceKind::None,
                detail: None,
            })
            .collect();
        let (overall, caps, _) = assess(&practices);
        let by_id: BTreeMap<&str, PracticeState> =
            PRACTICES.iter().zip(&states).map(|(p, s)| (p.id, *s)).collect();
        for c in &caps {
            prop_assert!(overall as i32 <= c.level);
        }
        // Every practice at or below the overall level (from 2 up) counts: Met or Exempt.
        for p in PRACTICES.iter().filter(|p| p.level >= 2 && p.level <= overall) {
            prop_assert!(
                matches!(by_id[p.id], PracticeState::Met | PracticeState::Exempt),
                "level {overall} though {} is {:?}", p.id, by_id[p.id]
            );
        }
        // And a capability's level is the same figure the one-capability rule gives.
        for c in maturity_operator::model::Capability::ALL {
            let level = capability_level(c, &by_id);
            prop_assert!(level >= overall);
        }
    }
}

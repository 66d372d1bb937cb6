//! ResponseTimeTarget's decision, from plain values: the target (its status is what was
//! written last), what Prometheus showed (`Observations`), the resolved queries and, for
//! an alertResolution target, its handling figures, to the new status (every condition,
//! numbers rounded so that noise does not cause writes), the Events of the conditions
//! that changed, and the figures to export. Also when a target or group is due.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::queries::{EventQueries, LatencyQueries, RatioQueries, bucket_boundaries};
use super::resolution::Handling;
use super::rules::{ALERTS_LOADED, AlertsSeen, alerts_condition};
use super::{
    Evaluation, OBJECTIVE_MET, Observations, READY, Target, evaluate, shown_attainment,
    shown_events, shown_ratio,
};
use crate::api::ResponseTimeTarget;
use crate::api::common::CommonStatus;
use crate::api::response_time_target::{EventCounts, ResolutionFigures, ResponseTimeTargetStatus};
use crate::clock::round;
use crate::conditions::{self, Note};

/// The window of a target whose window cannot be read (admission rejects that).
const DEFAULT_WINDOW: Duration = Duration::from_secs(28 * 86400);

/// What to do after one evaluation of a target.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The status it should have (lastEvaluated moves only when something else changed).
    pub status: ResponseTimeTargetStatus,
    /// The figures, for the metrics.
    pub evaluation: Evaluation,
    /// An Event for each of `Ready` and `ObjectiveMet` whose status changed (published
    /// once the status is written).
    pub notes: Vec<Note>,
}

/// How long a target's status keeps figures that moved while no condition changed (the
/// default of `--status-period`): a person or a gate reads status; the exact, fresh
/// figures are in the metrics.
pub const STATUS_PERIOD: Duration = Duration::from_secs(300);

/// Evaluates `t` from `obs`. `figures` are set for an alertResolution target. The status
/// changes at once when what a gate reads changes (a condition's status or reason, the
/// generation described, the queries, a figure appearing or going); figures and messages
/// that only moved wait until `period` after the last write.
///
/// `alerts`: what is known of the target's burn-rate alerts in Prometheus, and how long
/// they may take to load; the `AlertsLoaded` condition says it (None: it stays as it is;
/// it goes when the spec asks for no alerts).
pub fn decide(
    t: &ResponseTimeTarget,
    obs: &Observations,
    queries: BTreeMap<String, String>,
    figures: Option<ResolutionFigures>,
    alerts: Option<(&AlertsSeen, Duration)>,
    now: Timestamp,
    period: Duration,
) -> Outcome {
    let target = Target {
        objective: t.spec.objective,
        window: t.spec.window.parse().unwrap_or(DEFAULT_WINDOW),
        // Incidents are rare by nature: a request-rate floor does not apply to them.
        min_request_rate: if figures.is_some() {
            None
        } else {
            t.spec.min_request_rate
        },
    };
    let evaluation = evaluate(&target, obs);
    let old = t.status.clone().unwrap_or_default();
    let alerting = t.spec.alerting.as_ref().is_some_and(|a| a.burn_rate_alerts);
    let alerts_condition = alerts.filter(|_| alerting).map(|(seen, grace)| {
        let was_loaded =
            conditions::status_of(&old.common.conditions, ALERTS_LOADED) == Some("True");
        let rule =
            crate::api::names::burn_rate_rule(t.metadata.name.as_deref().unwrap_or_default());
        alerts_condition(seen, &rule, was_loaded, now, grace)
    });
    let now = Time(now);
    let mut status = desired_status(t, &evaluation, alerts_condition, queries, &old, &now);
    if !alerting {
        status
            .common
            .conditions
            .retain(|c| c.type_ != ALERTS_LOADED);
    }
    status.resolution = figures;
    status.common.last_evaluated = old.common.last_evaluated.clone();
    if status != old && !gate_changed(&old, &status) && !period_over(&old, &now, period) {
        status = old.clone();
    }
    let notes = if status == old {
        Vec::new()
    } else {
        status.common.last_evaluated = Some(now);
        transitions(&old, &status)
    };
    Outcome {
        status,
        evaluation,
        notes,
    }
}

/// What a gate or a person acts on: each condition's type, status and reason (not its
/// message, which carries figures), the generation described, the queries, and which
/// figures there are.
fn gate_changed(old: &ResponseTimeTargetStatus, new: &ResponseTimeTargetStatus) -> bool {
    signature(old) != signature(new)
}

/// The parts of a status [`gate_changed`] compares.
type Signature<'a> = (
    Vec<(&'a str, &'a str, &'a str)>,
    Option<i64>,
    [bool; 4],
    Vec<&'a String>,
    &'a BTreeMap<String, String>,
);

fn signature(s: &ResponseTimeTargetStatus) -> Signature<'_> {
    let conditions = s
        .common
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect();
    let present = [
        s.attainment.is_some(),
        s.error_budget_remaining.is_some(),
        s.events.is_some(),
        s.resolution.is_some(),
    ];
    (
        conditions,
        s.common.observed_generation,
        present,
        s.burn_rates.keys().collect(),
        &s.queries,
    )
}

/// Whether the last write is `period` old (or there was none).
fn period_over(old: &ResponseTimeTargetStatus, now: &Time, period: Duration) -> bool {
    old.common
        .last_evaluated
        .as_ref()
        .is_none_or(|t| crate::clock::until(t.0, now.0) >= period)
}

/// An Event for each of `Ready` and `ObjectiveMet` whose status changed; on a first
/// evaluation (no such condition yet) only for a False one: ten thousand new targets that
/// are fine make no Events.
fn transitions(old: &ResponseTimeTargetStatus, new: &ResponseTimeTargetStatus) -> Vec<Note> {
    let mut notes = Vec::new();
    for type_ in [READY, OBJECTIVE_MET] {
        let before = conditions::status_of(&old.common.conditions, type_);
        let Some(after) = new.common.conditions.iter().find(|c| c.type_ == type_) else {
            continue;
        };
        if before == Some(after.status.as_str()) || (before.is_none() && after.status != "False") {
            continue;
        }
        notes.push(Note {
            reason: after.reason.clone(),
            message: format!("{type_}={}: {}", after.status, after.message),
            warning: after.status == "False",
        });
    }
    notes
}

/// The status the target should have after `eval`. `lastEvaluated` is left to the caller.
fn desired_status(
    t: &ResponseTimeTarget,
    eval: &Evaluation,
    alerts: Option<conditions::Cond>,
    queries: BTreeMap<String, String>,
    old: &ResponseTimeTargetStatus,
    now: &Time,
) -> ResponseTimeTargetStatus {
    ResponseTimeTargetStatus {
        common: CommonStatus {
            observed_generation: t.metadata.generation,
            last_evaluated: None,
            conditions: conditions::merge(
                &old.common.conditions,
                &eval
                    .conditions
                    .iter()
                    .cloned()
                    .chain(alerts)
                    .collect::<Vec<_>>(),
                t.metadata.generation,
                now,
            ),
        },
        attainment: eval
            .attainment
            .map(|a| shown_attainment(a, t.spec.objective)),
        error_budget_remaining: eval.error_budget_remaining.map(shown_ratio),
        burn_rates: eval
            .burn_rates
            .iter()
            .map(|(w, b)| (w.clone(), shown_ratio(*b)))
            .collect(),
        events: eval.counts.map(|c| EventCounts {
            good: shown_events(c.good),
            total: shown_events(c.total),
        }),
        resolution: None,
        queries,
    }
}

/// The handling figures shown in status (rounded to tenths of seconds).
pub fn resolution_figures(h: &Handling) -> ResolutionFigures {
    ResolutionFigures {
        resolved: h.resolved,
        within_target: h.within,
        mean_seconds: h.mean_seconds.map(|m| round(m, 1)),
        p90_seconds: h.p90_seconds.map(|p| round(p, 1)),
    }
}

/// The resolved PromQL of a target's own queries, as shown in status.
pub fn resolved_queries(t: &ResponseTimeTarget) -> BTreeMap<String, String> {
    queries_of(&t.spec.window, &t.spec.indicator)
}

/// The queries of `indicator` over `window`, made from its selectors as they are.
pub fn queries_of(
    window: &crate::api::common::DurationString,
    indicator: &crate::api::response_time_target::Indicator,
) -> BTreeMap<String, String> {
    let window = window.as_str();
    let mut out = BTreeMap::new();
    let eq: Option<Box<dyn EventQueries + '_>> = if let Some(l) = &indicator.latency {
        out.insert("buckets".to_string(), bucket_boundaries(l));
        LatencyQueries::new(l)
            .ok()
            .map(|q| Box::new(q) as Box<dyn EventQueries>)
    } else {
        indicator
            .ratio
            .as_ref()
            .map(|r| Box::new(RatioQueries { indicator: r }) as Box<dyn EventQueries>)
    };
    if let Some(q) = eq {
        out.insert("good".to_string(), q.good_increase(window));
        out.insert("total".to_string(), q.total_increase(window));
        out.insert("errorRatio1h".to_string(), q.error_ratio("1h"));
    }
    out
}

/// The target's evaluation interval (`default` when it sets none, or zero).
pub fn interval_of(t: &ResponseTimeTarget, default: Duration) -> Duration {
    t.spec
        .evaluation_interval
        .as_ref()
        .and_then(|i| i.parse().ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(default)
}

/// Whether `t`'s status says `problem` already (`Ready=False` with its reason).
pub fn says(t: &ResponseTimeTarget, problem: &super::Problem) -> bool {
    t.status.as_ref().is_some_and(|s| {
        s.common
            .conditions
            .iter()
            .any(|c| c.type_ == READY && c.reason == problem.reason() && c.status == "False")
    })
}

/// The spec changed since the status was written (or there is no status yet): evaluate now.
pub fn urgent(t: &ResponseTimeTarget) -> bool {
    t.status.as_ref().and_then(|s| s.common.observed_generation) != t.metadata.generation
}

/// How long from `now` until `key`'s next slot. A key's slots are `interval` apart at a
/// phase of the wall clock derived from the key: stable across restarts and replicas (no
/// herd of evaluations after a restart), and spread over the interval across keys.
pub fn next_slot(key: &impl Hash, interval: Duration, now: Timestamp) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    let ms = interval.as_millis().clamp(1, u64::MAX as u128) as i128;
    let phase = h.finish() as i128 % ms;
    let into = (now.as_millisecond() as i128 - phase).rem_euclid(ms);
    Duration::from_millis((ms - into) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::{Counts, Problem, State};
    use crate::testing::{TargetBuilder, at};

    fn counts(good: f64, total: f64) -> Observations {
        Observations {
            counts: Ok(Counts { good, total }),
            error_ratios: BTreeMap::from([("1h".to_string(), Ok(0.002))]),
        }
    }

    fn cond(s: &ResponseTimeTargetStatus, type_: &str) -> (String, String) {
        let c = s
            .common
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn a_first_evaluation_writes_rounded_figures_and_announces_only_a_miss() {
        let t = TargetBuilder::new("t").build();
        // 9,950 of 10,000 good: 99.5 % against 99 %; 0.5 % bad of a 1 % budget leaves half.
        let out = decide(
            &t,
            &counts(9_950.0, 10_000.0),
            BTreeMap::new(),
            None,
            None,
            at(0),
            STATUS_PERIOD,
        );
        let s = &out.status;
        assert_eq!(s.attainment, Some(99.5));
        assert_eq!(s.error_budget_remaining, Some(0.5));
        // 1h error ratio 0.2 % of a 1 % budget: burn rate 0.2.
        assert_eq!(s.burn_rates.get("1h"), Some(&0.2));
        assert_eq!(
            s.events,
            Some(EventCounts {
                good: 9_950.0,
                total: 10_000.0
            })
        );
        assert_eq!(s.common.observed_generation, Some(1));
        assert_eq!(s.common.last_evaluated, Some(Time(at(0))));
        assert_eq!(cond(s, READY), ("True".into(), "Evaluated".into()));
        assert_eq!(
            cond(s, OBJECTIVE_MET),
            ("True".into(), "WithinObjective".into())
        );
        assert_eq!(out.evaluation.state, State::Met);
        // A first evaluation that is fine makes no Event; the message has the figures.
        assert!(out.notes.is_empty(), "{:?}", out.notes);
        let met = s
            .common
            .conditions
            .iter()
            .find(|c| c.type_ == OBJECTIVE_MET);
        assert_eq!(
            met.map(|c| c.message.as_str()),
            Some("attainment 99.5% (objective 99%), 50% of the error budget left")
        );
        // A first evaluation that misses is told, as a Warning.
        let missed = decide(
            &t,
            &counts(9_800.0, 10_000.0),
            BTreeMap::new(),
            None,
            None,
            at(0),
            STATUS_PERIOD,
        );
        let reasons: Vec<&str> = missed.notes.iter().map(|n| n.reason.as_str()).collect();
        assert_eq!(reasons, ["ObjectiveMissed"]);
        assert!(missed.notes[0].warning);
    }

    #[test]
    fn figures_that_only_moved_wait_for_the_period_and_a_transition_is_written_at_once() {
        let first = decide(
            &TargetBuilder::new("t").build(),
            &counts(9_950.0, 10_000.0),
            BTreeMap::new(),
            None,
            None,
            at(0),
            STATUS_PERIOD,
        );
        let t = TargetBuilder::new("t").status(&first.status).build();
        // 99.6 % a minute later: the same conditions (Met), so the status stays as written.
        let moved = decide(
            &t,
            &counts(9_960.0, 10_000.0),
            BTreeMap::new(),
            None,
            None,
            at(60),
            STATUS_PERIOD,
        );
        assert_eq!(moved.status, first.status);
        assert!(moved.notes.is_empty());
        // Five minutes after the last write the moved figures are written.
        let later = decide(
            &t,
            &counts(9_960.0, 10_000.0),
            BTreeMap::new(),
            None,
            None,
            at(300),
            STATUS_PERIOD,
        );
        assert_eq!(later.status.attainment, Some(99.6));
        assert_eq!(later.status.common.last_evaluated, Some(Time(at(300))));
        assert!(later.notes.is_empty(), "no condition changed status");
        // 98 % ten seconds after the first write: ObjectiveMet turns False, written at once.
        let missed = decide(
            &t,
            &counts(9_800.0, 10_000.0),
            BTreeMap::new(),
            None,
            None,
            at(10),
            STATUS_PERIOD,
        );
        assert_eq!(missed.status.attainment, Some(98.0));
        assert_eq!(missed.status.common.last_evaluated, Some(Time(at(10))));
        assert_eq!(
            cond(&missed.status, OBJECTIVE_MET),
            ("False".into(), "ObjectiveMissed".into())
        );
    }

    #[test]
    fn status_figures_have_a_documented_precision_and_a_miss_never_reads_as_met() {
        let t = TargetBuilder::new("t").build();
        // 987,654 of 1,000,000 good against 99 %: 98.7654 % shown as 98.76 (rounded down);
        // 1.2346 % bad of a 1 % budget: -0.2346 left, two digits -0.23; events to three
        // significant digits.
        let out = decide(
            &t,
            &counts(987_654.0, 1_000_000.0),
            BTreeMap::new(),
            None,
            None,
            at(0),
            STATUS_PERIOD,
        );
        assert_eq!(out.status.attainment, Some(98.76));
        assert_eq!(out.status.error_budget_remaining, Some(-0.23));
        assert_eq!(
            out.status.events,
            Some(EventCounts {
                good: 988_000.0,
                total: 1_000_000.0
            })
        );
        // 98.9999 % against 99 %: missed, shown 98.99, not 99.00.
        let near = decide(
            &t,
            &counts(989_999.0, 1_000_000.0),
            BTreeMap::new(),
            None,
            None,
            at(0),
            STATUS_PERIOD,
        );
        assert_eq!(near.status.attainment, Some(98.99));
        assert_eq!(
            cond(&near.status, OBJECTIVE_MET),
            ("False".into(), "ObjectiveMissed".into())
        );
        // The 1h burn rate 0.002 / 0.01 = 0.2: two significant digits stay 0.2.
        assert_eq!(near.status.burn_rates.get("1h"), Some(&0.2));
    }

    #[test]
    fn the_same_figures_again_change_nothing_and_a_miss_is_announced_once() {
        let first = decide(
            &TargetBuilder::new("t").build(),
            &counts(9_950.0, 10_000.0),
            BTreeMap::new(),
            None,
            None,
            at(0),
            STATUS_PERIOD,
        );
        let t = TargetBuilder::new("t").status(&first.status).build();
        // 9,950.4 good rounds to the same status: no write, no new lastEvaluated, no Event.
        let same = decide(
            &t,
            &counts(9_950.000_04, 10_000.0),
            BTreeMap::new(),
            None,
            None,
            at(60),
            STATUS_PERIOD,
        );
        assert_eq!(same.status, first.status);
        assert!(same.notes.is_empty());
        // 98 %: missed; only ObjectiveMet changed status, so one warning Event.
        let missed = decide(
            &t,
            &counts(9_800.0, 10_000.0),
            BTreeMap::new(),
            None,
            None,
            at(120),
            STATUS_PERIOD,
        );
        assert_eq!(missed.status.common.last_evaluated, Some(Time(at(120))));
        assert_eq!(
            cond(&missed.status, OBJECTIVE_MET),
            ("False".into(), "ObjectiveMissed".into())
        );
        assert_eq!(missed.notes.len(), 1);
        assert!(missed.notes[0].warning);
        assert_eq!(missed.notes[0].reason, "ObjectiveMissed");
    }

    #[test]
    fn low_traffic_and_query_problems_say_why_and_an_incident_target_has_no_traffic_floor() {
        // 28 days = 2,419,200 s; 100 events is 0.00004 requests/s, below 0.01.
        let t = TargetBuilder::new("t").min_request_rate(0.01).build();
        let low = decide(
            &t,
            &counts(100.0, 100.0),
            BTreeMap::new(),
            None,
            None,
            at(0),
            STATUS_PERIOD,
        );
        assert_eq!(
            cond(&low.status, READY),
            ("True".into(), "LowTraffic".into())
        );
        assert_eq!(
            cond(&low.status, OBJECTIVE_MET),
            ("Unknown".into(), "LowTraffic".into())
        );
        let figures = ResolutionFigures {
            resolved: 100,
            within_target: 100,
            mean_seconds: None,
            p90_seconds: None,
        };
        let incidents = decide(
            &t,
            &counts(100.0, 100.0),
            BTreeMap::new(),
            Some(figures.clone()),
            None,
            at(0),
            STATUS_PERIOD,
        );
        assert_eq!(
            cond(&incidents.status, OBJECTIVE_MET),
            ("True".into(), "WithinObjective".into())
        );
        assert_eq!(incidents.status.resolution, Some(figures));

        let failed = Observations {
            counts: Err(Problem::InvalidSpec("window: bad".into())),
            error_ratios: BTreeMap::new(),
        };
        let out = decide(
            &TargetBuilder::new("t").build(),
            &failed,
            BTreeMap::new(),
            None,
            None,
            at(0),
            STATUS_PERIOD,
        );
        assert_eq!(cond(&out.status, READY).0, "False");
        assert_eq!(out.evaluation.state, State::Error);
        assert_eq!(out.status.attainment, None);
    }

    #[test]
    fn a_target_is_urgent_until_its_status_describes_its_generation() {
        let t = TargetBuilder::new("t").generation(2).build();
        assert!(urgent(&t));
        let out = decide(
            &t,
            &counts(1.0, 1.0),
            BTreeMap::new(),
            None,
            None,
            at(0),
            STATUS_PERIOD,
        );
        assert!(!urgent(
            &TargetBuilder::new("t")
                .generation(2)
                .status(&out.status)
                .build()
        ));
        assert_eq!(
            interval_of(&t, Duration::from_secs(30)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_key_keeps_its_slots_on_the_wall_clock() {
        let minute = Duration::from_secs(60);
        // From any moment, the next slot is within one interval, and the slot after it is
        // one interval later: the same phase of the clock whenever the loop starts.
        let first = next_slot(&"group-a", minute, at(1_000));
        assert!(first > Duration::ZERO && first <= minute);
        let slot = 1_000_000 + first.as_millis() as i64;
        let from_slot = next_slot(
            &"group-a",
            minute,
            Timestamp::from_millisecond(slot).unwrap(),
        );
        assert_eq!(from_slot, minute, "at a slot, the next is one interval on");
        let later = next_slot(&"group-a", minute, at(1_000 + 17));
        assert_eq!(
            (1_017_000 + later.as_millis() as i64 - slot).rem_euclid(60_000),
            0,
            "a restart 17 s later keeps the phase"
        );
        // Keys are spread: 100 keys do not share one slot.
        let slots: std::collections::BTreeSet<u128> = (0..100)
            .map(|i| next_slot(&format!("g{i}"), minute, at(0)).as_millis())
            .collect();
        assert!(slots.len() > 90, "{}", slots.len());
        assert_eq!(
            next_slot(&"k", Duration::ZERO, at(5)),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn handling_figures_are_shown_to_tenths_of_seconds() {
        let h = Handling {
            resolved: 3,
            within: 2,
            open_over: 1,
            mean_seconds: Some(12.345),
            p90_seconds: Some(30.06),
        };
        let f = resolution_figures(&h);
        assert_eq!((f.resolved, f.within_target), (3, 2));
        assert_eq!((f.mean_seconds, f.p90_seconds), (Some(12.3), Some(30.1)));
    }

    #[test]
    fn alerts_loaded_follows_what_prometheus_shows_and_goes_when_alerts_are_off() {
        let mut t = TargetBuilder::new("t").build();
        t.spec.alerting =
            Some(serde_json::from_value(serde_json::json!({"burnRateAlerts": true})).unwrap());
        let grace = Duration::from_secs(300);
        let written = AlertsSeen::Written { since: at(0) };
        let eval = |t: &ResponseTimeTarget, seen: Option<&AlertsSeen>, now| {
            decide(
                t,
                &counts(9_950.0, 10_000.0),
                BTreeMap::new(),
                None,
                seen.map(|s| (s, grace)),
                now,
                STATUS_PERIOD,
            )
        };
        let first = eval(&t, Some(&written), at(1));
        assert_eq!(
            cond(&first.status, ALERTS_LOADED),
            ("Unknown".into(), "Loading".into())
        );
        t.status = Some(first.status);
        // Shown by Prometheus: True at once (a gate reads it), not after the status period.
        let loaded = eval(&t, Some(&AlertsSeen::Loaded), at(10));
        assert_eq!(
            cond(&loaded.status, ALERTS_LOADED),
            ("True".into(), "Loaded".into())
        );
        // Not shown 300 s after the write: False NotLoaded.
        let late = eval(&t, Some(&written), at(300));
        assert_eq!(
            cond(&late.status, ALERTS_LOADED),
            ("False".into(), "NotLoaded".into())
        );
        // Nothing known (e.g. a cycle before the rules were synced): as it was.
        t.status = Some(loaded.status);
        let kept = eval(&t, None, at(20));
        assert_eq!(
            cond(&kept.status, ALERTS_LOADED),
            ("True".into(), "Loaded".into())
        );
        // Alerts switched off: the condition goes.
        t.spec.alerting = None;
        let off = eval(&t, Some(&AlertsSeen::Loaded), at(30));
        assert!(
            !off.status
                .common
                .conditions
                .iter()
                .any(|c| c.type_ == ALERTS_LOADED),
            "{:?}",
            off.status.common.conditions
        );
    }
}

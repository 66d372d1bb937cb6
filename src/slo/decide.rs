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
use super::{Evaluation, OBJECTIVE_MET, Observations, READY, Target, evaluate};
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

/// Evaluates `t` from `obs`. `figures` are set for an alertResolution target.
pub fn decide(
    t: &ResponseTimeTarget,
    obs: &Observations,
    queries: BTreeMap<String, String>,
    figures: Option<ResolutionFigures>,
    now: Timestamp,
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
    let now = Time(now);
    let mut status = desired_status(t, &evaluation, queries, &old, &now);
    status.resolution = figures;
    status.common.last_evaluated = old.common.last_evaluated.clone();
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

/// An Event for each of `Ready` and `ObjectiveMet` whose status changed.
fn transitions(old: &ResponseTimeTargetStatus, new: &ResponseTimeTargetStatus) -> Vec<Note> {
    let mut notes = Vec::new();
    for type_ in [READY, OBJECTIVE_MET] {
        let before = conditions::status_of(&old.common.conditions, type_);
        let Some(after) = new.common.conditions.iter().find(|c| c.type_ == type_) else {
            continue;
        };
        if before == Some(after.status.as_str()) {
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
                &eval.conditions,
                t.metadata.generation,
                now,
            ),
        },
        attainment: eval.attainment.map(|a| round(a, 4)),
        error_budget_remaining: eval.error_budget_remaining.map(|b| round(b, 4)),
        burn_rates: eval
            .burn_rates
            .iter()
            .map(|(w, b)| (w.clone(), round(*b, 3)))
            .collect(),
        events: eval.counts.map(|c| EventCounts {
            good: c.good.round(),
            total: c.total.round(),
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
    let window = t.spec.window.as_str();
    let mut out = BTreeMap::new();
    let eq: Option<Box<dyn EventQueries + '_>> = if let Some(l) = &t.spec.indicator.latency {
        out.insert("buckets".to_string(), bucket_boundaries(l));
        LatencyQueries::new(l)
            .ok()
            .map(|q| Box::new(q) as Box<dyn EventQueries>)
    } else {
        t.spec
            .indicator
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

/// The spec changed since the status was written (or there is no status yet): evaluate now.
pub fn urgent(t: &ResponseTimeTarget) -> bool {
    t.status.as_ref().and_then(|s| s.common.observed_generation) != t.metadata.generation
}

/// Where in its interval a group (or a single target, by `key`) is first due, so that
/// groups do not all fire together.
pub fn phase(key: &impl Hash, interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
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
    fn a_first_evaluation_writes_rounded_figures_and_announces_each_condition() {
        let t = TargetBuilder::new("t").build();
        // 9,950 of 10,000 good: 99.5 % against 99 %; 0.5 % bad of a 1 % budget leaves half.
        let out = decide(&t, &counts(9_950.0, 10_000.0), BTreeMap::new(), None, at(0));
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
        let reasons: Vec<&str> = out.notes.iter().map(|n| n.reason.as_str()).collect();
        assert_eq!(reasons, ["Evaluated", "WithinObjective"]);
        assert!(out.notes.iter().all(|n| !n.warning));
        assert!(
            out.notes[1]
                .message
                .starts_with("ObjectiveMet=True: attainment 99.500%")
        );
    }

    #[test]
    fn the_same_figures_again_change_nothing_and_a_miss_is_announced_once() {
        let first = decide(
            &TargetBuilder::new("t").build(),
            &counts(9_950.0, 10_000.0),
            BTreeMap::new(),
            None,
            at(0),
        );
        let t = TargetBuilder::new("t").status(&first.status).build();
        // 9,950.4 good rounds to the same status: no write, no new lastEvaluated, no Event.
        let same = decide(
            &t,
            &counts(9_950.000_04, 10_000.0),
            BTreeMap::new(),
            None,
            at(60),
        );
        assert_eq!(same.status, first.status);
        assert!(same.notes.is_empty());
        // 98 %: missed; only ObjectiveMet changed status, so one warning Event.
        let missed = decide(
            &t,
            &counts(9_800.0, 10_000.0),
            BTreeMap::new(),
            None,
            at(120),
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
        let low = decide(&t, &counts(100.0, 100.0), BTreeMap::new(), None, at(0));
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
            at(0),
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
            at(0),
        );
        assert_eq!(cond(&out.status, READY).0, "False");
        assert_eq!(out.evaluation.state, State::Error);
        assert_eq!(out.status.attainment, None);
    }

    #[test]
    fn a_target_is_urgent_until_its_status_describes_its_generation() {
        let t = TargetBuilder::new("t").generation(2).build();
        assert!(urgent(&t));
        let out = decide(&t, &counts(1.0, 1.0), BTreeMap::new(), None, at(0));
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
        assert!(phase(&"uid", Duration::from_secs(30)) < Duration::from_secs(30));
        assert_eq!(phase(&"uid", Duration::ZERO), Duration::ZERO);
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
}

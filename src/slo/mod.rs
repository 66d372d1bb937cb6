//! The pure core of ResponseTimeTarget: from what Prometheus answered to attainment,
//! error budget, burn rates and the three conditions. No I/O here: the controller
//! gathers observations, calls [`evaluate`], and writes the result.

pub mod batch;
pub mod decide;
pub mod queries;
pub mod recordings;
pub mod resolution;
pub mod rules;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::conditions::{Cond, Status};
use crate::prom::{QueryError, ValueError};

/// Lookback windows whose burn rate is reported in status and exported.
pub const BURN_WINDOWS: &[&str] = &["5m", "1h", "6h", "1d", "3d"];

/// Condition types of a ResponseTimeTarget.
pub const READY: &str = "Ready";
pub const OBJECTIVE_MET: &str = "ObjectiveMet";
pub const DATA_AVAILABLE: &str = "DataAvailable";

/// Why a figure could not be measured.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    Query(QueryError),
    #[error("{0}")]
    Value(ValueError),
    #[error(
        "threshold {threshold} is not a bucket boundary of {histogram}; available boundaries (seconds): {available}"
    )]
    ThresholdNotABucket {
        threshold: String,
        histogram: String,
        available: String,
    },
    #[error("no series of {histogram} match the selector, so its buckets are unknown")]
    NoHistogram { histogram: String },
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("no incident matching the selector was resolved in the window")]
    NoIncidents,
    /// A query of the target would read another namespace's series.
    #[error("{0}")]
    QueryNotAllowed(String),
}

impl Problem {
    /// CamelCase reason for conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::Query(QueryError::Unreachable { .. }) => "PrometheusUnreachable",
            Problem::Query(QueryError::Timeout { .. }) => "QueryTimeout",
            Problem::Query(QueryError::Rejected { .. }) => "QueryRejected",
            Problem::Query(QueryError::Http { .. }) => "PrometheusError",
            Problem::Query(QueryError::Decode(_)) => "PrometheusError",
            Problem::Query(QueryError::Stale { .. }) => "StaleAnswer",
            Problem::Value(ValueError::Empty) => "NoData",
            Problem::Value(ValueError::NaN) => "NoData",
            Problem::Value(ValueError::Infinite { .. }) => "InvalidValue",
            Problem::Value(ValueError::Several { .. }) => "AmbiguousQuery",
            Problem::ThresholdNotABucket { .. } => "ThresholdNotABucket",
            Problem::NoHistogram { .. } => "NoData",
            Problem::InvalidSpec(_) => "InvalidSpec",
            Problem::NoIncidents => "NoData",
            Problem::QueryNotAllowed(_) => "QueryNotAllowed",
        }
    }

    /// Whether the user must change the spec (as opposed to waiting for data or Prometheus).
    pub fn is_spec_error(&self) -> bool {
        crate::conditions::is_stalled_reason(self.reason())
    }
}

/// Good and total events over the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counts {
    pub good: f64,
    pub total: f64,
}

/// What the controller observed for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Observations {
    pub counts: Result<Counts, Problem>,
    /// Error ratio (bad / total) per burn window.
    pub error_ratios: BTreeMap<String, Result<f64, Problem>>,
}

/// Inputs from the spec.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// Percent, strictly between 0 and 100.
    pub objective: f64,
    pub window: Duration,
    pub min_request_rate: Option<f64>,
}

/// The result written to status and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub attainment: Option<f64>,
    pub error_budget_remaining: Option<f64>,
    pub burn_rates: BTreeMap<String, f64>,
    pub counts: Option<Counts>,
    pub state: State,
    pub conditions: Vec<Cond>,
}

/// Summary state, exported as a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Met,
    Missed,
    Unknown,
    Error,
}

impl State {
    pub const ALL: [State; 4] = [State::Met, State::Missed, State::Unknown, State::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Met => "met",
            State::Missed => "missed",
            State::Unknown => "unknown",
            State::Error => "error",
        }
    }
}

/// The error budget: the share of events allowed to be bad.
pub fn error_budget(objective_percent: f64) -> f64 {
    1.0 - objective_percent / 100.0
}

/// Burn rate of an error ratio: 1.0 spends the budget exactly over the window.
pub fn burn_rate(error_ratio: f64, objective_percent: f64) -> f64 {
    error_ratio / error_budget(objective_percent)
}

/// Decimals of an attainment as status and messages show it: 0.01 pp, or as many as the
/// objective has when it has more (99.995 → 0.001 pp).
pub fn attainment_decimals(objective: f64) -> i32 {
    let text = format!("{objective}");
    let decimals = text.split_once('.').map_or(0, |(_, d)| d.len()) as i32;
    decimals.clamp(2, 6)
}

/// An attainment as status and messages show it: rounded down to
/// [`attainment_decimals`], so a missed objective never reads as met.
pub fn shown_attainment(attainment: f64, objective: f64) -> f64 {
    crate::clock::floor(attainment, attainment_decimals(objective))
}

/// A remaining error budget (a fraction) or a burn rate as status and messages show it:
/// two significant digits.
pub fn shown_ratio(v: f64) -> f64 {
    crate::clock::significant(v, 2)
}

/// Event counts as status shows them: three significant digits (the exact counts are in
/// Prometheus; a status that moved with every request would be written every cycle).
pub fn shown_events(v: f64) -> f64 {
    crate::clock::significant(v.round(), 3)
}

/// Turns observations into figures and conditions.
pub fn evaluate(target: &Target, obs: &Observations) -> Evaluation {
    let burn_rates: BTreeMap<String, f64> = obs
        .error_ratios
        .iter()
        .filter_map(|(w, r)| {
            r.as_ref()
                .ok()
                .map(|e| (w.clone(), burn_rate(*e, target.objective)))
        })
        .collect();

    let counts = match &obs.counts {
        Ok(c) => *c,
        Err(problem) => {
            let spec_error = problem.is_spec_error();
            let msg = problem.to_string();
            let reason = problem.reason();
            return Evaluation {
                attainment: None,
                error_budget_remaining: None,
                burn_rates,
                counts: None,
                state: if spec_error {
                    State::Error
                } else {
                    State::Unknown
                },
                conditions: vec![
                    Cond::new(
                        READY,
                        if spec_error || reason != "NoData" {
                            Status::False
                        } else {
                            Status::True
                        },
                        reason,
                        msg.clone(),
                    ),
                    Cond::new(DATA_AVAILABLE, Status::False, reason, msg.clone()),
                    Cond::new(OBJECTIVE_MET, Status::Unknown, reason, msg),
                ],
            };
        }
    };

    let window_secs = target.window.as_secs_f64().max(1.0);
    let rate = counts.total / window_secs;
    if counts.total <= 0.0 {
        let msg = "no requests in the window".to_string();
        return Evaluation {
            attainment: None,
            error_budget_remaining: None,
            burn_rates,
            counts: Some(counts),
            state: State::Unknown,
            conditions: vec![
                Cond::new(READY, Status::True, "NoData", msg.clone()),
                Cond::new(DATA_AVAILABLE, Status::False, "NoData", msg.clone()),
                Cond::new(OBJECTIVE_MET, Status::Unknown, "NoData", msg),
            ],
        };
    }
    let good = counts.good.clamp(0.0, counts.total);
    let attainment = 100.0 * good / counts.total;
    let bad_ratio = 1.0 - good / counts.total;
    let budget_remaining = 1.0 - bad_ratio / error_budget(target.objective);
    // An objective of (nearly) 100 % leaves no budget to divide by: say so, never print a
    // non-finite number.
    let (budget_remaining, budget_text) = if budget_remaining.is_finite() {
        (
            Some(budget_remaining),
            format!(
                "{}% of the error budget left",
                shown_ratio(budget_remaining * 100.0)
            ),
        )
    } else {
        (
            None,
            "the objective leaves no error budget to measure".to_string(),
        )
    };
    let measured = format!(
        "attainment {}% (objective {}%), {budget_text}",
        shown_attainment(attainment, target.objective),
        target.objective,
    );

    if let Some(min) = target.min_request_rate
        && rate < min
    {
        let msg = format!(
            "low traffic: {} requests/s over the window, below minRequestRate {min}; {measured}",
            shown_ratio(rate)
        );
        return Evaluation {
            attainment: Some(attainment),
            error_budget_remaining: budget_remaining,
            burn_rates,
            counts: Some(counts),
            state: State::Unknown,
            conditions: vec![
                Cond::new(READY, Status::True, "LowTraffic", msg.clone()),
                Cond::new(DATA_AVAILABLE, Status::True, "LowTraffic", msg.clone()),
                Cond::new(OBJECTIVE_MET, Status::Unknown, "LowTraffic", msg),
            ],
        };
    }

    let met = attainment >= target.objective;
    Evaluation {
        attainment: Some(attainment),
        error_budget_remaining: budget_remaining,
        burn_rates,
        counts: Some(counts),
        state: if met { State::Met } else { State::Missed },
        conditions: vec![
            Cond::new(READY, Status::True, "Evaluated", measured.clone()),
            Cond::new(DATA_AVAILABLE, Status::True, "Measured", measured.clone()),
            if met {
                Cond::new(OBJECTIVE_MET, Status::True, "WithinObjective", measured)
            } else {
                Cond::new(OBJECTIVE_MET, Status::False, "ObjectiveMissed", measured)
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            objective: 99.5,
            window: Duration::from_secs(28 * 86400),
            min_request_rate: Some(0.1),
        }
    }

    fn obs(good: f64, total: f64) -> Observations {
        Observations {
            counts: Ok(Counts { good, total }),
            error_ratios: [
                ("1h".to_string(), Ok(0.01)),
                ("5m".to_string(), Err(Problem::Value(ValueError::NaN))),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn cond<'a>(e: &'a Evaluation, t: &str) -> &'a Cond {
        e.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn healthy_window_meets_the_objective() {
        let e = evaluate(&target(), &obs(999_000.0, 1_000_000.0));
        assert!((e.attainment.unwrap() - 99.9).abs() < 1e-9);
        // 0.1% bad of a 0.5% budget: 80% left.
        assert!((e.error_budget_remaining.unwrap() - 0.8).abs() < 1e-9);
        assert_eq!(e.state, State::Met);
        assert_eq!(cond(&e, OBJECTIVE_MET).status, Status::True);
        assert_eq!(cond(&e, READY).status, Status::True);
        // 1% errors over 1h against a 0.5% budget burn at 2x; NaN windows are left out.
        assert!((e.burn_rates["1h"] - 2.0).abs() < 1e-9);
        assert!(!e.burn_rates.contains_key("5m"));
    }

    #[test]
    fn an_objective_without_a_budget_never_prints_a_non_finite_number() {
        // 100 % (admission refuses it; the core must not trust that): no budget to divide.
        let t = Target {
            objective: 100.0,
            ..target()
        };
        let e = evaluate(&t, &obs(980_000.0, 1_000_000.0));
        assert_eq!(e.error_budget_remaining, None);
        for c in &e.conditions {
            assert!(
                !c.message.contains("inf") && !c.message.contains("NaN"),
                "{}",
                c.message
            );
        }
        assert!(
            cond(&e, OBJECTIVE_MET)
                .message
                .contains("the objective leaves no error budget to measure"),
            "{}",
            cond(&e, OBJECTIVE_MET).message
        );
    }

    #[test]
    fn degraded_window_misses_and_overspends() {
        let e = evaluate(&target(), &obs(980_000.0, 1_000_000.0));
        assert!((e.attainment.unwrap() - 98.0).abs() < 1e-9);
        // 2% bad of a 0.5% budget: 4 budgets spent, -300% left.
        assert!((e.error_budget_remaining.unwrap() + 3.0).abs() < 1e-9);
        assert_eq!(e.state, State::Missed);
        let c = cond(&e, OBJECTIVE_MET);
        assert_eq!(
            (c.status, c.reason.as_str()),
            (Status::False, "ObjectiveMissed")
        );
        assert!(
            c.message
                .contains("attainment 98% (objective 99.5%), -300% of the error budget left"),
            "{}",
            c.message
        );
    }

    #[test]
    fn low_traffic_is_unknown_not_a_breach() {
        // 1000 requests in 28 days is far below 0.1/s.
        let e = evaluate(&target(), &obs(900.0, 1000.0));
        assert_eq!(e.state, State::Unknown);
        let c = cond(&e, OBJECTIVE_MET);
        assert_eq!(
            (c.status, c.reason.as_str()),
            (Status::Unknown, "LowTraffic")
        );
        assert!(
            c.message.contains("below minRequestRate 0.1"),
            "{}",
            c.message
        );
    }

    #[test]
    fn no_requests_is_unknown() {
        let e = evaluate(&target(), &obs(0.0, 0.0));
        assert_eq!(cond(&e, OBJECTIVE_MET).status, Status::Unknown);
        assert_eq!(cond(&e, DATA_AVAILABLE).status, Status::False);
    }

    #[test]
    fn problems_map_to_reasons_and_ready() {
        let cases = [
            (
                Problem::Query(QueryError::Unreachable {
                    url: "u".into(),
                    reason: "refused".into(),
                }),
                "PrometheusUnreachable",
                Status::False,
                State::Unknown,
            ),
            (
                Problem::Query(QueryError::Rejected {
                    error_type: "bad_data".into(),
                    message: "parse error".into(),
                }),
                "QueryRejected",
                Status::False,
                State::Error,
            ),
            (
                Problem::Value(ValueError::Empty),
                "NoData",
                Status::True,
                State::Unknown,
            ),
            (
                Problem::ThresholdNotABucket {
                    threshold: "200ms".into(),
                    histogram: "h".into(),
                    available: "0.1, 0.25".into(),
                },
                "ThresholdNotABucket",
                Status::False,
                State::Error,
            ),
        ];
        for (problem, reason, ready, state) in cases {
            let e = evaluate(
                &target(),
                &Observations {
                    counts: Err(problem.clone()),
                    error_ratios: BTreeMap::new(),
                },
            );
            assert_eq!(e.state, state, "{reason}");
            assert_eq!(cond(&e, READY).status, ready, "{reason}");
            for t in [READY, DATA_AVAILABLE, OBJECTIVE_MET] {
                assert_eq!(cond(&e, t).reason, reason);
                assert_eq!(cond(&e, t).message, problem.to_string());
            }
            assert_eq!(
                cond(&e, OBJECTIVE_MET).status,
                Status::Unknown,
                "never a breach: {reason}"
            );
        }
    }
}

//! MaturityAssessment's decision, from plain values: the assessment (its status remembers
//! when each report was produced and the last report-now token acted on), the facts of its
//! namespace, the figures only the reports need and the report ConfigMap's data, to the
//! new status (level, capabilities, `nextLevel`, report times, `Ready` and
//! `TargetLevelMet`), the reports to write, and when to look again.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::PRACTICES;
use super::evaluate;
use super::evidence::{
    self, CanaryFacts, DrillFact, Facts, ReportFacts, Signal, TargetFact, Workload,
};
use crate::api::MaturityAssessment;
use crate::api::maturity_assessment::{
    MaturityAssessmentStatus, NextLevel, PracticeState, PracticeStatus,
};
use crate::api::names::{REPORT_NOW_ANNOTATION, report_config_map};
use crate::conditions::{self, Cond, Status};
use crate::prom::AlertRule;
use crate::report::{self, Period};

/// At most this many missing practices are named in `TargetLevelMet`'s message.
pub const MISSING_IN_MESSAGE: usize = 10;

/// Figures only the reports need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportExtras {
    pub targets: Vec<report::TargetFigures>,
    pub drills: Vec<report::DrillFigures>,
    pub canary_promoted: u32,
}

/// Everything read for one pass over an assessment.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Read fresh (its status remembers the reports).
    pub assessment: MaturityAssessment,
    /// The Deployments and StatefulSets in scope.
    pub workloads: Vec<Workload>,
    /// The namespace's ResponseTimeTargets.
    pub targets: Vec<TargetFact>,
    /// The namespace's CanaryPolicies and their totals.
    pub canary: CanaryFacts,
    /// The namespace's DrillSchedules.
    pub drills: Vec<DrillFact>,
    /// Prometheus's alerting rules of the namespace (Err: why they could not be read).
    pub rules: Result<Vec<AlertRule>, String>,
    /// The declared business signals: (value, minimum).
    pub satisfaction: Signal<(f64, f64)>,
    /// (category, complaints in the last day), one per series.
    pub complaints: Signal<Vec<(String, f64)>>,
    /// (forecast at the horizon, capacity).
    pub demand: Signal<(f64, f64)>,
    pub extras: ReportExtras,
    /// The data of the report ConfigMap; read only when a report is due ([`reports_due`]),
    /// empty when it does not exist.
    pub report_data: BTreeMap<String, String>,
    /// How often the assessment is evaluated again.
    pub interval: Duration,
}

/// Reports to write into the report ConfigMap.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportWrite {
    pub config_map: String,
    /// The whole data: the reports produced now and the others as they were.
    pub data: BTreeMap<String, String>,
    /// The periods produced now.
    pub periods: Vec<Period>,
}

/// What to do after a pass.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Written after the reports: it records their times.
    pub status: MaturityAssessmentStatus,
    pub report: Option<ReportWrite>,
    pub requeue: Duration,
}

fn name_of(a: &MaturityAssessment) -> String {
    let m = &a.metadata;
    m.name
        .clone()
        .or_else(|| m.generate_name.clone())
        .unwrap_or_default()
}

/// The facts `evidence::measure` decides from.
pub fn facts(o: &Observed, now: Timestamp) -> Facts {
    let a = &o.assessment;
    let wanted = a.spec.reports.clone().unwrap_or_default();
    let times = a
        .status
        .as_ref()
        .and_then(|s| s.reports.clone())
        .unwrap_or_default();
    Facts {
        now,
        workloads: o.workloads.clone(),
        targets: o.targets.clone(),
        canary: o.canary.clone(),
        drills: o.drills.clone(),
        rules: o.rules.clone(),
        namespace: a.metadata.namespace.clone().unwrap_or_default(),
        satisfaction: o.satisfaction.clone(),
        complaints: o.complaints.as_ref().map(|c| {
            c.as_ref()
                .map(|v| v.iter().filter(|(_, n)| *n > 0.0).count())
                .map_err(Clone::clone)
        }),
        demand: o.demand.clone(),
        reports: ReportFacts {
            weekly: wanted.weekly,
            monthly: wanted.monthly,
            last_weekly: times.last_weekly.map(|t| t.0),
            last_monthly: times.last_monthly.map(|t| t.0),
        },
    }
}

/// Every practice's state on `now`'s date (UTC), in the catalogue's order.
pub fn practices(a: &MaturityAssessment, facts: &Facts, now: Timestamp) -> Vec<PracticeStatus> {
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let measured = evidence::measure(facts);
    PRACTICES
        .iter()
        .map(|p| {
            evaluate::practice_state(
                p,
                measured.get(p.id),
                a.spec.attestations.iter().find(|x| x.practice == p.id),
                a.spec.exemptions.iter().find(|x| x.practice == p.id),
                today,
            )
        })
        .collect()
}

/// `Ready`: False when the alerting rules could not be read, True otherwise; both name
/// the practices left Unknown.
pub fn ready(
    level: u8,
    rules: &Result<Vec<AlertRule>, String>,
    practices: &[PracticeStatus],
) -> Cond {
    let unknown: Vec<&str> = practices
        .iter()
        .filter(|p| p.state == PracticeState::Unknown)
        .map(|p| p.id.as_str())
        .collect();
    let unknown_ids = unknown.join(", ");
    match rules {
        Err(why) => Cond::new(
            "Ready",
            Status::False,
            "PrometheusUnreachable",
            format!(
                "level {level} from what could be read; {} practices Unknown ({unknown_ids}): {why}",
                unknown.len()
            ),
        ),
        Ok(_) => Cond::new(
            "Ready",
            Status::True,
            "Evaluated",
            if unknown.is_empty() {
                format!("level {level}")
            } else {
                format!("level {level}; Unknown: {unknown_ids}")
            },
        ),
    }
}

/// `TargetLevelMet` against `target`, naming what the next level misses when below it.
pub fn target_level_met(level: u8, target: i32, next: Option<&NextLevel>) -> Cond {
    if level as i32 >= target {
        return Cond::new(
            "TargetLevelMet",
            Status::True,
            "LevelReached",
            format!("level {level}, target {target}"),
        );
    }
    let missing: Vec<&str> = next
        .map(|n| {
            n.missing
                .iter()
                .map(|m| m.practice.as_str())
                .take(MISSING_IN_MESSAGE)
                .collect()
        })
        .unwrap_or_default();
    Cond::new(
        "TargetLevelMet",
        Status::False,
        "BelowTarget",
        format!(
            "level {level}, target {target}; next level misses {}",
            missing.join(", ")
        ),
    )
}

/// `Ready`, and `TargetLevelMet` when the assessment sets a target level.
pub fn conditions(
    a: &MaturityAssessment,
    level: u8,
    rules: &Result<Vec<AlertRule>, String>,
    practices: &[PracticeStatus],
    next: Option<&NextLevel>,
) -> Vec<Cond> {
    let mut conds = vec![ready(level, rules, practices)];
    if let Some(target) = a.spec.target_level {
        conds.push(target_level_met(level, target, next));
    }
    conds
}

/// The report-now annotation's value when it was not acted on yet.
pub fn new_token(a: &MaturityAssessment) -> Option<String> {
    let last = a
        .status
        .as_ref()
        .and_then(|s| s.reports.as_ref())
        .and_then(|r| r.last_report_now.as_ref());
    a.metadata
        .annotations
        .as_ref()
        .and_then(|m| m.get(REPORT_NOW_ANNOTATION))
        .filter(|v| Some(*v) != last)
        .cloned()
}

/// The enabled reports that are due at `now`: never produced, produced at least their
/// period ago, or asked for with a new report-now token.
pub fn reports_due(a: &MaturityAssessment, now: Timestamp) -> Vec<Period> {
    let wanted = a.spec.reports.clone().unwrap_or_default();
    let times = a
        .status
        .as_ref()
        .and_then(|s| s.reports.clone())
        .unwrap_or_default();
    let token = new_token(a).is_some();
    [
        (Period::Weekly, wanted.weekly, times.last_weekly),
        (Period::Monthly, wanted.monthly, times.last_monthly),
    ]
    .into_iter()
    .filter(|(period, enabled, last)| {
        let stale = last
            .as_ref()
            .is_none_or(|t| now.as_second() - t.0.as_second() >= period.days() * 86_400);
        *enabled && (stale || token)
    })
    .map(|(period, _, _)| period)
    .collect()
}

/// What the previous report of this period said: (level, satisfaction, complaints of all
/// categories).
fn previous(
    data: &BTreeMap<String, String>,
    period: Period,
) -> (Option<i32>, Option<f64>, Option<f64>) {
    let previous: Option<serde_json::Value> = data
        .get(&format!("{}.json", period.key()))
        .and_then(|j| serde_json::from_str(j).ok());
    let Some(v) = previous else {
        return (None, None, None);
    };
    let complaints = v["complaints"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c[1].as_f64()).sum::<f64>());
    (
        v["level"].as_i64().map(|l| l as i32),
        v["satisfaction"].as_f64(),
        complaints,
    )
}

/// The report of `period`, from the new status, the facts and the previous report in `data`.
pub fn report_content(
    o: &Observed,
    status: &MaturityAssessmentStatus,
    period: Period,
    now: Timestamp,
    data: &BTreeMap<String, String>,
) -> report::Report {
    let (previous_level, previous_satisfaction, previous_complaints) = previous(data, period);
    report::Report {
        assessment: name_of(&o.assessment),
        namespace: o.assessment.metadata.namespace.clone().unwrap_or_default(),
        period,
        generated_at: now.to_string(),
        level: status.level.unwrap_or(1),
        previous_level,
        previous_satisfaction,
        previous_complaints,
        capabilities: status
            .capabilities
            .iter()
            .map(|c| (c.id.clone(), c.level))
            .collect(),
        targets: o.extras.targets.clone(),
        canary_analyzed: o.canary.analyzed,
        canary_promoted: o.extras.canary_promoted,
        canary_rolled_back: o.canary.rolled_back,
        drills: o.extras.drills.clone(),
        satisfaction: o
            .satisfaction
            .as_ref()
            .and_then(|s| s.as_ref().ok())
            .map(|(v, _)| *v),
        complaints: match &o.complaints {
            Some(Ok(c)) => c.clone(),
            _ => Vec::new(),
        },
        demand: o.demand.as_ref().and_then(|d| d.as_ref().ok()).copied(),
        recommendations: report::recommendations(status.next_level.as_ref()),
    }
}

/// Produces the reports that are due into the report ConfigMap's data and records their
/// times (and a new report-now token) in `status`.
pub fn reports(
    o: &Observed,
    now: Timestamp,
    status: &mut MaturityAssessmentStatus,
) -> Option<ReportWrite> {
    let a = &o.assessment;
    let due = reports_due(a, now);
    let mut times = status.reports.clone().unwrap_or_default();
    if let Some(t) = new_token(a) {
        times.last_report_now = Some(t);
    }
    if due.is_empty() {
        if times != status.reports.clone().unwrap_or_default() {
            status.reports = Some(times);
        }
        return None;
    }
    let mut data = o.report_data.clone();
    for &period in &due {
        let r = report_content(o, status, period, now, &data);
        data.insert(format!("{}.md", period.key()), r.markdown());
        data.insert(
            format!("{}.json", period.key()),
            serde_json::to_string_pretty(&r).unwrap_or_default(),
        );
        match period {
            Period::Weekly => times.last_weekly = Some(Time(now)),
            Period::Monthly => times.last_monthly = Some(Time(now)),
        }
    }
    let config_map = report_config_map(&name_of(a));
    times.config_map = Some(config_map.clone());
    status.reports = Some(times);
    Some(ReportWrite {
        config_map,
        data,
        periods: due,
    })
}

/// The pass: every practice, the level, the conditions, the reports that are due, and
/// `lastEvaluated` moved only when something changed.
pub fn decide(o: &Observed, now: Timestamp) -> Outcome {
    let a = &o.assessment;
    let facts = facts(o, now);
    let practices = practices(a, &facts, now);
    let (level, capabilities, next_level) = evaluate::assess(&practices);
    let old = a.status.clone().unwrap_or_default();
    let mut status = old.clone();
    status.level = Some(level as i32);
    status.capabilities = capabilities;
    status.next_level = next_level;
    let conds = conditions(
        a,
        level,
        &facts.rules,
        &practices,
        status.next_level.as_ref(),
    );
    let report = reports(o, now, &mut status);
    let generation = a.metadata.generation;
    status.common.conditions =
        conditions::merge(&status.common.conditions, &conds, generation, &Time(now));
    status.common.observed_generation = generation;
    if status != old {
        status.common.last_evaluated = Some(Time(now));
    }
    Outcome {
        status,
        report,
        requeue: o.interval,
    }
}

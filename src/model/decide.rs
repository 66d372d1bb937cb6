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
use super::evaluate::{self, Claim};
use super::evidence::{
    self, AlertingFacts, CanaryFacts, DrillFact, Facts, ReportFacts, Signal, TargetFact, Workload,
};
use super::report::{self, Period};
use crate::api::MaturityAssessment;
use crate::api::maturity_assessment::{
    DeliveryRecord, MaturityAssessmentStatus, NextLevel, PracticeState, PracticeStatus,
};
use crate::api::names::{REPORT_NOW_ANNOTATION, report_config_map};
use crate::attest::Verified;
use crate::conditions::{self, Cond, Status};
use crate::prom::AlertRule;

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
    /// Which attestations and exemptions the operator's webhook recorded as they are.
    pub verified: Verified,
    /// What Alertmanager shows of the scope's alerts.
    pub alerting: AlertingFacts,
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

/// A report to POST to the assessment's receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub period: Period,
    pub url: String,
    /// The report's JSON.
    pub body: String,
}

/// What to do after a pass.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Written after the reports: it records their times.
    pub status: MaturityAssessmentStatus,
    pub report: Option<ReportWrite>,
    /// Reports to deliver after the ConfigMap is written; [`delivered`] records the answers
    /// into `status` before it is written.
    pub deliveries: Vec<Delivery>,
    pub requeue: Duration,
}

/// How long after a failed delivery it is tried again.
pub const DELIVERY_RETRY: Duration = Duration::from_secs(300);

/// The periods of the reports to deliver now: each one produced in this pass, and one
/// produced earlier but not delivered yet when the last attempt is [`DELIVERY_RETRY`] old.
fn delivery_periods(
    a: &MaturityAssessment,
    status: &MaturityAssessmentStatus,
    now: Timestamp,
) -> Vec<Period> {
    if a.spec
        .reports
        .as_ref()
        .and_then(|r| r.webhook.as_ref())
        .is_none()
    {
        return Vec::new();
    }
    let old = a
        .status
        .as_ref()
        .and_then(|s| s.reports.clone())
        .unwrap_or_default();
    let new = status.reports.clone().unwrap_or_default();
    let retry = old
        .last_delivery
        .as_ref()
        .is_none_or(|d| now.as_second() - d.at.0.as_second() >= DELIVERY_RETRY.as_secs() as i64);
    [
        (
            Period::Weekly,
            &old.last_weekly,
            &new.last_weekly,
            &new.weekly_delivered,
        ),
        (
            Period::Monthly,
            &old.last_monthly,
            &new.last_monthly,
            &new.monthly_delivered,
        ),
    ]
    .into_iter()
    .filter(|(_, before, produced, delivered)| {
        let fresh = produced.is_some() && produced != before;
        let undelivered = match (produced, delivered) {
            (Some(p), Some(d)) => d.0 < p.0,
            (Some(_), None) => true,
            _ => false,
        };
        fresh || (undelivered && retry)
    })
    .map(|(period, ..)| period)
    .collect()
}

/// The reports to deliver now ([`delivery_periods`]), their bodies from the ConfigMap's
/// `data`.
pub fn deliveries(
    a: &MaturityAssessment,
    status: &MaturityAssessmentStatus,
    data: &BTreeMap<String, String>,
    now: Timestamp,
) -> Vec<Delivery> {
    let Some(hook) = a.spec.reports.as_ref().and_then(|r| r.webhook.as_ref()) else {
        return Vec::new();
    };
    delivery_periods(a, status, now)
        .into_iter()
        .filter_map(|period| {
            Some(Delivery {
                period,
                url: hook.url.clone(),
                body: data.get(&format!("{}.json", period.key()))?.clone(),
            })
        })
        .collect()
}

/// The answers of [`deliveries`] into `status`: a 2xx answer is a delivery.
pub fn delivered(
    status: &mut MaturityAssessmentStatus,
    answers: &[(Period, Result<u16, String>)],
    now: Timestamp,
) {
    let mut times = status.reports.clone().unwrap_or_default();
    for (period, answer) in answers {
        let ok = matches!(answer, Ok(code) if (200..300).contains(code));
        times.last_delivery = Some(DeliveryRecord {
            period: period.key().into(),
            at: Time(now),
            result: match answer {
                Ok(code) => format!("HTTP {code}"),
                Err(why) => why.clone(),
            },
            delivered: ok,
        });
        if ok {
            match period {
                Period::Weekly => times.weekly_delivered = Some(Time(now)),
                Period::Monthly => times.monthly_delivered = Some(Time(now)),
            }
        }
    }
    status.reports = Some(times);
}

/// Whether the pass needs the report ConfigMap's data: a report is due, or one waits to be
/// delivered again.
pub fn report_data_needed(a: &MaturityAssessment, now: Timestamp) -> bool {
    let status = a.status.clone().unwrap_or_default();
    !reports_due(a, now).is_empty() || !delivery_periods(a, &status, now).is_empty()
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
        alerting: o.alerting.clone(),
        reports: ReportFacts {
            weekly: wanted.weekly,
            monthly: wanted.monthly,
            last_weekly: times.last_weekly.map(|t| t.0),
            last_monthly: times.last_monthly.map(|t| t.0),
            receiver: wanted.webhook.is_some(),
            weekly_delivered: times.weekly_delivered.map(|t| t.0),
            monthly_delivered: times.monthly_delivered.map(|t| t.0),
            last_delivery: times
                .last_delivery
                .map(|d| format!("{} at {}: {}", d.period, d.at.0, d.result)),
        },
    }
}

/// Every practice's state on `now`'s date (UTC), in the catalogue's order.
/// Attestations and exemptions count only as `verified` says the webhook recorded them.
pub fn practices(
    a: &MaturityAssessment,
    facts: &Facts,
    verified: &Verified,
    now: Timestamp,
) -> Vec<PracticeStatus> {
    let today = crate::clock::utc_date(now);
    let measured = evidence::measure(facts);
    PRACTICES
        .iter()
        .map(|p| {
            let attestation = a.spec.attestations.iter().find(|x| x.practice == p.id);
            let exemption = a.spec.exemptions.iter().find(|x| x.practice == p.id);
            evaluate::practice_state(
                p,
                measured.get(p.id),
                attestation.map(|entry| Claim {
                    entry,
                    recorded: verified.attestations.contains(p.id),
                }),
                exemption.map(|entry| Claim {
                    entry,
                    recorded: verified.exemptions.contains(p.id),
                }),
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
    let last = o
        .assessment
        .status
        .as_ref()
        .and_then(|s| s.reports.as_ref())
        .and_then(|r| match period {
            Period::Weekly => r.last_weekly.clone(),
            Period::Monthly => r.last_monthly.clone(),
        });
    let from = last.map(|t| t.0).unwrap_or_else(|| {
        crate::clock::sub(now, Duration::from_secs(period.days() as u64 * 86_400))
    });
    let history = super::history::period(
        &status.changes,
        (from, now),
        status.level.unwrap_or(1),
        (&o.assessment.spec, &o.verified),
        period.days(),
    );
    let state = |id: &str| {
        status
            .capabilities
            .iter()
            .flat_map(|c| &c.practices)
            .find(|p| p.id == id)
            .map(|p| format!("{:?}", p.state))
            .unwrap_or_default()
    };
    let exemptions = o
        .assessment
        .spec
        .exemptions
        .iter()
        .map(|e| report::ExemptionLine {
            practice: e.practice.clone(),
            requested_by: e.requested_by.clone(),
            approved_by: e.approved_by.clone(),
            until: e.until.as_str().to_string(),
            state: state(&e.practice),
        })
        .collect();
    report::Report {
        history,
        exemptions,
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

/// How often the heartbeat is refreshed when nothing else changed: an idle assessment
/// costs one status write per this long, and a gate sees a live operator.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(600);

/// The heartbeat is missing, older than [`HEARTBEAT_EVERY`], or in the future (a clock
/// that went back): refresh it.
fn heartbeat_due(last: Option<&Time>, now: Timestamp) -> bool {
    let Some(last) = last else { return true };
    let age = now.duration_since(last.0);
    age.is_negative() || age.unsigned_abs() >= HEARTBEAT_EVERY
}

/// The pass: every practice, the level, the conditions, the reports that are due, and
/// `lastEvaluated` moved only when something changed.
pub fn decide(o: &Observed, now: Timestamp) -> Outcome {
    let a = &o.assessment;
    let facts = facts(o, now);
    let practices = practices(a, &facts, &o.verified, now);
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
    super::history::record(&old, &mut status, now);
    let report = reports(o, now, &mut status);
    let data = report.as_ref().map(|r| &r.data).unwrap_or(&o.report_data);
    let deliveries = deliveries(a, &status, data, now);
    let generation = a.metadata.generation;
    status.common.conditions =
        conditions::merge(&status.common.conditions, &conds, generation, &Time(now));
    status.common.observed_generation = generation;
    if status != old {
        status.common.last_evaluated = Some(Time(now));
    }
    if status != old || heartbeat_due(old.heartbeat.as_ref(), now) {
        status.heartbeat = Some(Time(now));
    }
    Outcome {
        status,
        report,
        deliveries,
        requeue: o.interval,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    use super::*;
    use crate::api::maturity_assessment::ReportTimes;
    use crate::testing::{AssessmentBuilder, ts};

    const NOW: &str = "2026-11-25T12:00:00Z";

    /// Nothing in the namespace, rules readable, no signal declared; every attestation and
    /// exemption of `a` as the webhook recorded it.
    fn observed(a: MaturityAssessment) -> Observed {
        let verified = Verified {
            attestations: a
                .spec
                .attestations
                .iter()
                .map(|x| x.practice.clone())
                .collect(),
            exemptions: a
                .spec
                .exemptions
                .iter()
                .map(|x| x.practice.clone())
                .collect(),
        };
        Observed {
            assessment: a,
            workloads: Vec::new(),
            targets: Vec::new(),
            canary: CanaryFacts::default(),
            drills: Vec::new(),
            rules: Ok(Vec::new()),
            satisfaction: None,
            complaints: None,
            demand: None,
            extras: ReportExtras::default(),
            report_data: BTreeMap::new(),
            interval: Duration::from_secs(300),
            verified,
            alerting: AlertingFacts::NotConfigured,
        }
    }

    fn cond<'a>(s: &'a MaturityAssessmentStatus, type_: &str) -> Option<&'a Condition> {
        s.common.conditions.iter().find(|c| c.type_ == type_)
    }

    fn expect(
        s: &MaturityAssessmentStatus,
        type_: &str,
        status: &str,
        reason: &str,
        message: &str,
    ) {
        let c = cond(s, type_).unwrap_or_else(|| panic!("no {type_}"));
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
            (status, reason, message)
        );
    }

    #[test]
    fn a_produced_report_is_delivered_and_a_failed_delivery_retried_after_five_minutes() {
        // Produced in this pass: delivered in this pass.
        let a = AssessmentBuilder::new("a")
            .weekly()
            .report_webhook("https://reports.example/in")
            .build();
        let out = decide(&observed(a.clone()), ts(NOW));
        assert_eq!(out.deliveries.len(), 1);
        let d = &out.deliveries[0];
        assert_eq!(
            (d.period, d.url.as_str()),
            (Period::Weekly, "https://reports.example/in")
        );
        let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
        assert_eq!(body["period"], "weekly");
        // The receiver answers 500: recorded, not delivered.
        let mut failed = out.status.clone();
        delivered(&mut failed, &[(Period::Weekly, Ok(500))], ts(NOW));
        let r = failed.reports.clone().unwrap();
        assert_eq!(r.weekly_delivered, None);
        let last = r.last_delivery.unwrap();
        assert_eq!((last.result.as_str(), last.delivered), ("HTTP 500", false));
        // Four minutes later: not again; five minutes later: again, from the ConfigMap.
        let data = out.report.clone().unwrap().data;
        let later = |t: &str| {
            let a = AssessmentBuilder::new("a")
                .weekly()
                .report_webhook("https://reports.example/in")
                .status(failed.clone())
                .build();
            let mut o = observed(a);
            o.report_data = data.clone();
            decide(&o, ts(t)).deliveries
        };
        assert!(later("2026-11-25T12:04:00Z").is_empty());
        let again = later("2026-11-25T12:05:00Z");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].body, data["weekly.json"]);
        // A 2xx answer is the delivery; nothing is sent again until the next report.
        let mut ok = failed.clone();
        delivered(
            &mut ok,
            &[(Period::Weekly, Ok(204))],
            ts("2026-11-25T12:05:00Z"),
        );
        assert_eq!(
            ok.reports.as_ref().unwrap().weekly_delivered,
            Some(Time(ts("2026-11-25T12:05:00Z")))
        );
        let a = AssessmentBuilder::new("a")
            .weekly()
            .report_webhook("https://reports.example/in")
            .status(ok)
            .build();
        assert!(
            decide(&observed(a), ts("2026-11-26T12:00:00Z"))
                .deliveries
                .is_empty()
        );
        // Without a receiver nothing is delivered.
        let a = AssessmentBuilder::new("a").weekly().build();
        assert!(decide(&observed(a), ts(NOW)).deliveries.is_empty());
    }

    #[test]
    fn a_weekly_report_is_due_when_never_produced() {
        let a = AssessmentBuilder::new("a").weekly().build();
        assert_eq!(reports_due(&a, ts(NOW)), vec![Period::Weekly]);
        let a = AssessmentBuilder::new("a").weekly().monthly().build();
        assert_eq!(
            reports_due(&a, ts(NOW)),
            vec![Period::Weekly, Period::Monthly]
        );
    }

    #[test]
    fn a_weekly_report_is_due_seven_days_after_the_last_not_before() {
        let a = AssessmentBuilder::new("a")
            .weekly()
            .last_weekly("2026-11-18T12:00:00Z")
            .build();
        assert_eq!(reports_due(&a, ts("2026-11-25T11:00:00Z")), vec![]);
        assert_eq!(reports_due(&a, ts("2026-11-25T11:59:59Z")), vec![]);
        assert_eq!(
            reports_due(&a, ts("2026-11-25T12:00:00Z")),
            vec![Period::Weekly]
        );
    }

    #[test]
    fn a_monthly_report_is_due_thirty_days_after_the_last() {
        let a = AssessmentBuilder::new("a")
            .monthly()
            .last_monthly("2026-10-26T12:00:00Z")
            .build();
        assert_eq!(reports_due(&a, ts("2026-11-25T11:59:59Z")), vec![]);
        assert_eq!(
            reports_due(&a, ts("2026-11-25T12:00:00Z")),
            vec![Period::Monthly]
        );
    }

    #[test]
    fn a_new_report_now_token_makes_every_enabled_report_due_once_and_is_remembered() {
        let a = AssessmentBuilder::new("a")
            .weekly()
            .monthly()
            .last_weekly("2026-11-24T12:00:00Z")
            .last_monthly("2026-11-24T12:00:00Z")
            .last_report_now("t0")
            .report_now("t1")
            .build();
        assert_eq!(
            reports_due(&a, ts(NOW)),
            vec![Period::Weekly, Period::Monthly]
        );
        let out = decide(&observed(a.clone()), ts(NOW));
        let write = out.report.expect("reports to write");
        assert_eq!(write.periods, vec![Period::Weekly, Period::Monthly]);
        let times = out.status.reports.clone().unwrap();
        assert_eq!(times.last_report_now.as_deref(), Some("t1"));
        assert_eq!(times.last_weekly, Some(Time(ts(NOW))));
        assert_eq!(times.last_monthly, Some(Time(ts(NOW))));
        // The next pass, an hour later, with the same token: nothing is due.
        let again = AssessmentBuilder::new("a")
            .weekly()
            .monthly()
            .report_now("t1")
            .status(out.status)
            .build();
        let later = ts("2026-11-25T13:00:00Z");
        assert_eq!(reports_due(&again, later), vec![]);
        assert!(decide(&observed(again), later).report.is_none());
    }

    #[test]
    fn the_same_token_again_does_nothing() {
        let a = AssessmentBuilder::new("a")
            .weekly()
            .last_weekly("2026-11-24T12:00:00Z")
            .last_report_now("t1")
            .report_now("t1")
            .build();
        assert_eq!(new_token(&a), None);
        assert_eq!(reports_due(&a, ts(NOW)), vec![]);
        let out = decide(&observed(a.clone()), ts(NOW));
        assert!(out.report.is_none());
        assert_eq!(out.status.reports, a.status.unwrap().reports);
    }

    #[test]
    fn a_disabled_period_is_never_due_even_with_a_token() {
        // Monthly never produced but not enabled: only the weekly one.
        let a = AssessmentBuilder::new("a")
            .weekly()
            .last_weekly("2026-11-24T12:00:00Z")
            .report_now("t1")
            .build();
        assert_eq!(reports_due(&a, ts(NOW)), vec![Period::Weekly]);
        // Nothing enabled: nothing due, nothing written, but the token is remembered.
        let a = AssessmentBuilder::new("a").report_now("t2").build();
        assert_eq!(reports_due(&a, ts(NOW)), vec![]);
        let out = decide(&observed(a), ts(NOW));
        assert!(out.report.is_none());
        assert_eq!(
            out.status.reports,
            Some(ReportTimes {
                last_report_now: Some("t2".into()),
                ..Default::default()
            })
        );
    }

    #[test]
    fn no_report_and_no_report_times_when_none_is_enabled() {
        let out = decide(&observed(AssessmentBuilder::new("a").build()), ts(NOW));
        assert!(out.report.is_none());
        assert_eq!(out.status.reports, None);
    }

    #[test]
    fn a_report_carries_the_new_level_the_figures_and_the_previous_report() {
        let a = AssessmentBuilder::new("payments")
            .exempt_up_to(3, &[])
            .weekly()
            .build();
        let mut o = observed(a);
        o.canary = CanaryFacts {
            policies: 1,
            analyzed: 4,
            rolled_back: 1,
            unguarded: Vec::new(),
        };
        o.extras.canary_promoted = 3;
        o.satisfaction = Some(Ok((0.95, 0.9)));
        o.complaints = Some(Ok(vec![("billing".into(), 2.0)]));
        o.demand = Some(Err("no data".into()));
        o.report_data = BTreeMap::from([
            (
                "weekly.json".to_string(),
                r#"{"level": 1, "satisfaction": 0.8, "complaints": [["a", 2.0], ["b", 3.0]]}"#
                    .to_string(),
            ),
            ("monthly.md".to_string(), "kept".to_string()),
        ]);
        let out = decide(&o, ts(NOW));
        let w = out.report.expect("the weekly report");
        assert_eq!(w.config_map, "payments-report");
        assert_eq!(w.periods, vec![Period::Weekly]);
        assert_eq!(w.data["monthly.md"], "kept");
        assert!(w.data["weekly.md"].contains("Weekly operations report"));
        let json: serde_json::Value = serde_json::from_str(&w.data["weekly.json"]).unwrap();
        assert_eq!(json["assessment"], "payments");
        assert_eq!(json["namespace"], "shop");
        assert_eq!(json["period"], "weekly");
        assert_eq!(json["generatedAt"], NOW);
        assert_eq!(json["level"], 3);
        assert_eq!(json["previousLevel"], 1);
        assert_eq!(json["previousSatisfaction"], 0.8);
        assert_eq!(json["previousComplaints"], 5.0);
        assert_eq!(json["canaryAnalyzed"], 4);
        assert_eq!(json["canaryPromoted"], 3);
        assert_eq!(json["canaryRolledBack"], 1);
        assert_eq!(json["satisfaction"], 0.95);
        assert_eq!(json["complaints"], serde_json::json!([["billing", 2.0]]));
        assert_eq!(json["demand"], serde_json::Value::Null);
        assert_eq!(json["capabilities"][0], serde_json::json!(["ORG", 3]));
        let times = out.status.reports.unwrap();
        assert_eq!(times.config_map.as_deref(), Some("payments-report"));
        assert_eq!(times.last_weekly, Some(Time(ts(NOW))));
        assert_eq!(times.last_monthly, None);
    }

    #[test]
    fn complaints_count_the_categories_with_data() {
        let mut o = observed(AssessmentBuilder::new("a").build());
        o.complaints = Some(Ok(vec![
            ("a".into(), 0.0),
            ("b".into(), 2.0),
            ("c".into(), 1.0),
        ]));
        assert_eq!(facts(&o, ts(NOW)).complaints, Some(Ok(2)));
        o.complaints = Some(Err("timeout".into()));
        assert_eq!(facts(&o, ts(NOW)).complaints, Some(Err("timeout".into())));
    }

    #[test]
    fn ready_is_evaluated_with_the_level() {
        let out = decide(&observed(AssessmentBuilder::new("a").build()), ts(NOW));
        assert_eq!(out.status.level, Some(1));
        expect(&out.status, "Ready", "True", "Evaluated", "level 1");
        // Every practice at levels 2 and 3 exempt, nothing else in place: level 3.
        let a = AssessmentBuilder::new("a").exempt_up_to(3, &[]).build();
        let out = decide(&observed(a), ts(NOW));
        assert_eq!(out.status.level, Some(3));
        assert!(out.status.capabilities.iter().all(|c| c.level == 3));
        assert_eq!(out.status.next_level.as_ref().map(|n| n.level), Some(4));
        expect(&out.status, "Ready", "True", "Evaluated", "level 3");
        // Everything exempt: level 5, no next level.
        let out = decide(
            &observed(AssessmentBuilder::new("a").exempt_up_to(5, &[]).build()),
            ts(NOW),
        );
        assert_eq!(out.status.level, Some(5));
        assert_eq!(out.status.next_level, None);
        expect(&out.status, "Ready", "True", "Evaluated", "level 5");
    }

    #[test]
    fn ready_names_the_practices_a_signal_left_unknown() {
        let mut o = observed(AssessmentBuilder::new("a").build());
        o.satisfaction = Some(Err("no data".into()));
        let out = decide(&o, ts(NOW));
        expect(
            &out.status,
            "Ready",
            "True",
            "Evaluated",
            "level 1; Unknown: ORG-3.5, CX-2.3, COMM-2.4",
        );
        // An exempt practice is not Unknown.
        let mut o = observed(AssessmentBuilder::new("a").exempt_up_to(2, &[]).build());
        o.satisfaction = Some(Err("no data".into()));
        o.demand = Some(Err("horizon: bad".into()));
        let out = decide(&o, ts(NOW));
        expect(
            &out.status,
            "Ready",
            "True",
            "Evaluated",
            "level 2; Unknown: ORG-3.5, CX-4.5, RESP-4.4",
        );
    }

    #[test]
    fn ready_is_false_when_the_alerting_rules_cannot_be_read() {
        let mut o = observed(AssessmentBuilder::new("a").build());
        o.rules = Err("connection refused".into());
        let out = decide(&o, ts(NOW));
        expect(
            &out.status,
            "Ready",
            "False",
            "PrometheusUnreachable",
            "level 1 from what could be read; 5 practices Unknown \
             (CX-2.4, BIZ-3.1, BIZ-4.2, COMM-2.2, RESP-2.3): connection refused",
        );
    }

    #[test]
    fn target_level_met_when_the_level_reaches_it() {
        let a = AssessmentBuilder::new("a")
            .exempt_up_to(3, &[])
            .target_level(3)
            .build();
        let out = decide(&observed(a), ts(NOW));
        expect(
            &out.status,
            "TargetLevelMet",
            "True",
            "LevelReached",
            "level 3, target 3",
        );
        let a = AssessmentBuilder::new("a")
            .exempt_up_to(3, &[])
            .target_level(2)
            .build();
        let out = decide(&observed(a), ts(NOW));
        expect(
            &out.status,
            "TargetLevelMet",
            "True",
            "LevelReached",
            "level 3, target 2",
        );
    }

    #[test]
    fn below_target_names_at_most_ten_missing_practices() {
        // Level 1: the next level misses all 18 level-2 practices; the first ten are named.
        let a = AssessmentBuilder::new("a").target_level(3).build();
        let out = decide(&observed(a), ts(NOW));
        assert_eq!(out.status.next_level.as_ref().unwrap().missing.len(), 18);
        expect(
            &out.status,
            "TargetLevelMet",
            "False",
            "BelowTarget",
            "level 1, target 3; next level misses ORG-2.1, ORG-2.2, ORG-2.3, ORG-2.4, \
             CX-2.1, CX-2.2, CX-2.3, CX-2.4, BIZ-2.1, BIZ-2.2",
        );
        // Level 2 with two level-3 practices missing: both are named.
        let a = AssessmentBuilder::new("a")
            .exempt_up_to(3, &["ORG-3.1", "RESP-3.2"])
            .target_level(4)
            .build();
        let out = decide(&observed(a), ts(NOW));
        assert_eq!(out.status.level, Some(2));
        expect(
            &out.status,
            "TargetLevelMet",
            "False",
            "BelowTarget",
            "level 2, target 4; next level misses ORG-3.1, RESP-3.2",
        );
    }

    #[test]
    fn no_target_level_no_target_condition() {
        let out = decide(&observed(AssessmentBuilder::new("a").build()), ts(NOW));
        assert!(cond(&out.status, "TargetLevelMet").is_none());
        let types: Vec<&str> = out
            .status
            .common
            .conditions
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, vec!["Ready"]);
    }

    #[test]
    fn last_evaluated_moves_only_when_something_changed() {
        let t0 = ts(NOW);
        let first = decide(&observed(AssessmentBuilder::new("a").build()), t0);
        assert_eq!(first.status.common.last_evaluated, Some(Time(t0)));
        assert_eq!(first.status.heartbeat, Some(Time(t0)));
        // Nine minutes later nothing changed: the status is the same (no write).
        let t9 = ts("2026-11-25T12:09:00Z");
        let a = AssessmentBuilder::new("a")
            .status(first.status.clone())
            .build();
        assert_eq!(decide(&observed(a), t9).status, first.status);
        // An hour later nothing changed: lastEvaluated stays, but the heartbeat is 10
        // minutes old or more, so it moves (one write per 10 minutes at most).
        let t1 = ts("2026-11-25T13:00:00Z");
        let a = AssessmentBuilder::new("a")
            .status(first.status.clone())
            .build();
        let second = decide(&observed(a), t1);
        assert_eq!(second.status.common.last_evaluated, Some(Time(t0)));
        assert_eq!(second.status.heartbeat, Some(Time(t1)));
        let mut without_heartbeat = second.status.clone();
        without_heartbeat.heartbeat = first.status.heartbeat.clone();
        assert_eq!(without_heartbeat, first.status, "only the heartbeat moved");
        // A new generation changes observedGeneration: lastEvaluated moves.
        let t2 = ts("2026-11-25T14:00:00Z");
        let a = AssessmentBuilder::new("a")
            .generation(2)
            .status(first.status.clone())
            .build();
        let third = decide(&observed(a), t2);
        assert_eq!(third.status.common.last_evaluated, Some(Time(t2)));
        // Ready kept its status, so its transition time did not move.
        let ready = cond(&third.status, "Ready").unwrap();
        assert_eq!(ready.last_transition_time, Time(t0));
    }

    #[test]
    fn observed_generation_is_set_on_the_status_and_every_condition() {
        let a = AssessmentBuilder::new("a")
            .generation(4)
            .target_level(2)
            .build();
        let out = decide(&observed(a), ts(NOW));
        assert_eq!(out.status.common.observed_generation, Some(4));
        assert_eq!(out.status.common.conditions.len(), 2);
        assert!(
            out.status
                .common
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(4))
        );
    }

    #[test]
    fn the_assessment_is_looked_at_again_after_the_interval() {
        let mut o = observed(AssessmentBuilder::new("a").build());
        o.interval = Duration::from_secs(42);
        assert_eq!(decide(&o, ts(NOW)).requeue, Duration::from_secs(42));
    }
}

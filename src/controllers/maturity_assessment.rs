//! The MaturityAssessment controller: every interval it gathers the facts of the
//! assessment's namespace (workloads, the operator's own ResponseTimeTargets,
//! CanaryPolicies and DrillSchedules, Prometheus's alerting rules, declared business
//! signals), lets `model::evidence` and `model::evaluate` decide every practice and the
//! level, and writes status (only when it changed) with `Ready` and `TargetLevelMet`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

use super::runtime::{self, Context, Error as ApiError, Kind};
use crate::api::maturity_assessment::{MaturityAssessmentStatus, PracticeState};
use crate::api::{CanaryPolicy, DrillSchedule, MaturityAssessment, ResponseTimeTarget};
use crate::conditions::{self, Cond, Status};
use crate::model::PRACTICES;
use crate::model::evaluate;
use crate::model::evidence::{
    self, CanaryFacts, DrillFact, Facts, ReportFacts, TargetFact, Workload,
};
use crate::prom::single_value;
use crate::report;

pub use crate::api::names::{
    CONTACT_ANNOTATIONS, GITOPS_MARKS, OWNER_LABELS, REPORT_NOW_ANNOTATION,
};

pub const KIND: Kind = Kind {
    name: "MaturityAssessment",
    finalizer: None,
    concurrency: 2,
    backoff: Duration::from_secs(5),
    max_backoff: Duration::from_secs(60),
    waiting: Duration::from_secs(1),
};

type Ctx = Context;

pub fn controller(
    ctx: &Context,
) -> (
    Controller<MaturityAssessment>,
    kube::runtime::reflector::Store<MaturityAssessment>,
) {
    let c = runtime::controller::<MaturityAssessment>(
        &ctx.kube,
        ctx.settings.namespace.as_deref(),
        &KIND,
    );
    let store = c.store();
    (c, store)
}

pub async fn run(
    controller: Controller<MaturityAssessment>,
    ctx: Arc<Context>,
    stop: watch::Receiver<bool>,
) {
    let reconcile: runtime::Reconcile<MaturityAssessment> = Arc::new(|event, ctx| {
        async move {
            let a = match event {
                kube::runtime::finalizer::Event::Apply(a)
                | kube::runtime::finalizer::Event::Cleanup(a) => a,
            };
            evaluate_one(&ctx, &a).await?;
            Ok(Requeue::requeue(ctx.settings.assessment_interval))
        }
        .boxed()
    });
    // A deleted assessment is not reconciled again: its series go then.
    let forget: fn(&Context, &str, &str) = |ctx, ns, name| ctx.metrics.forget_assessment(ns, name);
    runtime::run(controller, ctx, KIND, reconcile, Some(forget), stop).await;
}

fn has_any(map: &BTreeMap<String, String>, keys: &[&str]) -> bool {
    keys.iter()
        .any(|k| map.get(*k).is_some_and(|v| !v.is_empty()))
}

fn workload(meta: &ObjectMeta, policies: &[CanaryPolicy]) -> Workload {
    let labels = meta.labels.clone().unwrap_or_default();
    let annotations = meta.annotations.clone().unwrap_or_default();
    Workload {
        name: meta.name.clone().unwrap_or_default(),
        owner: has_any(&labels, OWNER_LABELS),
        contact: has_any(&annotations, CONTACT_ANNOTATIONS),
        gitops: has_any(&labels, GITOPS_MARKS) || has_any(&annotations, GITOPS_MARKS),
        canary_governed: policies.iter().any(|p| crate::canary::selects(p, &labels)),
    }
}

/// Figures only the reports need.
#[derive(Default)]
struct ReportExtras {
    targets: Vec<report::TargetFigures>,
    drills: Vec<report::DrillFigures>,
    canary_promoted: u32,
    complaints: Vec<(String, f64)>,
}

async fn gather(
    ctx: &Ctx,
    a: &MaturityAssessment,
    ns: &str,
    now: Timestamp,
) -> Result<(Facts, ReportExtras), ApiError> {
    let mut extras = ReportExtras::default();
    let scope = a
        .spec
        .scope
        .selector
        .clone()
        .and_then(|s| kube::core::Selector::try_from(s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let lp = ListParams::default().labels(&scope);
    let policies = ctx
        .kube
        .call(
            ctx.kube
                .api::<CanaryPolicy>(ns)
                .list(&ListParams::default()),
        )
        .await?
        .items;
    let mut workloads: Vec<Workload> = ctx
        .kube
        .call(ctx.kube.api::<Deployment>(ns).list(&lp))
        .await?
        .items
        .iter()
        .map(|d| workload(&d.metadata, &policies))
        .collect();
    workloads.extend(
        ctx.kube
            .call(ctx.kube.api::<StatefulSet>(ns).list(&lp))
            .await?
            .items
            .iter()
            .map(|s| workload(&s.metadata, &policies)),
    );
    let rtts = ctx
        .kube
        .call(
            ctx.kube
                .api::<ResponseTimeTarget>(ns)
                .list(&ListParams::default()),
        )
        .await?
        .items;
    extras.targets = rtts
        .iter()
        .map(|r| {
            let s = r.status.clone().unwrap_or_default();
            report::TargetFigures {
                name: r.name_any(),
                attainment_percent: s.attainment,
                objective_percent: r.spec.objective,
                error_budget_remaining: s.error_budget_remaining,
                objective_met: conditions::status_of(
                    &s.common.conditions,
                    crate::slo::OBJECTIVE_MET,
                )
                .and_then(|v| match v {
                    "True" => Some(true),
                    "False" => Some(false),
                    _ => None,
                }),
            }
        })
        .collect();
    let targets = rtts
        .into_iter()
        .map(|r| TargetFact {
            name: r.name_any(),
            objective_met: r
                .status
                .as_ref()
                .and_then(|s| {
                    conditions::status_of(&s.common.conditions, crate::slo::OBJECTIVE_MET)
                })
                .and_then(|v| match v {
                    "True" => Some(true),
                    "False" => Some(false),
                    _ => None,
                }),
        })
        .collect();
    let mut canary = CanaryFacts {
        policies: policies.len(),
        ..Default::default()
    };
    for p in &policies {
        if let Some(tot) = p.status.as_ref().and_then(|s| s.totals.as_ref()) {
            canary.analyzed += tot.analyzed;
            extras.canary_promoted += tot.promoted;
            canary.rolled_back += tot.rolled_back;
        }
    }
    let drill_objects = ctx
        .kube
        .call(
            ctx.kube
                .api::<DrillSchedule>(ns)
                .list(&ListParams::default()),
        )
        .await?
        .items;
    extras.drills = drill_objects
        .iter()
        .map(|d| {
            let s = d.status.clone().unwrap_or_default();
            let sum = s.summary.clone().unwrap_or_default();
            report::DrillFigures {
                name: d.name_any(),
                passed: sum.passed,
                failed: sum.failed,
                aborted: sum.aborted,
                last_recovery_seconds: s.runs.iter().find_map(|r| r.recovery_seconds),
            }
        })
        .collect();
    let drills = drill_objects
        .into_iter()
        .map(|d| DrillFact {
            name: d.name_any(),
            unannounced: !d.spec.announce
                && d.spec
                    .jitter
                    .as_ref()
                    .and_then(|j| j.parse().ok())
                    .is_some_and(|j: Duration| !j.is_zero()),
            last_passed: d
                .status
                .as_ref()
                .and_then(|s| s.summary.as_ref())
                .and_then(|s| s.last_passed.as_ref())
                .map(|t| t.0),
        })
        .collect();
    let rules = ctx
        .prom
        .alerting_rules()
        .await
        .map(|rules| {
            rules
                .into_iter()
                .filter(|r| r.labels.get("namespace").map(String::as_str) == Some(ns))
                .collect()
        })
        .map_err(|e| e.to_string());
    let signals = a.spec.signals.clone().unwrap_or_default();
    let satisfaction = match &signals.satisfaction {
        None => None,
        Some(s) => Some(one_value(ctx, s.query.as_str()).await.map(|v| (v, s.min))),
    };
    let complaints = match &signals.complaints {
        None => None,
        Some(s) => Some(
            ctx.prom
                .instant(s.query.as_str(), None)
                .await
                .map(|samples| {
                    extras.complaints = samples
                        .iter()
                        .map(|x| {
                            let category = x
                                .labels
                                .get("category")
                                .cloned()
                                .unwrap_or_else(|| "all".into());
                            (category, x.value)
                        })
                        .collect();
                    samples.iter().filter(|x| x.value > 0.0).count()
                })
                .map_err(|e| e.to_string()),
        ),
    };
    let demand = match &signals.demand {
        None => None,
        Some(d) => match d.horizon.parse() {
            Err(e) => Some(Err(format!("horizon: {e}"))),
            Ok(h) => {
                let h: Duration = h;
                let forecast = format!(
                    "predict_linear(({})[1h:1m], {})",
                    d.query.as_str(),
                    h.as_secs()
                );
                match (
                    one_value(ctx, &forecast).await,
                    one_value(ctx, d.capacity.as_str()).await,
                ) {
                    (Ok(f), Ok(cap)) => Some(Ok((f, cap))),
                    (Err(e), _) | (_, Err(e)) => Some(Err(e)),
                }
            }
        },
    };
    let reports = a.spec.reports.clone().unwrap_or_default();
    let times = a
        .status
        .as_ref()
        .and_then(|s| s.reports.clone())
        .unwrap_or_default();
    let facts = Facts {
        now,
        workloads,
        targets,
        canary,
        drills,
        rules,
        namespace: ns.to_string(),
        satisfaction,
        complaints,
        demand,
        reports: ReportFacts {
            weekly: reports.weekly,
            monthly: reports.monthly,
            last_weekly: times.last_weekly.map(|t| t.0),
            last_monthly: times.last_monthly.map(|t| t.0),
        },
    };
    Ok((facts, extras))
}

async fn one_value(ctx: &Ctx, query: &str) -> Result<f64, String> {
    let samples = ctx
        .prom
        .instant(query, None)
        .await
        .map_err(|e| e.to_string())?;
    single_value(&samples).map_err(|e| e.to_string())
}

async fn evaluate_one(ctx: &Ctx, cached: &MaturityAssessment) -> Result<(), ApiError> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let api: Api<MaturityAssessment> = ctx.kube.api(&ns);
    let Some(a) = ctx.kube.call(api.get_opt(&name)).await? else {
        return Ok(());
    };
    let now = ctx.clock.now();
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let (facts, extras) = gather(ctx, &a, &ns, now).await?;
    let measured = evidence::measure(&facts);
    let practices: Vec<_> = PRACTICES
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
        .collect();
    let (level, caps, next) = evaluate::assess(&practices);

    let mut status = a.status.clone().unwrap_or_default();
    let before = status.clone();
    status.level = Some(level as i32);
    status.capabilities = caps;
    status.next_level = next;
    let unknown: Vec<&str> = practices
        .iter()
        .filter(|p| p.state == PracticeState::Unknown)
        .map(|p| p.id.as_str())
        .collect();
    let unknown_ids = unknown.join(", ");
    let mut conds = vec![match &facts.rules {
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
    }];
    if let Some(target) = a.spec.target_level {
        conds.push(if level as i32 >= target {
            Cond::new(
                "TargetLevelMet",
                Status::True,
                "LevelReached",
                format!("level {level}, target {target}"),
            )
        } else {
            let missing: Vec<String> = status
                .next_level
                .as_ref()
                .map(|n| {
                    n.missing
                        .iter()
                        .map(|m| m.practice.clone())
                        .take(10)
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
        });
    }
    reports(ctx, &a, &ns, &name, now, &facts, &extras, &mut status).await?;
    let generation = a.metadata.generation;
    status.common.conditions =
        conditions::merge(&status.common.conditions, &conds, generation, &Time(now));
    status.common.observed_generation = generation;
    if status != before {
        status.common.last_evaluated = Some(Time(now));
        ctx.kube
            .write_status_if_changed(&a, &before, &status)
            .await?;
    }
    export(ctx, &ns, &name, &status);
    Ok(())
}

/// Produces the reports that are due (or asked for with the report-now annotation) into
/// the ConfigMap `<assessment>-report`, owned by the assessment.
#[allow(clippy::too_many_arguments)]
async fn reports(
    ctx: &Ctx,
    a: &MaturityAssessment,
    ns: &str,
    name: &str,
    now: Timestamp,
    facts: &Facts,
    extras: &ReportExtras,
    status: &mut MaturityAssessmentStatus,
) -> Result<(), ApiError> {
    let wanted = a.spec.reports.clone().unwrap_or_default();
    let mut times = status.reports.clone().unwrap_or_default();
    let token = a
        .annotations()
        .get(REPORT_NOW_ANNOTATION)
        .filter(|v| Some(*v) != times.last_report_now.as_ref())
        .cloned();
    let mut due = Vec::new();
    for (period, enabled, last) in [
        (
            report::Period::Weekly,
            wanted.weekly,
            times.last_weekly.clone(),
        ),
        (
            report::Period::Monthly,
            wanted.monthly,
            times.last_monthly.clone(),
        ),
    ] {
        let stale =
            last.is_none_or(|t| now.as_second() - t.0.as_second() >= period.days() * 86_400);
        if enabled && (stale || token.is_some()) {
            due.push(period);
        }
    }
    if let Some(t) = token {
        times.last_report_now = Some(t);
    }
    if due.is_empty() {
        if times != status.reports.clone().unwrap_or_default() {
            status.reports = Some(times);
        }
        return Ok(());
    }
    let cm_name = crate::api::names::report_config_map(name);
    let cms: Api<ConfigMap> = ctx.kube.api(ns);
    let existing = ctx.kube.call(cms.get_opt(&cm_name)).await?;
    let mut data = existing
        .as_ref()
        .and_then(|c| c.data.clone())
        .unwrap_or_default();
    for period in due {
        let previous: Option<serde_json::Value> = data
            .get(&format!("{}.json", period.key()))
            .and_then(|j| serde_json::from_str(j).ok());
        let previous_level = previous
            .as_ref()
            .and_then(|v| v["level"].as_i64())
            .map(|l| l as i32);
        let previous_satisfaction = previous.as_ref().and_then(|v| v["satisfaction"].as_f64());
        let previous_complaints = previous.as_ref().and_then(|v| {
            v["complaints"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c[1].as_f64()).sum::<f64>())
        });
        let r = report::Report {
            assessment: name.to_string(),
            namespace: ns.to_string(),
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
            targets: extras.targets.clone(),
            canary_analyzed: facts.canary.analyzed,
            canary_promoted: extras.canary_promoted,
            canary_rolled_back: facts.canary.rolled_back,
            drills: extras.drills.clone(),
            satisfaction: facts
                .satisfaction
                .as_ref()
                .and_then(|s| s.as_ref().ok())
                .map(|(v, _)| *v),
            complaints: extras.complaints.clone(),
            demand: facts.demand.as_ref().and_then(|d| d.as_ref().ok()).copied(),
            recommendations: report::recommendations(status.next_level.as_ref()),
        };
        data.insert(format!("{}.md", period.key()), r.markdown());
        data.insert(
            format!("{}.json", period.key()),
            serde_json::to_string_pretty(&r).unwrap_or_default(),
        );
        match period {
            report::Period::Weekly => times.last_weekly = Some(Time(now)),
            report::Period::Monthly => times.last_monthly = Some(Time(now)),
        }
        tracing::info!(
            namespace = ns,
            assessment = name,
            period = period.key(),
            "report produced"
        );
    }
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(cm_name.clone()),
            namespace: Some(ns.to_string()),
            owner_references: a.controller_owner_ref(&()).map(|o| vec![o]),
            labels: Some(BTreeMap::from([(
                crate::api::names::MANAGED_BY_LABEL.to_string(),
                crate::api::names::MANAGED_BY.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    ctx.kube
        .call(cms.patch(
            &cm_name,
            &PatchParams::apply(crate::api::names::FIELD_MANAGER).force(),
            &Patch::Apply(&cm),
        ))
        .await?;
    times.config_map = Some(cm_name);
    status.reports = Some(times);
    Ok(())
}

fn export(ctx: &Ctx, ns: &str, name: &str, s: &MaturityAssessmentStatus) {
    let m = &ctx.metrics;
    m.maturity_level
        .with_label_values(&[ns, name])
        .set(s.level.unwrap_or(0) as i64);
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for c in &s.capabilities {
        m.maturity_capability_level
            .with_label_values(&[ns, name, &c.id])
            .set(c.level as i64);
        for p in &c.practices {
            *counts.entry(state_label(p.state)).or_default() += 1;
        }
    }
    for state in ["met", "not_met", "unknown", "exempt", "expired"] {
        m.maturity_practices
            .with_label_values(&[ns, name, state])
            .set(counts.get(state).copied().unwrap_or(0));
    }
    let missing: Vec<(i32, &str)> = s
        .next_level
        .iter()
        .flat_map(|n| n.missing.iter().map(|p| (n.level, p.practice.as_str())))
        .collect();
    m.set_next_level_missing(ns, name, &missing);
}

fn state_label(s: PracticeState) -> &'static str {
    match s {
        PracticeState::Met => "met",
        PracticeState::NotMet => "not_met",
        PracticeState::Unknown => "unknown",
        PracticeState::Exempt => "exempt",
        PracticeState::Expired => "expired",
    }
}

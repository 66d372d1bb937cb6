//! Every read of a MaturityAssessment pass: the assessment (fresh, never from the cache: its
//! status remembers the reports), the workloads in its scope, the namespace's
//! ResponseTimeTargets, CanaryPolicies and DrillSchedules, Prometheus's alerting rules and
//! declared signals, and the report ConfigMap when a report is due.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::super::{Context, Error};
use crate::api::drill_schedule::WorkloadKind;
use crate::api::names::{CONTACT_ANNOTATIONS, GITOPS_MARKS, OWNER_LABELS, report_config_map};
use crate::api::{CanaryPolicy, DrillSchedule, MaturityAssessment, ResponseTimeTarget};
use crate::conditions;
use crate::model::decide::{self, Observed, ReportExtras};
use crate::model::evidence::{
    self, AlertingFacts, CanaryFacts, DrillFact, NotificationCount, TargetFact, Workload,
};
use crate::model::report::{DrillFigures, TargetFigures};
use crate::model::tools;
use crate::prom::AlertRule;

/// None when the assessment is gone.
pub async fn observe(
    ctx: &Context,
    cached: &MaturityAssessment,
    now: Timestamp,
) -> Result<Option<Observed>, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let Some(a) = ctx.kube.get::<MaturityAssessment>(&ns, &name).await? else {
        return Ok(None);
    };
    let policies = ctx.kube.list::<CanaryPolicy>(&ns, "").await?;
    let tools = tool_objects(ctx, &ns).await?;
    let flagger = tools::flagger(&tools[1]);
    let workloads = workloads(ctx, &a, &ns, &policies, &flagger.governed).await?;
    let rtts = ctx.kube.list::<ResponseTimeTarget>(&ns, "").await?;
    let (mut targets, target_figures) = targets(ctx, &rtts);
    targets.extend(sloth_targets(ctx, &ns, &tools[0]).await);
    let alerting = alerting(ctx, &ns, &rtts).await;
    let (mut canary, canary_promoted) = canaries(&policies);
    canary.policies += flagger.canaries;
    canary.analyzed += flagger.analyzed;
    canary.rolled_back += flagger.rolled_back;
    let canary_promoted = canary_promoted + flagger.promoted;
    let (mut drills, drill_figures) = drills(ctx, &ns).await?;
    drills.extend(tools::chaos_drills(&tools[2], &tools[3]));
    let rules = rules(ctx, &ns).await;
    let signals = a.spec.signals.clone().unwrap_or_default();
    let (satisfaction, complaints, demand) = super::signals::read_signals(ctx, &ns, &signals).await;
    let report_data = if !decide::report_data_needed(&a, now) {
        BTreeMap::new()
    } else {
        ctx.kube
            .get::<ConfigMap>(&ns, &report_config_map(&name))
            .await?
            .and_then(|c| c.data)
            .unwrap_or_default()
    };
    let verified = crate::attest::verify(ctx.settings.evidence_key.as_ref(), &ns, &name, &a.spec);
    Ok(Some(Observed {
        verified,
        assessment: a,
        workloads,
        targets,
        canary,
        drills,
        rules,
        satisfaction,
        complaints,
        demand,
        extras: ReportExtras {
            targets: target_figures,
            drills: drill_figures,
            canary_promoted,
        },
        report_data,
        interval: ctx.settings.assessment_interval,
        alerting,
    }))
}

fn has_any(map: &BTreeMap<String, String>, keys: &[&str]) -> bool {
    keys.iter()
        .any(|k| map.get(*k).is_some_and(|v| !v.is_empty()))
}

fn workload(
    meta: &ObjectMeta,
    policies: &[CanaryPolicy],
    flagger: &std::collections::BTreeSet<String>,
) -> Workload {
    let labels = meta.labels.clone().unwrap_or_default();
    let annotations = meta.annotations.clone().unwrap_or_default();
    Workload {
        name: meta.name.clone().unwrap_or_default(),
        owner: has_any(&labels, OWNER_LABELS),
        contact: has_any(&annotations, CONTACT_ANNOTATIONS),
        gitops: has_any(&labels, GITOPS_MARKS) || has_any(&annotations, GITOPS_MARKS),
        canary_governed: policies.iter().any(|p| crate::canary::selects(p, &labels))
            || meta.name.as_ref().is_some_and(|n| flagger.contains(n)),
    }
}

/// The Deployments, then the StatefulSets, that the assessment's scope selects.
async fn workloads(
    ctx: &Context,
    a: &MaturityAssessment,
    ns: &str,
    policies: &[CanaryPolicy],
    flagger: &std::collections::BTreeSet<String>,
) -> Result<Vec<Workload>, Error> {
    let scope = a
        .spec
        .scope
        .selector
        .as_ref()
        .map(crate::selector::query)
        .unwrap_or_default();
    let mut metas = ctx
        .kube
        .workloads(ns, WorkloadKind::Deployment, &scope)
        .await?;
    metas.extend(
        ctx.kube
            .workloads(ns, WorkloadKind::StatefulSet, &scope)
            .await?,
    );
    Ok(metas
        .iter()
        .map(|m| workload(m, policies, flagger))
        .collect())
}

fn objective_met(r: &ResponseTimeTarget) -> Option<bool> {
    r.status
        .as_ref()
        .and_then(|s| conditions::status_of(&s.common.conditions, crate::slo::OBJECTIVE_MET))
        .and_then(|v| match v {
            "True" => Some(true),
            "False" => Some(false),
            _ => None,
        })
}

/// The namespace's ResponseTimeTargets: for the evidence and for the reports.
fn targets(ctx: &Context, rtts: &[ResponseTimeTarget]) -> (Vec<TargetFact>, Vec<TargetFigures>) {
    let figures = rtts
        .iter()
        .map(|r| {
            let s = r.status.clone().unwrap_or_default();
            TargetFigures {
                name: r.name_any(),
                attainment_percent: s.attainment,
                objective_percent: r.spec.objective,
                error_budget_remaining: s.error_budget_remaining,
                objective_met: objective_met(r),
            }
        })
        .collect();
    let facts = rtts
        .iter()
        .map(|r| TargetFact {
            name: r.name_any(),
            objective_met: objective_met(r),
            burn_alerts: evidence::burn_alerts(r, &ctx.settings.tenancy),
            sloth_id: None,
        })
        .collect();
    (facts, figures)
}

/// The namespace's objects of each tool kind ([`tools::KINDS`], in that order; empty where
/// the tool is not installed or its kinds may not be read).
async fn tool_objects(ctx: &Context, ns: &str) -> Result<Vec<Vec<serde_json::Value>>, Error> {
    let mut out = Vec::new();
    for k in tools::KINDS {
        let kind = kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk(k.group, k.version, k.kind),
            k.plural,
        );
        let objects = ctx
            .kube
            .dynamic_list_if_served(ns, &kind)
            .await?
            .unwrap_or_default();
        out.push(
            objects
                .iter()
                .filter_map(|o| serde_json::to_value(o).ok())
                .collect(),
        );
    }
    Ok(out)
}

/// Sloth's SLOs in the namespace, each met while Sloth's recorded error budget left is not
/// below 0 (one query per service; None while there is no such series yet).
///
/// The query is scoped to the namespace like every query of a user's (the tenant label):
/// in a shared cluster Sloth's series must carry it, as the Prometheus Operator's
/// `enforcedNamespaceLabel` makes every rule's series do; otherwise one namespace could
/// name another's Sloth service and be measured by its data.
async fn sloth_targets(ctx: &Context, ns: &str, objects: &[serde_json::Value]) -> Vec<TargetFact> {
    let slos = tools::sloth_slos(objects);
    let services: std::collections::BTreeSet<&str> =
        slos.iter().map(|s| s.service.as_str()).collect();
    let mut budgets: BTreeMap<(String, String), f64> = BTreeMap::new();
    for service in services {
        let Ok(query) = ctx
            .settings
            .tenancy
            .scope(&tools::sloth_budget_query(service), ns)
        else {
            continue;
        };
        if let Ok(samples) = ctx.prom.instant(&query, None).await {
            for s in samples {
                if let Some(slo) = s.labels.get("sloth_slo") {
                    budgets.insert((service.to_string(), slo.clone()), s.value);
                }
            }
        }
    }
    slos.iter()
        .map(|s| TargetFact {
            name: format!("Sloth {}", s.name),
            objective_met: budgets
                .get(&(s.service.clone(), s.slo.clone()))
                .filter(|b| b.is_finite())
                .map(|b| *b >= 0.0),
            burn_alerts: Vec::new(),
            sloth_id: Some(s.id()),
        })
        .collect()
}

/// Where Alertmanager sends the namespace's page and ticket alerts, and its notification
/// counters over [`evidence::NOTIFY_DAYS`] (from Prometheus).
async fn alerting(ctx: &Context, ns: &str, rtts: &[ResponseTimeTarget]) -> AlertingFacts {
    let Some(am) = &ctx.alertmanager else {
        return AlertingFacts::NotConfigured;
    };
    let routing = match am.routing().await {
        Ok(r) => r,
        Err(e) => return AlertingFacts::Unreadable(e),
    };
    let (page, ticket) = evidence::scope_alert_labels(rtts, ns, &ctx.settings.tenancy);
    AlertingFacts::Read {
        page: routing.route(&page),
        ticket: routing.route(&ticket),
        notifications: notification_counts(ctx).await,
    }
}

async fn notification_counts(ctx: &Context) -> Result<Vec<NotificationCount>, String> {
    let read = |metric: &str| {
        format!(
            "sum by (integration, receiver_name) (increase({metric}[{}d]))",
            evidence::NOTIFY_DAYS
        )
    };
    let attempted = ctx
        .prom
        .instant(&read("alertmanager_notifications_total"), None)
        .await
        .map_err(|e| e.to_string())?;
    let failed = ctx
        .prom
        .instant(&read("alertmanager_notifications_failed_total"), None)
        .await
        .map_err(|e| e.to_string())?;
    let key = |l: &crate::prom::Labels| {
        (
            l.get("integration").cloned().unwrap_or_default(),
            l.get("receiver_name").cloned(),
        )
    };
    Ok(attempted
        .iter()
        .map(|a| {
            let k = key(&a.labels);
            NotificationCount {
                failed: failed
                    .iter()
                    .filter(|f| key(&f.labels) == k)
                    .map(|f| f.value)
                    .sum(),
                integration: k.0,
                receiver: k.1,
                attempted: a.value,
            }
        })
        .collect())
}

/// The namespace's CanaryPolicies and their totals; and the promotions, for the reports.
fn canaries(policies: &[CanaryPolicy]) -> (CanaryFacts, u32) {
    let mut canary = CanaryFacts {
        policies: policies.len(),
        ..Default::default()
    };
    let mut promoted = 0;
    for p in policies {
        if let Some(tot) = p.status.as_ref().and_then(|s| s.totals.as_ref()) {
            canary.analyzed += tot.analyzed;
            promoted += tot.promoted;
            canary.rolled_back += tot.rolled_back;
        }
    }
    (canary, promoted)
}

/// The namespace's DrillSchedules: for the evidence and for the reports.
async fn drills(ctx: &Context, ns: &str) -> Result<(Vec<DrillFact>, Vec<DrillFigures>), Error> {
    let schedules = ctx.kube.list::<DrillSchedule>(ns, "").await?;
    let figures = schedules
        .iter()
        .map(|d| {
            let s = d.status.clone().unwrap_or_default();
            let sum = s.summary.clone().unwrap_or_default();
            DrillFigures {
                name: d.name_any(),
                passed: sum.passed,
                failed: sum.failed,
                aborted: sum.aborted,
                last_recovery_seconds: s.runs.iter().find_map(|r| r.recovery_seconds),
            }
        })
        .collect();
    let facts = schedules.iter().map(evidence::drill_fact).collect();
    Ok((facts, figures))
}

/// Prometheus's alerting rules of the namespace, or why they could not be read: those
/// labelled with it, and those of a PrometheusRule in it (by the rule file the Prometheus
/// Operator names `<namespace>-<name>-<uid>.yaml`: the uid is of an object in this
/// namespace, so no other namespace can make its rules count here).
async fn rules(ctx: &Context, ns: &str) -> Result<Vec<AlertRule>, String> {
    let kind = crate::controllers::response_time_target::rules::api_resource();
    let files: std::collections::BTreeSet<String> = ctx
        .kube
        .dynamic_list_if_served(ns, &kind)
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_default()
        .iter()
        .map(|r| {
            format!(
                "{ns}-{}-{}",
                r.metadata.name.as_deref().unwrap_or_default(),
                r.metadata.uid.as_deref().unwrap_or_default()
            )
        })
        .collect();
    let held = |file: &str| {
        let base = file.rsplit('/').next().unwrap_or_default();
        let stem = base
            .strip_suffix(".yaml")
            .or_else(|| base.strip_suffix(".yml"))
            .unwrap_or(base);
        files.contains(stem)
    };
    ctx.prom
        .alerting_rules()
        .await
        .map(|rules| {
            rules
                .into_iter()
                .filter(|r| {
                    r.labels.get("namespace").map(String::as_str) == Some(ns) || held(&r.file)
                })
                .collect()
        })
        .map_err(|e| e.to_string())
}

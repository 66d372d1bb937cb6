//! The assessment's reads of what other projects keep: the tools' objects
//! ([`tools::KINDS`]) and their SLOs' recorded series, Alertmanager's routes and counters, and
//! Prometheus's alerting rules of the namespace.

use std::collections::BTreeMap;

use super::super::{Context, Error};
use crate::api::ResponseTimeTarget;
use crate::model::evidence::{self, AlertingFacts, NotificationCount, TargetFact};
use crate::model::tools;
use crate::prom::AlertRule;

/// The namespace's objects of each tool kind (none where the tool is not installed or its
/// kinds may not be read).
pub(super) async fn tool_objects(ctx: &Context, ns: &str) -> Result<tools::Objects, Error> {
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
    Ok(tools::Objects::new(out))
}

/// Prometheus's alerting rules of the namespace, or why they could not be read: those
/// labelled with it, and those of a PrometheusRule in it (by the rule file the Prometheus
/// Operator names `<namespace>-<name>-<uid>.yaml`: the uid is of an object in this
/// namespace, so no other namespace can make its rules count here).
pub(super) async fn rules(ctx: &Context, ns: &str) -> Result<Vec<AlertRule>, String> {
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

/// The tools' SLOs in the namespace, each met as the tool's recorded series say (one
/// query per SLO; unknown while there is no such series).
///
/// The query is scoped to the namespace like every query of a user's (the tenant label):
/// in a shared cluster the tools' series must carry it, as the Prometheus Operator's
/// `enforcedNamespaceLabel` makes every rule's series do; otherwise one namespace could
/// name another's SLO and be measured by its data.
pub(super) async fn tool_targets(
    ctx: &Context,
    ns: &str,
    slos: &[tools::slos::ToolSlo],
) -> Vec<TargetFact> {
    let mut met = BTreeMap::new();
    for s in slos {
        let Ok(query) = ctx.settings.tenancy.scope(&s.objective_query(), ns) else {
            continue;
        };
        if let Ok(samples) = ctx.prom.instant(&query, None).await
            && let Some(v) = samples.first().map(|s| s.value).filter(|v| v.is_finite())
        {
            met.insert(s.name.clone(), v >= 0.0);
        }
    }
    tools::targets(slos, |s| met.get(&s.name).copied())
}

/// Where Alertmanager sends the namespace's page and ticket alerts, and its notification
/// counters over [`evidence::NOTIFY_DAYS`] (from Prometheus).
pub(super) async fn alerting(
    ctx: &Context,
    ns: &str,
    rtts: &[ResponseTimeTarget],
) -> AlertingFacts {
    let Some(am) = &ctx.alertmanager else {
        return AlertingFacts::NotConfigured;
    };
    let routing = match am
        .config()
        .await
        .and_then(|c| crate::model::routing::parse(&c))
    {
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

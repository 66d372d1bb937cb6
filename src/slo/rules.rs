//! Multi-window, multi-burn-rate alerts (Google SRE Workbook, chapter 5), scaled to the
//! target's window, as a Prometheus rule file. The thresholds are the budget share each
//! alert allows to burn over its long window: for a 30-day window they are the Workbook's
//! 14.4x (1h, checked with 5m), 6x (6h/30m) for pages and 3x (1d/2h), 1x (3d/6h) for tickets.
//! The long windows of the tickets (1d, 3d) are read from the per-shape recordings
//! ([`super::recordings`], which the operator keeps for every target it evaluates), not from
//! raw rates over days; the others are raw (short, and they must be fresh).
//!
//! They follow Alertmanager's conventions: `severity` is `critical` for a page and
//! `warning` for a ticket unless the target's `alerting.labels` say otherwise; each alert
//! has a `for:` (Pyrra's: about half its short window); a target with `minRequestRate`
//! pages only while its traffic over the long window is at least that; and one more
//! alert, `ResponseTimeTargetNoData`, says that the indicator's series are gone.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::queries::{EventQueries, LatencyQueries, RatioQueries};
use crate::api::ResponseTimeTarget;
use crate::conditions::{Cond, Status};
use crate::duration::format_duration;
use crate::prom::enforce::Tenancy;

/// One alert of the Workbook's table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnAlert {
    /// The default `severity` label: `critical` (page) or `warning` (ticket).
    pub severity: &'static str,
    pub long: Duration,
    pub short: Duration,
    /// How long the condition must hold before the alert fires.
    pub hold: Duration,
    /// Share of the window's budget that burning at the threshold spends in `long`.
    pub budget_share: f64,
}

const H: u64 = 3600;
pub const BURN_ALERTS: [BurnAlert; 4] = [
    BurnAlert {
        severity: "critical",
        long: Duration::from_secs(H),
        short: Duration::from_secs(300),
        hold: Duration::from_secs(120),
        budget_share: 0.02,
    },
    BurnAlert {
        severity: "critical",
        long: Duration::from_secs(6 * H),
        short: Duration::from_secs(1800),
        hold: Duration::from_secs(900),
        budget_share: 0.05,
    },
    BurnAlert {
        severity: "warning",
        long: Duration::from_secs(24 * H),
        short: Duration::from_secs(2 * H),
        hold: Duration::from_secs(H),
        budget_share: 0.10,
    },
    BurnAlert {
        severity: "warning",
        long: Duration::from_secs(72 * H),
        short: Duration::from_secs(6 * H),
        hold: Duration::from_secs(3 * H),
        budget_share: 0.10,
    },
];

impl BurnAlert {
    /// Burn-rate factor for an SLO window (14.4 for the 1h page of a 30-day window).
    pub fn factor(&self, window: Duration) -> f64 {
        self.budget_share * window.as_secs_f64() / self.long.as_secs_f64()
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct RuleGroup {
    pub name: String,
    pub rules: Vec<AlertRule>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct AlertRule {
    pub alert: String,
    pub expr: String,
    #[serde(rename = "for")]
    pub hold: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Why no rules could be generated for a target.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RulesError {
    #[error(
        "{0}: burn-rate alerts need a latency or ratio indicator (alertResolution measures handling time, not request errors)"
    )]
    NotRequestBased(String),
    #[error("{0}: {1}")]
    InvalidSpec(String, String),
}

/// The name of the no-data alert of every target with burn-rate alerts.
pub const NO_DATA_ALERT: &str = "ResponseTimeTargetNoData";
/// How long the indicator's series must be gone before [`NO_DATA_ALERT`] fires.
pub const NO_DATA_AFTER: Duration = Duration::from_secs(600);

/// The alert group of one target, or None when `alerting.burnRateAlerts` is off.
/// Alerts whose long window is longer than the target's window are left out. Every
/// expression is scoped to the target's namespace by `tenancy` (Prometheus evaluates the
/// rules: an unscoped one would read every namespace's series).
pub fn burn_rate_group(
    target: &ResponseTimeTarget,
    tenancy: &Tenancy,
) -> Result<Option<RuleGroup>, RulesError> {
    let spec = &target.spec;
    let alerting = spec.alerting.clone().unwrap_or_default();
    if !alerting.burn_rate_alerts {
        return Ok(None);
    }
    let namespace = target
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = target.metadata.name.clone().unwrap_or_default();
    let id = format!("{namespace}/{name}");
    let window = spec
        .window
        .parse()
        .map_err(|e| RulesError::InvalidSpec(id.clone(), e.to_string()))?;
    let queries: Box<dyn EventQueries + '_> = if let Some(l) = &spec.indicator.latency {
        Box::new(
            LatencyQueries::new(l)
                .map_err(|e| RulesError::InvalidSpec(id.clone(), e.to_string()))?,
        )
    } else if let Some(r) = &spec.indicator.ratio {
        Box::new(RatioQueries { indicator: r })
    } else {
        return Err(RulesError::NotRequestBased(id));
    };
    let scoped = |expr: String| match tenancy {
        Tenancy::Single => Ok(expr),
        scoped => scoped
            .scope(&expr, &namespace)
            .map_err(|e| RulesError::InvalidSpec(id.clone(), e.to_string())),
    };
    // Identity labels: the user's labels may not change them (an alert routed as another
    // namespace's would reach that team's receivers).
    let identity = |labels: &mut BTreeMap<String, String>| {
        labels.insert("namespace".into(), namespace.clone());
        labels.insert("response_time_target".into(), name.clone());
        labels.insert("service".into(), spec.service.clone());
        labels.insert("request_class".into(), spec.request_class.clone());
    };
    // The 1d and 3d windows are read from the shape's recordings, which the operator keeps
    // for every target it can group (all valid request-based ones).
    let member = super::batch::membership(&namespace, spec, tenancy).ok();
    let recorded = |long: &str| {
        member
            .as_ref()
            .filter(|_| super::recordings::RECORDED_WINDOWS.contains(&long))
    };
    let budget = super::error_budget(spec.objective);
    let mut rules = Vec::new();
    for a in BURN_ALERTS.iter().filter(|a| a.long <= window) {
        let factor = a.factor(window);
        let threshold = round_sig(factor * budget);
        let (long, short) = (format_duration(a.long), format_duration(a.short));
        let mut labels = BTreeMap::from([("severity".to_string(), a.severity.to_string())]);
        labels.extend(alerting.labels.clone());
        identity(&mut labels);
        labels.insert("long_window".into(), long.clone());
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "summary".into(),
            format!(
                "{} ({}) is burning its error budget {factor:.1}x too fast",
                spec.service, spec.request_class
            ),
        );
        annotations.insert(
            "description".into(),
            format!(
                "Error ratio above {threshold:.5} over {long} and {short}: at this rate {:.0}% of the {} budget of ResponseTimeTarget {id} (objective {}%) is gone in {long}.",
                a.budget_share * 100.0,
                spec.window,
                spec.objective
            ),
        );
        if let Some(url) = &alerting.runbook_url {
            annotations.insert("runbook_url".into(), url.clone());
        }
        let long_ratio = match recorded(&long) {
            Some(m) => super::recordings::error_ratio(m, &long),
            None => queries.error_ratio(&long),
        };
        let mut expr = format!(
            "({long_ratio}) > {threshold}\nand\n({}) > {threshold}",
            queries.error_ratio(&short)
        );
        // Too little traffic to mean anything: no page (the status says LowTraffic).
        if let Some(rate) = spec.min_request_rate {
            let traffic = match recorded(&long) {
                Some(m) => super::recordings::total_rate(m, &long),
                None => format!("sum(rate({}[{long}]))", queries.total_series()),
            };
            expr.push_str(&format!("\nand on ()\n{traffic} >= {rate}"));
        }
        rules.push(AlertRule {
            alert: "ErrorBudgetBurn".into(),
            expr: scoped(expr)?,
            hold: format_duration(a.hold),
            labels,
            annotations,
        });
    }
    let mut labels = BTreeMap::from([("severity".to_string(), "warning".to_string())]);
    labels.extend(alerting.labels.clone());
    identity(&mut labels);
    let mut annotations = BTreeMap::from([
        (
            "summary".to_string(),
            format!(
                "{} ({}) has no indicator series: its objective is not measured",
                spec.service, spec.request_class
            ),
        ),
        (
            "description".to_string(),
            format!(
                "No sample of {} for {}: the burn-rate alerts of ResponseTimeTarget {id} cannot fire. Is the service or its scrape gone, or the indicator's selector wrong?",
                queries.total_series(),
                format_duration(NO_DATA_AFTER)
            ),
        ),
    ]);
    if let Some(url) = &alerting.runbook_url {
        annotations.insert("runbook_url".into(), url.clone());
    }
    rules.push(AlertRule {
        alert: NO_DATA_ALERT.into(),
        expr: scoped(format!(
            "absent_over_time({}[{}])",
            queries.total_series(),
            format_duration(NO_DATA_AFTER)
        ))?,
        hold: format_duration(NO_DATA_AFTER),
        labels,
        annotations,
    });
    Ok(Some(RuleGroup {
        name: format!("maturity-operator/{id}"),
        rules,
    }))
}

/// Labels of a PrometheusRule the operator generates for `own` (the labels of the object
/// it is for): those labels without the GitOps tools' tracking labels (a rule carrying them
/// would be pruned or adopted as part of the user's application), then `configured` ones
/// (`--prometheus-rule-label`, e.g. the `release` label a kube-prometheus-stack Prometheus's
/// `ruleSelector` selects), then the managed-by label. A later one wins.
pub fn rule_labels(
    own: Option<&BTreeMap<String, String>>,
    configured: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    use crate::api::names::{GITOPS_TRACKING_LABELS, MANAGED_BY, MANAGED_BY_LABEL};
    let mut labels: BTreeMap<String, String> = own
        .into_iter()
        .flatten()
        .filter(|(k, _)| {
            !GITOPS_TRACKING_LABELS
                .iter()
                .any(|t| match t.strip_suffix('*') {
                    Some(prefix) => k.starts_with(prefix),
                    None => k == t,
                })
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.extend(configured.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels
}

/// The condition that says whether Prometheus evaluates a target's burn-rate alerts.
pub const ALERTS_LOADED: &str = "AlertsLoaded";

/// How long a written rule may take to show in Prometheus's rules API before the target
/// says it is not loaded (the default of `--rules-load-grace`): the Prometheus Operator
/// writes the rule file and reloads Prometheus within seconds to a minute or two.
pub const LOAD_GRACE: Duration = Duration::from_secs(300);

/// What the operator knows of a target's burn-rate alerts in Prometheus.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertsSeen {
    /// The cluster serves no PrometheusRule kind (no Prometheus Operator).
    NoRuleKind,
    /// No rule could be made or written: why.
    NotWritten(String),
    /// The rule was written at `since` (or found at a start), and Prometheus's rules API
    /// has not shown its group since.
    Written { since: Timestamp },
    /// Prometheus's rules API shows the rule's group.
    Loaded,
}

/// Whether a rule written at `since` is overdue in Prometheus at `now`.
pub fn overdue(since: Timestamp, now: Timestamp, grace: Duration) -> bool {
    crate::clock::until(since, now) >= grace
}

/// The `AlertsLoaded` condition of a target whose rule is `rule`. `was_loaded`: its status
/// says True already (a rule rewritten, or found again after a restart, keeps True while
/// Prometheus is checked, until the grace is over).
pub fn alerts_condition(
    seen: &AlertsSeen,
    rule: &str,
    was_loaded: bool,
    now: Timestamp,
    grace: Duration,
) -> Cond {
    match seen {
        AlertsSeen::NoRuleKind => Cond::new(
            ALERTS_LOADED,
            Status::False,
            "NoPrometheusRuleKind",
            "alerting.burnRateAlerts is on but the cluster serves no PrometheusRule kind (monitoring.coreos.com/v1): install the Prometheus Operator, or commit the output of `maturity-operator rules --kind prometheusrule`",
        ),
        AlertsSeen::NotWritten(why) => {
            Cond::new(ALERTS_LOADED, Status::False, "NotWritten", why.clone())
        }
        AlertsSeen::Written { since } if overdue(*since, now, grace) => Cond::new(
            ALERTS_LOADED,
            Status::False,
            "NotLoaded",
            format!(
                "PrometheusRule {rule} exists but Prometheus has not loaded it after {}: check that its labels match the Prometheus's ruleSelector (the operator's --prometheus-rule-label, chart value prometheusRules.additionalLabels)",
                format_duration(grace)
            ),
        ),
        AlertsSeen::Written { .. } if was_loaded => loaded(rule),
        AlertsSeen::Written { .. } => Cond::new(
            ALERTS_LOADED,
            Status::Unknown,
            "Loading",
            format!("PrometheusRule {rule} is written; waiting for Prometheus to load it"),
        ),
        AlertsSeen::Loaded => loaded(rule),
    }
}

fn loaded(rule: &str) -> Cond {
    Cond::new(
        ALERTS_LOADED,
        Status::True,
        "Loaded",
        format!("Prometheus evaluates the alerts of PrometheusRule {rule}"),
    )
}

/// `v` to 10 significant digits, so float noise (0.0143999999999984) does not reach the rule.
fn round_sig(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(9 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}

/// The PrometheusRule the operator writes for `target` (without the owner reference it
/// adds), or None when the target asks for no alerts: its rule group, its labels
/// ([`rule_labels`] with `configured`). `maturity-operator rules --kind prometheusrule` prints it.
pub fn prometheus_rule(
    target: &ResponseTimeTarget,
    tenancy: &Tenancy,
    configured: &BTreeMap<String, String>,
) -> Result<Option<serde_json::Value>, RulesError> {
    let Some(group) = burn_rate_group(target, tenancy)? else {
        return Ok(None);
    };
    let name = target.metadata.name.as_deref().unwrap_or_default();
    Ok(Some(serde_json::json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": crate::api::names::burn_rate_rule(name),
            "namespace": target.metadata.namespace.as_deref().unwrap_or("default"),
            "labels": rule_labels(target.metadata.labels.as_ref(), configured),
        },
        "spec": {"groups": [group]},
    })))
}

/// The rule file of every target that asks for burn-rate alerts.
pub fn rule_file(
    targets: &[ResponseTimeTarget],
    tenancy: &Tenancy,
) -> Result<RuleFile, RulesError> {
    let mut groups = Vec::new();
    for t in targets {
        if let Some(g) = burn_rate_group(t, tenancy)? {
            groups.push(g);
        }
    }
    Ok(RuleFile { groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_labels_keep_the_targets_own_without_gitops_tracking_and_configured_ones_win() {
        let own: BTreeMap<String, String> = [
            ("team", "payments"),
            ("release", "mine"),
            ("app.kubernetes.io/instance", "shop"),
            ("argocd.argoproj.io/instance", "shop"),
            ("kustomize.toolkit.fluxcd.io/name", "apps"),
            ("kustomize.toolkit.fluxcd.io/namespace", "flux-system"),
            ("app.kubernetes.io/managed-by", "Helm"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let configured: BTreeMap<String, String> =
            [("release".to_string(), "kps".to_string())].into();
        let labels = rule_labels(Some(&own), &configured);
        let expected: BTreeMap<String, String> = [
            ("team", "payments"),
            ("release", "kps"),
            ("app.kubernetes.io/managed-by", "maturity-operator"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(labels, expected);
        assert_eq!(
            rule_labels(None, &BTreeMap::new()),
            [(
                "app.kubernetes.io/managed-by".to_string(),
                "maturity-operator".to_string()
            )]
            .into()
        );
    }

    #[test]
    fn alerts_loaded_waits_for_the_grace_and_keeps_true_over_a_rewrite() {
        let t0: Timestamp = "2026-12-04T10:00:00Z".parse().unwrap();
        let at = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        let grace = Duration::from_secs(300);
        let written = AlertsSeen::Written { since: t0 };
        let c = |seen: &AlertsSeen, was: bool, now| {
            let c = alerts_condition(seen, "r", was, now, grace);
            (c.status, c.reason)
        };
        assert_eq!(
            c(&written, false, at(299)),
            (Status::Unknown, "Loading".into())
        );
        assert_eq!(
            c(&written, false, at(300)),
            (Status::False, "NotLoaded".into())
        );
        assert_eq!(c(&written, true, at(299)), (Status::True, "Loaded".into()));
        assert_eq!(
            c(&written, true, at(300)),
            (Status::False, "NotLoaded".into())
        );
        assert_eq!(
            c(&AlertsSeen::Loaded, false, at(0)),
            (Status::True, "Loaded".into())
        );
        assert_eq!(
            c(&AlertsSeen::NoRuleKind, true, at(0)),
            (Status::False, "NoPrometheusRuleKind".into())
        );
        let late = alerts_condition(&written, "shop/checkout-burn-rate", false, at(301), grace);
        assert!(
            late.message.contains("not loaded it after 5m")
                && late.message.contains("ruleSelector"),
            "{}",
            late.message
        );
    }

    #[test]
    fn factors_match_the_workbook_for_30_days() {
        let month = Duration::from_secs(30 * 86400);
        let factors: Vec<f64> = BURN_ALERTS
            .iter()
            .map(|a| (a.factor(month) * 1000.0).round() / 1000.0)
            .collect();
        assert_eq!(factors, [14.4, 6.0, 3.0, 1.0]);
        // Scaled to 28 days.
        assert!((BURN_ALERTS[0].factor(Duration::from_secs(28 * 86400)) - 13.44).abs() < 1e-9);
    }

    fn target(yaml: &str) -> ResponseTimeTarget {
        serde_saphyr::from_str(yaml).unwrap()
    }

    /// Target shop/checkout (interactive requests), with the rest of its spec.
    fn checkout(rest_of_spec: &str) -> ResponseTimeTarget {
        target(&format!(
            "apiVersion: maturity.sre.dev/v1alpha1\nkind: ResponseTimeTarget\nmetadata: {{name: checkout, namespace: shop}}\nspec:\n  service: checkout\n  requestClass: interactive\n{rest_of_spec}"
        ))
    }

    #[test]
    fn group_has_four_alerts_with_severity_and_runbook() {
        let t = target(
            r#"
apiVersion: maturity.sre.dev/v1alpha1
kind: ResponseTimeTarget
metadata: {name: checkout, namespace: shop}
spec:
  service: checkout
  requestClass: interactive
  objective: 99.9
  window: 30d
  indicator: {latency: {histogram: h, selector: '{job="c"}', threshold: 300ms}}
  alerting: {burnRateAlerts: true, runbookURL: "https://wiki/x"}
"#,
        );
        let g = burn_rate_group(&t, &Tenancy::Single).unwrap().unwrap();
        assert_eq!(g.name, "maturity-operator/shop/checkout");
        // Four burn-rate alerts (Alertmanager's severities, Pyrra's `for`), then no-data.
        let table: Vec<(&str, &str, &str, &str)> = g
            .rules
            .iter()
            .map(|r| {
                (
                    r.alert.as_str(),
                    r.labels["severity"].as_str(),
                    r.labels.get("long_window").map_or("", String::as_str),
                    r.hold.as_str(),
                )
            })
            .collect();
        assert_eq!(
            table,
            [
                ("ErrorBudgetBurn", "critical", "1h", "2m"),
                ("ErrorBudgetBurn", "critical", "6h", "15m"),
                ("ErrorBudgetBurn", "warning", "1d", "1h"),
                ("ErrorBudgetBurn", "warning", "3d", "3h"),
                ("ResponseTimeTargetNoData", "warning", "", "10m"),
            ]
        );
        let page = &g.rules[0];
        assert_eq!(page.annotations["runbook_url"], "https://wiki/x");
        assert_eq!(
            g.rules[4].expr,
            r#"absent_over_time(h_count{job="c"}[10m])"#
        );
        // 14.4 x 0.001 budget.
        assert!(page.expr.contains("> 0.0144"), "{}", page.expr);
        assert!(
            page.expr.contains(r#"h_bucket{job="c", le="0.3"}[1h]"#),
            "{}",
            page.expr
        );
        assert!(page.expr.contains("[5m]"), "{}", page.expr);
        assert!(
            !page.expr.contains("and on ()"),
            "no minRequestRate, no gate"
        );
    }

    #[test]
    fn user_labels_set_severity_but_not_the_identity_and_min_request_rate_gates_each_alert() {
        let t = checkout(
            r#"
  objective: 99
  window: 28d
  minRequestRate: 0.5
  indicator: {ratio: {good: 'ok_total{job="c"}', total: 'all_total{job="c"}'}}
  alerting:
    burnRateAlerts: true
    labels: {severity: sev1, team: payments, namespace: bank, response_time_target: other}
"#,
        );
        let g = burn_rate_group(&t, &Tenancy::Single).unwrap().unwrap();
        for r in &g.rules {
            assert_eq!(r.labels["severity"], "sev1");
            assert_eq!(r.labels["team"], "payments");
            assert_eq!(
                r.labels["namespace"], "shop",
                "an alert routed as another team's"
            );
            assert_eq!(r.labels["response_time_target"], "checkout");
        }
        // 1h page: the traffic over 1h must reach 0.5 requests a second.
        assert!(
            g.rules[0]
                .expr
                .ends_with("\nand on ()\nsum(rate(all_total{job=\"c\"}[1h])) >= 0.5"),
            "{}",
            g.rules[0].expr
        );
        // 3d ticket: its traffic from the recordings, 0.5 a second over 3 × 86,400 s.
        assert!(
            g.rules[3].expr.ends_with("[3d])) / 259200 >= 0.5"),
            "{}",
            g.rules[3].expr
        );
    }

    #[test]
    fn tickets_read_their_long_window_from_the_recordings_and_pages_stay_raw() {
        let t = checkout(
            r#"
  objective: 99
  window: 28d
  indicator: {latency: {histogram: h, selector: '{job="c"}', threshold: 300ms}}
  alerting: {burnRateAlerts: true}
"#,
        );
        let g = burn_rate_group(&t, &Tenancy::Single).unwrap().unwrap();
        let long = |r: &AlertRule| r.labels["long_window"].clone();
        for r in &g.rules[..2] {
            assert!(!r.expr.contains("maturity:"), "{}: {}", long(r), r.expr);
        }
        for (r, w) in g.rules[2..4].iter().zip(["1d", "2h", "3d", "6h"].chunks(2)) {
            let (long_w, short_w) = (w[0], w[1]);
            assert_eq!(long(r), long_w);
            // The long window: the shape's recorded good and total events of this target
            // (its value of the varying label), summed over the window.
            assert!(
                r.expr.starts_with(
                    "(1 - (sum(sum_over_time(maturity:rtt_good:increase5m{mo_shape=\""
                ) && r.expr.contains(&format!(
                    "job=\"c\"}}[{long_w}])) / sum(sum_over_time(maturity:rtt_total:increase5m{{mo_shape=\""
                )),
                "{}",
                r.expr
            );
            // The short window stays raw.
            assert!(
                r.expr.contains(&format!(
                    r#"sum(rate(h_bucket{{job="c", le="0.3"}}[{short_w}]))"#
                )),
                "{}",
                r.expr
            );
            assert!(
                !r.expr
                    .contains(&format!("rate(h_count{{job=\"c\"}}[{long_w}])"))
            );
        }
    }

    #[test]
    fn scoped_rules_read_only_the_targets_namespace_and_a_foreign_selector_is_refused() {
        let yaml = |selector: &str| {
            format!(
                r#"
apiVersion: maturity.sre.dev/v1alpha1
kind: ResponseTimeTarget
metadata: {{name: checkout, namespace: shop}}
spec:
  service: checkout
  requestClass: interactive
  objective: 99.9
  window: 30d
  indicator: {{latency: {{histogram: h, selector: '{selector}', threshold: 300ms}}}}
  alerting: {{burnRateAlerts: true}}
"#
            )
        };
        let g = burn_rate_group(&target(&yaml(r#"{job="c"}"#)), &Tenancy::default())
            .unwrap()
            .unwrap();
        for r in &g.rules[..4] {
            // Every selector: the bucket and the count series of both windows.
            assert_eq!(
                r.expr.matches(r#"namespace="shop""#).count(),
                4,
                "{}",
                r.expr
            );
        }
        assert_eq!(
            g.rules[4].expr,
            r#"absent_over_time(h_count{job="c",namespace="shop"}[10m])"#
        );
        let err = burn_rate_group(
            &target(&yaml(r#"{job="c", namespace="bank"}"#)),
            &Tenancy::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("may only read namespace shop"),
            "{err}"
        );
    }

    #[test]
    fn short_windows_drop_alerts_longer_than_the_window_and_off_means_none() {
        let t = target(
            r#"
apiVersion: maturity.sre.dev/v1alpha1
kind: ResponseTimeTarget
metadata: {name: a, namespace: n}
spec:
  service: s
  requestClass: c
  objective: 99
  window: 1d
  indicator: {ratio: {good: good_total, total: all_total}}
  alerting: {burnRateAlerts: true}
"#,
        );
        let g = burn_rate_group(&t, &Tenancy::Single).unwrap().unwrap();
        assert_eq!(
            g.rules.len(),
            4,
            "the 3d ticket does not fit a 1d window (3 burn-rate alerts and no-data)"
        );
        let mut off = t.clone();
        off.spec.alerting = None;
        assert_eq!(burn_rate_group(&off, &Tenancy::Single).unwrap(), None);
    }
}

//! Multi-window, multi-burn-rate alerts (Google SRE Workbook, chapter 5), scaled to the
//! target's window, as a Prometheus rule file. The thresholds are the budget share each
//! alert allows to burn over its long window: for a 30-day window they are the Workbook's
//! 14.4x (1h, checked with 5m), 6x (6h/30m) for pages and 3x (1d/2h), 1x (3d/6h) for tickets.

use std::time::Duration;

use serde::Serialize;

use super::queries::{EventQueries, LatencyQueries, RatioQueries};
use crate::api::ResponseTimeTarget;
use crate::duration::format_duration;
use crate::prom::enforce::Tenancy;

/// One alert of the Workbook's table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnAlert {
    pub severity: &'static str,
    pub long: Duration,
    pub short: Duration,
    /// Share of the window's budget that burning at the threshold spends in `long`.
    pub budget_share: f64,
}

const H: u64 = 3600;
pub const BURN_ALERTS: [BurnAlert; 4] = [
    BurnAlert {
        severity: "page",
        long: Duration::from_secs(H),
        short: Duration::from_secs(300),
        budget_share: 0.02,
    },
    BurnAlert {
        severity: "page",
        long: Duration::from_secs(6 * H),
        short: Duration::from_secs(1800),
        budget_share: 0.05,
    },
    BurnAlert {
        severity: "ticket",
        long: Duration::from_secs(24 * H),
        short: Duration::from_secs(2 * H),
        budget_share: 0.10,
    },
    BurnAlert {
        severity: "ticket",
        long: Duration::from_secs(72 * H),
        short: Duration::from_secs(6 * H),
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
    let error_ratio: Box<dyn Fn(&str) -> String> = if let Some(l) = &spec.indicator.latency {
        let q = LatencyQueries::new(l)
            .map_err(|e| RulesError::InvalidSpec(id.clone(), e.to_string()))?;
        Box::new(move |w| q.error_ratio(w))
    } else if let Some(r) = &spec.indicator.ratio {
        let q = RatioQueries { indicator: r };
        Box::new(move |w| q.error_ratio(w))
    } else {
        return Err(RulesError::NotRequestBased(id));
    };
    let budget = super::error_budget(spec.objective);
    let mut rules = Vec::new();
    for a in BURN_ALERTS.iter().filter(|a| a.long <= window) {
        let factor = a.factor(window);
        let threshold = round_sig(factor * budget);
        let (long, short) = (format_duration(a.long), format_duration(a.short));
        let mut labels: std::collections::BTreeMap<String, String> = alerting.labels.clone();
        labels.insert("severity".into(), a.severity.into());
        labels.insert("namespace".into(), namespace.clone());
        labels.insert("response_time_target".into(), name.clone());
        labels.insert("service".into(), spec.service.clone());
        labels.insert("request_class".into(), spec.request_class.clone());
        labels.insert("long_window".into(), long.clone());
        let mut annotations = std::collections::BTreeMap::new();
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
        let expr = format!(
            "({}) > {threshold}\nand\n({}) > {threshold}",
            error_ratio(&long),
            error_ratio(&short)
        );
        let expr = match tenancy {
            Tenancy::Single => expr,
            scoped => scoped
                .scope(&expr, &namespace)
                .map_err(|e| RulesError::InvalidSpec(id.clone(), e.to_string()))?,
        };
        rules.push(AlertRule {
            alert: "ErrorBudgetBurn".into(),
            expr,
            labels,
            annotations,
        });
    }
    Ok(Some(RuleGroup {
        name: format!("maturity-operator/{id}"),
        rules,
    }))
}

/// `v` to 10 significant digits, so float noise (0.0143999999999984) does not reach the rule.
fn round_sig(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(9 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
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
        serde_yaml::from_str(yaml).unwrap()
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
        assert_eq!(g.rules.len(), 4);
        let page = &g.rules[0];
        assert_eq!(page.labels["severity"], "page");
        assert_eq!(page.annotations["runbook_url"], "https://wiki/x");
        // 14.4 x 0.001 budget.
        assert!(page.expr.contains("> 0.0144"), "{}", page.expr);
        assert!(
            page.expr.contains(r#"h_bucket{job="c", le="0.3"}[1h]"#),
            "{}",
            page.expr
        );
        assert!(page.expr.contains("[5m]"), "{}", page.expr);
        assert_eq!(g.rules[3].labels["severity"], "ticket");
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
        for r in &g.rules {
            // Every selector: the bucket and the count series of both windows.
            assert_eq!(
                r.expr.matches(r#"namespace="shop""#).count(),
                4,
                "{}",
                r.expr
            );
        }
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
        assert_eq!(g.rules.len(), 3, "the 3d ticket does not fit a 1d window");
        let mut off = t.clone();
        off.spec.alerting = None;
        assert_eq!(burn_rate_group(&off, &Tenancy::Single).unwrap(), None);
    }
}

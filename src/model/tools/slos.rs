//! SLOs of Sloth and Pyrra: each counts like a ResponseTimeTarget, met while the tool's own
//! recorded series say so, with the tool's own burn-rate alerts.
//!
//! - Sloth `PrometheusServiceLevel` (sloth.slok.dev/v1): one SLO per `spec.slos[]`, met
//!   while `slo:period_error_budget_remaining:ratio` of its `sloth_id` is not below 0.
//! - Pyrra `ServiceLevelObjective` (pyrra.dev/v1alpha1): the object is the SLO, met while
//!   `pyrra_availability` is not below `pyrra_objective` (Pyrra's generic rules, recorded
//!   when it runs with `--generic-rules`; without them the objective stays unknown).

use serde_json::Value;

use super::name;
use crate::model::evidence::ToolAlerts;

/// One SLO of a tool.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSlo {
    /// As shown in status, e.g. `Sloth checkout/availability`.
    pub name: String,
    pub alerts: ToolAlerts,
}

/// A PromQL string literal of `s` (quotes and backslashes escaped).
fn literal(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl ToolSlo {
    /// The query of the SLO's objective from the tool's recorded series: one sample, not
    /// below 0 while the objective is met (the lowest of the series that match: a series
    /// another namespace records under the same names can only lower it). The caller
    /// scopes it to the namespace like every query of a user's.
    pub fn objective_query(&self) -> String {
        match &self.alerts {
            ToolAlerts::Sloth { id } => format!(
                "min(slo:period_error_budget_remaining:ratio{{sloth_id={}}})",
                literal(id)
            ),
            ToolAlerts::Pyrra { slo } => format!(
                "min(pyrra_availability{{slo={0}}}) - max(pyrra_objective{{slo={0}}})",
                literal(slo)
            ),
        }
    }
}

/// The SLOs of Sloth PrometheusServiceLevels (Sloth's `sloth_id` is `<service>-<slo>`).
pub fn sloth(objects: &[Value]) -> Vec<ToolSlo> {
    let mut out = Vec::new();
    for o in objects {
        let service = o["spec"]["service"].as_str().unwrap_or_default();
        for slo in o["spec"]["slos"].as_array().into_iter().flatten() {
            let slo = slo["name"].as_str().unwrap_or_default();
            if service.is_empty() || slo.is_empty() {
                continue;
            }
            out.push(ToolSlo {
                name: format!("Sloth {}/{slo}", name(o)),
                alerts: ToolAlerts::Sloth {
                    id: format!("{service}-{slo}"),
                },
            });
        }
    }
    out
}

/// The SLOs of Pyrra ServiceLevelObjectives (Pyrra labels their series `slo=<name>`).
pub fn pyrra(objects: &[Value]) -> Vec<ToolSlo> {
    objects
        .iter()
        .filter(|o| !name(o).is_empty())
        .map(|o| ToolSlo {
            name: format!("Pyrra {}", name(o)),
            alerts: ToolAlerts::Pyrra {
                slo: name(o).to_string(),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::evidence::is_tool_alert;
    use serde_json::json;

    #[test]
    fn sloth_slos_and_their_queries_and_alerts() {
        let psl = json!({
            "metadata": {"name": "checkout"},
            "spec": {"service": "check\"out", "slos": [{"name": "availability"}, {"name": "latency"}, {}]}
        });
        let slos = sloth(&[psl]);
        assert_eq!(slos.len(), 2);
        assert_eq!(slos[0].name, "Sloth checkout/availability");
        // The service name cannot break out of the label matcher.
        assert_eq!(
            slos[0].objective_query(),
            r#"min(slo:period_error_budget_remaining:ratio{sloth_id="check\"out-availability"})"#
        );
        let shop = ToolAlerts::Sloth {
            id: "shop-availability".into(),
        };
        assert!(is_tool_alert(
            r#"(max(slo:sli_error:ratio_rate5m{sloth_id="shop-availability",sloth_service="shop"} > (14.4 * 0.001)) without (sloth_window))"#,
            &shop
        ));
        // Labels anyone can type on a constant are not Sloth's alert, nor is a branch of
        // constants beside Sloth's series, nor another SLO's series.
        for forged in [
            r#"vector(1) > 0 and on() absent(x{sloth_id="shop-availability"})"#,
            r#"slo:sli_error:ratio_rate5m{sloth_id="shop-availability"} > 0.1 or vector(1)"#,
            r#"slo:sli_error:ratio_rate5m{sloth_id="shop-availability"} > 0.1 or up"#,
            r#"slo:sli_error:ratio_rate5m{sloth_id="other-availability"} > 0.1"#,
            r#"slo:sli_error:ratio_rate5m{sloth_id=~"shop-availability|x"} > 0.1"#,
            "1 > 0",
        ] {
            assert!(!is_tool_alert(forged, &shop), "{forged}");
        }
    }

    #[test]
    fn pyrra_slos_and_their_queries_and_alerts() {
        let slo = json!({
            "metadata": {"name": "checkout-errors"},
            "spec": {"target": "99.5", "window": "28d", "indicator": {"ratio": {
                "errors": {"metric": "http_requests_total{code=~\"5..\"}"},
                "total": {"metric": "http_requests_total"}}}}
        });
        let slos = pyrra(&[slo, json!({"metadata": {}})]);
        assert_eq!(slos.len(), 1);
        assert_eq!(slos[0].name, "Pyrra checkout-errors");
        assert_eq!(
            slos[0].objective_query(),
            r#"min(pyrra_availability{slo="checkout-errors"}) - max(pyrra_objective{slo="checkout-errors"})"#
        );
        let alerts = &slos[0].alerts;
        // Pyrra's alert as it writes it (slo/rules.go: short and long burn-rate recordings
        // of the SLO against factor × (1 - target)).
        assert!(is_tool_alert(
            r#"http_requests:burnrate5m{slo="checkout-errors"} > (14 * (1-0.995)) and http_requests:burnrate1h{slo="checkout-errors"} > (14 * (1-0.995))"#,
            alerts
        ));
        for forged in [
            r#"http_requests:burnrate5m{slo="checkout-errors"} > 0 or vector(1)"#,
            r#"http_requests:burnrate5m{slo="other"} > 0.1"#,
            r#"http_requests_total{slo="checkout-errors"} > 0"#,
            r#":burnrate5m{slo="checkout-errors"} > 0"#,
            r#"http_requests:burnrate5m{slo!="checkout-errors"} > 0"#,
        ] {
            assert!(!is_tool_alert(forged, alerts), "{forged}");
        }
    }
}

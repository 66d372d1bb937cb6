//! The admission webhook's checks that need no cluster, called by the webhook and by
//! `validate`: a DrillSchedule's checks, a CanaryPolicy's metrics and a
//! MaturityAssessment's signals may only read their own namespace's series (as
//! `--tenant-label` scopes them), and a signal must read series at all.

use crate::api::maturity_assessment::MaturityAssessmentSpec;
use crate::api::{CanaryPolicy, DrillSchedule, MaturityAssessment};
use crate::prom::enforce::Tenancy;

/// The hook that records the authors of DrillSchedules and CanaryPolicies.
pub const AUTHORS_HOOK: &str = "authors.maturity.sre.dev";
/// The hook that records attestations and exemptions of MaturityAssessments.
pub const ASSESSMENTS_HOOK: &str = "assessments.maturity.sre.dev";

/// The webhook that admits objects of `kind`, if one does.
pub fn hook(kind: &str) -> Option<&'static str> {
    match kind {
        "DrillSchedule" | "CanaryPolicy" => Some(AUTHORS_HOOK),
        "MaturityAssessment" => Some(ASSESSMENTS_HOOK),
        _ => None,
    }
}

/// Why the webhook refuses `object` (the whole object, as JSON) of `kind` created in
/// `namespace`, or None: admitted (another kind, or an object that does not read as its
/// kind, whose errors the API server's validation gives).
pub fn refusal(
    kind: &str,
    object: &serde_json::Value,
    namespace: &str,
    tenancy: &Tenancy,
) -> Option<String> {
    match kind {
        "DrillSchedule" => {
            let mut d: DrillSchedule = serde_json::from_value(object.clone()).ok()?;
            d.metadata.namespace = Some(namespace.to_string());
            crate::drill::decide::scoped_checks(&d, tenancy).err()
        }
        "CanaryPolicy" => {
            let mut p: CanaryPolicy = serde_json::from_value(object.clone()).ok()?;
            p.metadata.namespace = Some(namespace.to_string());
            crate::canary::decide::scoped_metrics(&p, tenancy).err()
        }
        "MaturityAssessment" => {
            let a: MaturityAssessment = serde_json::from_value(object.clone()).ok()?;
            signals_refusal(&a.spec, tenancy, namespace)
        }
        _ => None,
    }
}

/// Why `spec`'s signals may not be admitted: a query that reads no series, or one that
/// would read another namespace.
pub fn signals_refusal(
    spec: &MaturityAssessmentSpec,
    tenancy: &Tenancy,
    ns: &str,
) -> Option<String> {
    let s = spec.signals.as_ref()?;
    let queries = [
        (
            "satisfaction.query",
            s.satisfaction.as_ref().map(|x| &x.query),
        ),
        ("complaints.query", s.complaints.as_ref().map(|x| &x.query)),
        ("demand.query", s.demand.as_ref().map(|x| &x.query)),
        ("demand.capacity", s.demand.as_ref().map(|x| &x.capacity)),
    ];
    queries.into_iter().find_map(|(field, q)| {
        let why = tenancy.evidence(q?.as_str(), ns).err()?;
        Some(format!("spec.signals.{field}: {why}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enforced() -> Tenancy {
        Tenancy::Enforced {
            label: "namespace".into(),
        }
    }

    fn drill(query: &str) -> serde_json::Value {
        json!({"apiVersion": "maturity.sre.dev/v1alpha1", "kind": "DrillSchedule",
            "metadata": {"name": "d"},
            "spec": {"schedule": "0 10 * * 1", "target": {"kind": "Deployment", "name": "web"},
                     "action": {"podKill": {"count": 1}}, "recoveryDeadline": "1m",
                     "steadyState": [{"name": "rich", "query": query, "min": 1.0}]}})
    }

    #[test]
    fn a_drill_reading_another_namespace_is_refused_unless_single_tenant() {
        let other = drill(r#"max(bank_balance{namespace="bank"})"#);
        let why = refusal("DrillSchedule", &other, "shop", &enforced()).unwrap();
        assert!(
            why.starts_with("steadyState check rich (#1): the query may only read namespace shop"),
            "{why}"
        );
        assert_eq!(
            refusal("DrillSchedule", &other, "shop", &Tenancy::Single),
            None
        );
        let own = drill("max(bank_balance)");
        assert_eq!(refusal("DrillSchedule", &own, "shop", &enforced()), None);
    }

    #[test]
    fn signals_must_read_series_of_their_namespace() {
        let a = |q: &str| {
            json!({"apiVersion": "maturity.sre.dev/v1alpha1", "kind": "MaturityAssessment",
                "metadata": {"name": "a"},
                "spec": {"signals": {"satisfaction": {"query": q, "min": 4.0}}}})
        };
        let why = refusal(
            "MaturityAssessment",
            &a(r#"avg(s{namespace="x"})"#),
            "shop",
            &enforced(),
        )
        .unwrap();
        assert!(
            why.starts_with("spec.signals.satisfaction.query: "),
            "{why}"
        );
        assert!(why.contains("may only read namespace shop"), "{why}");
        assert!(
            refusal(
                "MaturityAssessment",
                &a("vector(5)"),
                "shop",
                &Tenancy::Single
            )
            .is_some()
        );
        assert_eq!(
            refusal("MaturityAssessment", &a("avg(s)"), "shop", &enforced()),
            None
        );
        assert_eq!(
            refusal("ResponseTimeTarget", &a("vector(5)"), "shop", &enforced()),
            None
        );
    }
}

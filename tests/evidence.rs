//! The level is evidence (issue 15): routes to a higher level that a team could take
//! without changing any practice, each tried against the real API server, operator and
//! Prometheus, and shown not to raise the level. Expected practice states are written out
//! by hand from the rule in docs/maturity.md, not computed by the model.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use maturity_operator::api::MaturityAssessment;
use serde_json::json;
use support::cluster::TestContext;
use support::eventually;
use support::operator::Operator;

/// The state and detail of each practice of `name`'s status, and its level, once evaluated.
async fn practices(
    api: &Api<MaturityAssessment>,
    name: &str,
) -> Result<(BTreeMap<String, (String, String)>, i64), String> {
    let a = api.get(name).await.map_err(|e| e.to_string())?;
    let v = serde_json::to_value(&a).unwrap();
    let level = v["status"]["level"].as_i64().ok_or("not evaluated yet")?;
    let states = v["status"]["capabilities"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["practices"].as_array().cloned().unwrap_or_default())
        .map(|p| {
            (
                p["id"].as_str().unwrap_or_default().to_string(),
                (
                    p["state"].as_str().unwrap_or_default().to_string(),
                    p["detail"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect();
    Ok((states, level))
}

async fn apply(api: &Api<MaturityAssessment>, name: &str, signals: serde_json::Value) {
    let a: MaturityAssessment = serde_json::from_value(json!({
        "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "MaturityAssessment",
        "metadata": {"name": name}, "spec": {"scope": {}, "signals": signals}
    }))
    .unwrap();
    api.patch(
        name,
        &PatchParams::apply("evidence-test"),
        &Patch::Apply(&a),
    )
    .await
    .unwrap();
}

/// Signals made of literals only (`vector(5)`, a capacity typed as a number) are no
/// evidence: the practices they would satisfy stay Unknown with the reason, and the level
/// is the one the same namespace has without signals. The same signal reading a real
/// series (a scraped satisfaction score) is Met: the route works when it is real.
#[tokio::test]
async fn signal_queries_of_literals_only_do_not_raise_the_level() {
    let ctx = TestContext::new("evconst").await;
    let ns = ctx.namespace.clone();
    let _signal = support::prom::satisfaction_signal(&ctx).await;
    let operator = Operator::start_with(
        &ctx.env,
        &ns,
        &ctx.env.prometheus_url,
        "2s",
        &["--assessment-interval=1s".to_string()],
    );
    let api: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ns);
    apply(&api, "plain", json!({})).await;
    apply(
        &api,
        "constants",
        json!({
            "satisfaction": {"query": "vector(5)", "min": 1},
            "complaints": {"query": "vector(1)"},
            "demand": {"query": "vector(1)", "capacity": "1e9", "horizon": "7d"},
        }),
    )
    .await;
    apply(
        &api,
        "real",
        json!({"satisfaction": {"query": "avg(satisfaction_score)", "min": 4.0}}),
    )
    .await;
    let (plain, plain_level) = eventually("plain evaluated", Duration::from_secs(30), || {
        practices(&api, "plain")
    })
    .await;
    let (constants, constants_level) =
        eventually("constants evaluated", Duration::from_secs(30), || {
            practices(&api, "constants")
        })
        .await;
    // Every practice the three signals decide (docs/maturity.md, "Measured evidence").
    for id in [
        "CX-2.3", "ORG-3.5", "COMM-2.4", "CX-3.3", "CX-4.2", "RESP-4.4", "CX-4.5",
    ] {
        let (state, detail) = &constants[id];
        assert_eq!(state, "Unknown", "{id}: {detail}");
        assert!(
            detail.contains("reads no series, only literals"),
            "{id}: {detail}"
        );
    }
    assert_eq!(
        constants_level, plain_level,
        "constants raised the level: {constants:?}"
    );
    assert!(constants_level <= 5);
    let (real, _) = eventually("real evaluated", Duration::from_secs(30), || async {
        let (p, level) = practices(&api, "real").await?;
        match p.get("CX-2.3") {
            Some((state, _)) if state == "Met" => Ok((p, level)),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(real["CX-2.3"].0, "Met");
    // Without any signal the practice is not Met either.
    assert_ne!(plain["CX-2.3"].0, "Met", "{:?}", plain["CX-2.3"]);
    drop(operator);
    ctx.cleanup().await;
}

//! Incident handling time from backfilled `ALERTS` series: the operator's resolved count,
//! share within `resolveWithin`, mean and p90 time-to-resolve match the test's own
//! computation from the incidents it generated.

mod support;

use std::time::Duration;

use kube::api::{Api, PostParams};
use maturity_operator::api::ResponseTimeTarget;
use support::cluster::TestContext;
use support::eventually;
use support::operator::Operator;
use support::prom::{BackfilledPrometheus, OpenMetrics, now_unix};

#[tokio::test]
async fn handling_figures_match_the_generated_incidents() {
    let ctx = TestContext::new("alerts").await;
    let now = now_unix();
    let base = now - now % 60 - 27 * 86_400;
    // (alertname, severity, minute of the history it starts, minutes it fires)
    let incidents: Vec<(String, &str, i64, i64)> = [5, 12, 25, 31, 40, 8, 90, 15, 29, 30, 61, 3]
        .iter()
        .enumerate()
        .map(|(i, minutes)| {
            (
                format!("Alert{}", i % 3),
                "critical",
                i as i64 * 2000 + 17,
                *minutes,
            )
        })
        .chain([("Noise".to_string(), "warning", 700, 5)])
        .collect();
    let mut om = OpenMetrics::default();
    for (name, severity, start_minute, minutes) in &incidents {
        for m in 0..*minutes {
            let ts = base + (start_minute + m) * 60;
            om.sample(
                "ALERTS",
                "gauge",
                &format!(
                    r#"ALERTS{{alertname="{name}",alertstate="firing",severity="{severity}",namespace="{}"}}"#,
                    ctx.namespace
                ),
                1.0,
                ts,
            );
        }
    }
    // The test's own figures over the critical incidents.
    let mut durations: Vec<f64> = incidents
        .iter()
        .filter(|i| i.1 == "critical")
        .map(|i| (i.3 * 60) as f64)
        .collect();
    durations.sort_by(|a, b| a.total_cmp(b));
    let n = durations.len();
    let within = durations.iter().filter(|d| **d <= 1800.0).count();
    let mean = durations.iter().sum::<f64>() / n as f64;
    let p90 = durations[(0.9 * n as f64).ceil() as usize - 1];
    let attainment = 100.0 * within as f64 / n as f64;

    let backfilled = BackfilledPrometheus::start(&ctx.env, &om.render()).await;
    let _operator = Operator::start(&ctx.env, &ctx.namespace, &backfilled.prom.url, "5s");

    let api: Api<ResponseTimeTarget> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let t: ResponseTimeTarget = serde_json::from_value(serde_json::json!({
        "apiVersion": "maturity.sre.dev/v1alpha1",
        "kind": "ResponseTimeTarget",
        "metadata": {"name": "incident-handling"},
        "spec": {
            "service": "shop", "requestClass": "critical-incidents", "objective": 80, "window": "28d",
            "indicator": {"alertResolution": {"selector": format!("{{severity=\"critical\", namespace=\"{}\"}}", ctx.namespace), "resolveWithin": "30m"}}
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &t).await.unwrap();

    let t = eventually(
        "handling figures in status",
        Duration::from_secs(40),
        || {
            let api = api.clone();
            async move {
                let t = api
                    .get("incident-handling")
                    .await
                    .map_err(|e| e.to_string())?;
                match t.status.as_ref().and_then(|s| s.resolution.clone()) {
                    Some(_) => Ok(t),
                    None => Err(format!("{:?}", t.status)),
                }
            }
        },
    )
    .await;
    let status = t.status.clone().unwrap();
    let r = status.resolution.clone().unwrap();
    assert_eq!(
        (r.resolved as usize, r.within_target as usize),
        (n, within),
        "{r:?}"
    );
    assert!(
        (r.mean_seconds.unwrap() - mean).abs() < 0.1,
        "mean {:?} vs {mean}",
        r.mean_seconds
    );
    assert_eq!(r.p90_seconds, Some(p90));
    assert!(
        (status.attainment.unwrap() - attainment).abs() < 0.01,
        "{:?} vs {attainment}",
        status.attainment
    );
    let met = status
        .common
        .conditions
        .iter()
        .find(|c| c.type_ == "ObjectiveMet")
        .unwrap();
    // 8 of 12 within 30 minutes: 66.7%, below the 80% objective.
    assert_eq!(
        met.status,
        if attainment >= 80.0 { "True" } else { "False" }
    );
    assert!(
        status.queries["firing"].starts_with("ALERTS{"),
        "{:?}",
        status.queries
    );
    ctx.cleanup().await;
}

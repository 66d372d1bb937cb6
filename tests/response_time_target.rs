//! The ResponseTimeTarget controller end to end: the operator process, the real apiserver,
//! and a real Prometheus on 28 days of backfilled history. Status shows attainment within
//! 0.01 percentage points of the generator's figure, a degraded service misses its
//! objective, and a threshold that is not a bucket boundary, a histogram without series,
//! low traffic, an unreachable Prometheus and a query Prometheus rejects each end in their
//! own condition while the operator keeps running.

mod support;

use std::time::Duration;

use kube::api::{Api, PostParams};
use maturity_operator::api::ResponseTimeTarget;
use support::cluster::TestContext;
use support::eventually;
use support::operator::Operator;
use support::prom::{BackfilledPrometheus, LatencyHistory, free_port, now_unix};

fn target(
    name: &str,
    service: &str,
    threshold: &str,
    histogram: &str,
    min_rate: f64,
) -> ResponseTimeTarget {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "maturity.sre.dev/v1alpha1",
        "kind": "ResponseTimeTarget",
        "metadata": {"name": name},
        "spec": {
            "service": service, "requestClass": "interactive", "objective": 99.5, "window": "28d",
            "minRequestRate": min_rate,
            "indicator": {"latency": {"histogram": histogram, "selector": format!("{{service=\"{service}\"}}"), "threshold": threshold}}
        }
    }))
    .unwrap()
}

fn condition(t: &ResponseTimeTarget, type_: &str) -> Option<(String, String, String)> {
    t.status
        .as_ref()?
        .common
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn wait_for_condition(
    api: &Api<ResponseTimeTarget>,
    name: &str,
    type_: &str,
    reason: &str,
) -> ResponseTimeTarget {
    eventually(
        &format!("{name}: {type_} with reason {reason}"),
        Duration::from_secs(40),
        || {
            let api = api.clone();
            let name = name.to_string();
            let (type_, reason) = (type_.to_string(), reason.to_string());
            async move {
                let t = api.get(&name).await.map_err(|e| e.to_string())?;
                match condition(&t, &type_) {
                    Some((_, r, _)) if r == reason => Ok(t),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await
}

#[tokio::test]
async fn status_reports_attainment_and_every_failure_its_own_condition() {
    let ctx = TestContext::new("rtt").await;
    let now = now_unix();
    let step = 300;
    let history = LatencyHistory {
        start: now - 29 * 86_400,
        end: now - now % step - 600,
        step,
        namespace: ctx.namespace.clone(),
    };
    let healthy = |_day: i64| 0.999;
    let degraded = |day: i64| if day % 7 == 3 { 0.95 } else { 0.99 };
    let trickle = |_day: i64| 1.0;
    let (om, expected) = history.generate(
        &[
            ("healthy", 2.0, &healthy),
            ("degraded", 2.0, &degraded),
            ("quiet", 0.01, &trickle),
        ],
        now - 28 * 86_400,
    );
    let backfilled = BackfilledPrometheus::start(&ctx.env, &om).await;
    // The same history behind a Prometheus that refuses queries loading many samples.
    let strict =
        BackfilledPrometheus::start_with(&ctx.env, &om, None, &["--query.max-samples=100"], "")
            .await;
    let mut operator = Operator::start(&ctx.env, &ctx.namespace, &backfilled.prom.url, "2s");

    let api: Api<ResponseTimeTarget> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let h = "http_request_duration_seconds";
    for t in [
        target("healthy", "healthy", "300ms", h, 0.1),
        target("degraded", "degraded", "300ms", h, 0.1),
        target("not-a-bucket", "healthy", "200ms", h, 0.1),
        target(
            "no-series",
            "healthy",
            "300ms",
            "no_such_histogram_seconds",
            0.1,
        ),
        target("quiet", "quiet", "300ms", h, 0.1),
    ] {
        api.create(&PostParams::default(), &t)
            .await
            .expect("create target");
    }

    let t = wait_for_condition(&api, "healthy", "ObjectiveMet", "WithinObjective").await;
    let status = t.status.clone().unwrap();
    let got = status.attainment.unwrap();
    assert!(
        (got - expected[0]).abs() < 0.01,
        "healthy: attainment {got} vs generated {}",
        expected[0]
    );
    assert_eq!(condition(&t, "Ready").unwrap().0, "True");
    assert_eq!(condition(&t, "DataAvailable").unwrap().0, "True");
    assert!(
        status.queries["good"].contains(r#"le="0.3""#),
        "{:?}",
        status.queries
    );
    assert!(
        status.burn_rates.contains_key("1h"),
        "{:?}",
        status.burn_rates
    );
    assert_eq!(status.common.observed_generation, t.metadata.generation);

    let t = wait_for_condition(&api, "degraded", "ObjectiveMet", "ObjectiveMissed").await;
    let status = t.status.clone().unwrap();
    let got = status.attainment.unwrap();
    assert!(
        (got - expected[1]).abs() < 0.01,
        "degraded: attainment {got} vs generated {}",
        expected[1]
    );
    let budget = 1.0 - (1.0 - expected[1] / 100.0) / 0.005;
    let remaining = status.error_budget_remaining.unwrap();
    // Status shows the budget to two significant digits.
    assert!(
        (remaining - budget).abs() <= (budget.abs() * 0.05).max(0.01),
        "degraded: budget left {remaining} vs {budget}"
    );
    assert!(remaining < 0.0, "the degraded service overspent its budget");

    // The transition is told as a Warning Event on the target.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let missed = eventually("ObjectiveMissed Event", Duration::from_secs(20), || {
        let events = events.clone();
        async move {
            let list = events
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("ObjectiveMissed")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("degraded")
                })
                .ok_or_else(|| "no event yet".to_string())
        }
    })
    .await;
    assert_eq!(missed.type_.as_deref(), Some("Warning"));
    assert!(
        missed
            .note
            .unwrap_or_default()
            .starts_with("ObjectiveMet=False: attainment")
    );

    let t = wait_for_condition(&api, "not-a-bucket", "Ready", "ThresholdNotABucket").await;
    let (status, _, message) = condition(&t, "Ready").unwrap();
    assert_eq!(status, "False");
    assert!(
        message.contains("available boundaries (seconds): 0.1, 0.3, 1"),
        "{message}"
    );
    assert_eq!(condition(&t, "ObjectiveMet").unwrap().0, "Unknown");

    let t = wait_for_condition(&api, "no-series", "DataAvailable", "NoData").await;
    assert_eq!(condition(&t, "DataAvailable").unwrap().0, "False");
    assert_eq!(condition(&t, "ObjectiveMet").unwrap().0, "Unknown");

    let t = wait_for_condition(&api, "quiet", "ObjectiveMet", "LowTraffic").await;
    let (status, _, message) = condition(&t, "ObjectiveMet").unwrap();
    assert_eq!(status, "Unknown");
    assert!(message.contains("below minRequestRate 0.1"), "{message}");

    // Exported per-target metrics.
    let metrics = reqwest::get(&operator.metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ns_label = format!(r#"namespace="{}""#, ctx.namespace);
    let state_of = |name: &str, state: &str| {
        metrics.lines().find(|l| {
            l.starts_with("maturity_rtt_state{")
                && l.contains(&ns_label)
                && l.contains(&format!(r#"name="{name}""#))
                && l.contains(&format!(r#"state="{state}""#))
        })
    };
    assert!(
        state_of("degraded", "missed").is_some_and(|l| l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(
        state_of("healthy", "met").is_some_and(|l| l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(
        state_of("healthy", "missed").is_some_and(|l| l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(operator.running());
    drop(operator);

    // Prometheus gone: the targets say so, and the operator keeps running.
    drop(backfilled);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut operator = Operator::start(&ctx.env, &ctx.namespace, &dead, "2s");
    let t = wait_for_condition(&api, "healthy", "DataAvailable", "PrometheusUnreachable").await;
    let (ready, _, message) = condition(&t, "Ready").unwrap();
    assert_eq!(ready, "False");
    assert!(message.contains("unreachable"), "{message}");
    assert_eq!(
        condition(&t, "ObjectiveMet").unwrap().0,
        "Unknown",
        "never a breach when unmeasured"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        operator.running(),
        "the operator must keep running without Prometheus"
    );
    drop(operator);

    // A query Prometheus rejects (too many samples for its limit): said, not a breach.
    let mut operator = Operator::start(&ctx.env, &ctx.namespace, &strict.prom.url, "2s");
    let t = wait_for_condition(&api, "healthy", "Ready", "QueryRejected").await;
    let (ready, _, message) = condition(&t, "Ready").unwrap();
    assert_eq!(ready, "False");
    assert!(
        message.contains("Prometheus rejected the query"),
        "{message}"
    );
    assert!(message.contains("too many samples"), "{message}");
    assert_eq!(condition(&t, "ObjectiveMet").unwrap().0, "Unknown");
    assert!(operator.running());
    drop(operator);
    ctx.cleanup().await;
}

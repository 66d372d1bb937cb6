//! Where the Prometheus Operator's PrometheusRule kind is served, a ResponseTimeTarget with
//! burn-rate alerts gets a PrometheusRule owned by it, and loses it when alerts are switched
//! off. (The CRD installed here is a minimal stand-in for the Prometheus Operator's.)

mod support;

use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use maturity_operator::api::ResponseTimeTarget;
use maturity_operator::controllers::response_time_target::rules::{api_resource, rule_name};
use support::cluster::TestContext;
use support::eventually;
use support::operator::Operator;

#[tokio::test]
async fn burn_rate_alerts_become_an_owned_prometheus_rule() {
    let ctx = TestContext::new("promrule").await;
    support::cluster::install_prometheus_rule_stand_in(&ctx.client).await;
    let _operator = Operator::start(&ctx.env, &ctx.namespace, &ctx.env.prometheus_url, "2s");

    let targets: Api<ResponseTimeTarget> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let mut t: ResponseTimeTarget = serde_yaml::from_str(
        &std::fs::read_to_string(
            support::cluster::repo_dir().join("examples/rtt-checkout-latency.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    t.metadata.namespace = None;
    let created = targets.create(&PostParams::default(), &t).await.unwrap();
    let uid = created.metadata.uid.clone().unwrap();

    let rules: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &api_resource());
    let name = rule_name("checkout-interactive");
    let rule = eventually("PrometheusRule created", Duration::from_secs(30), || {
        let rules = rules.clone();
        let name = name.clone();
        async move { rules.get(&name).await.map_err(|e| e.to_string()) }
    })
    .await;
    let owners = rule.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (owners[0].kind.as_str(), owners[0].uid.as_str()),
        ("ResponseTimeTarget", uid.as_str())
    );
    let alerts = rule.data["spec"]["groups"][0]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(alerts.len(), 4, "{:?}", rule.data);
    assert_eq!(alerts[0]["labels"]["severity"], "page");
    assert_eq!(
        alerts[0]["annotations"]["runbook_url"],
        "https://wiki.example/runbooks/checkout"
    );

    // Alerts off: the rule goes.
    targets
        .patch(
            "checkout-interactive",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"alerting": {"burnRateAlerts": false}}})),
        )
        .await
        .unwrap();
    eventually("PrometheusRule deleted", Duration::from_secs(30), || {
        let rules = rules.clone();
        let name = name.clone();
        async move {
            match rules.get_opt(&name).await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(_) => Err("still there".to_string()),
            }
        }
    })
    .await;
    ctx.cleanup().await;
}

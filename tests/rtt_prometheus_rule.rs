//! Where the Prometheus Operator's PrometheusRule kind is served (its real CRD, generated
//! from its API module), a ResponseTimeTarget with burn-rate alerts gets a PrometheusRule
//! owned by it, carrying the target's labels and the operator's `--prometheus-rule-label`s,
//! and loses it when alerts are switched off. A loader that does what the Prometheus
//! Operator does with a `ruleSelector` on `release: kps` loads it into the shared
//! Prometheus; the target's `AlertsLoaded` condition says whether Prometheus has it.

mod support;

use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use maturity_operator::api::ResponseTimeTarget;
use maturity_operator::controllers::response_time_target::rules::{api_resource, rule_name};
use support::cluster::TestContext;
use support::eventually;
use support::operator::Operator;
use support::rule_loader::RuleSelectorLoader;

const TARGET: &str = "checkout-interactive";

/// The example target, with labels of its own: a team label and Argo CD's tracking label.
async fn create_target(ctx: &TestContext) -> (Api<ResponseTimeTarget>, String) {
    let targets: Api<ResponseTimeTarget> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let mut t: ResponseTimeTarget = serde_saphyr::from_str(
        &std::fs::read_to_string(
            support::cluster::repo_dir().join("examples/rtt-checkout-latency.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    t.metadata.namespace = None;
    t.metadata.labels = Some(
        [
            ("team".to_string(), "payments".to_string()),
            ("app.kubernetes.io/instance".to_string(), "shop".to_string()),
        ]
        .into(),
    );
    let created = targets.create(&PostParams::default(), &t).await.unwrap();
    (targets, created.metadata.uid.unwrap())
}

/// A namespace with the real PrometheusRule CRD, a loader selecting `release: kps`
/// rules, and the operator with `flags`.
async fn setup(name: &str, flags: &[String]) -> (TestContext, RuleSelectorLoader, Operator) {
    let ctx = TestContext::new(name).await;
    support::cluster::install_monitoring_crds(&ctx.env, &ctx.client).await;
    let loader = RuleSelectorLoader::start(&ctx.env, &ctx.client, &[&ctx.namespace], "release=kps");
    let operator = Operator::start_with(
        &ctx.env,
        &ctx.namespace,
        &ctx.env.prometheus_url,
        "2s",
        flags,
    );
    (ctx, loader, operator)
}

/// The target's AlertsLoaded condition: (status, reason, message).
async fn alerts_loaded(
    targets: &Api<ResponseTimeTarget>,
    want: (&str, &str),
    timeout: Duration,
) -> String {
    let (status, reason) = (want.0.to_string(), want.1.to_string());
    eventually(&format!("AlertsLoaded={status} {reason}"), timeout, || {
        let (targets, status, reason) = (targets.clone(), status.clone(), reason.clone());
        async move {
            let t = targets.get(TARGET).await.map_err(|e| e.to_string())?;
            let c = t
                .status
                .unwrap_or_default()
                .common
                .conditions
                .into_iter()
                .find(|c| c.type_ == "AlertsLoaded")
                .ok_or("no AlertsLoaded condition")?;
            if c.status == status && c.reason == reason {
                Ok(c.message)
            } else {
                Err(format!("{} {}: {}", c.status, c.reason, c.message))
            }
        }
    })
    .await
}

/// Whether the shared Prometheus has loaded the rule group `group`.
async fn group_loaded(ctx: &TestContext, group: &str) -> bool {
    let url = format!(
        "{}/api/v1/rules?rule_group[]={}",
        ctx.env.prometheus_url,
        group.replace('/', "%2F")
    );
    let body: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    body["data"]["groups"]
        .as_array()
        .is_some_and(|g| g.iter().any(|g| g["name"] == group))
}

#[tokio::test]
async fn a_rule_with_the_selected_label_is_loaded_and_the_target_says_so() {
    let (ctx, _loader, operator) =
        setup("promrule", &["--prometheus-rule-label=release=kps".into()]).await;
    let (targets, uid) = create_target(&ctx).await;

    let rules: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &api_resource());
    let name = rule_name(TARGET);
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
    // The target's own labels but Argo CD's tracking label, the configured one, managed-by.
    let labels = rule.metadata.labels.clone().unwrap_or_default();
    let expected: std::collections::BTreeMap<String, String> = [
        ("release", "kps"),
        ("team", "payments"),
        ("app.kubernetes.io/managed-by", "maturity-operator"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(labels, expected);
    let alerts = rule.data["spec"]["groups"][0]["rules"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Four burn-rate alerts and the no-data one, with Alertmanager's severities.
    assert_eq!(alerts.len(), 5, "{:?}", rule.data);
    assert_eq!(alerts[0]["labels"]["severity"], "critical");
    assert_eq!(alerts[0]["for"], "2m");
    assert_eq!(alerts[4]["alert"], "ResponseTimeTargetNoData");
    assert_eq!(
        alerts[0]["annotations"]["runbook_url"],
        "https://wiki.example/runbooks/checkout"
    );
    // `maturity-operator rules --kind prometheusrule` prints the same object for a GitOps
    // repository (labels and rules; the owner reference is the operator's).
    let target = targets.get(TARGET).await.unwrap();
    let manifest = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(manifest.path(), serde_saphyr::to_string(&target).unwrap()).unwrap();
    let printed = support::run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
            .args([
                "rules",
                "--kind",
                "prometheusrule",
                "--prometheus-rule-label",
                "release=kps",
                "-f",
            ])
            .arg(manifest.path()),
        "maturity-operator rules --kind prometheusrule",
    );
    let printed: serde_json::Value = serde_saphyr::from_str(
        String::from_utf8_lossy(&printed.stdout).trim_start_matches("---\n"),
    )
    .unwrap();
    assert_eq!(printed["metadata"]["name"], name.as_str());
    assert_eq!(printed["metadata"]["namespace"], ctx.namespace.as_str());
    assert_eq!(printed["metadata"]["labels"], serde_json::json!(expected));
    assert_eq!(printed["spec"], rule.data["spec"]);

    // Selected, so loaded: Prometheus has the group, and the target says so.
    let message = alerts_loaded(&targets, ("True", "Loaded"), Duration::from_secs(60)).await;
    assert!(message.contains(&name), "{message}");
    let group = format!("maturity-operator/{}/{TARGET}", ctx.namespace);
    assert!(
        group_loaded(&ctx, &group).await,
        "{group} not in Prometheus"
    );
    // Cost follows work: once every rule is shown, the rules API is asked nothing more
    // (it was asked every 5 s while one was not).
    let asked = || async {
        let text = reqwest::get(&operator.metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(r#"maturity_operator_prometheus_queries_total{kind="rules""#))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let before = asked().await;
    assert!(before >= 1.0, "the rules API was never asked");
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        asked().await,
        before,
        "the rules API asked about loaded rules"
    );
    // The operator's own recordings rule carries the label too.
    let recordings = rules.get("maturity-operator-recordings").await.unwrap();
    assert_eq!(
        recordings
            .metadata
            .labels
            .unwrap_or_default()
            .get("release"),
        Some(&"kps".to_string())
    );

    // Alerts off: the rule goes, and so does the condition.
    targets
        .patch(
            TARGET,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"alerting": {"burnRateAlerts": false}}})),
        )
        .await
        .unwrap();
    eventually(
        "PrometheusRule and AlertsLoaded gone",
        Duration::from_secs(30),
        || {
            let (rules, targets, name) = (rules.clone(), targets.clone(), name.clone());
            async move {
                if rules
                    .get_opt(&name)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some()
                {
                    return Err("the rule is still there".to_string());
                }
                let t = targets.get(TARGET).await.map_err(|e| e.to_string())?;
                let conditions = t.status.unwrap_or_default().common.conditions;
                match conditions.iter().find(|c| c.type_ == "AlertsLoaded") {
                    None => Ok(()),
                    Some(c) => Err(format!("AlertsLoaded still {}", c.status)),
                }
            }
        },
    )
    .await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_rule_the_selector_does_not_pick_says_not_loaded_until_it_carries_the_label() {
    // No --prometheus-rule-label: the rule carries only the target's labels and managed-by.
    let (ctx, _loader, _operator) =
        setup("promrule-unselected", &["--rules-load-grace=6s".into()]).await;
    let (targets, _) = create_target(&ctx).await;
    let message = alerts_loaded(&targets, ("False", "NotLoaded"), Duration::from_secs(60)).await;
    assert!(
        message.contains("has not loaded it after 6s") && message.contains("ruleSelector"),
        "{message}"
    );
    let group = format!("maturity-operator/{}/{TARGET}", ctx.namespace);
    assert!(
        !group_loaded(&ctx, &group).await,
        "{group} loaded without the label"
    );

    // The target's own `release: kps` label reaches its rule: now it is selected and loaded.
    targets
        .patch(
            TARGET,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"release": "kps"}}})),
        )
        .await
        .unwrap();
    alerts_loaded(&targets, ("True", "Loaded"), Duration::from_secs(60)).await;
    assert!(
        group_loaded(&ctx, &group).await,
        "{group} not in Prometheus"
    );
    ctx.cleanup().await;
}

//! Alertmanager as a real part: a page alert the operator generates (from
//! `maturity-operator rules`) fires in a real Prometheus on a service that fails every
//! request, reaches a real Alertmanager and is delivered to a loopback webhook receiver.
//! The operator reads Alertmanager's routes and, from Prometheus (which scrapes
//! Alertmanager), its notification counters: RESP-2.2 (notifications succeed), ORG-2.3 (a
//! route of the namespace's own) and ORG-5.2 (critical alerts escalate) turn Met; once the
//! receiver fails, RESP-2.2 turns NotMet. Expected states are from the rule in
//! docs/maturity.md, worked out by hand for this configuration.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use kube::api::{Api, PostParams};
use maturity_operator::api::{MaturityAssessment, ResponseTimeTarget};
use maturity_operator::synthetic::Traffic;
use support::alertmanager::Alertmanager;
use support::cluster::{TestContext, apply_assessment, practices};
use support::eventually;
use support::operator::Operator;
use support::prom::{BackfilledPrometheus, OpenMetrics};
use support::receiver::Receiver;

fn target(ns: &str) -> String {
    format!(
        r#"
apiVersion: maturity.sre.dev/v1alpha1
kind: ResponseTimeTarget
metadata: {{name: checkout, namespace: {ns}}}
spec:
  service: checkout
  requestClass: interactive
  objective: 99.5
  window: 28d
  indicator:
    ratio:
      good: 'http_requests_total{{service="checkout", code="200"}}'
      total: 'http_requests_total{{service="checkout"}}'
  alerting: {{burnRateAlerts: true, labels: {{team: payments}}}}
"#
    )
}

/// The state and detail of practice `id`, once `want` is its state.
async fn practice(
    api: &Api<MaturityAssessment>,
    id: &str,
    want: &str,
    timeout: Duration,
) -> String {
    let (id, want) = (id.to_string(), want.to_string());
    eventually(&format!("{id} {want}"), timeout, || {
        let (api, id, want) = (api.clone(), id.clone(), want.clone());
        async move {
            let (p, _) = practices(&api, "team").await?;
            let (state, detail) = p.get(&id).cloned().unwrap_or_default();
            if state == want {
                Ok(detail)
            } else {
                Err(format!("{state}: {detail}"))
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_page_reaches_the_receiver_through_alertmanager_and_resp_2_2_follows_its_notifications() {
    let ctx = TestContext::new("alertmanager").await;
    let ns = ctx.namespace.clone();
    let receiver = Receiver::start().await;
    receiver.code.store(200, Ordering::SeqCst);

    // The namespace's own route; its critical alerts escalate to a pager receiver.
    let am = Alertmanager::start(
        &ctx.env,
        &format!(
            r#"
route:
  receiver: "null"
  group_by: [alertname, namespace]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 10s
  routes:
    - matchers: ['namespace="{ns}"']
      receiver: payments-tickets
      routes:
        - matchers: ['severity="critical"']
          receiver: payments-pager
receivers:
  - name: "null"
  - name: payments-tickets
    webhook_configs: [{{url: "{url}/tickets"}}]
  - name: payments-pager
    webhook_configs: [{{url: "{url}", send_resolved: false}}]
"#,
            url = receiver.url
        ),
    )
    .await;

    // A service failing every request, scraped every second.
    let exporter =
        support::prom::service_exporter(&ns, "checkout", Traffic::steady(20.0, 1.0, 0.05)).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("target.yaml");
    std::fs::write(&manifest, target(&ns)).unwrap();
    let rules = support::run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
            .args(["rules", "-f"])
            .arg(&manifest),
        "maturity-operator rules",
    );
    let rules = String::from_utf8(rules.stdout).unwrap();
    // promtool needs some history to start from: one unrelated sample.
    let mut om = OpenMetrics::default();
    om.sample(
        "boot_total",
        "counter",
        "boot_total",
        1.0,
        support::prom::now_unix() - 60,
    );
    let prom = BackfilledPrometheus::start_with(
        &ctx.env,
        &om.render(),
        Some(&rules),
        &[],
        &format!(
            r#"
alerting:
  alertmanagers: [{{static_configs: [{{targets: ["{am}"]}}]}}]
scrape_configs:
  - {{job_name: exporter, scrape_interval: 1s, static_configs: [{{targets: ["{exporter}"]}}]}}
  - {{job_name: alertmanager, scrape_interval: 1s, static_configs: [{{targets: ["{am}"]}}]}}
"#,
            am = am.addr,
            exporter = exporter.addr()
        ),
    )
    .await;

    // The operator reads Alertmanager and this Prometheus for the namespace's assessment.
    let _operator = Operator::start_with(
        &ctx.env,
        &ns,
        &prom.prom.url,
        "2s",
        &[
            "--assessment-interval=1s".into(),
            format!("--alertmanager-url={}", am.url()),
        ],
    );
    let targets: Api<ResponseTimeTarget> = Api::namespaced(ctx.client.clone(), &ns);
    targets
        .create(
            &PostParams::default(),
            &serde_saphyr::from_str(&target(&ns)).unwrap(),
        )
        .await
        .unwrap();
    let assessments: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ns);
    apply_assessment(&assessments, "team").await;

    // Routes are read at once: a route of the namespace's own, and an escalation.
    let detail = practice(&assessments, "ORG-2.3", "Met", Duration::from_secs(30)).await;
    assert!(
        detail.contains("receiver payments-pager (webhook)")
            && detail.contains(&format!(r#"namespace="{ns}""#)),
        "{detail}"
    );
    let detail = practice(&assessments, "ORG-5.2", "Met", Duration::from_secs(10)).await;
    assert!(
        detail.contains("escalate to receiver payments-pager")
            && detail.contains("the others go to payments-tickets"),
        "{detail}"
    );
    // No notification yet: nothing to measure.
    let detail = practice(&assessments, "RESP-2.2", "NotMet", Duration::from_secs(10)).await;
    assert!(
        detail.contains("no notification by webhook integrations"),
        "{detail}"
    );

    // The 1h page fires after its `for:` (2m) and is delivered.
    let started = SystemTime::now();
    let body = eventually(
        "the page delivered to the receiver",
        Duration::from_secs(200),
        || {
            let bodies = receiver.bodies.clone();
            let log = am.log();
            async move {
                bodies
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|b| b["receiver"] == "payments-pager")
                    .cloned()
                    .ok_or_else(|| format!("nothing yet; Alertmanager log: {log}"))
            }
        },
    )
    .await;
    let alert = &body["alerts"][0];
    assert_eq!(alert["status"], "firing", "{body}");
    assert_eq!(alert["labels"]["alertname"], "ErrorBudgetBurn", "{body}");
    assert_eq!(alert["labels"]["severity"], "critical", "{body}");
    assert_eq!(alert["labels"]["namespace"], ns.as_str(), "{body}");
    assert_eq!(alert["labels"]["team"], "payments", "{body}");
    // From firing (Prometheus's activeAt plus the 2m hold) to the receiver.
    let active: serde_json::Value = reqwest::get(format!("{}/api/v1/alerts", prom.prom.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let active_at = active["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["long_window"] == "1h")
        .and_then(|a| a["activeAt"].as_str())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .expect("the 1h page in Prometheus's alerts");
    let arrived = jiff::Timestamp::try_from(receiver.arrived.lock().unwrap()[0]).unwrap();
    let firing_to_delivery =
        arrived.duration_since(active_at + jiff::SignedDuration::from_secs(120));
    eprintln!(
        "alertmanager: page delivered {:.1} s after it fired ({:.0} s after the test waited)",
        firing_to_delivery.as_secs_f64(),
        started.elapsed().unwrap().as_secs_f64()
    );
    assert!(
        firing_to_delivery.as_secs_f64() >= 0.0,
        "delivered before it fired: {firing_to_delivery:?}"
    );

    // Delivered, and counted by Alertmanager, scraped by Prometheus: RESP-2.2 Met.
    let detail = practice(&assessments, "RESP-2.2", "Met", Duration::from_secs(60)).await;
    assert!(
        detail.contains("notifications by webhook integrations in the last 7 days, 0 failed"),
        "{detail}"
    );

    // The receiver fails: the next repeat fails after Alertmanager's retries, and more than
    // 5 % of the notifications have failed.
    receiver.code.store(500, Ordering::SeqCst);
    let detail = practice(&assessments, "RESP-2.2", "NotMet", Duration::from_secs(90)).await;
    assert!(detail.contains("failed in the last 7 days"), "{detail}");
    ctx.cleanup().await;
}

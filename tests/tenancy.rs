//! A tenant who may only create the operator's kinds in its own namespace cannot read
//! another namespace's series through them (issue 13, escape 1): every query a user writes
//! (assessment signals, canary metrics, drill checks) is scoped to the object's namespace
//! before it is sent, and a query that names another namespace is refused with a sentence
//! (at admission, by the operator's webhook, for policies, drills and assessments).
//! The objects are created as that tenant's ServiceAccount (`kubectl --as`), against the
//! real API server and the shared real Prometheus.

mod support;

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use maturity_operator::api::{CanaryPolicy, DrillSchedule, MaturityAssessment, ResponseTimeTarget};
use maturity_operator::synthetic::{SyntheticExporter, labels};
use serde_json::{Value, json};
use support::cluster::TestContext;
use support::eventually;
use support::operator::{Operator, remove_webhook, webhook_flags};
use support::prom::{Prom, ScrapeTarget};

/// Applies `manifest` as `user`.
fn apply_as(ctx: &TestContext, user: &str, manifest: &Value) -> std::process::Output {
    ctx.kubectl_as(user, &["apply", "-f", "-"], &manifest.to_string())
}

fn practice(a: &Value, id: &str) -> (String, String) {
    let p = a["status"]["capabilities"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["practices"].as_array().cloned().unwrap_or_default())
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no practice {id} in {a}"));
    (
        p["state"].as_str().unwrap_or_default().to_string(),
        p["detail"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn a_tenant_reads_only_its_own_namespace_through_signals_metrics_and_checks() {
    let ctx = TestContext::new("tenancy").await;
    let ns = ctx.namespace.clone();
    let other = format!("{ns}-bank");
    // Series of this namespace and of another tenant's, from one exporter.
    let exporter = Arc::new(
        SyntheticExporter::start("127.0.0.1:0".parse().unwrap())
            .await
            .expect("start exporter"),
    );
    exporter.set_gauge("satisfaction_score", labels(&[("namespace", &ns)]), 4.6);
    exporter.set_gauge("satisfaction_score", labels(&[("namespace", &other)]), 1.5);
    exporter.set_gauge(
        "bank_balance",
        labels(&[("namespace", &other)]),
        1_000_000.0,
    );
    let _target = ScrapeTarget::register(&ctx.env, &ns, exporter.addr(), &[]);
    let prom = Prom::new(ctx.env.prometheus_url.clone());
    let seen = format!("bank_balance{{namespace=\"{other}\"}}");
    eventually(
        "the other tenant's series scraped",
        Duration::from_secs(30),
        || {
            let (prom, q) = (prom.clone(), seen.clone());
            async move { prom.scalar(&q).await.map(|_| ()) }
        },
    )
    .await;

    // The tenant: may manage the four kinds in its namespace, and nothing else but deleting
    // its own pods (so that its drill below may run: what stops it is its query).
    let user = ctx.service_account(
        "tenant",
        json!([{"apiGroups": ["maturity.sre.dev"],
                "resources": ["responsetimetargets", "canarypolicies", "drillschedules", "maturityassessments"],
                "verbs": ["get", "list", "watch", "create", "update", "patch"]},
               {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]),
    );
    let _operator =
        Operator::start_recording(&ctx.env, &ctx.client, &ns, &webhook_flags(&ns)).await;

    // Assessments: one reading its own satisfaction, one reading another tenant's series
    // without naming a namespace (scoped when sent); one naming the other namespace is
    // refused at admission, with the sentence.
    let assessment = |name: &str, query: &str| {
        json!({"apiVersion": "maturity.sre.dev/v1alpha1", "kind": "MaturityAssessment",
               "metadata": {"name": name},
               "spec": {"scope": {}, "signals": {"satisfaction": {"query": query, "min": 4.0}}}})
    };
    for (name, query) in [
        ("own", "avg(satisfaction_score)".to_string()),
        ("unnamed-other", "max(bank_balance) / 250000".to_string()),
    ] {
        let out = apply_as(&ctx, &user, &assessment(name, &query));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let names_other = format!("avg(satisfaction_score{{namespace=\"{other}\"}})");
    let out = apply_as(&ctx, &user, &assessment("names-other", &names_other));
    assert!(!out.status.success(), "another namespace's signal admitted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.signals.satisfaction.query:")
            && err.contains(&format!("may only read namespace {ns}")),
        "{err}"
    );
    let api: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ns);
    let read = |name: &'static str| {
        let api = api.clone();
        async move {
            let a = api.get(name).await.map_err(|e| e.to_string())?;
            let v = serde_json::to_value(&a).unwrap();
            if v["status"]["capabilities"].is_null() {
                return Err("not evaluated yet".to_string());
            }
            Ok(practice(&v, "CX-2.3"))
        }
    };
    let own = eventually("own satisfaction read", Duration::from_secs(60), || {
        read("own")
    })
    .await;
    assert_eq!(
        own,
        ("Met".into(), "satisfaction 4.6 (target at least 4)".into())
    );
    let (state, detail) = eventually("a scoped signal", Duration::from_secs(60), || {
        read("unnamed-other")
    })
    .await;
    assert_eq!(state, "Unknown", "{detail}");
    assert!(
        !detail.contains('4') || !detail.contains("1000000"),
        "{detail}"
    );
    assert!(
        !detail.contains("1000000") && !detail.contains("satisfaction 4"),
        "{detail}"
    );

    // A canary metric naming the other namespace: refused at admission, with the sentence.
    let canary = |name: &str, query: &str| {
        json!({"apiVersion": "maturity.sre.dev/v1alpha1", "kind": "CanaryPolicy",
               "metadata": {"name": name},
               "spec": {"selector": {"matchLabels": {"app": name}}, "steps": [{"weight": 50, "analyze": "10s"}],
                        "analysis": {"interval": "5s", "metrics": [{"name": "m", "query": query, "max": 1.0}]}}})
    };
    let out = apply_as(
        &ctx,
        &user,
        &canary(
            "steals",
            &format!("max(bank_balance{{namespace=\"{other}\"}})"),
        ),
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "admitted");
    assert!(
        said.contains(&format!(
            "analysis.metrics[0] (m): the query may only read namespace {ns}: its matcher namespace=\"{other}\" would read other namespaces' series"
        )),
        "{said}"
    );
    // The same through the traffic a verdict waits for.
    let mut traffic = canary("steals-traffic", "max(bank_balance)");
    traffic["spec"]["analysis"]["minRequests"] = json!({"count": 1.0,
        "query": format!("sum(bank_transfers_total{{namespace=\"{other}\"}})")});
    let out = apply_as(&ctx, &user, &traffic);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "admitted");
    assert!(
        said.contains(&format!(
            "analysis.minRequests: the query may only read namespace {ns}: its matcher namespace=\"{other}\" would read other namespaces' series"
        )),
        "{said}"
    );
    let out = apply_as(&ctx, &user, &canary("fair", "max(bank_balance)"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policies: Api<CanaryPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    assert!(policies.get_opt("steals").await.unwrap().is_none());
    let ready = |name: &'static str| {
        let policies = policies.clone();
        async move {
            let p = policies.get(name).await.map_err(|e| e.to_string())?;
            let c = p
                .status
                .and_then(|s| s.common.conditions.into_iter().find(|c| c.type_ == "Ready"))
                .ok_or("no Ready yet")?;
            Ok((c.status, c.reason, c.message))
        }
    };
    let fair = eventually("the fair policy's Ready", Duration::from_secs(30), || {
        ready("fair")
    })
    .await;
    assert_eq!(fair.1, "Watching", "{fair:?}");

    // Response-time targets: one naming the other namespace is refused; one reading the
    // other tenant's service without naming a namespace finds no data of its own.
    let rtt = |name: &str, selector: &str| {
        json!({"apiVersion": "maturity.sre.dev/v1alpha1", "kind": "ResponseTimeTarget",
               "metadata": {"name": name},
               "spec": {"service": "bank", "requestClass": "api", "objective": 99.0, "window": "1h",
                        "indicator": {"ratio": {"good": format!("http_requests_total{{{selector}code!~\"5..\"}}"),
                                                "total": format!("http_requests_total{{{selector}}}")}}}})
    };
    let names_other = format!("service=\"bank\",namespace=\"{other}\",");
    for (name, selector) in [
        ("names-other", names_other.as_str()),
        ("unnamed-other", "service=\"bank\","),
    ] {
        let out = apply_as(&ctx, &user, &rtt(name, selector));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let targets: Api<ResponseTimeTarget> = Api::namespaced(ctx.client.clone(), &ns);
    let condition = |name: &'static str, type_: &'static str| {
        let targets = targets.clone();
        async move {
            let t = targets.get(name).await.map_err(|e| e.to_string())?;
            let s = t.status.ok_or("no status yet")?;
            let c = s
                .common
                .conditions
                .into_iter()
                .find(|c| c.type_ == type_)
                .ok_or("no condition yet")?;
            Ok((c.status, c.reason, c.message, s.attainment, s.queries))
        }
    };
    let (status, reason, message, attainment, _) = eventually(
        "the refused target's Ready",
        Duration::from_secs(30),
        || condition("names-other", "Ready"),
    )
    .await;
    assert_eq!(
        (status.as_str(), reason.as_str(), attainment),
        ("False", "QueryNotAllowed", None)
    );
    assert!(
        message.contains(&format!("may only read namespace {ns}")),
        "{message}"
    );
    let (status, reason, message, attainment, queries) =
        eventually("the scoped target's data", Duration::from_secs(30), || {
            condition("unnamed-other", "DataAvailable")
        })
        .await;
    assert_eq!(
        (status.as_str(), reason.as_str(), attainment),
        ("False", "NoData", None),
        "{message}"
    );
    assert!(
        queries["total"].contains(&format!(r#"namespace="{ns}""#)),
        "{queries:?}"
    );

    // A drill whose steady-state check reads the other namespace: the run is skipped.
    ctx.running_deployment("web", 2, "shop/web:v1").await;
    let drill = json!({"apiVersion": "maturity.sre.dev/v1alpha1", "kind": "DrillSchedule",
        "metadata": {"name": "peek", "annotations": {"maturity.sre.dev/run-now": "1"}},
        "spec": {"schedule": "0 10 * * 1", "target": {"kind": "Deployment", "name": "web"},
                 "action": {"podKill": {"count": 1}}, "recoveryDeadline": "1m",
                 "steadyState": [{"name": "rich", "query": format!("max(bank_balance{{namespace=\"{other}\"}})"), "min": 1.0}]}});
    let out = apply_as(&ctx, &user, &drill);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "admitted");
    assert!(
        said.contains(&format!(
            "steadyState check rich (#1): the query may only read namespace {ns}"
        )),
        "{said}"
    );
    let drills: Api<DrillSchedule> = Api::namespaced(ctx.client.clone(), &ns);
    assert!(drills.get_opt("peek").await.unwrap().is_none());
    // The same drill reading its own namespace is admitted and runs.
    let mut own = drill.clone();
    own["spec"]["steadyState"][0]["query"] = json!("max(satisfaction_score)");
    let out = apply_as(&ctx, &user, &own);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = eventually("the drill's run recorded", Duration::from_secs(60), || {
        let drills = drills.clone();
        async move {
            let d = drills.get("peek").await.map_err(|e| e.to_string())?;
            d.status
                .and_then(|s| s.runs.into_iter().next())
                .filter(|r| r.finished_at.is_some())
                .ok_or_else(|| "no finished run yet".to_string())
        }
    })
    .await;
    assert_eq!(format!("{:?}", run.result), "Passed", "{:?}", run.reason);
    support::cluster::delete_all_and_wait(&drills).await;
    remove_webhook(&ctx.client, &ns).await;
    ctx.cleanup().await;
}

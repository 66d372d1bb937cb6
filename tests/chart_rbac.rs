//! The chart's RBAC is enough and no more: `helm install` into a namespace, then the
//! operator runs as a local process *as the chart's ServiceAccount* (impersonated, with
//! the groups a ServiceAccount token carries) with the arguments the chart gives it
//! (leader election on the chart's Lease, all four controllers, the webhook), and every
//! kind does its work: a canary promoted through the webhook, a drill that kills a pod,
//! an assessment with its report ConfigMap, a target measured, Events recorded; `/metrics`
//! reviews its callers and answers one bound to the chart's metrics-reader ClusterRole.
//! And the same ServiceAccount cannot do what its switches do not grant
//! (`kubectl auth can-i`).

mod support;

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use maturity_operator::api::{CanaryPolicy, DrillSchedule, MaturityAssessment, ResponseTimeTarget};
use serde_json::json;
use support::cluster::{TestContext, chart_dir, delete_all_and_wait};
use support::eventually;
use support::operator::Operator;

/// `kubectl auth can-i VERB RESOURCE [--subresource] -n NS --as SA`.
async fn create<K>(ctx: &TestContext, object: serde_json::Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let o: K = serde_json::from_value(object).unwrap();
    Api::<K>::namespaced(ctx.client.clone(), &ctx.namespace)
        .create(&PostParams::default(), &o)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_operator_does_its_work_with_exactly_the_charts_rbac() {
    let ctx = TestContext::new("chartrbac").await;
    let ns = ctx.namespace.clone();
    // Cluster-scoped objects carry the release name: one per test run.
    let release = format!("rbac-{}", &ns[ns.len() - 5..]);
    let release = release.as_str();
    let full = format!("{release}-maturity-operator");
    let out = ctx.env.helm(&[
        "install",
        release,
        chart_dir().to_str().unwrap(),
        "-n",
        &ns,
        "--skip-crds",
        "--set",
        &format!("watchNamespace={ns}"),
        "--set",
        "controllers.drills=true",
        "--set",
        "dashboards.enabled=false",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sa = format!("system:serviceaccount:{ns}:{full}");

    // What the switches grant, and what they do not.
    assert!(ctx.can_i(&sa, &["patch", "deployments.apps"]));
    assert!(ctx.can_i(&sa, &["delete", "pods"]));
    assert!(ctx.can_i(&sa, &["create", "leases.coordination.k8s.io"]));
    assert!(ctx.can_i(
        &sa,
        &["update", &format!("leases.coordination.k8s.io/{full}")]
    ));
    assert!(!ctx.can_i(&sa, &["update", "leases.coordination.k8s.io/someone-else"]));
    assert!(!ctx.can_i(&sa, &["get", "secrets"]));
    assert!(!ctx.can_i(&sa, &["delete", "deployments.apps"]));
    assert!(!ctx.can_i(&sa, &["create", "pods"]));

    // A workload for the canary and the drill.
    create::<Deployment>(
        &ctx,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "app", "labels": {"app": "app", "team": "payments"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "app"}},
                     "template": {"metadata": {"labels": {"app": "app"}},
                                  "spec": {"containers": [{"name": "app", "image": "app:v1"}]}}}
        }),
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    ctx.wait_available("app", 2).await;

    // The operator as the chart runs it, but as a local process impersonating the
    // ServiceAccount. The chart renders the webhook's configuration (the operator may not
    // write one): here the admin creates it, with the CA of the certificate the operator
    // is given, as Helm would.
    let port = support::prom::free_port();
    let certs = tempfile::tempdir().unwrap();
    let made = maturity_operator::tls::Certs::generate("webhook", &["127.0.0.1".into()]).unwrap();
    for (file, pem) in [
        ("tls.crt", &made.cert_pem),
        ("tls.key", &made.key_pem),
        ("ca.crt", &made.ca_pem),
    ] {
        std::fs::write(certs.path().join(file), pem).unwrap();
    }
    let configuration = format!("maturity-{ns}");
    let settings = maturity_operator::webhook::Settings {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        endpoint: maturity_operator::webhook::Endpoint::Url(format!("https://127.0.0.1:{port}")),
        configuration: None,
        namespace: None,
        failure_policy: "Ignore".into(),
    };
    let all = maturity_operator::webhook::Duties {
        canaries: true,
        authors: true,
        evidence: true,
    };
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(ctx.client.clone());
    hooks
        .create(
            &Default::default(),
            &maturity_operator::webhook::configuration(
                &settings,
                &configuration,
                &made.ca_pem,
                all,
            ),
        )
        .await
        .unwrap();
    assert!(
        !ctx.can_i(
            &sa,
            &[
                "create",
                "mutatingwebhookconfigurations.admissionregistration.k8s.io"
            ]
        ),
        "the operator needs no right on webhook configurations: the chart renders its own"
    );
    let groups = format!("system:serviceaccounts,system:serviceaccounts:{ns},system:authenticated");
    let operator = Operator::start_with_env(
        &ctx.env,
        &ns,
        &ctx.env.prometheus_url,
        "2s",
        &[
            "--controllers=all".into(),
            "--assessment-interval=5s".into(),
            "--leader-election".into(),
            format!("--leader-election-namespace={ns}"),
            format!("--leader-election-lease={full}"),
            "--leader-election-identity=local".into(),
            format!("--webhook-addr=127.0.0.1:{port}"),
            format!("--webhook-url=https://127.0.0.1:{port}"),
            format!("--webhook-cert-dir={}", certs.path().display()),
            format!("--operator-namespace={ns}"),
            format!("--author-key-secret={full}-author-key"),
            // As the chart serves /metrics: callers reviewed by the API server, over HTTPS.
            "--metrics-auth=kubernetes".into(),
        ],
        &[
            ("KUBE_RS_DEBUG_IMPERSONATE_USER", sa.as_str()),
            ("KUBE_RS_DEBUG_IMPERSONATE_GROUP", groups.as_str()),
        ],
    );
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), &ns);
    eventually(
        "the operator holds the chart's Lease",
        Duration::from_secs(30),
        || async {
            let l = leases.get_opt(&full).await.map_err(|e| e.to_string())?;
            match l.and_then(|l| l.spec?.holder_identity) {
                Some(h) if h == "local" => Ok(()),
                other => Err(format!("holder {other:?}")),
            }
        },
    )
    .await;
    // Drills and policies get their author from the webhook: wait until it records them.
    support::operator::webhook_recording(&ctx.client, &ns).await;

    // /metrics: the chart's RBAC lets the operator review its callers, and a ServiceAccount
    // bound to the chart's metrics-reader ClusterRole may read it; one without may not.
    assert!(ctx.can_i(&sa, &["create", "tokenreviews.authentication.k8s.io"]));
    assert!(ctx.can_i(
        &sa,
        &["create", "subjectaccessreviews.authorization.k8s.io"]
    ));
    for name in ["scraper", "stranger"] {
        let out = ctx.kubectl_as("", &["create", "serviceaccount", name], "");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let binding = format!("{ns}-scraper");
    let out = ctx.kubectl_as(
        "",
        &[
            "create",
            "clusterrolebinding",
            &binding,
            &format!("--clusterrole={full}-metrics-reader"),
            &format!("--serviceaccount={ns}:scraper"),
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (scraper, stranger) = (ctx.token("scraper"), ctx.token("stranger"));
    let body = eventually(
        "/metrics for the scraper",
        Duration::from_secs(30),
        || async {
            match operator.get("/metrics", Some(&scraper)).await? {
                (200, body) => Ok(body),
                (code, body) => Err(format!("{code} {body}")),
            }
        },
    )
    .await;
    assert!(body.contains("maturity_operator_leader 1"), "{body}");
    let (code, body) = operator.get("/metrics", Some(&stranger)).await.unwrap();
    assert_eq!(code, 403, "{body}");
    assert_eq!(operator.get("/metrics", None).await.unwrap().0, 401);

    create::<CanaryPolicy>(
        &ctx,
        json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "CanaryPolicy",
            "metadata": {"name": "app"},
            "spec": {
                "selector": {"matchLabels": {"app": "app"}},
                "steps": [{"weight": 50, "analyze": "2s"}],
                "analysis": {"interval": "1s", "failureLimit": 1,
                             "metrics": [{"name": "always-fine", "query": "vector(0)", "max": 1}]},
                "rollback": "Automatic"
            }
        }),
    )
    .await;
    create::<ResponseTimeTarget>(
        &ctx,
        json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "ResponseTimeTarget",
            "metadata": {"name": "app"},
            "spec": {"service": "app", "requestClass": "all", "objective": 99.0, "window": "1d",
                     "indicator": {"ratio": {"good": format!("rbac_requests_total{{namespace=\"{ns}\",code!~\"5..\"}}"),
                                             "total": format!("rbac_requests_total{{namespace=\"{ns}\"}}")}}}
        }),
    )
    .await;
    create::<MaturityAssessment>(
        &ctx,
        json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "MaturityAssessment",
            "metadata": {"name": "payments", "annotations": {"maturity.sre.dev/report-now": "1"}},
            "spec": {"targetLevel": 2, "reports": {"weekly": true}}
        }),
    )
    .await;
    let policies: Api<CanaryPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    eventually(
        "the canary policy Ready",
        Duration::from_secs(30),
        || async {
            let p = policies.get("app").await.map_err(|e| e.to_string())?;
            let ready = p
                .status
                .and_then(|s| s.common.conditions.into_iter().find(|c| c.type_ == "Ready"))
                .map(|c| c.status);
            if ready.as_deref() == Some("True") {
                Ok(())
            } else {
                Err(format!("Ready={ready:?}"))
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await; // the webhook configuration reaches the API server by a watch

    // A canary: held by the webhook, stepped and promoted with the chart's permissions.
    deployments
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}}})),
        )
        .await
        .unwrap();
    eventually("the canary promoted", Duration::from_secs(60), || async {
        let p = policies.get("app").await.map_err(|e| e.to_string())?;
        let phase = p
            .status
            .and_then(|s| s.rollouts.first().map(|r| format!("{:?}", r.phase)));
        match phase.as_deref() {
            Some("Promoted") => Ok(()),
            other => Err(format!("phase {other:?}")),
        }
    })
    .await;

    // A drill now: one pod killed, recovery measured.
    create::<DrillSchedule>(
        &ctx,
        json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "DrillSchedule",
            "metadata": {"name": "app", "annotations": {"maturity.sre.dev/run-now": "1"}},
            "spec": {"schedule": "0 10 * * 1-5", "timeZone": "UTC", "target": {"name": "app"},
                     "action": {"podKill": {"count": 1}}, "checkInterval": "1s",
                     "recoveryDeadline": "1m"}
        }),
    )
    .await;
    let drills: Api<DrillSchedule> = Api::namespaced(ctx.client.clone(), &ns);
    eventually("the drill passed", Duration::from_secs(60), || async {
        let d = drills.get("app").await.map_err(|e| e.to_string())?;
        let run = d.status.and_then(|s| s.runs.first().cloned());
        match run {
            Some(r) if format!("{:?}", r.result) == "Passed" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // The assessment: a level, and its report ConfigMap written.
    let assessments: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ns);
    let configmaps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    eventually(
        "the assessment and its report",
        Duration::from_secs(30),
        || async {
            let a = assessments
                .get("payments")
                .await
                .map_err(|e| e.to_string())?;
            let level = a.status.and_then(|s| s.level);
            let report = configmaps
                .get_opt("payments-report")
                .await
                .map_err(|e| e.to_string())?;
            match (level, report) {
                (Some(_), Some(_)) => Ok(()),
                other => Err(format!("level {:?}, report {}", other.0, other.1.is_some())),
            }
        },
    )
    .await;

    // The target: evaluated (no traffic here, so no data; still a status with conditions).
    let targets: Api<ResponseTimeTarget> = Api::namespaced(ctx.client.clone(), &ns);
    eventually("the target evaluated", Duration::from_secs(30), || async {
        let t = targets.get("app").await.map_err(|e| e.to_string())?;
        let n = t.status.map(|s| s.common.conditions.len()).unwrap_or(0);
        if n > 0 {
            Ok(())
        } else {
            Err("no conditions".to_string())
        }
    })
    .await;

    // Events were recorded under the ServiceAccount.
    for kind in ["CanaryPolicy", "DrillSchedule"] {
        let reasons = ctx.event_reasons(kind).await;
        assert!(!reasons.is_empty(), "no Events for {kind}");
    }

    delete_all_and_wait(&policies).await;
    delete_all_and_wait(&drills).await;
    drop(operator);
    let configurations: Api<
        k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
    > = Api::all(ctx.client.clone());
    let _ = configurations
        .delete(&format!("maturity-{ns}"), &Default::default())
        .await;
    let out = ctx.kubectl_as("", &["delete", "clusterrolebinding", &binding], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctx.env.helm(&["uninstall", release, "-n", &ns]);
    assert!(out.status.success());
    let _ = hooks.delete(&configuration, &Default::default()).await;
    ctx.cleanup().await;
}

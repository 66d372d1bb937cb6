//! Evidence from the tools teams already run: namespaces with no object of ours but an
//! assessment.
//!
//! The first uses Sloth (run as its own controller against the cluster), Flagger and
//! Chaos Mesh, each installed as its real CRD (generated from its API module). Sloth turns
//! a PrometheusServiceLevel into a PrometheusRule; a `ruleSelector` loader loads it into the
//! shared Prometheus (with the namespace label enforced on every rule, as a shared cluster's
//! Prometheus Operator does), which scrapes the service; Flagger's Canaries and Chaos Mesh's Schedule
//! and Workflow carry the states those controllers write (set here: neither runs here).
//!
//! Expected, worked out by hand from docs/maturity.md: every RESP practice that only an
//! attestation can show is attested (recorded by the webhook); the measured ones come from
//! the tools: RESP-2.3 (Sloth's alerts loaded), RESP-3.2 (both Deployments carry Argo CD's
//! label), RESP-4.1 (Sloth's SLO within budget: 0.1 % errors against 1 %), RESP-5.1 (the
//! Schedule's Workflow passed today). So RESP is at level 5. When the Workflow turns out
//! aborted, RESP-5.1 is NotMet and RESP falls to 4.
//!
//! The second uses Pyrra, Argo Rollouts and Litmus. Argo Rollouts' CRDs are generated from
//! its API module; Pyrra's and Litmus's modules are not served by the module proxy, so
//! their CRDs are tests/crds' (published group/version/kind, the fields read), and neither
//! runs here: the PrometheusRule Pyrra's controller writes for the SLO (with `--generic-rules`)
//! is applied as it writes it, and the Rollout's AnalysisRuns and Litmus's ChaosEngine and
//! ChaosResult carry the states their controllers write. Expected, by hand as above:
//! RESP-4.1 (Pyrra's availability 99.9 % against its 99 % objective), RESP-2.3 (Pyrra's
//! alert loaded), RESP-5.1 (the ChaosSchedule's engine passed today), RESP at level 5; CX-4.3
//! counts the Rollout and the Deployment it manages as governed, and its two analysed
//! releases, one rolled back. When the ChaosResult says Fail, RESP falls to 4.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use maturity_operator::api::MaturityAssessment;
use maturity_operator::synthetic::Traffic;
use serde_json::json;
use support::cluster::{
    TestContext, assessment, assessments_recorded, attestation, practices, today,
};
use support::eventually;
use support::operator::{Operator, webhook_flags};
use support::prom::{ScrapeTarget, free_port};
use support::rule_loader::RuleSelectorLoader;

/// The RESP practices that only an attestation shows here (attested-only, or measured by a
/// signal with nothing of its kind in scope: no Alertmanager, no demand signal).
const ATTESTED: &[&str] = &[
    "RESP-2.1", "RESP-2.2", "RESP-2.4", "RESP-3.1", "RESP-3.3", "RESP-4.2", "RESP-4.3", "RESP-4.4",
    "RESP-5.2", "RESP-5.3",
];

struct Sloth(Child);

impl Drop for Sloth {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kind(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

async fn create(ctx: &TestContext, kind: &ApiResource, object: serde_json::Value) -> DynamicObject {
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ctx.namespace, kind);
    let o: DynamicObject = serde_json::from_value(object).unwrap();
    api.create(&PostParams::default(), &o)
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", kind.kind))
}

/// Running Deployments `names`, managed by Argo CD (its tracking label).
async fn gitops_deployments(ctx: &TestContext, names: &[&str]) {
    for name in names {
        ctx.running_deployment(name, 1, "registry.example/app:1")
            .await;
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
            ctx.client.clone(),
            &ctx.namespace,
        )
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"argocd.argoproj.io/instance": "shop"}}})),
        )
        .await
        .unwrap();
    }
}

/// The operator on the namespace, and its assessment `team` with every attestation it
/// needs beside the tools' evidence.
async fn assess(ctx: &TestContext) -> (Operator, Api<MaturityAssessment>) {
    let operator = Operator::start_with(
        &ctx.env,
        &ctx.namespace,
        &ctx.env.prometheus_url,
        "2s",
        &[
            ["--assessment-interval=1s".to_string()].as_slice(),
            webhook_flags(&ctx.namespace).as_slice(),
        ]
        .concat(),
    );
    let api: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    assessments_recorded(&api).await;
    let attestations: Vec<serde_json::Value> = ATTESTED
        .iter()
        .map(|p| attestation(p, "the team lead", &today()))
        .collect();
    api.create(
        &PostParams::default(),
        &assessment("team", json!({"attestations": attestations})),
    )
    .await
    .unwrap();
    (operator, api)
}

/// Each practice Met, its detail holding the text.
fn assert_met(p: &std::collections::BTreeMap<String, (String, String)>, expected: &[(&str, &str)]) {
    for (id, text) in expected {
        let (state, detail) = &p[*id];
        assert_eq!(state, "Met", "{id}: {detail}");
        assert!(detail.contains(text), "{id}: {detail}");
    }
}

/// Sets the status of `name` of `kind` in the test's namespace, as its controller would.
async fn set_status(ctx: &TestContext, kind: &ApiResource, name: &str, status: serde_json::Value) {
    Api::<DynamicObject>::namespaced_with(ctx.client.clone(), &ctx.namespace, kind)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap_or_else(|e| panic!("status of {} {name}: {e}", kind.kind));
}

/// The RESP capability's level and the state and detail of each practice, once `ok`.
async fn resp(
    api: &Api<MaturityAssessment>,
    what: &str,
    ok: impl Fn(i64, &std::collections::BTreeMap<String, (String, String)>) -> bool,
) -> std::collections::BTreeMap<String, (String, String)> {
    eventually(what, Duration::from_secs(90), || {
        let (api, ok) = (api.clone(), &ok);
        async move {
            // The practices and the RESP level of one read (two reads could straddle a
            // status write).
            let a = api.get("team").await.map_err(|e| e.to_string())?;
            let p = support::cluster::practices_of(&a)?;
            let level = a
                .status
                .unwrap_or_default()
                .capabilities
                .iter()
                .find(|c| c.id == "RESP")
                .map(|c| i64::from(c.level))
                .ok_or("no RESP capability yet")?;
            if ok(level, &p) {
                Ok(p)
            } else {
                let resp: Vec<String> = p
                    .iter()
                    .filter(|(id, _)| {
                        id.starts_with("RESP") || id.starts_with("CX-4") || id.starts_with("ORG-5")
                    })
                    .map(|(id, (s, d))| format!("{id} {s}: {d}"))
                    .collect();
                Err(format!("RESP level {level}\n{}", resp.join("\n")))
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_namespace_using_sloth_flagger_and_chaos_mesh_reaches_the_level_they_show() {
    let ctx = TestContext::new("integrations").await;
    let ns = ctx.namespace.clone();
    support::cluster::install_monitoring_crds(&ctx.env, &ctx.client).await;
    support::cluster::install_third_party_crds(
        &ctx.env,
        &ctx.client,
        &[
            "sloth.slok.dev_prometheusservicelevels.yaml",
            "flagger.app_canaries.yaml",
            "chaos-mesh.org_schedules.yaml",
            "chaos-mesh.org_workflows.yaml",
        ],
    )
    .await;

    // The service: 0.1 % of its requests fail, scraped by the shared Prometheus.
    let exporter =
        support::prom::service_exporter(&ns, "checkout", Traffic::steady(50.0, 0.001, 0.05)).await;
    let _scrape =
        ScrapeTarget::register(&ctx.env, &ns, exporter.addr(), &[("job", "integrations")]);
    // Two Deployments, managed by Argo CD.
    gitops_deployments(&ctx, &["checkout", "payments"]).await;

    // Sloth, as its own controller, and a Prometheus that selects `release: kps` rules.
    let _sloth = Sloth(
        Command::new(ctx.env.tool("sloth"))
            .args([
                "kubernetes-controller",
                "--kube-local",
                "--no-log",
                "--namespace",
                &ns,
            ])
            .arg(format!("--kube-config={}", ctx.env.kubeconfig.display()))
            .arg(format!("--metrics-listen-addr=127.0.0.1:{}", free_port()))
            .arg(format!("--hot-reload-addr=127.0.0.1:{}", free_port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sloth (hack/build-tools.sh sloth)"),
    );
    // Shared, so it enforces the namespace label on every rule (the operator reads Sloth's
    // series of this namespace only).
    let _loader = RuleSelectorLoader::start_enforcing(
        &ctx.env,
        &ctx.client,
        &[&ns],
        "release=kps",
        Some("namespace"),
    );
    let sloth = kind(
        "sloth.slok.dev",
        "v1",
        "PrometheusServiceLevel",
        "prometheusservicelevels",
    );
    create(
        &ctx,
        &sloth,
        json!({
            "apiVersion": "sloth.slok.dev/v1", "kind": "PrometheusServiceLevel",
            "metadata": {"name": "checkout", "labels": {"release": "kps"}},
            "spec": {
                "service": "checkout",
                "labels": {"team": "payments"},
                "slos": [{
                    "name": "availability",
                    "objective": 99.0,
                    "sli": {"events": {
                        "errorQuery": format!(r#"sum(rate(http_requests_total{{namespace="{ns}",service="checkout",code="500"}}[{{{{.window}}}}]))"#),
                        "totalQuery": format!(r#"sum(rate(http_requests_total{{namespace="{ns}",service="checkout"}}[{{{{.window}}}}]))"#),
                    }},
                    "alerting": {
                        "name": "CheckoutAvailability",
                        "pageAlert": {"labels": {"severity": "critical"}},
                        "ticketAlert": {"labels": {"severity": "warning"}},
                    },
                }],
            },
        }),
    )
    .await;

    // Flagger: both Deployments are canaries; the last analysis of one promoted, of the
    // other failed (rolled back).
    let canaries = kind("flagger.app", "v1beta1", "Canary", "canaries");
    for (target, phase) in [("checkout", "Succeeded"), ("payments", "Failed")] {
        create(
            &ctx,
            &canaries,
            json!({
                "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
                "metadata": {"name": target},
                "spec": {
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                    "service": {"port": 80, "portDiscovery": false},
                    "analysis": {"interval": "1m", "threshold": 5, "maxWeight": 50, "stepWeight": 10,
                                 "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99.0}, "interval": "1m"}]},
                },
                "status": {"phase": phase, "canaryWeight": 0, "failedChecks": 0, "iterations": 0,
                           "lastTransitionTime": jiff::Timestamp::now().to_string()},
            }),
        )
        .await;
    }

    // Chaos Mesh: a weekly Schedule of a pod-kill Workflow, and the Workflow it made today,
    // accomplished.
    let schedules = kind("chaos-mesh.org", "v1alpha1", "Schedule", "schedules");
    let workflows = kind("chaos-mesh.org", "v1alpha1", "Workflow", "workflows");
    let pod_kill = json!({"name": "kill", "templateType": "PodChaos",
        "podChaos": {"action": "pod-kill", "mode": "one", "selector": {"namespaces": [ns]}}});
    let schedule = create(
        &ctx,
        &schedules,
        json!({
            "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "Schedule",
            "metadata": {"name": "weekly-pod-kill"},
            "spec": {"schedule": "@weekly", "type": "Workflow", "historyLimit": 5,
                     "concurrencyPolicy": "Forbid",
                     "workflow": {"entry": "kill", "templates": [pod_kill.clone()]}},
        }),
    )
    .await;
    create(
        &ctx,
        &workflows,
        json!({
            "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "weekly-pod-kill-1", "ownerReferences": [{
                "apiVersion": "chaos-mesh.org/v1alpha1", "kind": "Schedule",
                "name": "weekly-pod-kill", "uid": schedule.metadata.uid.clone().unwrap(),
                "controller": true}]},
            "spec": {"entry": "kill", "templates": [pod_kill]},
        }),
    )
    .await;
    let now = jiff::Timestamp::now().to_string();
    let wf_api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &workflows);
    wf_api
        .patch_status(
            "weekly-pod-kill-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "startTime": now, "endTime": now,
                "conditions": [{"type": "Accomplished", "status": "True", "reason": ""}],
            }})),
        )
        .await
        .unwrap();

    let (_operator, api) = assess(&ctx).await;
    let p = resp(
        &api,
        "RESP at level 5 from the tools' evidence",
        |level, _| level == 5,
    )
    .await;
    for id in [
        "RESP-2.3", "RESP-3.2", "RESP-4.1", "RESP-5.1", "CX-4.3", "ORG-5.1",
    ] {
        eprintln!("integrations: {id} {:?}", p[id]);
    }
    assert_met(
        &p,
        &[
            (
                "RESP-4.1",
                "all 1 SLOs meet their objective (Sloth checkout/availability)",
            ),
            ("RESP-2.3", "loaded for all 1 SLOs"),
            (
                "RESP-5.1",
                "unannounced drill Chaos Mesh Schedule weekly-pod-kill passed",
            ),
            ("RESP-2.1", "attested by"),
            ("RESP-2.2", "attested by"),
            // Flagger: both Deployments governed, two analyses, one rolled back.
            (
                "CX-4.3",
                "2 of 2 workloads governed; 2 rollouts analysed, 1 rolled back",
            ),
            (
                "ORG-5.1",
                "automatic remediation: 1 canary rollouts rolled back",
            ),
        ],
    );

    // Another namespace names the same Sloth service and SLO, with no data of its own: it is
    // not measured by this namespace's series (its query is scoped to its own namespace).
    let intruder = TestContext::new("integrations-intruder").await;
    let _intruder_operator = Operator::start_with(
        &intruder.env,
        &intruder.namespace,
        &intruder.env.prometheus_url,
        "2s",
        &["--assessment-interval=1s".to_string()],
    );
    create(
        &intruder,
        &sloth,
        json!({
            "apiVersion": "sloth.slok.dev/v1", "kind": "PrometheusServiceLevel",
            "metadata": {"name": "checkout"},
            "spec": {"service": "checkout", "slos": [{"name": "availability", "objective": 99.0,
                "sli": {"events": {"errorQuery": "sum(rate(nothing_total[{{.window}}]))",
                                   "totalQuery": "sum(rate(nothing_total[{{.window}}]))"}},
                "alerting": {"name": "Checkout"}}]},
        }),
    )
    .await;
    let intruder_api: Api<MaturityAssessment> =
        Api::namespaced(intruder.client.clone(), &intruder.namespace);
    support::cluster::apply_assessment(&intruder_api, "team").await;
    let detail = eventually("the intruder's RESP-4.1", Duration::from_secs(30), || {
        let api = intruder_api.clone();
        async move {
            let (p, _) = practices(&api, "team").await?;
            p.get("RESP-4.1")
                .cloned()
                .ok_or_else(|| "not evaluated".to_string())
        }
    })
    .await;
    assert_eq!(
        detail,
        (
            "Unknown".to_string(),
            "SLO Sloth checkout/availability is not measured yet".to_string()
        )
    );
    intruder.cleanup().await;

    // The Workflow was aborted after all: not a pass; RESP falls to 4.
    wf_api
        .patch(
            "weekly-pod-kill-1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"workflow.chaos-mesh.org/abort": "true"}}}),
            ),
        )
        .await
        .unwrap();
    let p = resp(
        &api,
        "RESP at level 4 once the drill was aborted",
        |level, _| level == 4,
    )
    .await;
    assert_eq!(p["RESP-5.1"].0, "NotMet", "{:?}", p["RESP-5.1"]);
    ctx.cleanup().await;
}

/// The PrometheusRule Pyrra's Kubernetes controller writes for a ratio SLO with
/// `--generic-rules` (pyrra slo/rules.go: the increase over the window, the burn rates, the
/// multi-window alert, and the generic series), named and labelled as the SLO. Its groups
/// are evaluated every 5 s here (Pyrra's default is 30 s) to keep the test short.
fn pyrra_rule(ns: &str, slo: &str, uid: &str) -> serde_json::Value {
    let sel = r#"service="checkout""#;
    let err = r#"code="500",service="checkout""#;
    let burn = |w: &str| {
        json!({"record": format!("http_requests:burnrate{w}"),
               "expr": format!("sum(rate(http_requests_total{{{err}}}[{w}])) / sum(rate(http_requests_total{{{sel}}}[{w}]))"),
               "labels": {"service": "checkout", "slo": slo}})
    };
    json!({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": slo, "namespace": ns, "labels": {"release": "kps"},
                     "ownerReferences": [{"apiVersion": "pyrra.dev/v1alpha1", "kind": "ServiceLevelObjective",
                                          "name": slo, "uid": uid, "controller": true}]},
        "spec": {"groups": [
            {"name": format!("{slo}-increase"), "interval": "5s", "rules": [
                {"record": "http_requests:increase2w",
                 "expr": format!("sum by (code) (increase(http_requests_total{{{sel}}}[2w]))"),
                 "labels": {"service": "checkout", "slo": slo}}]},
            {"name": slo, "interval": "5s", "rules": [
                burn("5m"), burn("1h"), burn("30m"), burn("6h"),
                {"alert": "ErrorBudgetBurn",
                 "expr": format!("http_requests:burnrate5m{{{sel},slo=\"{slo}\"}} > (14 * (1-0.99)) and http_requests:burnrate1h{{{sel},slo=\"{slo}\"}} > (14 * (1-0.99))"),
                 "for": "2m",
                 "labels": {"long": "1h", "short": "5m", "severity": "critical", "exhaustion": "1d", "service": "checkout", "slo": slo}}]},
            {"name": format!("{slo}-generic"), "interval": "5s", "rules": [
                {"record": "pyrra_objective", "expr": "vector(0.99)", "labels": {"slo": slo}},
                {"record": "pyrra_window", "expr": "vector(1209600)", "labels": {"slo": slo}},
                {"record": "pyrra_availability",
                 "expr": format!("1 - sum(http_requests:increase2w{{code=\"500\",{sel},slo=\"{slo}\"}} or vector(0)) / sum(http_requests:increase2w{{{sel},slo=\"{slo}\"}})"),
                 "labels": {"slo": slo}}]},
        ]},
    })
}

#[tokio::test]
async fn a_namespace_using_pyrra_argo_rollouts_and_litmus_reaches_the_level_they_show() {
    let ctx = TestContext::new("integrations-pal").await;
    let ns = ctx.namespace.clone();
    support::cluster::install_monitoring_crds(&ctx.env, &ctx.client).await;
    support::cluster::install_third_party_crds(
        &ctx.env,
        &ctx.client,
        &[
            "pyrra.dev_servicelevelobjectives.yaml",
            "argoproj.io_rollouts.yaml",
            "argoproj.io_analysisruns.yaml",
            "litmuschaos.io_chaosschedules.yaml",
            "litmuschaos.io_chaosengines.yaml",
            "litmuschaos.io_chaosresults.yaml",
        ],
    )
    .await;
    let exporter =
        support::prom::service_exporter(&ns, "checkout", Traffic::steady(50.0, 0.001, 0.05)).await;
    let _scrape = ScrapeTarget::register(&ctx.env, &ns, exporter.addr(), &[("job", "pal")]);
    // The Deployment the Rollout manages (its workloadRef), managed by Argo CD.
    gitops_deployments(&ctx, &["checkout"]).await;
    let _loader = RuleSelectorLoader::start_enforcing(
        &ctx.env,
        &ctx.client,
        &[&ns],
        "release=kps",
        Some("namespace"),
    );

    // Pyrra: the SLO, and the PrometheusRule its controller writes for it.
    let slos = kind(
        "pyrra.dev",
        "v1alpha1",
        "ServiceLevelObjective",
        "servicelevelobjectives",
    );
    let slo = create(
        &ctx,
        &slos,
        json!({
            "apiVersion": "pyrra.dev/v1alpha1", "kind": "ServiceLevelObjective",
            "metadata": {"name": "checkout-availability", "labels": {"release": "kps"}},
            "spec": {"target": "99", "window": "2w", "indicator": {"ratio": {
                "errors": {"metric": "http_requests_total{service=\"checkout\",code=\"500\"}"},
                "total": {"metric": "http_requests_total{service=\"checkout\"}"}}}},
        }),
    )
    .await;
    let rule = pyrra_rule(&ns, "checkout-availability", &slo.metadata.uid.unwrap());
    create(
        &ctx,
        &maturity_operator::controllers::response_time_target::rules::api_resource(),
        rule,
    )
    .await;

    // Argo Rollouts: the Rollout manages the Deployment's pods and analyses each release at
    // a canary step; revision 1 failed its analysis (aborted, back to stable), revision 2
    // passed and is live.
    let rollouts = kind("argoproj.io", "v1alpha1", "Rollout", "rollouts");
    let runs = kind("argoproj.io", "v1alpha1", "AnalysisRun", "analysisruns");
    let rollout = create(
        &ctx,
        &rollouts,
        json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "checkout-rollout", "annotations": {"rollout.argoproj.io/revision": "2"},
                         "labels": {"argocd.argoproj.io/instance": "shop"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "checkout"}},
                "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout"},
                "strategy": {"canary": {"steps": [
                    {"setWeight": 20},
                    {"analysis": {"templates": [{"templateName": "success-rate"}]}},
                    {"setWeight": 100}]}},
            },
        }),
    )
    .await;
    set_status(
        &ctx,
        &rollouts,
        "checkout-rollout",
        json!({"phase": "Healthy", "abort": false}),
    )
    .await;
    for (revision, phase) in [("1", "Failed"), ("2", "Successful")] {
        let name = format!("checkout-rollout-{revision}-1");
        create(
            &ctx,
            &runs,
            json!({
                "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
                "metadata": {"name": name,
                    "annotations": {"rollout.argoproj.io/revision": revision},
                    "labels": {"rollout-type": "Step", "rollouts-pod-template-hash": format!("h{revision}")},
                    "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                        "name": "checkout-rollout", "uid": rollout.metadata.uid.clone().unwrap(), "controller": true}]},
                "spec": {"metrics": [{"name": "success-rate", "successCondition": "result[0] >= 0.99",
                    "provider": {"prometheus": {"address": "http://prometheus:9090",
                        "query": "sum(rate(http_requests_total{code!=\"500\"}[5m])) / sum(rate(http_requests_total[5m]))"}}}]},
                // Its CRD has no status subresource: the status is written with the object.
                "status": {"phase": phase},
            }),
        )
        .await;
    }

    // Litmus: a ChaosSchedule, the ChaosEngine it made today (completed), and its result.
    let schedules = kind(
        "litmuschaos.io",
        "v1alpha1",
        "ChaosSchedule",
        "chaosschedules",
    );
    let engines = kind("litmuschaos.io", "v1alpha1", "ChaosEngine", "chaosengines");
    let results = kind("litmuschaos.io", "v1alpha1", "ChaosResult", "chaosresults");
    let engine_spec = json!({"engineState": "active", "chaosServiceAccount": "litmus-admin",
        "appinfo": {"appns": ns, "applabel": "app=checkout", "appkind": "deployment"},
        "experiments": [{"name": "pod-delete", "spec": {"components": {"env": [{"name": "TOTAL_CHAOS_DURATION", "value": "30"}]}}}]});
    let schedule = create(
        &ctx,
        &schedules,
        json!({
            "apiVersion": "litmuschaos.io/v1alpha1", "kind": "ChaosSchedule",
            "metadata": {"name": "nightly-pod-delete"},
            "spec": {"scheduleState": "active",
                     "schedule": {"repeat": {"properties": {"minChaosInterval": {"hour": {"everyNthHour": 24}}}}},
                     "engineTemplateSpec": engine_spec.clone()},
        }),
    )
    .await;
    let engine_name = format!("nightly-pod-delete-{}", jiff::Timestamp::now().as_second());
    let engine = create(
        &ctx,
        &engines,
        json!({
            "apiVersion": "litmuschaos.io/v1alpha1", "kind": "ChaosEngine",
            "metadata": {"name": engine_name,
                "labels": {"app": "chaos-engine", "chaosUID": schedule.metadata.uid.clone().unwrap()},
                "ownerReferences": [{"apiVersion": "litmuschaos.io/v1alpha1", "kind": "ChaosSchedule",
                    "name": "nightly-pod-delete", "uid": schedule.metadata.uid.clone().unwrap(), "controller": true}]},
            "spec": engine_spec,
        }),
    )
    .await;
    let now = jiff::Timestamp::now().to_string();
    set_status(
        &ctx,
        &engines,
        &engine_name,
        json!({"engineStatus": "completed", "experiments": [{"name": "pod-delete",
            "runner": format!("{engine_name}-runner"), "experimentPod": "pod-delete-x",
            "status": "Completed", "verdict": "Pass", "lastUpdateTime": now}]}),
    )
    .await;
    let result_name = format!("{engine_name}-pod-delete");
    create(
        &ctx,
        &results,
        json!({
            "apiVersion": "litmuschaos.io/v1alpha1", "kind": "ChaosResult",
            "metadata": {"name": result_name, "labels": {"chaosUID": engine.metadata.uid.clone().unwrap()}},
            "spec": {"engine": engine_name, "experiment": "pod-delete"},
        }),
    )
    .await;
    let verdict = |v: &str| {
        json!({"experimentStatus": {"phase": "Completed", "verdict": v, "probeSuccessPercentage": "100"},
               "history": {"passedRuns": 1, "failedRuns": 0, "stoppedRuns": 0}})
    };
    set_status(&ctx, &results, &result_name, verdict("Pass")).await;

    let (_operator, api) = assess(&ctx).await;
    let p = resp(
        &api,
        "RESP at level 5 from Pyrra, Argo Rollouts and Litmus",
        |level, _| level == 5,
    )
    .await;
    assert_met(
        &p,
        &[
            (
                "RESP-4.1",
                "all 1 SLOs meet their objective (Pyrra checkout-availability)",
            ),
            ("RESP-2.3", "loaded for all 1 SLOs"),
            (
                "RESP-5.1",
                "unannounced drill Litmus ChaosSchedule nightly-pod-delete passed",
            ),
            // The Deployment (its workloadRef) and the Rollout; revision 1 rolled back, 2
            // promoted.
            (
                "CX-4.3",
                "2 of 2 workloads governed; 2 rollouts analysed, 1 rolled back",
            ),
            (
                "ORG-5.1",
                "automatic remediation: 1 canary rollouts rolled back",
            ),
        ],
    );

    // The ChaosResult says the experiment failed after all: no pass; RESP falls to 4.
    set_status(&ctx, &results, &result_name, verdict("Fail")).await;
    let p = resp(&api, "RESP at level 4 once the drill failed", |level, _| {
        level == 4
    })
    .await;
    assert_eq!(p["RESP-5.1"].0, "NotMet", "{:?}", p["RESP-5.1"]);
    ctx.cleanup().await;
}

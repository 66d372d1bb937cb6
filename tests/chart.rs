//! The Helm chart: lint, CRDs in sync with `crds/`, every switch combination rendered and
//! accepted by the real API server (server-side dry run), a bad value refused with the
//! schema's message, and a real `helm install` into a namespace that enforces the
//! restricted Pod Security profile, whose pods then run on kwok.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use support::cluster::{TestContext, chart_dir, repo_dir};
use support::eventually;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `kubectl apply --dry-run=server -n <namespace>` of `yaml`: the API server's verdict on a
/// rendered chart, with every CRD's schema and every admission rule, writing nothing.
fn dry_run_apply(ctx: &TestContext, namespace: &str, yaml: &str) -> Output {
    use std::io::Write;
    let mut apply = Command::new(ctx.env.tool("kubectl"))
        .args(["apply", "--dry-run=server", "-n", namespace, "-f", "-"])
        .env("KUBECONFIG", &ctx.env.kubeconfig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    apply
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    apply.wait_with_output().unwrap()
}

#[test]
fn the_charts_crds_are_the_generated_ones() {
    for entry in std::fs::read_dir(repo_dir().join("crds")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        let in_chart =
            std::fs::read_to_string(chart_dir().join("crds").join(&name)).unwrap_or_default();
        assert_eq!(
            in_chart,
            std::fs::read_to_string(&path).unwrap(),
            "charts/maturity-operator/crds/{name:?} differs from crds/: run `make crds`"
        );
    }
}

#[tokio::test]
async fn every_switch_combination_renders_and_the_api_server_accepts_it() {
    let ctx = TestContext::new("chart").await;
    let lint = ctx.env.helm(&["lint", chart_dir().to_str().unwrap()]);
    assert!(lint.status.success(), "{}", text(&lint));
    // The defaults, then every combination of the four controller switches (all off is
    // refused, below), each with one of the other options' settings in turn.
    const SWITCHES: [&str; 4] = ["responseTimeTargets", "canaries", "drills", "assessments"];
    let others: [&[&str]; 4] = [
        &[],
        &[
            "networkPolicy.enabled=true",
            "prometheus.url=http://prometheus:9090",
            "prometheus.bearerTokenSecret=prom-token",
            "prometheus.caSecret=prom-ca",
            "tenancy.singleTenant=true",
        ],
        &[
            "watchNamespace=shop",
            "webhook.certSecret=webhook-tls",
            "webhook.failurePolicy=Fail",
            "webhook.clientCASecret=apiserver-webhook-client-ca",
            "metrics.certSecret=metrics-tls",
            "reportWebhookHosts={reports.example.com,127.0.0.1:8080}",
            "canaryHookHosts={loadtester.test}",
            "prometheusRules.additionalLabels.release=kps",
            "alertmanager.url=http://alertmanager-operated.monitoring:9093",
        ],
        &[
            "dashboards.enabled=false",
            "replicas=1",
            "leaderElection.enabled=false",
            "metrics.tls=false",
            "integrations.read=false",
        ],
    ];
    // Each combination: which controllers are on (in SWITCHES order) and its `--set`s.
    let mut combos: Vec<([bool; 4], Vec<String>)> = vec![([true, true, false, true], vec![])];
    for mask in 1..16usize {
        let on = [0, 1, 2, 3].map(|bit| mask & (1 << bit) != 0);
        let mut sets: Vec<String> = SWITCHES
            .iter()
            .zip(on)
            .map(|(name, on)| format!("controllers.{name}={on}"))
            .collect();
        sets.extend(others[mask % others.len()].iter().map(|s| s.to_string()));
        combos.push((on, sets));
    }
    for (i, (on, extra)) in combos.iter().enumerate() {
        let [rtt, canaries, drills, assessments] = *on;
        let release = format!("combo{i}");
        let chart = chart_dir();
        let mut args = vec![
            "template",
            &release,
            chart.to_str().unwrap(),
            "--namespace",
            &ctx.namespace,
            "--kube-version",
            "1.34.4",
        ];
        for set in extra {
            args.extend(["--set", set]);
        }
        let rendered = ctx.env.helm(&args);
        assert!(rendered.status.success(), "{extra:?}: {}", text(&rendered));
        let yaml = String::from_utf8_lossy(&rendered.stdout).into_owned();
        // The RBAC and the operator's arguments follow the switches.
        assert_eq!(
            yaml.contains("verbs: [delete]"),
            drills,
            "{extra:?}: pod delete only with drills"
        );
        assert_eq!(
            yaml.contains("resources: [nodes]\n    verbs: [get, list, patch]"),
            drills,
            "{extra:?}: nodes cordoned only with drills"
        );
        // The webhook holds canaries, records the authors of drills and canaries, and the
        // attestations and exemption approvals of assessments; a single-tenant operator acts
        // with its own rights, so drills alone need no webhook.
        let single = extra.iter().any(|s| s == "tenancy.singleTenant=true");
        let authors = (canaries || drills) && !single;
        let webhook = canaries || authors || assessments;
        let proofs = authors || assessments;
        assert_eq!(
            yaml.contains("mutatingwebhookconfigurations"),
            webhook,
            "{extra:?}"
        );
        assert_eq!(yaml.contains("--webhook-service="), webhook, "{extra:?}");
        assert_eq!(
            yaml.contains("# Before acting for a drill's or canary's author"),
            authors,
            "{extra:?}: author checks (SubjectAccessReviews) only with drills or canaries, multi-tenant"
        );
        assert_eq!(
            yaml.contains(&format!(
                "resourceNames: [{release}-maturity-operator-author-key]"
            )),
            proofs,
            "{extra:?}: the proofs' key Secret's Role"
        );
        assert_eq!(
            yaml.contains(&format!(
                "--author-key-secret={release}-maturity-operator-author-key"
            )),
            proofs,
            "{extra:?}"
        );
        // The approvers' ClusterRole ships with assessments, bound to nobody.
        assert_eq!(
            yaml.contains(&format!(
                "name: {release}-maturity-operator-exemption-approver"
            )),
            assessments,
            "{extra:?}"
        );
        assert_eq!(
            yaml.matches("-exemption-approver").count(),
            usize::from(assessments),
            "{extra:?}: the approver ClusterRole is not bound"
        );
        let client_ca = extra
            .iter()
            .any(|s| s == "webhook.clientCASecret=apiserver-webhook-client-ca");
        assert_eq!(
            yaml.contains("--webhook-client-ca-file=/var/run/secrets/webhook-client-ca/ca.crt")
                && yaml.contains("secretName: apiserver-webhook-client-ca"),
            webhook && client_ca,
            "{extra:?}: the webhook's client CA"
        );
        // PrometheusRules: written for ResponseTimeTargets, read for assessments (a
        // namespace's alert rules).
        assert_eq!(
            yaml.contains("resources: [prometheusrules]"),
            rtt || assessments,
            "{extra:?}"
        );
        assert_eq!(
            yaml.contains("verbs: [get, list, watch, create, patch, delete]"),
            rtt,
            "{extra:?}: PrometheusRules written only for ResponseTimeTargets"
        );
        assert_eq!(
            yaml.contains("resources: [configmaps]"),
            assessments,
            "{extra:?}: report ConfigMaps only with assessments"
        );
        // The tools' kinds are read for assessments, unless switched off.
        let integrations = !extra.iter().any(|s| s == "integrations.read=false");
        // Every kind the assessment reads (tools::KINDS), by its group and plural.
        let granted = |k: &maturity_operator::model::tools::ToolKind| {
            yaml.split("- apiGroups: [").skip(1).any(|rule| {
                let mut lines = rule.lines();
                lines.next() == Some(&format!("{}]", k.group))
                    && lines.next().is_some_and(|r| {
                        r.trim()
                            .strip_prefix("resources: [")
                            .and_then(|r| r.strip_suffix(']'))
                            .is_some_and(|r| r.split(", ").any(|p| p == k.plural))
                    })
            })
        };
        for k in &maturity_operator::model::tools::KINDS {
            assert_eq!(
                granted(k),
                assessments && integrations,
                "{extra:?}: {} {} of {}",
                k.tool,
                k.plural,
                k.group
            );
        }
        // Report receivers only when the value lists some.
        let receivers = extra.iter().any(|s| s.starts_with("reportWebhookHosts="));
        assert_eq!(
            yaml.contains("--report-webhook-hosts=reports.example.com,127.0.0.1:8080"),
            receivers,
            "{extra:?}"
        );
        assert_eq!(
            yaml.contains("- --canary-hook-hosts=loadtester.test\n"),
            extra.iter().any(|s| s.starts_with("canaryHookHosts=")),
            "{extra:?}"
        );
        assert_eq!(
            yaml.contains("- --alertmanager-url=http://alertmanager-operated.monitoring:9093\n"),
            extra.iter().any(|s| s.starts_with("alertmanager.url=")),
            "{extra:?}"
        );
        // The rule labels a Prometheus's ruleSelector selects, when the value sets them.
        assert_eq!(
            yaml.contains("- --prometheus-rule-label=release=kps\n"),
            extra
                .iter()
                .any(|s| s == "prometheusRules.additionalLabels.release=kps"),
            "{extra:?}"
        );
        let controllers: Vec<&str> = [
            (rtt, "response-time-targets"),
            (canaries, "canaries"),
            (drills, "drills"),
            (assessments, "assessments"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
        assert!(
            yaml.contains(&format!("- --controllers={}\n", controllers.join(","))),
            "{extra:?}: --controllers={controllers:?}"
        );
        // /metrics is always reviewed by the API server: the operator may create the
        // reviews, and a ClusterRole to bind scrapers to comes with the chart.
        assert!(yaml.contains("- --metrics-auth=kubernetes\n"), "{extra:?}");
        assert!(
            yaml.contains("resources: [tokenreviews]")
                && yaml.contains("resources: [subjectaccessreviews]"),
            "{extra:?}"
        );
        assert!(
            yaml.contains(&format!("name: {release}-maturity-operator-metrics-reader"))
                && yaml.contains("- nonResourceURLs: [\"/metrics\"]"),
            "{extra:?}"
        );
        let tls = !extra.iter().any(|s| s == "metrics.tls=false");
        assert_eq!(
            yaml.contains("- --metrics-tls=on\n"),
            tls,
            "{extra:?}: HTTPS unless metrics.tls=false"
        );
        assert_eq!(
            yaml.contains("scheme: HTTPS}"),
            tls,
            "{extra:?}: the probes follow"
        );
        assert_eq!(
            yaml.contains("- --metrics-cert-dir=/var/run/secrets/metrics-tls\n"),
            extra.iter().any(|s| s.starts_with("metrics.certSecret=")),
            "{extra:?}"
        );
        let out = dry_run_apply(&ctx, &ctx.namespace, &yaml);
        assert!(
            out.status.success(),
            "{extra:?}: the API server refused the rendered chart: {}",
            text(&out)
        );
        // The operator accepts the arguments the chart gives it (it then stops at the
        // unreachable cluster, after parsing them).
        let args: Vec<String> = yaml
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("args:"))
            .skip(1)
            .take_while(|l| l.trim_start().starts_with("- "))
            .map(|l| l.trim_start().trim_start_matches("- ").to_string())
            .collect();
        assert_eq!(args.first().map(String::as_str), Some("run"), "{yaml}");
        // POD_NAME and POD_NAMESPACE come from the Deployment's downward API.
        let run = Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
            .args(&args)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env("POD_NAME", "operator-0")
            .env("POD_NAMESPACE", &ctx.namespace)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap();
        let said = text(&run);
        // It stops at the unreachable cluster or a Secret file not mounted here, never at
        // the leader-election settings.
        assert!(
            !said.contains("leader-election"),
            "{extra:?}: the chart's leader-election arguments were refused: {said}"
        );
        assert_ne!(
            run.status.code(),
            Some(2),
            "{extra:?}: the operator refused the chart's arguments {args:?}: {said}"
        );
        assert!(said.starts_with("maturity-operator: "), "{extra:?}: {said}");
    }
    // ServiceMonitor renders when asked for, and the API server takes it with the real
    // ServiceMonitor CRD (generated from the Prometheus Operator's API module): HTTPS with
    // Prometheus's own ServiceAccount token; the operator's own certificate is not
    // verified, a mounted one is, with its CA, for the Service's name.
    support::cluster::install_monitoring_crds(&ctx.env, &ctx.client).await;
    let service_monitor = |sets: &[&str]| {
        let chart = chart_dir();
        let mut args = vec![
            "template",
            "sm",
            chart.to_str().unwrap(),
            "--kube-version",
            "1.34.4",
            "--show-only",
            "templates/servicemonitor.yaml",
            "--set",
            "serviceMonitor.enabled=true",
        ];
        for set in sets {
            args.extend(["--set", set]);
        }
        let out = ctx.env.helm(&args);
        assert!(out.status.success(), "{sets:?}: {}", text(&out));
        let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(yaml.contains("kind: ServiceMonitor"), "{yaml}");
        // Rendered for namespace default (a dry run writes nothing there).
        let applied = dry_run_apply(&ctx, "default", &yaml);
        assert!(
            applied.status.success(),
            "{sets:?}: the ServiceMonitor CRD refused the rendered ServiceMonitor: {}",
            text(&applied)
        );
        yaml
    };
    const TOKEN_FILE: &str = "bearerTokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token";
    let sm = service_monitor(&[]);
    for line in [
        "port: https",
        "scheme: https",
        TOKEN_FILE,
        "insecureSkipVerify: true",
    ] {
        assert!(sm.contains(line), "{line}: {sm}");
    }
    let sm = service_monitor(&["metrics.certSecret=metrics-tls"]);
    for line in [
        "secret: {name: metrics-tls, key: ca.crt}",
        "serverName: sm-maturity-operator-metrics.default.svc",
    ] {
        assert!(sm.contains(line), "{line}: {sm}");
    }
    assert!(!sm.contains("insecureSkipVerify"), "{sm}");
    let sm = service_monitor(&["serviceMonitor.bearerTokenSecret.name=prom-token"]);
    assert!(
        sm.contains("type: Bearer") && sm.contains("credentials: {name: prom-token, key: token}"),
        "{sm}"
    );
    assert!(!sm.contains("bearerTokenFile"), "{sm}");
    // The labels a Prometheus's serviceMonitorSelector selects (kube-prometheus-stack:
    // `release: <name>`).
    let sm = service_monitor(&["serviceMonitor.additionalLabels.release=kps"]);
    assert!(sm.contains("\n    release: kps\n"), "{sm}");
    assert!(!service_monitor(&[]).contains("release: kps"));
    let sm = service_monitor(&["metrics.tls=false"]);
    assert!(
        sm.contains("scheme: http\n") && sm.contains(TOKEN_FILE) && !sm.contains("tlsConfig"),
        "{sm}"
    );
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_bad_value_is_refused_with_the_schemas_message() {
    let ctx = TestContext::new("chartbad").await;
    // `helm install` with `--set` values must fail; returns what helm said.
    let refused = |sets: &[&str]| {
        let chart = chart_dir();
        let mut args = vec![
            "install",
            "bad",
            chart.to_str().unwrap(),
            "-n",
            &ctx.namespace,
        ];
        for set in sets {
            args.extend(["--set", set]);
        }
        let out = ctx.env.helm(&args);
        assert!(!out.status.success(), "{sets:?} was accepted");
        text(&out)
    };
    let said = refused(&["webhook.failurePolicy=Maybe"]);
    assert!(
        said.contains("/webhook/failurePolicy") && said.contains("'Ignore', 'Fail'"),
        "{said}"
    );
    let said = refused(&["prometheus.url=prometheus:9090"]);
    assert!(said.contains("/prometheus/url"), "{said}");
    // A rule label the API server would refuse on the PrometheusRule.
    let said = refused(&["prometheusRules.additionalLabels.release=kps!"]);
    assert!(
        said.contains("/prometheusRules/additionalLabels/release"),
        "{said}"
    );
    // An operator with no controller would do nothing.
    let said = refused(&[
        "controllers.responseTimeTargets=false",
        "controllers.canaries=false",
        "controllers.assessments=false",
    ]);
    assert!(said.contains("at '/controllers': 'anyOf' failed"), "{said}");
    // Unauthenticated metrics would be served on the pod's address: the operator refuses
    // that, and so does the chart, with the reason.
    let said = refused(&["metrics.auth=none"]);
    assert!(
        said.contains("metrics.auth=none: the operator serves unauthenticated /metrics only on a loopback address"),
        "{said}"
    );
    let said = refused(&["metrics.auth=basic"]);
    assert!(
        said.contains("/metrics/auth") && said.contains("'kubernetes', 'none'"),
        "{said}"
    );
    let said = refused(&["metrics.tls=false", "metrics.certSecret=metrics-tls"]);
    assert!(said.contains("metrics.tls=false turns off"), "{said}");
    // Two replicas without leader election would both act.
    let said = refused(&["replicas=2", "leaderElection.enabled=false"]);
    assert!(
        said.contains("/leaderElection/enabled") && said.contains("value must be true"),
        "{said}"
    );
    ctx.cleanup().await;
}

#[tokio::test]
async fn helm_install_creates_every_object_and_the_pod_passes_the_restricted_profile() {
    let ctx = TestContext::new("chartinst").await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(ctx.client.clone());
    namespaces
        .patch(
            &ctx.namespace,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})),
        )
        .await
        .unwrap();
    let release = format!("mo-{}", &ctx.namespace[ctx.namespace.len() - 5..]);
    let out = ctx.env.helm(&[
        "install",
        &release,
        chart_dir().to_str().unwrap(),
        "-n",
        &ctx.namespace,
        "--set",
        &format!("watchNamespace={}", ctx.namespace),
        "--set",
        "controllers.drills=true",
        "--skip-crds",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let name = format!("{release}-maturity-operator");
    let d = deployments
        .get(&name)
        .await
        .expect("the operator Deployment");
    let pod_spec = d.spec.unwrap().template.spec.unwrap();
    let sc = pod_spec.containers[0].security_context.clone().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    // The restricted profile admitted both replicas, and they run on kwok nodes.
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    eventually("two operator pods running", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/name=maturity-operator"))
                .await
                .map_err(|e| e.to_string())?;
            let phases: Vec<Option<String>> = list
                .items
                .iter()
                .map(|p| p.status.as_ref().and_then(|s| s.phase.clone()))
                .collect();
            if phases.len() == 2 && phases.iter().all(|p| p.as_deref() == Some("Running")) {
                Ok(())
            } else {
                Err(format!("{phases:?}"))
            }
        }
    })
    .await;
    for (kind, n) in [
        ("serviceaccount", name.clone()),
        ("service", format!("{name}-metrics")),
        ("service", format!("{name}-webhook")),
        ("clusterrole", name.clone()),
        ("clusterrolebinding", name.clone()),
        ("role", format!("{name}-leader-election")),
        ("rolebinding", format!("{name}-leader-election")),
        ("poddisruptionbudget", name.clone()),
        ("secret", format!("{name}-webhook-cert")),
        ("configmap", format!("{name}-dashboard-overview")),
        ("configmap", format!("{name}-dashboard-operator")),
    ] {
        let out = Command::new(ctx.env.tool("kubectl"))
            .args(["get", kind, &n, "-n", &ctx.namespace])
            .env("KUBECONFIG", &ctx.env.kubeconfig)
            .output()
            .unwrap();
        assert!(out.status.success(), "{kind}/{n}: {}", text(&out));
    }
    let out = ctx.env.helm(&["uninstall", &release, "-n", &ctx.namespace]);
    assert!(out.status.success(), "{}", text(&out));
    ctx.cleanup().await;
}

/// The webhook certificate the chart makes when no Secret is given: the operator serves it
/// (from the mounted Secret's files) and it verifies, against the CA the operator registers,
/// for the webhook Service's name, the name the API server dials. An admission request
/// over that connection is answered.
#[tokio::test]
async fn the_charts_webhook_certificate_is_served_and_verifies_for_the_service_name() {
    let ctx = TestContext::new("chartcert").await;
    let release = "cert";
    let out = ctx.env.helm(&[
        "template",
        release,
        chart_dir().to_str().unwrap(),
        "-n",
        &ctx.namespace,
        "--kube-version",
        "1.34.4",
        "--show-only",
        "templates/webhook-cert.yaml",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let secret: k8s_openapi::api::core::v1::Secret = serde_yaml::from_slice(&out.stdout).unwrap();
    let data = secret.data.unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("chartcert-{}", ctx.namespace));
    std::fs::create_dir_all(&dir).unwrap();
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        let pem = data
            .get(key)
            .unwrap_or_else(|| panic!("{key} in the Secret"));
        std::fs::write(dir.join(key), &pem.0).unwrap();
    }
    let service = format!("{release}-maturity-operator-webhook");
    let host = format!("{service}.{}.svc", ctx.namespace);
    let port = support::prom::free_port();
    let configuration = format!("maturity-{}", ctx.namespace);
    let operator = support::operator::Operator::start_with(
        &ctx.env,
        &ctx.namespace,
        &ctx.env.prometheus_url,
        "2s",
        &[
            "--controllers=canaries".to_string(),
            format!("--webhook-addr=127.0.0.1:{port}"),
            format!("--webhook-service={}/{service}:443", ctx.namespace),
            format!("--webhook-cert-dir={}", dir.display()),
            format!("--webhook-configuration={configuration}"),
        ],
    );
    maturity_operator::prom::init_tls();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.crt")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .resolve(&host, format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let deployment = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ctx.namespace, "labels": {"app": "web"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "web:v2"}]}}}
    });
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "chart-cert-test",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "web", "namespace": ctx.namespace, "operation": "UPDATE",
            "userInfo": {"username": "test"},
            "object": deployment, "oldObject": deployment
        }
    });
    let url = format!("https://{host}/mutate/deployments");
    let answer: serde_json::Value = eventually(
        "an admission answer over TLS",
        Duration::from_secs(30),
        || {
            let (client, url, review) = (client.clone(), url.clone(), review.clone());
            async move {
                let r = client
                    .post(&url)
                    .json(&review)
                    .send()
                    .await
                    .map_err(|e| format!("{e:?}"))?;
                r.json::<serde_json::Value>()
                    .await
                    .map_err(|e| e.to_string())
            }
        },
    )
    .await;
    assert_eq!(answer["response"]["uid"], "chart-cert-test", "{answer}");
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    // The operator registered the chart's CA for the Service.
    let configurations: Api<
        k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
    > = Api::all(ctx.client.clone());
    let registered = configurations.get(&configuration).await.unwrap();
    let bundle = registered.webhooks.unwrap_or_default()[0]
        .client_config
        .ca_bundle
        .clone()
        .unwrap_or_default();
    assert_eq!(
        String::from_utf8_lossy(&bundle.0),
        std::fs::read_to_string(dir.join("ca.crt")).unwrap(),
        "registered CA"
    );
    drop(operator);
    let _ = configurations
        .delete(&configuration, &Default::default())
        .await;
    let _ = std::fs::remove_dir_all(&dir);
    ctx.cleanup().await;
}

/// The image (Dockerfile) and the chart agree: a multi-stage build whose runtime stage runs
/// as the non-root user the chart's securityContext names.
#[test]
fn the_image_runs_as_the_charts_non_root_user() {
    let dockerfile = std::fs::read_to_string(repo_dir().join("Dockerfile")).unwrap();
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "a multi-stage build: {stages} FROM lines");
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER in the Dockerfile");
    let deployment =
        std::fs::read_to_string(chart_dir().join("templates/deployment.yaml")).unwrap();
    for field in ["runAsUser", "runAsGroup"] {
        let value = deployment
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{field}: ")))
            .unwrap_or_else(|| panic!("{field} in the chart"));
        assert!(
            user.split(':').any(|u| u == value),
            "Dockerfile USER {user} vs chart {field} {value}"
        );
        assert_ne!(value, "0", "{field} must not be root");
    }
}

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

/// A CA certificate (PEM, base64) for `webhook.caBundle`.
fn ca_bundle() -> String {
    let ca = maturity_operator::tls::Certs::generate("webhook", &["localhost".into()])
        .unwrap()
        .ca_pem;
    serde_json::to_value(k8s_openapi::ByteString(ca.into_bytes()))
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// `helm ARGS` with `--set S` for each of `sets`.
fn helm_with_sets(env: &support::cluster::ClusterEnv, args: &[&str], sets: &[&str]) -> Output {
    let mut all = args.to_vec();
    for set in sets {
        all.extend(["--set", set]);
    }
    env.helm(&all)
}

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
        // A certificate of one's own comes with its CA, which the chart puts into the
        // webhook configuration.
        if sets.iter().any(|s| s == "webhook.certSecret=webhook-tls") {
            sets.push(format!("webhook.caBundle={}", ca_bundle()));
        }
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
        // The chart renders the webhook's configuration; the operator may not write one.
        assert_eq!(
            yaml.contains("kind: MutatingWebhookConfiguration"),
            webhook,
            "{extra:?}"
        );
        assert!(!yaml.contains("mutatingwebhookconfigurations"), "{extra:?}");
        assert!(!yaml.contains("--webhook-configuration"), "{extra:?}");
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
        let args = vec![
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
        let out = helm_with_sets(&ctx.env, &args, sets);
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
        let args = vec![
            "install",
            "bad",
            chart.to_str().unwrap(),
            "-n",
            &ctx.namespace,
        ];
        let out = helm_with_sets(&ctx.env, &args, sets);
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
    // A certificate of one's own without its CA: the API server could not verify it.
    let said = refused(&["webhook.certSecret=webhook-tls"]);
    assert!(
        said.contains("webhook.certSecret needs webhook.caBundle"),
        "{said}"
    );
    let said = refused(&[
        "webhook.certSecret=webhook-tls",
        "webhook.certManager.enabled=true",
    ]);
    assert!(said.contains("drop one of them"), "{said}");
    let said = refused(&["logFormat=xml"]);
    assert!(
        said.contains("/logFormat") && said.contains("'json', 'text'"),
        "{said}"
    );
    // A key the chart does not know is a typo (global is Helm's, below).
    let said = refused(&["prometheus.ur=http://p:9090"]);
    assert!(
        said.contains("additional properties 'ur' not allowed"),
        "{said}"
    );
    let said = refused(&["podLabel.team=x"]);
    assert!(
        said.contains("additional properties 'podLabel' not allowed"),
        "{said}"
    );
    ctx.cleanup().await;
}

/// The chart as a dependency of an umbrella chart: Helm passes it the parent's `global`
/// values, which the schema allows; the values platform teams set on every operator reach
/// the pods, and the API server accepts the result.
#[tokio::test]
async fn the_chart_works_as_a_subchart_with_global_values() {
    let ctx = TestContext::new("chartsub").await;
    let parent = tempfile::tempdir().unwrap();
    std::fs::write(
        parent.path().join("Chart.yaml"),
        format!(
            "apiVersion: v2\nname: platform\nversion: 1.0.0\ndependencies:\n  - name: maturity-operator\n    version: 0.1.0\n    repository: file://{}\n",
            chart_dir().display()
        ),
    )
    .unwrap();
    std::fs::write(
        parent.path().join("values.yaml"),
        r#"global:
  imageRegistry: registry.example.com
  storageClass: fast
maturity-operator:
  prometheus:
    url: http://prometheus-operated.monitoring:9090
  podAnnotations: {example.com/scrape: "false"}
  podLabels: {team: platform}
  imagePullSecrets: [{name: regcred}]
  priorityClassName: system-cluster-critical
  topologySpreadConstraints:
    - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway,
       labelSelector: {matchLabels: {app.kubernetes.io/name: maturity-operator}}}
  serviceAccount: {annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::1:role/mo"}}
  extraEnv: [{name: HTTPS_PROXY, value: "http://proxy.example.com:3128"}]
  logLevel: info,maturity_operator::canary=debug
  logFormat: text
  tracing: {otlpEndpoint: "http://otel-collector.monitoring:4318"}
"#,
    )
    .unwrap();
    let dir = parent.path().to_str().unwrap();
    let deps = ctx.env.helm(&["dependency", "build", dir]);
    assert!(deps.status.success(), "{}", text(&deps));
    let rendered = ctx.env.helm(&[
        "template",
        "platform",
        dir,
        "-n",
        &ctx.namespace,
        "--kube-version",
        "1.34.4",
    ]);
    assert!(rendered.status.success(), "{}", text(&rendered));
    let yaml = String::from_utf8_lossy(&rendered.stdout).into_owned();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).unwrap();
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("the operator's Deployment");
    let pod = &deployment["spec"]["template"];
    assert_eq!(
        pod["metadata"]["annotations"]["example.com/scrape"],
        "false"
    );
    assert_eq!(pod["metadata"]["labels"]["team"], "platform");
    // The selector's labels are still there.
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/name"],
        "maturity-operator"
    );
    let spec = &pod["spec"];
    assert_eq!(spec["imagePullSecrets"][0]["name"], "regcred");
    assert_eq!(spec["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        spec["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    let container = &spec["containers"][0];
    let env = container["env"].as_array().unwrap();
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(
        var("RUST_LOG"),
        Some(serde_json::json!("info,maturity_operator::canary=debug"))
    );
    assert_eq!(
        var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        Some(serde_json::json!("http://otel-collector.monitoring:4318"))
    );
    assert_eq!(
        var("HTTPS_PROXY"),
        Some(serde_json::json!("http://proxy.example.com:3128"))
    );
    assert!(
        container["args"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("--log-format=text")),
        "{container}"
    );
    let sa = docs.iter().find(|d| d["kind"] == "ServiceAccount").unwrap();
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::1:role/mo"
    );
    let out = dry_run_apply(&ctx, &ctx.namespace, &yaml);
    assert!(out.status.success(), "{}", text(&out));
    // The operator takes the log settings the chart gives it (a bad level is a sentence).
    let bad = Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
        .args(["run", "--log-level=info,=nope=="])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(
        text(&bad).contains("--log-level \"info,=nope==\" is not a log filter"),
        "{}",
        text(&bad)
    );
    ctx.cleanup().await;
}

/// NOTES.txt warns about what an install without settings would silently lack.
#[tokio::test]
async fn the_install_notes_warn_about_missing_settings() {
    let ctx = TestContext::new("chartnotes").await;
    let notes = |sets: &[&str]| {
        let chart = chart_dir();
        let args = vec![
            "install",
            "notes",
            chart.to_str().unwrap(),
            "-n",
            &ctx.namespace,
            "--dry-run=server",
            "--skip-crds",
        ];
        let out = helm_with_sets(&ctx.env, &args, sets);
        assert!(out.status.success(), "{sets:?}: {}", text(&out));
        let out = text(&out);
        out[out.find("NOTES:").expect("NOTES")..].to_string()
    };
    let bare = notes(&[]);
    for warning in [
        "WARNING: prometheus.url is empty: nothing is measured",
        "WARNING: prometheusRules.additionalLabels is empty",
        "WARNING: alertmanager.url is empty",
        "WARNING: Canaries hold rollouts only in namespaces labelled maturity.sre.dev/canaries=enabled",
        "helm test notes -n",
    ] {
        assert!(bare.contains(warning), "{warning} missing:\n{bare}");
    }
    let set = notes(&[
        "prometheus.url=http://prometheus-operated.monitoring:9090",
        "prometheusRules.additionalLabels.release=kps",
        "alertmanager.url=http://alertmanager-operated.monitoring:9093",
        "webhook.certManager.enabled=true",
    ]);
    assert!(!set.contains("prometheus.url is empty"), "{set}");
    assert!(!set.contains("additionalLabels is empty"), "{set}");
    assert!(!set.contains("alertmanager.url is empty"), "{set}");
    assert!(!set.contains("made by the chart (lookup)"), "{set}");
    ctx.cleanup().await;
}

/// The chart's webhook configuration has the hooks the operator registers when it runs out
/// of cluster (`webhook::configuration`): same names, paths, rules and policies.
#[test]
fn the_charts_webhooks_are_the_operators() {
    use maturity_operator::webhook::{Duties, Endpoint, Settings, configuration};
    let env = support::cluster::ensure_cluster();
    for (sets, duties) in [
        (
            vec!["controllers.drills=true"],
            Duties {
                canaries: true,
                authors: true,
                evidence: true,
            },
        ),
        (
            vec!["controllers.canaries=false"],
            Duties {
                canaries: false,
                authors: false,
                evidence: true,
            },
        ),
        (
            vec!["controllers.assessments=false", "tenancy.singleTenant=true"],
            Duties {
                canaries: true,
                authors: false,
                evidence: false,
            },
        ),
    ] {
        let chart = chart_dir();
        let args = vec![
            "template",
            "hooks",
            chart.to_str().unwrap(),
            "-n",
            "mo",
            "--kube-version",
            "1.34.4",
            "--show-only",
            "templates/webhook.yaml",
        ];
        let out = helm_with_sets(&env, &args, &sets);
        assert!(out.status.success(), "{sets:?}: {}", text(&out));
        let rendered: serde_json::Value = serde_saphyr::from_slice(&out.stdout).unwrap();
        let settings = Settings {
            addr: "127.0.0.1:9443".parse().unwrap(),
            endpoint: Endpoint::Service {
                namespace: "mo".into(),
                name: "hooks-maturity-operator-webhook".into(),
                port: 443,
            },
            configuration: None,
            namespace: None,
            failure_policy: "Ignore".into(),
        };
        let ours = serde_json::to_value(configuration(
            &settings,
            "hooks-maturity-operator",
            "",
            duties,
        ))
        .unwrap();
        // Compared without the parts that differ by design: the CA (the chart's) and the
        // namespace selectors (the chart's canary hook is opt-in).
        let strip = |v: &serde_json::Value| -> Vec<serde_json::Value> {
            v["webhooks"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|mut w| {
                    let o = w.as_object_mut().unwrap();
                    o.remove("namespaceSelector");
                    o["clientConfig"]
                        .as_object_mut()
                        .unwrap()
                        .remove("caBundle");
                    w
                })
                .collect()
        };
        assert_eq!(strip(&rendered), strip(&ours), "{sets:?}");
        assert_eq!(rendered["metadata"]["name"], "hooks-maturity-operator");
    }
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
    // The webhook's configuration is the release's, with the CA of the Secret the pods
    // mount.
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(ctx.client.clone());
    let hooks = configurations
        .get(&name)
        .await
        .expect("the webhook configuration");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let ca = secrets
        .get(&format!("{name}-webhook-cert"))
        .await
        .unwrap()
        .data
        .unwrap()["ca.crt"]
        .clone();
    let webhooks = hooks.webhooks.unwrap_or_default();
    assert_eq!(webhooks.len(), 3, "canaries, authors, assessments");
    for w in &webhooks {
        assert_eq!(w.client_config.ca_bundle.as_ref(), Some(&ca), "{}", w.name);
    }

    // Users of the built-in roles: `edit` writes the four kinds (not their status), `view`
    // reads them.
    let binding = |user: &str, role: &str| {
        serde_json::json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": format!("{user}-{role}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
        })
    };
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        Api::namespaced(ctx.client.clone(), &ctx.namespace);
    for (user, role) in [("alice", "edit"), ("bob", "view")] {
        bindings
            .create(
                &Default::default(),
                &serde_json::from_value(binding(user, role)).unwrap(),
            )
            .await
            .unwrap();
    }
    let can = |user: &str, args: &[&str]| ctx.can_i(user, args);
    // The aggregation controller folds the chart's roles into view and edit.
    eventually(
        "edit and view include the four kinds",
        Duration::from_secs(30),
        || async {
            let kinds = [
                "responsetimetargets",
                "canarypolicies",
                "drillschedules",
                "maturityassessments",
            ];
            for k in kinds {
                let kind = format!("{k}.maturity.sre.dev");
                if !can("alice", &["create", &kind]) || !can("alice", &["delete", &kind]) {
                    return Err(format!("alice may not write {k}"));
                }
                if !can("bob", &["list", &kind]) {
                    return Err(format!("bob may not list {k}"));
                }
            }
            Ok(())
        },
    )
    .await;
    for k in ["responsetimetargets", "maturityassessments"] {
        let kind = format!("{k}.maturity.sre.dev");
        assert!(!can("bob", &["create", &kind]), "view writes {k}");
        assert!(
            !can("alice", &["patch", &kind, "--subresource=status"]),
            "edit writes {k}'s status"
        );
    }
    assert!(
        !can(
            "alice",
            &[
                "approve",
                "maturityassessments.maturity.sre.dev",
                "--subresource=exemptions"
            ]
        ),
        "edit approves exemptions"
    );

    // Uninstall leaves nothing cluster-wide behind: no webhook configuration pointing at a
    // Service that is gone, no ClusterRole (so edit no longer writes the kinds).
    let out = ctx
        .env
        .helm(&["uninstall", &release, "-n", &ctx.namespace, "--wait"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        configurations.get_opt(&name).await.unwrap().is_none(),
        "the webhook configuration stayed"
    );
    let left = Command::new(ctx.env.tool("kubectl"))
        .args([
            "get",
            "clusterroles,clusterrolebindings,mutatingwebhookconfigurations",
            "-o",
            "name",
            "-l",
            &format!("app.kubernetes.io/instance={release}"),
        ])
        .env("KUBECONFIG", &ctx.env.kubeconfig)
        .output()
        .unwrap();
    assert!(left.status.success(), "{}", text(&left));
    assert_eq!(
        String::from_utf8_lossy(&left.stdout).trim(),
        "",
        "left behind"
    );
    eventually(
        "edit no longer writes the kinds",
        Duration::from_secs(30),
        || async {
            match can("alice", &["create", "responsetimetargets.maturity.sre.dev"]) {
                false => Ok(()),
                true => Err("alice still may".to_string()),
            }
        },
    )
    .await;
    ctx.cleanup().await;
}

/// The webhook certificate the chart makes when no Secret is given: the operator serves it
/// (from the mounted Secret's files) and it verifies, against the CA the chart puts into the
/// webhook configuration, for the webhook Service's name, the name the API server dials. An
/// admission request over that connection is answered. Then the Secret's files are
/// rotated (as cert-manager renews them and the kubelet rewrites the volume): the operator
/// serves the new certificate without a restart.
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
        "--show-only",
        "templates/webhook.yaml",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(docs.iter().find(|d| d["kind"] == "Secret").unwrap().clone())
            .unwrap();
    let rendered: k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration =
        serde_json::from_value(
            docs.iter()
                .find(|d| d["kind"] == "MutatingWebhookConfiguration")
                .unwrap()
                .clone(),
        )
        .unwrap();
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
        ],
    );
    maturity_operator::prom::init_tls();
    // The CA the API server is given: the rendered configuration's.
    let bundle = rendered.webhooks.unwrap_or_default()[0]
        .client_config
        .ca_bundle
        .clone()
        .unwrap_or_default();
    assert_eq!(
        String::from_utf8_lossy(&bundle.0),
        std::fs::read_to_string(dir.join("ca.crt")).unwrap(),
        "the configuration's CA is the Secret's"
    );
    let ca = reqwest::Certificate::from_pem(&bundle.0).unwrap();
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
    let answer = admission_answer("an admission answer over TLS", &client, &url, &review).await;
    assert_eq!(answer["response"]["uid"], "chart-cert-test", "{answer}");
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    // The operator registered nothing: the configuration is the chart's.
    let configurations: Api<
        k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
    > = Api::all(ctx.client.clone());
    let labelled = configurations
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=maturity-operator"))
        .await
        .unwrap();
    assert!(
        labelled.items.iter().all(|c| !c
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .contains(&ctx.namespace)),
        "the operator registered a configuration"
    );

    // Rotation: a new certificate for the same name, written into the files the operator
    // reads. It is served within the reload period (10 s), no restart.
    let renewed =
        maturity_operator::tls::Certs::generate("webhook", std::slice::from_ref(&host)).unwrap();
    for (key, pem) in [
        ("ca.crt", &renewed.ca_pem),
        ("tls.key", &renewed.key_pem),
        ("tls.crt", &renewed.cert_pem),
    ] {
        std::fs::write(dir.join(key), pem).unwrap();
    }
    let new_ca = reqwest::Certificate::from_pem(renewed.ca_pem.as_bytes()).unwrap();
    let renewed_client = reqwest::Client::builder()
        .tls_certs_only([new_ca])
        .resolve(&host, format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let answer = admission_answer(
        "the renewed certificate served",
        &renewed_client,
        &url,
        &review,
    )
    .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    // The old CA no longer verifies what is served (a new connection: the first client's
    // pooled one was opened before the rotation).
    drop(client);
    let old_client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&bundle.0).unwrap()])
        .resolve(&host, format!("127.0.0.1:{port}").parse().unwrap())
        .build()
        .unwrap();
    let old = old_client.post(&url).json(&review).send().await;
    assert!(old.is_err(), "the old certificate is still served");
    drop(operator);
    let _ = std::fs::remove_dir_all(&dir);
    ctx.cleanup().await;
}

/// The webhook's answer to `review` at `url`, once `client` gets one (within 30 s).
async fn admission_answer(
    what: &str,
    client: &reqwest::Client,
    url: &str,
    review: &serde_json::Value,
) -> serde_json::Value {
    eventually(what, Duration::from_secs(30), || async {
        let r = client
            .post(url)
            .json(review)
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        r.json::<serde_json::Value>()
            .await
            .map_err(|e| e.to_string())
    })
    .await
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
    // The chart's tracing.otlpEndpoint works only with the exporter built in.
    let builds: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.contains("cargo build --release"))
        .collect();
    assert!(
        !builds.is_empty() && builds.iter().all(|l| l.contains("--features otlp")),
        "{builds:?}"
    );
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

/// `helm test`: the chart's test pod runs `maturity-operator probe` with the operator's
/// image. kwok runs no containers, so the test runs the rendered command itself, with the
/// Service addresses replaced by the local operator's and Prometheus's: it passes when the
/// operator is Ready and Prometheus answers, and fails with a sentence when either does not.
#[tokio::test]
async fn the_helm_test_probe_checks_the_operator_and_prometheus() {
    let ctx = TestContext::new("charttest").await;
    let render = |sets: &[&str]| {
        let chart = chart_dir();
        let args = vec![
            "template",
            "rel",
            chart.to_str().unwrap(),
            "-n",
            &ctx.namespace,
            "--kube-version",
            "1.34.4",
            "--show-only",
            "templates/tests/probe.yaml",
        ];
        let out = helm_with_sets(&ctx.env, &args, sets);
        assert!(out.status.success(), "{sets:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let yaml = render(&[
        "prometheus.url=http://prometheus-operated.monitoring:9090",
        "prometheus.bearerTokenSecret=prom-token",
    ]);
    let pod: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    let args: Vec<String> = pod["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let readyz = format!(
        "--readyz=https://rel-maturity-operator-metrics.{}.svc:8080/readyz",
        ctx.namespace
    );
    assert_eq!(
        args,
        [
            "probe",
            readyz.as_str(),
            "--prometheus-url=http://prometheus-operated.monitoring:9090",
            "--timeout=10s",
            "--prometheus-bearer-token-file=/var/run/secrets/prometheus-token/token",
        ]
    );
    // The pod passes the restricted profile, like the operator's.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(ctx.client.clone());
    namespaces
        .patch(
            &ctx.namespace,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})),
        )
        .await
        .unwrap();
    let applied = dry_run_apply(&ctx, &ctx.namespace, &yaml);
    assert!(applied.status.success(), "{}", text(&applied));

    // The rendered command against the local operator (HTTPS, as the chart serves it) and
    // the cluster's Prometheus (no token: drop that flag, the file is not mounted here).
    let operator = support::operator::Operator::start_with(
        &ctx.env,
        &ctx.namespace,
        &ctx.env.prometheus_url,
        "2s",
        &["--metrics-auth=kubernetes".to_string()],
    );
    let local_readyz = operator.metrics_url.replace("/metrics", "/readyz");
    let probe = |readyz: &str, prometheus: &str| {
        let args: Vec<String> = args
            .iter()
            .filter(|a| !a.starts_with("--prometheus-bearer-token-file"))
            .map(|a| {
                if a.starts_with("--readyz=") {
                    format!("--readyz={readyz}")
                } else if a.starts_with("--prometheus-url=") {
                    format!("--prometheus-url={prometheus}")
                } else {
                    a.clone()
                }
            })
            .collect();
        Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
            .args(&args)
            .env_remove("MATURITY_PROMETHEUS_URL")
            .output()
            .unwrap()
    };
    let passed = eventually("the probe passes", Duration::from_secs(60), || {
        let out = probe(&local_readyz, &ctx.env.prometheus_url);
        async move {
            match out.status.code() {
                Some(0) => Ok(out),
                _ => Err(text(&out)),
            }
        }
    })
    .await;
    assert!(
        text(&passed).contains("answers 200 (Ready)") && text(&passed).contains("answers queries"),
        "{}",
        text(&passed)
    );
    // Prometheus not where the chart says.
    let closed = format!("http://127.0.0.1:{}", support::prom::free_port());
    let failed = probe(&local_readyz, &closed);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(
        text(&failed).contains("Prometheus not reachable as configured"),
        "{}",
        text(&failed)
    );
    // The chart's default: no Prometheus URL at all.
    let unset = probe(&local_readyz, "");
    assert_eq!(unset.status.code(), Some(1), "{}", text(&unset));
    assert!(
        text(&unset).contains("no Prometheus URL is configured"),
        "{}",
        text(&unset)
    );
    // The operator gone: not Ready.
    drop(operator);
    let down = eventually("the probe fails", Duration::from_secs(30), || {
        let out = probe(&local_readyz, &ctx.env.prometheus_url);
        async move {
            match out.status.code() {
                Some(1) => Ok(out),
                _ => Err(text(&out)),
            }
        }
    })
    .await;
    assert!(
        text(&down).contains("operator not Ready"),
        "{}",
        text(&down)
    );
    ctx.cleanup().await;
}

/// `webhook.certManager.enabled`: a real cert-manager (controller and cainjector, built from
/// its Go module) issues the chart's certificate from the CA the chart bootstraps, its
/// cainjector writes that CA into the chart's webhook configuration, a renewal replaces the
/// certificate under the same CA, and uninstall removes the configuration.
#[tokio::test]
async fn cert_manager_issues_the_webhook_certificate_and_injects_its_ca() {
    use support::cert_manager::{CertManager, secret_data};
    let ctx = TestContext::new("chartcm").await;
    let cm = CertManager::start(&ctx).await;
    let release = "cm";
    let full = format!("{release}-maturity-operator");
    let out = ctx.env.helm(&[
        "install",
        release,
        chart_dir().to_str().unwrap(),
        "-n",
        &ctx.namespace,
        "--skip-crds",
        "--set",
        "webhook.certManager.enabled=true",
        // The hooks of this release only for this namespace (other tests run beside it).
        "--set",
        &format!("watchNamespace={}", ctx.namespace),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // No chart-made Secret: cert-manager writes it.
    let rendered = ctx
        .env
        .helm(&["get", "manifest", release, "-n", &ctx.namespace]);
    assert!(
        !String::from_utf8_lossy(&rendered.stdout).contains("kind: Secret"),
        "the chart made the certificate itself"
    );
    cm.wait_certificate_ready(&format!("{full}-webhook")).await;
    let secret = cm.wait_tls_secret(&format!("{full}-webhook-cert")).await;
    let ca = secret_data(&secret, "ca.crt");
    let ca_secret = cm.wait_tls_secret(&format!("{full}-webhook-ca")).await;
    assert_eq!(
        ca,
        secret_data(&ca_secret, "tls.crt"),
        "issued by the chart's CA"
    );
    let configuration = cm.wait_ca_injected(&full, &ca).await;
    assert_eq!(configuration.webhooks.unwrap_or_default().len(), 3);
    // The certificate names the Service the API server dials.
    let cert = String::from_utf8_lossy(&secret_data(&secret, "tls.crt")).into_owned();
    let der = {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(cert.as_bytes())
            .unwrap()
            .to_vec()
    };
    let service = format!("{full}-webhook.{}.svc", ctx.namespace);
    assert!(
        der.windows(service.len()).any(|w| w == service.as_bytes()),
        "the certificate does not name {service}"
    );

    // A renewal: a new certificate in the same Secret, the CA (and so the configuration)
    // unchanged.
    let before = secret_data(&secret, "tls.crt");
    cm.renew(&format!("{full}-webhook")).await;
    let renewed = cm
        .wait_tls_crt_changed(&format!("{full}-webhook-cert"), &before)
        .await;
    assert_eq!(secret_data(&renewed, "ca.crt"), ca);
    cm.wait_ca_injected(&full, &ca).await;

    let out = ctx
        .env
        .helm(&["uninstall", release, "-n", &ctx.namespace, "--wait"]);
    assert!(out.status.success(), "{}", text(&out));
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(ctx.client.clone());
    assert!(configurations.get_opt(&full).await.unwrap().is_none());
    drop(cm);
    ctx.cleanup().await;
}

//! The Helm chart: lint, CRDs in sync with `crds/`, every switch combination rendered and
//! accepted by the real API server (server-side dry run), a bad value refused with the
//! schema's message, and a real `helm install` into a namespace that enforces the
//! restricted Pod Security profile, whose pods then run on kwok.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use support::cluster::{ClusterEnv, TestContext, repo_dir};
use support::eventually;

fn chart() -> PathBuf {
    repo_dir().join("charts/maturity-operator")
}

fn helm(env: &ClusterEnv, args: &[&str]) -> Output {
    Command::new(env.tool("helm"))
        .args(args)
        .env("KUBECONFIG", &env.kubeconfig)
        .env("HELM_CACHE_HOME", env.dir.join("helm/cache"))
        .env("HELM_CONFIG_HOME", env.dir.join("helm/config"))
        .env("HELM_DATA_HOME", env.dir.join("helm/data"))
        .output()
        .expect("run helm")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_charts_crds_are_the_generated_ones() {
    for entry in std::fs::read_dir(repo_dir().join("crds")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        let in_chart =
            std::fs::read_to_string(chart().join("crds").join(&name)).unwrap_or_default();
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
    let lint = helm(&ctx.env, &["lint", chart().to_str().unwrap()]);
    assert!(lint.status.success(), "{}", text(&lint));
    let combos: &[&[&str]] = &[
        &[],
        &[
            "--set",
            "controllers.drills=true",
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "prometheus.url=http://prometheus:9090",
            "--set",
            "prometheus.bearerTokenSecret=prom-token",
            "--set",
            "prometheus.caSecret=prom-ca",
        ],
        &[
            "--set",
            "controllers.canaries=false",
            "--set",
            "controllers.responseTimeTargets=false",
            "--set",
            "controllers.drills=true",
        ],
        &[
            "--set",
            "controllers.canaries=false",
            "--set",
            "controllers.responseTimeTargets=false",
        ],
        &[
            "--set",
            "watchNamespace=shop",
            "--set",
            "webhook.certSecret=webhook-tls",
            "--set",
            "webhook.failurePolicy=Fail",
        ],
    ];
    for (i, extra) in combos.iter().enumerate() {
        let release = format!("combo{i}");
        let mut args = vec![
            "template",
            &release,
            chart().to_str().unwrap().to_owned().leak(),
            "--namespace",
            &ctx.namespace,
            "--kube-version",
            "1.34.4",
        ];
        args.extend(extra.iter().copied());
        let rendered = helm(&ctx.env, &args);
        assert!(rendered.status.success(), "{extra:?}: {}", text(&rendered));
        let yaml = String::from_utf8_lossy(&rendered.stdout).into_owned();
        // The RBAC follows the switches.
        let drills = extra.contains(&"controllers.drills=true");
        assert_eq!(
            yaml.contains("verbs: [delete]"),
            drills,
            "{extra:?}: pod delete only with drills"
        );
        let canaries = !extra.contains(&"controllers.canaries=false");
        assert_eq!(
            yaml.contains("mutatingwebhookconfigurations"),
            canaries,
            "{extra:?}"
        );
        assert_eq!(yaml.contains("--webhook-service="), canaries, "{extra:?}");
        let mut apply = Command::new(ctx.env.tool("kubectl"))
            .args(["apply", "--dry-run=server", "-n", &ctx.namespace, "-f", "-"])
            .env("KUBECONFIG", &ctx.env.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        apply
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        let out = apply.wait_with_output().unwrap();
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
        let run = Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
            .args(&args)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap();
        let said = text(&run);
        assert_ne!(
            run.status.code(),
            Some(2),
            "{extra:?}: the operator refused the chart's arguments {args:?}: {said}"
        );
        assert!(said.starts_with("maturity-operator: "), "{extra:?}: {said}");
    }
    // ServiceMonitor renders when asked for (its CRD is not installed here).
    let sm = helm(
        &ctx.env,
        &[
            "template",
            "sm",
            chart().to_str().unwrap(),
            "--kube-version",
            "1.34.4",
            "--set",
            "serviceMonitor.enabled=true",
        ],
    );
    assert!(String::from_utf8_lossy(&sm.stdout).contains("kind: ServiceMonitor"));
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_bad_value_is_refused_with_the_schemas_message() {
    let ctx = TestContext::new("chartbad").await;
    let out = helm(
        &ctx.env,
        &[
            "install",
            "bad",
            chart().to_str().unwrap(),
            "-n",
            &ctx.namespace,
            "--set",
            "webhook.failurePolicy=Maybe",
        ],
    );
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("/webhook/failurePolicy") && said.contains("'Ignore', 'Fail'"),
        "{said}"
    );
    let out = helm(
        &ctx.env,
        &[
            "install",
            "bad",
            chart().to_str().unwrap(),
            "-n",
            &ctx.namespace,
            "--set",
            "prometheus.url=prometheus:9090",
        ],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("/prometheus/url"), "{}", text(&out));
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
    let out = helm(
        &ctx.env,
        &[
            "install",
            &release,
            chart().to_str().unwrap(),
            "-n",
            &ctx.namespace,
            "--set",
            &format!("watchNamespace={}", ctx.namespace),
            "--set",
            "controllers.drills=true",
            "--skip-crds",
        ],
    );
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
    // The restricted profile admitted the pod, and it runs on a kwok node.
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    eventually("operator pod running", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/name=maturity-operator"))
                .await
                .map_err(|e| e.to_string())?;
            match list
                .items
                .first()
                .and_then(|p| p.status.as_ref())
                .and_then(|s| s.phase.clone())
            {
                Some(phase) if phase == "Running" => Ok(()),
                other => Err(format!("{other:?}")),
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
    ] {
        let out = Command::new(ctx.env.tool("kubectl"))
            .args(["get", kind, &n, "-n", &ctx.namespace])
            .env("KUBECONFIG", &ctx.env.kubeconfig)
            .output()
            .unwrap();
        assert!(out.status.success(), "{kind}/{n}: {}", text(&out));
    }
    let out = helm(&ctx.env, &["uninstall", &release, "-n", &ctx.namespace]);
    assert!(out.status.success(), "{}", text(&out));
    ctx.cleanup().await;
}

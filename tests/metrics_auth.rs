//! `/metrics` as `maturity-operator run` serves it by default (`--metrics-auth kubernetes`,
//! HTTPS): the caller's bearer token is reviewed by the harness's real API server
//! (TokenReview), then the user it names by a SubjectAccessReview of `get /metrics`.
//! No token is 401, a ServiceAccount without a binding 403, the same ServiceAccount bound
//! to a ClusterRole with `nonResourceURLs: [/metrics]` 200 with the metrics, and repeated
//! scrapes are answered from the cache; `/healthz` and `/readyz` need no token; a mounted
//! certificate is served; unauthenticated metrics are refused off loopback.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::cluster::TestContext;
use support::eventually;
use support::operator::Operator;

const BIN: &str = env!("CARGO_BIN_EXE_maturity-operator");

/// `maturity_operator_metrics_auth_reviews_total{result="<result>"}` in a metrics body.
fn reviews(body: &str, result: &str) -> f64 {
    let sample = format!("maturity_operator_metrics_auth_reviews_total{{result=\"{result}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&sample))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn apply(ctx: &TestContext, manifest: serde_json::Value) {
    let out = ctx.kubectl_as("", &["apply", "-f", "-"], &manifest.to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn metrics_need_a_token_of_a_user_allowed_to_get_metrics() {
    let ctx = TestContext::new("metricsauth").await;
    let ns = ctx.namespace.clone();
    let operator = Operator::start_with(
        &ctx.env,
        &ns,
        &ctx.env.prometheus_url,
        "2s",
        &["--metrics-auth=kubernetes".into()],
    );
    assert!(
        operator.metrics_url.starts_with("https://"),
        "HTTPS by default with authentication: {}",
        operator.metrics_url
    );

    // The kubelet's probes need no token.
    eventually(
        "/readyz 200 without a token",
        Duration::from_secs(30),
        || async {
            match operator.get("/readyz", None).await? {
                (200, _) => Ok(()),
                (code, body) => Err(format!("{code} {body}")),
            }
        },
    )
    .await;
    assert_eq!(
        operator.get("/healthz", None).await.unwrap(),
        (200, "ok".into())
    );

    // No token, or one the API server does not accept: 401.
    let (code, body) = operator.get("/metrics", None).await.unwrap();
    assert_eq!(code, 401, "{body}");
    assert!(
        body.starts_with("no bearer token: /metrics needs"),
        "{body}"
    );
    let (code, body) = operator.get("/metrics", Some("not-a-token")).await.unwrap();
    assert_eq!(code, 401, "{body}");
    assert!(
        body.starts_with("the bearer token was not accepted"),
        "{body}"
    );

    // A ServiceAccount's valid token, but no binding: 403, with who and what.
    let out = ctx.kubectl_as("", &["create", "serviceaccount", "scraper"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = ctx.token("scraper");
    let (code, body) = operator.get("/metrics", Some(&token)).await.unwrap();
    assert_eq!(code, 403, "{body}");
    assert!(
        body.starts_with(&format!(
            "system:serviceaccount:{ns}:scraper may not get /metrics"
        )),
        "{body}"
    );

    // Bound to a ClusterRole that may get /metrics: 200 once the refusal's 10 s in the
    // cache have passed, with the operator's metrics.
    let reader = format!("{ns}-metrics-reader");
    apply(
        &ctx,
        json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": reader},
             "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": reader},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": reader},
             "subjects": [{"kind": "ServiceAccount", "name": "scraper", "namespace": ns}]}
        ]}),
    );
    let body = eventually(
        "/metrics 200 once bound",
        Duration::from_secs(30),
        || async {
            match operator.get("/metrics", Some(&token)).await? {
                (200, body) => Ok(body),
                (code, body) => Err(format!("{code} {body}")),
            }
        },
    )
    .await;
    assert!(
        body.contains("maturity_operator_info{version=\"")
            && body.contains("maturity_operator_leader 1"),
        "{body}"
    );
    assert_eq!(reviews(&body, "allowed"), 1.0, "{body}");
    assert!(reviews(&body, "forbidden") >= 1.0, "{body}");
    assert!(reviews(&body, "unauthenticated") >= 1.0, "{body}");

    // Scrapes within the 30 s an allowed decision is kept cost no more reviews.
    let mut last = String::new();
    for _ in 0..5 {
        let (code, body) = operator.get("/metrics", Some(&token)).await.unwrap();
        assert_eq!(code, 200, "{body}");
        last = body;
    }
    assert_eq!(reviews(&last, "allowed"), 1.0, "{last}");

    let out = ctx.kubectl_as(
        "",
        &[
            "delete",
            "clusterrolebinding,clusterrole",
            &reader,
            "--ignore-not-found",
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(operator);
    ctx.cleanup().await;
}

/// `--metrics-cert-dir`: the mounted certificate is the one served, and it verifies
/// against its CA (what a ServiceMonitor's `tlsConfig.ca` checks).
#[tokio::test]
async fn a_mounted_certificate_is_served() {
    let ctx = TestContext::new("metricscert").await;
    let certs = maturity_operator::tls::Certs::generate("metrics", &["127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), &certs.cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &certs.key_pem).unwrap();
    let operator = Operator::start_with(
        &ctx.env,
        &ctx.namespace,
        &ctx.env.prometheus_url,
        "2s",
        &[
            "--metrics-auth=kubernetes".into(),
            format!("--metrics-cert-dir={}", dir.path().display()),
        ],
    );
    let ca = reqwest::Certificate::from_pem(certs.ca_pem.as_bytes()).unwrap();
    let verifying = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let healthz = operator.metrics_url.replace("/metrics", "/healthz");
    assert!(healthz.starts_with("https://127.0.0.1:"), "{healthz}");
    eventually(
        "/healthz over verified HTTPS",
        Duration::from_secs(30),
        || async {
            let r = verifying
                .get(&healthz)
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?;
            match r.status().as_u16() {
                200 => Ok(()),
                code => Err(code.to_string()),
            }
        },
    )
    .await;
    let r = verifying.get(&operator.metrics_url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // A client that trusts only the system roots refuses the certificate.
    maturity_operator::prom::init_tls();
    let strict = reqwest::Client::new();
    assert!(strict.get(&healthz).send().await.is_err());
    drop(operator);
    ctx.cleanup().await;
}

#[test]
fn unauthenticated_metrics_are_refused_off_loopback() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("run")
            .args(args)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("MATURITY_METRICS_AUTH")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, said) = run(&["--metrics-auth", "none", "--http-addr", "0.0.0.0:0"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains(
            "--metrics-auth none serves /metrics to anyone who can connect, so it is allowed only on a loopback address, and --http-addr 0.0.0.0:0 is not one"
        ),
        "{said}"
    );
    // Refused before connecting to any cluster.
    assert!(!said.contains("Kubernetes client"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
    // On loopback it is accepted: the operator goes on, to the missing kubeconfig.
    let (code, said) = run(&["--metrics-auth", "none", "--http-addr", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("cannot build a Kubernetes client"), "{said}");
    // A certificate with HTTPS turned off is a contradiction, said as one.
    let (code, said) = run(&["--metrics-tls", "off", "--metrics-cert-dir", "/tmp"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("--metrics-tls off"), "{said}");
}

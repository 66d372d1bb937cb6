//! Traces: the operator built with the `otlp` feature (`hack/test.sh` builds it into
//! `target/otlp`, as the image is built) exports its spans over OTLP/HTTP to a collector on
//! loopback while it evaluates a ResponseTimeTarget and a MaturityAssessment; the default
//! build refuses `--otlp-endpoint` with a sentence.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use kube::api::{Api, PostParams};
use maturity_operator::api::{MaturityAssessment, ResponseTimeTarget};
use serde_json::json;
use support::cluster::{TestContext, assessment, repo_dir};
use support::eventually;

/// The operator with the `otlp` feature (`cargo build --features otlp --target-dir target/otlp`).
fn otlp_binary() -> PathBuf {
    let bin = repo_dir().join("target/otlp/debug/maturity-operator");
    assert!(
        bin.exists(),
        "{} is missing: hack/test.sh builds it (cargo build --features otlp --bin maturity-operator --target-dir target/otlp)",
        bin.display()
    );
    bin
}

/// A collector's OTLP/HTTP trace endpoint on loopback: every body POSTed to /v1/traces.
async fn collector() -> (String, Arc<Mutex<Vec<Bytes>>>) {
    let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let app = Router::new()
        .route(
            "/v1/traces",
            post(
                |State(b): State<Arc<Mutex<Vec<Bytes>>>>, body: Bytes| async move {
                    b.lock().unwrap().push(body);
                    ""
                },
            ),
        )
        .with_state(bodies.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), bodies)
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_default_build_refuses_an_otlp_endpoint_with_a_sentence() {
    let out = Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
        .args(["run", "--otlp-endpoint", "http://127.0.0.1:4318"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("this build has no OTLP exporter (cargo build --features otlp"),
        "{said}"
    );
}

#[tokio::test]
async fn spans_of_reconciles_and_their_calls_reach_the_collector() {
    let ctx = TestContext::new("otlp").await;
    let ns = ctx.namespace.clone();
    let (endpoint, bodies) = collector().await;
    let port = support::prom::free_port();
    let _operator = Running(
        Command::new(otlp_binary())
            .args(["run", "--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-auth", "none", "--namespace", &ns])
            .args(["--prometheus-url", &ctx.env.prometheus_url])
            .args(["--controllers=response-time-targets,assessments"])
            .args(["--default-interval", "2s", "--assessment-interval", "5s"])
            .args(["--otlp-endpoint", &endpoint])
            .env("KUBECONFIG", &ctx.env.kubeconfig)
            .env("RUST_LOG", "warn")
            .env(
                "KUBE_RS_DEBUG_IMPERSONATE_USER",
                support::operator::OPERATOR_USER,
            )
            .env("KUBE_RS_DEBUG_IMPERSONATE_GROUP", "system:masters")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the otlp operator"),
    );
    let targets: Api<ResponseTimeTarget> = Api::namespaced(ctx.client.clone(), &ns);
    let target: ResponseTimeTarget = serde_json::from_value(json!({
        "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "ResponseTimeTarget",
        "metadata": {"name": "traced"},
        "spec": {
            "service": "checkout", "requestClass": "interactive", "objective": 99.5, "window": "28d",
            "indicator": {"latency": {"histogram": "otlp_test_duration_seconds",
                                      "selector": "{service=\"checkout\"}", "threshold": "300ms"}}
        }
    }))
    .unwrap();
    targets
        .create(&PostParams::default(), &target)
        .await
        .unwrap();
    let assessments: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ns);
    assessments
        .create(
            &PostParams::default(),
            &assessment("traced-assessment", json!({"targetLevel": 2})),
        )
        .await
        .unwrap();
    // The spans' names and fields arrive as strings in the protobuf bodies.
    let want = [
        "maturity-operator",
        "reconcile",
        "ResponseTimeTarget",
        "MaturityAssessment",
        "traced-assessment",
        "prometheus",
        "kube",
    ];
    eventually("the spans exported", Duration::from_secs(60), || {
        let bodies = bodies.clone();
        async move {
            let all: Vec<u8> = bodies.lock().unwrap().iter().flatten().copied().collect();
            let missing: Vec<&str> = want
                .iter()
                .copied()
                .filter(|w| !all.windows(w.len()).any(|x| x == w.as_bytes()))
                .collect();
            match missing.as_slice() {
                [] => Ok(()),
                m => Err(format!(
                    "{} bodies, missing {m:?}",
                    bodies.lock().unwrap().len()
                )),
            }
        }
    })
    .await;
    ctx.cleanup().await;
}

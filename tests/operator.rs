//! The operator process against the real cluster: it starts, serves `/healthz`,
//! `/readyz` and `/metrics`, sees the custom resources, and stops cleanly on SIGTERM;
//! with an unusable kubeconfig it exits non-zero with a sentence, not a panic.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube::api::{Api, PostParams};
use maturity_operator::api::ResponseTimeTarget;
use support::cluster::TestContext;
use support::eventually;
use support::prom::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_maturity-operator");

async fn get(url: &str) -> Result<(u16, String), String> {
    let r = reqwest::get(url).await.map_err(|e| e.to_string())?;
    let code = r.status().as_u16();
    Ok((code, r.text().await.map_err(|e| e.to_string())?))
}

#[tokio::test]
async fn run_serves_health_and_metrics_and_stops_on_sigterm() {
    let ctx = TestContext::new("operator").await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(["run", "--http-addr", &format!("127.0.0.1:{port}")])
        // Plain, unauthenticated metrics: allowed on loopback (tests/metrics_auth.rs has
        // the default, reviewed by the API server).
        .args(["--metrics-auth", "none"])
        .env("KUBECONFIG", &ctx.env.kubeconfig)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the operator");

    eventually("/readyz 200", Duration::from_secs(30), || {
        let url = format!("{base}/readyz");
        async move {
            match get(&url).await? {
                (200, _) => Ok(()),
                (code, body) => Err(format!("{code} {body}")),
            }
        }
    })
    .await;
    eprintln!("operator ready after {:?}", started.elapsed());
    assert_eq!(get(&format!("{base}/healthz")).await.unwrap().0, 200);

    // A resource created now is seen by the running operator.
    let rtt: ResponseTimeTarget = serde_json::from_value(serde_json::json!({
        "apiVersion": "maturity.sre.dev/v1alpha1",
        "kind": "ResponseTimeTarget",
        "metadata": {"name": "seen"},
        "spec": {"service": "checkout", "requestClass": "interactive", "objective": 99.0, "window": "1d",
                 "indicator": {"ratio": {"good": "a_total", "total": "b_total"}}}
    }))
    .unwrap();
    Api::<ResponseTimeTarget>::namespaced(ctx.client.clone(), &ctx.namespace)
        .create(&PostParams::default(), &rtt)
        .await
        .expect("create target");
    eventually(
        "metrics count the new ResponseTimeTarget",
        Duration::from_secs(20),
        || {
            let url = format!("{base}/metrics");
            async move {
                let (_, body) = get(&url).await?;
                let line = body
                    .lines()
                    .find(|l| {
                        l.starts_with(
                            r#"maturity_operator_watched_resources{kind="ResponseTimeTarget"}"#,
                        )
                    })
                    .ok_or("no watched_resources line")?;
                let n: f64 = line
                    .rsplit(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .map_err(|_| line.to_string())?;
                if n >= 1.0 {
                    Ok(())
                } else {
                    Err(line.to_string())
                }
            }
        },
    )
    .await;

    let stop = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            stop.elapsed() < Duration::from_secs(10),
            "operator did not stop within 10s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("operator stopped {:?} after SIGTERM", stop.elapsed());
    assert!(
        status.success(),
        "operator exited with {status} after SIGTERM"
    );
    ctx.cleanup().await;
}

#[test]
fn run_without_a_usable_kubeconfig_exits_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["run", "--http-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", dir.path().join("missing-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot build a Kubernetes client"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

//! Test harness for integration tests against the local control plane and Prometheus.
//!
//! - [`cluster`]: starts the local cluster once (or uses the one `make test` started),
//!   installs the CRDs, and gives each test its own namespace.
//! - [`prom`]: queries the real Prometheus, registers scrape targets, and starts a
//!   Prometheus on backfilled history (`promtool tsdb create-blocks-from openmetrics`).
//! - [`rule_loader`]: what the Prometheus Operator does with a Prometheus's `ruleSelector`
//!   (selected PrometheusRules become rule files of the shared Prometheus, reloaded).
//! - [`cert_manager`]: a real cert-manager (controller and cainjector) for one namespace.
//! - The synthetic exporter itself is `maturity_operator::synthetic`.
#![allow(dead_code)]

pub mod alertmanager;
pub mod api_proxy;
pub mod cert_manager;
pub mod cluster;
#[allow(dead_code)] // only the fault tests use it
pub mod fault;
pub mod operator;
pub mod prom;
pub mod receiver;
pub mod rule_loader;

use std::time::Duration;

/// Runs `cmd` and returns its output; fails the test with `what`, the command's stdout and
/// its stderr when it cannot start or does not succeed.
pub fn run_ok(cmd: &mut std::process::Command, what: &str) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Waits (60 s at most) until `GET url` answers 2xx, e.g. a Prometheus's `/-/ready`.
pub async fn wait_ready(what: &str, url: &str) {
    let url = url.to_string();
    eventually(what, Duration::from_secs(60), || {
        let url = url.clone();
        async move {
            match reqwest::get(&url).await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;
}

/// Polls `check` every 250 ms until it returns `Some`, or fails the test after `timeout`
/// with `what` and the last observation.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = std::time::Instant::now();
    let mut last = String::from("never checked");
    while start.elapsed() < timeout {
        match check().await {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}; last observation: {last}");
}

//! The operator as a process of its own, the way users run it, against the test cluster.

use std::process::{Child, Command, Stdio};

use super::cluster::ClusterEnv;
use super::prom::free_port;

/// A running `maturity-operator run`; killed when dropped.
pub struct Operator {
    child: Child,
    pub metrics_url: String,
}

impl Operator {
    /// Starts the operator against the test cluster and `prometheus_url`, acting only in
    /// the test's `namespace` (so nothing else on the cluster, a demo or another test, is
    /// touched or counted), looking for due work every 200 ms and evaluating targets every
    /// `interval` (e.g. `2s`).
    pub fn start(env: &ClusterEnv, namespace: &str, prometheus_url: &str, interval: &str) -> Self {
        Self::start_with(env, namespace, prometheus_url, interval, &[])
    }

    /// Like [`Self::start`], with extra `run` flags.
    pub fn start_with(
        env: &ClusterEnv,
        namespace: &str,
        prometheus_url: &str,
        interval: &str,
        extra: &[String],
    ) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
            .args(["run", "--http-addr", &format!("127.0.0.1:{port}")])
            .args([
                "--prometheus-url",
                prometheus_url,
                "--prometheus-timeout",
                "2s",
            ])
            .args(["--tick", "200ms", "--default-interval", interval])
            .args(["--namespace", namespace])
            .args(extra)
            .env("KUBECONFIG", &env.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("OPERATOR_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the operator");
        Self {
            child,
            metrics_url: format!("http://127.0.0.1:{port}/metrics"),
        }
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

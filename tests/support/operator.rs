//! The operator as a process of its own, the way users run it, against the test cluster.

use std::process::{Child, Command, Stdio};

use super::cluster::ClusterEnv;
use super::prom::free_port;

/// The user the operator runs as in the tests (see [`Operator::start_with_env`]).
pub const OPERATOR_USER: &str = "maturity-operator-under-test";

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
        Self::start_with_env(env, namespace, prometheus_url, interval, extra, &[])
    }

    /// Like [`Self::start_with`], with extra environment variables. `/metrics` is served
    /// without authentication (`--metrics-auth none`, allowed on this loopback address) so
    /// tests read it with a plain GET, unless `extra` names `--metrics-auth` itself; then
    /// `metrics_url` is `https://` unless it says `--metrics-auth=none` or
    /// `--metrics-tls=off` (give these flags in the `--flag=value` form).
    ///
    /// The operator is not the test's own user: unless `vars` say otherwise it impersonates
    /// [`OPERATOR_USER`] (in `system:masters`, so RBAC lets it do everything the test's
    /// admin can). Then what the tests do as the admin is a user's request, as in a real
    /// cluster where the operator has its own ServiceAccount: the webhook records the admin
    /// as the author of the drills and policies the tests create, and holds the admin's
    /// template changes.
    pub fn start_with_env(
        env: &ClusterEnv,
        namespace: &str,
        prometheus_url: &str,
        interval: &str,
        extra: &[String],
        vars: &[(&str, &str)],
    ) -> Self {
        Self::spawn(env, Some(namespace), prometheus_url, interval, extra, vars)
    }

    /// Like [`Self::start_with_env`] with the shared Prometheus, acting in every namespace
    /// of the cluster, as in production. Only for a test binary of its own, whose operator
    /// then acts on no other test's objects while they run.
    #[allow(dead_code)] // not every test binary uses it
    pub fn start_cluster_wide(env: &ClusterEnv, extra: &[String], vars: &[(&str, &str)]) -> Self {
        Self::spawn(env, None, &env.prometheus_url, "2s", extra, vars)
    }

    /// The operator in every namespace against `prometheus_url`, with `extra` flags (a
    /// `--tick` or `--prometheus-timeout` there replaces the tests' own): for the benchmark.
    #[allow(dead_code)] // only the benchmark uses it
    pub fn start_all_namespaces(
        env: &ClusterEnv,
        prometheus_url: &str,
        interval: &str,
        extra: &[String],
    ) -> Self {
        Self::spawn(env, None, prometheus_url, interval, extra, &[])
    }

    fn spawn(
        env: &ClusterEnv,
        namespace: Option<&str>,
        prometheus_url: &str,
        interval: &str,
        extra: &[String],
        vars: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let own_auth = extra.iter().any(|a| a.starts_with("--metrics-auth"));
        let tls = extra
            .iter()
            .any(|a| a.starts_with("--metrics-cert-dir") || a == "--metrics-tls=on")
            || (own_auth
                && !extra.iter().any(|a| a == "--metrics-auth=none")
                && !extra.iter().any(|a| a == "--metrics-tls=off"));
        let mut vars: Vec<(&str, &str)> = vars.to_vec();
        if !vars
            .iter()
            .any(|(k, _)| *k == "KUBE_RS_DEBUG_IMPERSONATE_USER")
        {
            vars.push(("KUBE_RS_DEBUG_IMPERSONATE_USER", OPERATOR_USER));
            vars.push(("KUBE_RS_DEBUG_IMPERSONATE_GROUP", "system:masters"));
        }
        let child = Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
            .args(["run", "--http-addr", &format!("127.0.0.1:{port}")])
            .args(if own_auth {
                &[][..]
            } else {
                &["--metrics-auth", "none"][..]
            })
            .args(["--prometheus-url", prometheus_url])
            .args(
                ["--prometheus-timeout", "2s", "--tick", "200ms"]
                    .chunks(2)
                    .filter(|f| !extra.iter().any(|e| e == f[0]))
                    .flatten(),
            )
            .args(["--default-interval", interval])
            .args(
                namespace
                    .map(|ns| ["--namespace", ns])
                    .into_iter()
                    .flatten(),
            )
            .args(extra)
            .env("KUBECONFIG", &env.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("OPERATOR_LOG")
                    .unwrap_or_else(|_| "warn,kube_client::config=error".into()),
            )
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the operator");
        Self {
            child,
            metrics_url: format!(
                "{}://127.0.0.1:{port}/metrics",
                if tls { "https" } else { "http" }
            ),
        }
    }

    /// Starts the operator (interval 2s) with `flags` (among them [`webhook_flags`]) and
    /// waits until its webhook records authors ([`webhook_recording`]).
    #[allow(dead_code)] // not every test binary uses it
    pub async fn start_recording(
        env: &ClusterEnv,
        client: &kube::Client,
        namespace: &str,
        flags: &[String],
    ) -> Self {
        let operator = Self::start_with(env, namespace, &env.prometheus_url, "2s", flags);
        webhook_recording(client, namespace).await;
        operator
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`, `TERM`, `KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{signal} {}", self.child.id());
    }

    /// Waits up to `timeout` for the process to end; its exit status, or None if it still runs.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= until {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// GET of `path` (e.g. `/metrics`, `/healthz`) on the operator's HTTP address, with
    /// `token` as the bearer token; over HTTPS it accepts the certificate the operator made
    /// itself. The status code and body, or what failed.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Result<(u16, String), String> {
        let url = self.metrics_url.replace("/metrics", path);
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .map_err(|e| e.to_string())?;
        let mut request = client.get(&url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| format!("{url}: {e:?}"))?;
        let code = response.status().as_u16();
        Ok((code, response.text().await.map_err(|e| e.to_string())?))
    }

    /// The value of one sample of the operator's `/metrics` (`name` with its labels exactly
    /// as exported, e.g. `maturity_operator_leader`); None when absent or unreachable.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let text = reqwest::get(&self.metrics_url)
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            l.strip_prefix(sample)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `run` flags that serve the admission webhook on a free loopback port, registered under a
/// configuration named after the test's namespace (tests never share one). The webhook
/// holds canaries' rollouts and records who wrote each DrillSchedule's and CanaryPolicy's
/// spec: without it no drill runs for its author.
pub fn webhook_flags(namespace: &str) -> Vec<String> {
    let port = free_port();
    vec![
        format!("--webhook-addr=127.0.0.1:{port}"),
        format!("--webhook-url=https://127.0.0.1:{port}"),
        format!(
            "--webhook-configuration={}",
            webhook_configuration(namespace)
        ),
    ]
}

/// The MutatingWebhookConfiguration of [`webhook_flags`].
pub fn webhook_configuration(namespace: &str) -> String {
    format!("maturity-{namespace}")
}

/// Deletes the MutatingWebhookConfiguration of [`webhook_flags`] (the test is over).
pub async fn remove_webhook(client: &kube::Client, namespace: &str) {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let api: kube::Api<MutatingWebhookConfiguration> = kube::Api::all(client.clone());
    let _ = api
        .delete(&webhook_configuration(namespace), &Default::default())
        .await;
}

/// Waits until the API server sends `namespace`'s DrillSchedules to the operator's webhook:
/// a dry-run create comes back with its author recorded. (A registration takes a moment to
/// reach the API server's admission chain; a drill created before that has no author.)
pub async fn webhook_recording(client: &kube::Client, namespace: &str) {
    use kube::api::{Api, PostParams};
    use maturity_operator::api::DrillSchedule;
    use maturity_operator::api::names::AUTHOR_ANNOTATION;
    let api: Api<DrillSchedule> = Api::namespaced(client.clone(), namespace);
    let probe: DrillSchedule = serde_json::from_value(serde_json::json!({
        "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "DrillSchedule",
        "metadata": {"name": "webhook-probe"},
        "spec": {"schedule": "0 0 1 1 *", "target": {"name": "none"},
                 "action": {"podKill": {"count": 1}}, "recoveryDeadline": "60s"}
    }))
    .expect("a probe DrillSchedule");
    super::eventually(
        "the webhook records authors",
        std::time::Duration::from_secs(30),
        || {
            let (api, probe) = (api.clone(), probe.clone());
            async move {
                let got = api
                    .create(
                        &PostParams {
                            dry_run: true,
                            ..Default::default()
                        },
                        &probe,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                got.metadata
                    .annotations
                    .unwrap_or_default()
                    .contains_key(AUTHOR_ANNOTATION)
                    .then_some(())
                    .ok_or_else(|| "no author recorded yet".to_string())
            }
        },
    )
    .await;
}

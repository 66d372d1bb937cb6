//! `probe`: what `helm test` runs next to an installed operator: its `/readyz` answers 200
//! (a replica is Ready: caches synced, controllers running), and Prometheus answers a query
//! with the operator's own settings (URL, token, CA). Exit 0 when both hold, 1 with a
//! sentence per failure.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::parse_duration;

/// The flags of `probe`.
#[derive(clap::Args)]
pub struct ProbeArgs {
    /// The operator's readiness URL, e.g.
    /// https://maturity-operator-metrics.maturity.svc:8080/readyz (its certificate is not
    /// verified: no credential is sent, as with the kubelet's probes).
    #[arg(long)]
    readyz: String,
    /// Base URL of the Prometheus HTTP API the operator is configured with.
    #[arg(long, env = "MATURITY_PROMETHEUS_URL", default_value = "")]
    prometheus_url: String,
    /// File holding the bearer token the operator sends to Prometheus.
    #[arg(long, env = "MATURITY_PROMETHEUS_BEARER_TOKEN_FILE")]
    prometheus_bearer_token_file: Option<PathBuf>,
    /// PEM file of the CA that signed Prometheus's certificate.
    #[arg(long, env = "MATURITY_PROMETHEUS_CA_FILE")]
    prometheus_ca_file: Option<PathBuf>,
    /// How long each check may take.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
}

pub async fn probe(args: ProbeArgs) -> ExitCode {
    let mut failures = Vec::new();
    match ready(&args.readyz, args.timeout).await {
        Ok(()) => println!("operator: {} answers 200 (Ready)", args.readyz),
        Err(e) => failures.push(format!("operator not Ready: {e}")),
    }
    match prometheus(&args).await {
        Ok(()) => println!("Prometheus: {} answers queries", args.prometheus_url),
        Err(e) => failures.push(format!("Prometheus not reachable as configured: {e}")),
    }
    for f in &failures {
        eprintln!("maturity-operator probe: {f}");
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn ready(url: &str, timeout: Duration) -> Result<(), String> {
    maturity_operator::prom::init_tls();
    let http = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let answer = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = answer.status();
    let body = answer.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {status}: {}", body.trim()))
    }
}

async fn prometheus(args: &ProbeArgs) -> Result<(), String> {
    use maturity_operator::prom::{PromClient, PromConfig};
    if args.prometheus_url.is_empty() {
        return Err(
            "no Prometheus URL is configured (the chart's prometheus.url): nothing is measured"
                .into(),
        );
    }
    let mut config = PromConfig::new(args.prometheus_url.clone());
    config.timeout = args.timeout;
    config.auth = super::run::prometheus_auth(args.prometheus_bearer_token_file.clone(), None)?;
    config.ca_file = args.prometheus_ca_file.clone();
    let client = PromClient::new(config, maturity_operator::metrics::Metrics::new())
        .map_err(|e| e.to_string())?;
    let samples = client
        .instant("vector(1)", None)
        .await
        .map_err(|e| e.to_string())?;
    match samples.as_slice() {
        [one] if one.value == 1.0 => Ok(()),
        other => Err(format!(
            "{}: vector(1) gave {} samples, not the one sample 1",
            args.prometheus_url,
            other.len()
        )),
    }
}

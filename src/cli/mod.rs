//! The `maturity-operator` command (also a kubectl plugin: `kubectl maturity ...` when
//! installed as `kubectl-maturity`): `run` the operator, gate CI on an assessment
//! (`check`), print reports, the model, the CRDs and burn-rate rules, shell `completion`,
//! or serve the (hidden) `synthetic-exporter` used by tests and the demo. Every command that
//! prints objects takes `-o` for their format.

mod probe;
mod run;
mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use maturity_operator::synthetic;

#[derive(Parser)]
#[command(
    name = "maturity-operator",
    version,
    about = "Measures how mature a team's operations are, from policies declared as custom resources."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The manifests an offline command reads, and how their queries are scoped (as the
/// operator's `--tenant-label` / `--single-tenant`).
#[derive(clap::Args)]
pub struct Manifests {
    /// Manifest file(s) (repeatable); a directory: its *.yaml and *.yml files, sorted;
    /// `-` reads stdin. Documents of other kinds are skipped.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// Namespace of documents whose manifest names none.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// The label that scopes every user's query to its object's namespace (as the
    /// operator's --tenant-label).
    #[arg(long, default_value = "namespace")]
    tenant_label: String,
    /// Queries are not scoped (as the operator's --single-tenant).
    #[arg(long)]
    single_tenant: bool,
}

impl Manifests {
    fn tenancy(&self) -> maturity_operator::prom::enforce::Tenancy {
        tenancy(self.single_tenant, self.tenant_label.clone())
    }
}

// Parsed once at start; boxing the large `run` variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum Command {
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster config).
    Run(run::RunArgs),
    /// CI gate: print an assessment's level and exit 0 when it reaches --min-level (default
    /// its targetLevel), 1 when below, 3 when it could not be evaluated.
    Check {
        /// Name of the MaturityAssessment.
        assessment: String,
        /// Namespace of the assessment (default: the kubeconfig context's, as kubectl).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// The level to reach (1-5); default: the assessment's spec.targetLevel.
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..=5))]
        min_level: Option<i32>,
        /// A status whose heartbeat is older than this is stale (exit 3): the operator
        /// refreshes it every 10 minutes.
        #[arg(long, default_value = "30m", value_parser = parse_duration)]
        max_age: std::time::Duration,
        /// table (default: the level per capability and what the next level misses), json
        /// or yaml (the verdict with the status's capabilities and next level).
        #[arg(long, short = 'o', default_value = "table", value_parser = ["table", "json", "yaml"])]
        output: String,
    },
    /// Give a CanaryPolicy's rollout an order: promote it now, abort it (back to the stable
    /// revision), or resume a held or inconclusive one. Acts with your rights, and status
    /// names you. Exits 0 once done, 1 when the operator refused it (the reason is printed),
    /// 3 when it could not be given or was not answered in time.
    Canary {
        /// promote, abort or resume.
        #[arg(value_parser = ["promote", "abort", "resume"])]
        order: String,
        /// Name of the CanaryPolicy.
        policy: String,
        /// The Deployment whose rollout it is (default: the policy's only rollout under way).
        #[arg(long)]
        deployment: Option<String>,
        /// Namespace of the policy (default: the kubeconfig context's, as kubectl).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// How long to wait for the operator's answer.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        wait: std::time::Duration,
    },
    /// Print the latest weekly (or monthly) report of an assessment.
    Report {
        /// Name of the MaturityAssessment.
        assessment: String,
        /// Namespace of the assessment (default: the kubeconfig context's, as kubectl).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Which report: weekly or monthly.
        #[arg(long, default_value = "weekly", value_parser = ["weekly", "monthly"])]
        period: String,
        /// markdown (default), json or yaml (the report's data).
        #[arg(long, short = 'o', default_value = "markdown", value_parser = ["markdown", "json", "yaml"])]
        output: String,
    },
    /// Print the maturity model: every practice with its ID, level, titles and evidence.
    Model {
        /// table (default), json, yaml or markdown (the catalogue in docs/model.md).
        #[arg(long, short = 'o', default_value = "table", value_parser = ["table", "json", "yaml", "markdown"])]
        output: String,
    },
    /// Print the CustomResourceDefinitions; with --out-dir, write one YAML file per kind.
    Crd {
        /// Write `<kind>.yaml` files into this directory (made if missing) instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// yaml (default: a multi-document stream) or json (a List).
        #[arg(long, short = 'o', default_value = "yaml", value_parser = ["yaml", "json"], conflicts_with = "out_dir")]
        output: String,
    },
    /// Print the burn-rate alert rules of the ResponseTimeTargets in the given manifests: a
    /// Prometheus rule file (`promtool check rules` accepts it), or with `--kind
    /// prometheusrule` the PrometheusRule objects the operator would write, for GitOps
    /// repositories. Exits 1 with a sentence when no target in them has alerting.
    Rules {
        /// rulefile (default: one Prometheus rule file) or prometheusrule (one object per target).
        #[arg(long, default_value = "rulefile", value_parser = ["rulefile", "prometheusrule"])]
        kind: String,
        /// yaml (default) or json.
        #[arg(long, short = 'o', default_value = "yaml", value_parser = ["yaml", "json"])]
        output: String,
        /// A label (KEY=VALUE, repeatable) on every PrometheusRule printed (as the
        /// operator's --prometheus-rule-label), e.g. release=kps.
        #[arg(long, value_delimiter = ',', value_parser = run::k8s_label)]
        prometheus_rule_label: Vec<(String, String)>,
        #[command(flatten)]
        manifests: Manifests,
    },
    /// Check manifests offline as the cluster would check their create: the CRDs' OpenAPI
    /// schemas, every x-kubernetes-validations rule and the admission webhook's query
    /// checks. Prints one line per refusal in the API server's words and `FILE: <Kind>
    /// <name> is valid` per accepted document (other kinds are skipped with a note on
    /// stderr). Exits 0 when every document is accepted, 1 when one is refused, 2 when a
    /// file cannot be read or parsed.
    Validate {
        #[command(flatten)]
        manifests: Manifests,
    },
    /// Check an installed operator (what `helm test` runs): its /readyz answers, and
    /// Prometheus answers a query with the operator's settings. Exits 1 with a sentence
    /// per failure.
    Probe(probe::ProbeArgs),
    /// Print a completion script for your shell, e.g.
    /// `source <(maturity-operator completion bash)`.
    Completion {
        /// bash, zsh, fish, powershell or elvish.
        shell: clap_complete::Shell,
    },
    /// Serve a metrics exporter with steady synthetic traffic (the demo's and the tests'
    /// stand-in application; hidden from --help).
    #[command(hide = true)]
    SyntheticExporter {
        /// Address to serve /metrics on.
        #[arg(long, default_value = "127.0.0.1:9464")]
        addr: SocketAddr,
        /// Series as `label=value,label=value:rps:error_ratio:latency_seconds`; repeatable.
        #[arg(long = "series", value_parser = tools::parse_series)]
        series: Vec<(synthetic::Labels, synthetic::Traffic)>,
        /// Also play the application of this namespace's Deployments: each ReplicaSet's
        /// ready pods serve traffic under their pod_template_hash (uses the kubeconfig).
        #[arg(long)]
        follow_namespace: Option<String>,
        /// With --follow-namespace: images containing PATTERN fail at RATIO (`PATTERN=RATIO`,
        /// or `PATTERN=none` for a version that exports nothing); others serve without errors.
        #[arg(long = "image-errors", value_parser = synthetic::follow::Behaviour::parse_rule)]
        image_errors: Vec<(String, Option<f64>)>,
    },
}

/// The name the binary was called by: `kubectl maturity` when kubectl runs it as the plugin
/// `kubectl-maturity`, else `maturity-operator`.
pub fn invoked_as(argv0: &str) -> &'static str {
    let file = std::path::Path::new(argv0)
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    if file.starts_with("kubectl-maturity") {
        "kubectl maturity"
    } else {
        "maturity-operator"
    }
}

/// Parses the command line; help and usage name the command as it was called.
pub fn parse() -> Cli {
    let argv0 = std::env::args().next().unwrap_or_default();
    let name = invoked_as(&argv0);
    let matches = Cli::command().bin_name(name).name(name).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs the command.
pub async fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Check {
            assessment,
            namespace,
            min_level,
            max_age,
            output,
        } => tools::check(assessment, namespace, min_level, max_age, &output).await,
        Command::Canary {
            order,
            policy,
            deployment,
            namespace,
            wait,
        } => tools::canary(order, policy, deployment, namespace, wait).await,
        Command::Report {
            assessment,
            namespace,
            period,
            output,
        } => tools::report(assessment, namespace, period, &output).await,
        Command::Model { output } => {
            print!("{}", tools::model_text(&output));
            ExitCode::SUCCESS
        }
        Command::Crd { out_dir, output } => match tools::write_crds(out_dir, &output) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("maturity-operator crd: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Rules {
            kind,
            output,
            prometheus_rule_label,
            manifests,
        } => match tools::print_rules(
            &manifests.files,
            &manifests.namespace,
            &manifests.tenancy(),
            (kind == "prometheusrule").then(|| prometheus_rule_label.into_iter().collect()),
            &output,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("maturity-operator rules: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Validate { manifests } => {
            tools::validate(&manifests.files, &manifests.namespace, &manifests.tenancy())
        }
        Command::Probe(args) => probe::probe(args).await,
        Command::Completion { shell } => {
            let name = invoked_as(&std::env::args().next().unwrap_or_default());
            // The plugin completes as kubectl's; the binary under its own name.
            let bin = if name == "kubectl maturity" {
                "kubectl-maturity"
            } else {
                name
            };
            // Hidden commands (the test exporter) are not offered.
            let shown: Vec<clap::Command> = Cli::command()
                .get_subcommands()
                .filter(|c| !c.is_hide_set())
                .cloned()
                .collect();
            let mut command = clap::Command::new(bin).subcommands(shown);
            clap_complete::generate(shell, &mut command, bin, &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::SyntheticExporter {
            addr,
            series,
            follow_namespace,
            image_errors,
        } => tools::synthetic_exporter(addr, series, follow_namespace, image_errors).await,
    }
}

/// How users' queries are scoped, from the two flags.
fn tenancy(single_tenant: bool, label: String) -> maturity_operator::prom::enforce::Tenancy {
    use maturity_operator::prom::enforce::Tenancy;
    if single_tenant {
        Tenancy::Single
    } else {
        Tenancy::Enforced { label }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    maturity_operator::duration::parse_duration(s).map_err(|e| e.to_string())
}

/// Logging: which events, in which form; and where spans go.
#[derive(clap::Args, Clone)]
pub struct LogArgs {
    /// Which events to log: a level (error, warn, info, debug, trace) or tracing's
    /// directives, e.g. `info,maturity_operator::canary=debug`. RUST_LOG is read when the
    /// flag is not given.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_level: String,
    /// `json` (one object per line, for log collectors) or `text`.
    #[arg(long, env = "MATURITY_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Export spans (reconcile, kube, prometheus) over OTLP/HTTP to this collector, e.g.
    /// http://otel-collector.monitoring:4318 (`/v1/traces` is added). Needs a build with
    /// the `otlp` feature (the image has it).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

impl Default for LogArgs {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            log_format: "text".into(),
            otlp_endpoint: None,
        }
    }
}

/// Keeps the span exporter until the command ends, then sends what it still holds.
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("maturity-operator: the last spans were not exported: {e}");
        }
    }
}

/// Starts logging to stderr (and span export with --otlp-endpoint); a level that is no
/// filter, or an endpoint this build cannot export to, is a sentence.
fn init_tracing(log: &LogArgs) -> Result<Telemetry, String> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_new(&log.log_level)
        .map_err(|e| format!("--log-level {:?} is not a log filter: {e}", log.log_level))?;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if log.log_format == "json" {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    // The level filters the log only: spans are exported whatever is logged.
    let registry = tracing_subscriber::registry().with(fmt.with_filter(filter));
    #[cfg(feature = "otlp")]
    {
        let (layer, provider) = match &log.otlp_endpoint {
            Some(endpoint) => {
                let (layer, provider) = otlp(endpoint)?;
                (Some(layer), Some(provider))
            }
            None => (None, None),
        };
        registry.with(layer).init();
        Ok(Telemetry { provider })
    }
    #[cfg(not(feature = "otlp"))]
    {
        if let Some(endpoint) = &log.otlp_endpoint {
            return Err(format!(
                "--otlp-endpoint {endpoint}: this build has no OTLP exporter (cargo build --features otlp; the image has it)"
            ));
        }
        registry.init();
        Ok(Telemetry {})
    }
}

/// The OTLP/HTTP exporter of spans to `endpoint`, batched, as service `maturity-operator`.
#[cfg(feature = "otlp")]
fn otlp<S>(
    endpoint: &str,
) -> Result<
    (
        impl tracing_subscriber::Layer<S>,
        opentelemetry_sdk::trace::SdkTracerProvider,
    ),
    String,
>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    use tracing_subscriber::Layer;
    // The exporter's HTTP client uses rustls with the process's provider.
    maturity_operator::prom::init_tls();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| format!("--otlp-endpoint {endpoint}: {e}"))?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("maturity-operator")
                .build(),
        )
        .build();
    let tracer = provider.tracer("maturity-operator");
    // The operator's own spans (reconcile, kube, prometheus), not the libraries' (kube-client's
    // HTTP span is at debug).
    let spans = tracing_subscriber::filter::Targets::new()
        .with_target("maturity_operator", tracing::Level::INFO);
    Ok((
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(spans),
        provider,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag and argument of every command says what it is for in --help.
    #[test]
    fn every_flag_has_help() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in c.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "maturity-operator", &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:?}");
    }

    #[test]
    fn the_plugin_is_named_as_kubectl_calls_it() {
        assert_eq!(
            invoked_as("/usr/local/bin/kubectl-maturity"),
            "kubectl maturity"
        );
        assert_eq!(invoked_as("kubectl-maturity"), "kubectl maturity");
        assert_eq!(
            invoked_as("./target/debug/maturity-operator"),
            "maturity-operator"
        );
        assert_eq!(invoked_as(""), "maturity-operator");
    }

    #[test]
    fn the_test_exporter_is_not_in_the_help() {
        let mut c = Cli::command();
        let help = c.render_help().to_string();
        assert!(!help.contains("synthetic-exporter"), "{help}");
        assert!(help.contains("completion"), "{help}");
    }
}

//! The `maturity-operator` command: `run` the operator, gate CI on an assessment
//! (`check`), print reports, the model, the CRDs and burn-rate rules, or serve the
//! `synthetic-exporter` used by tests and the demo.

mod run;
mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
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
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..=5))]
        min_level: Option<i32>,
        /// A status whose heartbeat is older than this is stale (exit 3): the operator
        /// refreshes it every 10 minutes.
        #[arg(long, default_value = "30m", value_parser = parse_duration)]
        max_age: std::time::Duration,
    },
    /// Give a CanaryPolicy's rollout an order: promote it now, abort it (back to the stable
    /// revision), or resume a held or inconclusive one. Acts with your rights, and status
    /// names you. Exits 0 once done, 1 when the operator refused it (the reason is printed),
    /// 3 when it could not be given or was not answered in time.
    Canary {
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
        #[arg(long, default_value = "weekly", value_parser = ["weekly", "monthly"])]
        period: String,
        /// The JSON form instead of Markdown.
        #[arg(long)]
        json: bool,
    },
    /// Print the maturity model: every practice with its ID, level, titles and evidence.
    Model {
        /// table (default), json or markdown (the catalogue in docs/model.md).
        #[arg(long, short = 'o', default_value = "table", value_parser = ["table", "json", "markdown"])]
        output: String,
    },
    /// Print the CustomResourceDefinitions (YAML); with --out-dir, write one file per kind.
    Crd {
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Print the burn-rate alert rules of the ResponseTimeTargets in the given manifests: a
    /// Prometheus rule file (`promtool check rules` accepts it), or with `-o prometheusrule`
    /// the PrometheusRule objects the operator would write, for GitOps repositories.
    Rules {
        /// rulefile (default) or prometheusrule.
        #[arg(long, short = 'o', default_value = "rulefile", value_parser = ["rulefile", "prometheusrule"])]
        output: String,
        /// A label (KEY=VALUE, repeatable) on every PrometheusRule printed (as the
        /// operator's --prometheus-rule-label), e.g. release=kps.
        #[arg(long, value_delimiter = ',', value_parser = run::k8s_label)]
        prometheus_rule_label: Vec<(String, String)>,
        /// Manifest file(s) with ResponseTimeTargets (other kinds are skipped); `-` reads stdin.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Namespace of targets whose manifest names none.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// The label that scopes every expression to its target's namespace (as the
        /// operator's --tenant-label).
        #[arg(long, default_value = "namespace")]
        tenant_label: String,
        /// Print the expressions unscoped (as the operator's --single-tenant).
        #[arg(long)]
        single_tenant: bool,
    },
    /// Check manifests offline as the cluster would check their create: the CRDs' OpenAPI
    /// schemas, every x-kubernetes-validations rule and the admission webhook's query
    /// checks. Prints one line per refusal in the API server's words and `FILE: <Kind>
    /// <name> is valid` per accepted document (other kinds are skipped with a note on
    /// stderr). Exits 0 when every document is accepted, 1 when one is refused, 2 when a
    /// file cannot be read or parsed.
    Validate {
        /// Manifest file(s) (repeatable); a directory: its *.yaml and *.yml files, sorted;
        /// `-` reads stdin.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Namespace of documents whose manifest names none.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// The label that scopes every user's query to its object's namespace (as the
        /// operator's --tenant-label): a query naming another namespace is refused.
        #[arg(long, default_value = "namespace")]
        tenant_label: String,
        /// Queries are not scoped (as the operator's --single-tenant).
        #[arg(long)]
        single_tenant: bool,
    },
    /// Serve a metrics exporter with steady synthetic traffic (for the demo).
    SyntheticExporter {
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

/// Runs the command.
pub async fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Check {
            assessment,
            namespace,
            min_level,
            max_age,
        } => tools::check(assessment, namespace, min_level, max_age).await,
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
            json,
        } => tools::report(assessment, namespace, period, json).await,
        Command::Model { output } => {
            print!("{}", tools::model_text(&output));
            ExitCode::SUCCESS
        }
        Command::Crd { out_dir } => match tools::write_crds(out_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("maturity-operator crd: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Rules {
            output,
            prometheus_rule_label,
            files,
            namespace,
            tenant_label,
            single_tenant,
        } => match tools::print_rules(
            &files,
            &namespace,
            &tenancy(single_tenant, tenant_label),
            (output == "prometheusrule").then(|| prometheus_rule_label.into_iter().collect()),
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("maturity-operator rules: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Validate {
            files,
            namespace,
            tenant_label,
            single_tenant,
        } => tools::validate(&files, &namespace, &tenancy(single_tenant, tenant_label)),
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

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

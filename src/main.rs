//! The `maturity-operator` command: `run` the operator, print the `crd`s, or serve the
//! `synthetic-exporter` used by tests and the demo.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use maturity_operator::{api, operator, synthetic};
use serde::Deserialize;

#[derive(Parser)]
#[command(
    name = "maturity-operator",
    version,
    about = "Measures how mature a team's operations are, from policies declared as custom resources."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start; boxing the large `run` variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster config).
    Run {
        /// Address serving /metrics, /healthz and /readyz.
        #[arg(long, env = "MATURITY_HTTP_ADDR", default_value = "0.0.0.0:8080")]
        http_addr: SocketAddr,
        /// Timeout of each API call made at start-up, e.g. 10s.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        api_timeout: Duration,
        /// Log as JSON lines instead of text.
        #[arg(long, env = "MATURITY_LOG_JSON")]
        log_json: bool,
        /// Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090.
        #[arg(long, env = "MATURITY_PROMETHEUS_URL")]
        prometheus_url: Option<String>,
        /// Timeout of each Prometheus query.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        prometheus_timeout: Duration,
        /// Prometheus queries in flight at most.
        #[arg(long, default_value_t = 4)]
        prometheus_max_in_flight: usize,
        /// File holding a bearer token for Prometheus (e.g. a mounted Secret).
        #[arg(long, env = "MATURITY_PROMETHEUS_BEARER_TOKEN_FILE")]
        prometheus_bearer_token_file: Option<PathBuf>,
        /// PEM file of the CA that signed Prometheus's certificate (e.g. a mounted Secret).
        #[arg(long, env = "MATURITY_PROMETHEUS_CA_FILE")]
        prometheus_ca_file: Option<PathBuf>,
        /// Basic-auth user for Prometheus; the password comes from MATURITY_PROMETHEUS_PASSWORD.
        #[arg(long, env = "MATURITY_PROMETHEUS_USERNAME")]
        prometheus_username: Option<String>,
        /// How often the evaluation loops look for due work.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        tick: Duration,
        /// Evaluation interval of ResponseTimeTargets that set none.
        #[arg(long, default_value = "1m", value_parser = parse_duration)]
        default_interval: Duration,
        /// Watch and act in this namespace only (default: every namespace).
        #[arg(long, env = "MATURITY_NAMESPACE")]
        namespace: Option<String>,
        /// How often each MaturityAssessment is evaluated again.
        #[arg(long, default_value = "1m", value_parser = parse_duration)]
        assessment_interval: Duration,
        /// Controllers to run: response-time-targets, canaries, drills, assessments (comma-separated) or all.
        #[arg(long, env = "MATURITY_CONTROLLERS", default_value = "all", value_parser = operator::Controllers::parse)]
        controllers: operator::Controllers,
        #[command(flatten)]
        webhook: WebhookArgs,
        #[command(flatten)]
        leader: LeaderArgs,
    },
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
    /// Print the burn-rate alert rules (a Prometheus rule file) of the ResponseTimeTargets in
    /// the given manifests; `promtool check rules` accepts the output.
    Rules {
        /// Manifest file(s) with ResponseTimeTargets (other kinds are skipped); `-` reads stdin.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Namespace of targets whose manifest names none.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
    /// Serve a metrics exporter with steady synthetic traffic (for the demo).
    SyntheticExporter {
        #[arg(long, default_value = "127.0.0.1:9464")]
        addr: SocketAddr,
        /// Series as `label=value,label=value:rps:error_ratio:latency_seconds`; repeatable.
        #[arg(long = "series", value_parser = parse_series)]
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

/// Leader election, for more than one replica.
#[derive(clap::Args)]
struct LeaderArgs {
    /// Elect a leader on a Lease: only the leader reconciles and writes; the others stand by.
    #[arg(long, env = "MATURITY_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the Lease (in a pod: its own namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, default_value = "maturity-operator")]
    leader_election_lease: String,
    /// This process's identity in the Lease (default: the pod name, else host and pid).
    #[arg(long, env = "POD_NAME")]
    leader_election_identity: Option<String>,
    /// A standby takes over when the leader has not renewed for this long.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_election_lease_duration: Duration,
    /// The leader stops when it could not renew for this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_election_renew_deadline: Duration,
    /// How often the leader renews and a standby looks.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_election_retry_period: Duration,
}

impl LeaderArgs {
    fn settings(
        self,
        api_timeout: Duration,
    ) -> Result<Option<maturity_operator::leader::Settings>, String> {
        if !self.leader_election {
            return Ok(None);
        }
        let namespace = match self.leader_election_namespace {
            Some(ns) => ns,
            None => std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .map(|s| s.trim().to_string())
                .map_err(|_| {
                    "--leader-election needs --leader-election-namespace (or POD_NAMESPACE) outside a pod".to_string()
                })?,
        };
        let identity = self.leader_election_identity.unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "maturity-operator".into());
            format!("{host}-{}", std::process::id())
        });
        let settings = maturity_operator::leader::Settings {
            namespace,
            name: self.leader_election_lease,
            identity,
            lease_duration: self.leader_election_lease_duration,
            renew_deadline: self.leader_election_renew_deadline,
            retry_period: self.leader_election_retry_period,
            api_timeout,
        };
        settings.validate()?;
        Ok(Some(settings))
    }
}

/// The admission webhook that holds new templates of Deployments governed by a CanaryPolicy.
#[derive(clap::Args)]
struct WebhookArgs {
    /// Serve the webhook (HTTPS) on this address; without it CanaryPolicies cannot hold a rollout.
    #[arg(long, env = "MATURITY_WEBHOOK_ADDR")]
    webhook_addr: Option<SocketAddr>,
    /// How the API server reaches the webhook: a Service as `namespace/name:port`.
    #[arg(long, env = "MATURITY_WEBHOOK_SERVICE", conflicts_with = "webhook_url")]
    webhook_service: Option<String>,
    /// How the API server reaches the webhook: a base URL, e.g. https://127.0.0.1:9443.
    #[arg(long, env = "MATURITY_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// Name of the MutatingWebhookConfiguration the operator keeps up to date.
    #[arg(long, default_value = "maturity-operator")]
    webhook_configuration: String,
    /// Directory with tls.crt, tls.key and ca.crt (e.g. a mounted Secret); default: a
    /// certificate made at start.
    #[arg(long, env = "MATURITY_WEBHOOK_CERT_DIR")]
    webhook_cert_dir: Option<PathBuf>,
    /// Ignore (Deployments change without a canary while the operator is down) or Fail.
    #[arg(long, default_value = "Ignore", value_parser = ["Ignore", "Fail"])]
    webhook_failure_policy: String,
}

impl WebhookArgs {
    fn config(self, namespace: Option<String>) -> Result<Option<operator::WebhookConfig>, String> {
        use maturity_operator::webhook::{Endpoint, Settings};
        let Some(addr) = self.webhook_addr else {
            return Ok(None);
        };
        let (endpoint, hosts) = match (self.webhook_service, self.webhook_url) {
            (Some(svc), None) => {
                let parsed = svc.split_once('/').and_then(|(ns, rest)| {
                    let (name, port) = rest.split_once(':').unwrap_or((rest, "443"));
                    Some((ns.to_string(), name.to_string(), port.parse::<i32>().ok()?))
                });
                let Some((ns, name, port)) = parsed else {
                    return Err(format!(
                        "--webhook-service {svc:?}: expected namespace/name:port, e.g. maturity/maturity-operator-webhook:443"
                    ));
                };
                let hosts = vec![
                    format!("{name}.{ns}.svc"),
                    format!("{name}.{ns}.svc.cluster.local"),
                ];
                (
                    Endpoint::Service {
                        namespace: ns,
                        name,
                        port,
                    },
                    hosts,
                )
            }
            (None, Some(url)) => {
                let host = url
                    .strip_prefix("https://")
                    .map(|rest| {
                        rest.split(['/', ':'])
                            .next()
                            .unwrap_or_default()
                            .to_string()
                    })
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| {
                        format!("--webhook-url {url:?}: expected https://host[:port]")
                    })?;
                (Endpoint::Url(url), vec![host])
            }
            _ => {
                return Err(
                    "--webhook-addr needs --webhook-service namespace/name:port or --webhook-url https://host:port"
                        .into(),
                );
            }
        };
        Ok(Some(operator::WebhookConfig {
            settings: Settings {
                addr,
                endpoint,
                configuration: self.webhook_configuration,
                namespace,
                failure_policy: self.webhook_failure_policy,
            },
            cert_dir: self.webhook_cert_dir,
            hosts,
        }))
    }
}

fn prometheus_auth(
    token_file: Option<PathBuf>,
    username: Option<String>,
) -> Result<maturity_operator::prom::Auth, String> {
    use maturity_operator::prom::Auth;
    match (token_file, username) {
        (Some(_), Some(_)) => {
            Err("give either a Prometheus bearer token file or a username, not both".into())
        }
        (Some(f), None) => std::fs::read_to_string(&f)
            .map(|t| Auth::Bearer(t.trim().to_string()))
            .map_err(|e| {
                format!(
                    "cannot read the Prometheus bearer token file {}: {e}",
                    f.display()
                )
            }),
        (None, Some(username)) => Ok(Auth::Basic {
            username,
            password: std::env::var("MATURITY_PROMETHEUS_PASSWORD").unwrap_or_default(),
        }),
        (None, None) => Ok(Auth::None),
    }
}

fn model_text(output: &str) -> String {
    use maturity_operator::model::{Capability, PRACTICES, level_name, markdown};
    match output {
        "json" => serde_json::to_string_pretty(PRACTICES).unwrap_or_default() + "\n",
        "markdown" => markdown(),
        _ => {
            let mut out = String::new();
            for c in Capability::ALL {
                out.push_str(&format!("{} {} ({})\n", c.id(), c.title(), c.title_zh()));
                for p in PRACTICES.iter().filter(|p| p.capability == c) {
                    out.push_str(&format!(
                        "  {:<8} L{} {:<22} {:<9} {}\n",
                        p.id,
                        p.level,
                        level_name(p.level),
                        format!("{:?}", p.evidence),
                        p.title
                    ));
                }
            }
            out
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    maturity_operator::duration::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_series(s: &str) -> Result<(synthetic::Labels, synthetic::Traffic), String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [labels, rps, err, lat] = parts.as_slice() else {
        return Err(format!(
            "{s:?}: expected labels:rps:error_ratio:latency_seconds, e.g. service=checkout:20:0.01:0.05"
        ));
    };
    let mut l = synthetic::Labels::new();
    for pair in labels.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not label=value"))?;
        l.insert(k.to_string(), v.to_string());
    }
    let num = |x: &str, what: &str| {
        x.parse::<f64>()
            .map_err(|_| format!("{what} {x:?} is not a number"))
    };
    Ok((
        l,
        synthetic::Traffic::steady(
            num(rps, "rps")?,
            num(err, "error ratio")?,
            num(lat, "latency")?,
        ),
    ))
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

#[tokio::main]
async fn main() -> ExitCode {
    maturity_operator::prom::init_tls();
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            http_addr,
            api_timeout,
            log_json,
            prometheus_url,
            prometheus_timeout,
            prometheus_max_in_flight,
            prometheus_bearer_token_file,
            prometheus_ca_file,
            prometheus_username,
            tick,
            default_interval,
            namespace,
            assessment_interval,
            controllers,
            webhook,
            leader,
        } => {
            init_tracing(log_json);
            let auth = match prometheus_auth(prometheus_bearer_token_file, prometheus_username) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("maturity-operator: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let mut prometheus =
                maturity_operator::prom::PromConfig::new(prometheus_url.unwrap_or_default());
            prometheus.timeout = prometheus_timeout;
            prometheus.max_in_flight = prometheus_max_in_flight;
            prometheus.auth = auth;
            prometheus.ca_file = prometheus_ca_file;
            let webhook = match webhook.config(namespace.clone()) {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("maturity-operator: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let leader_election = match leader.settings(api_timeout) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("maturity-operator: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match operator::run(operator::RunConfig {
                http_addr,
                api_timeout,
                prometheus,
                tick,
                default_interval,
                namespace,
                assessment_interval,
                controllers,
                webhook,
                leader_election,
            })
            .await
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("maturity-operator: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check {
            assessment,
            namespace,
            min_level,
        } => {
            let client = match kube::Client::try_default().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("maturity-operator check: cannot build a Kubernetes client: {e}");
                    return ExitCode::from(maturity_operator::check::EXIT_UNKNOWN);
                }
            };
            let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_string());
            let (code, text) =
                maturity_operator::check::check(client, &namespace, &assessment, min_level).await;
            print!("{text}");
            ExitCode::from(code)
        }
        Command::Report {
            assessment,
            namespace,
            period,
            json,
        } => {
            let key = format!("{period}.{}", if json { "json" } else { "md" });
            let text = async {
                let client = kube::Client::try_default()
                    .await
                    .map_err(|e| format!("cannot build a Kubernetes client: {e}"))?;
                let namespace = namespace
                    .clone()
                    .unwrap_or_else(|| client.default_namespace().to_string());
                let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
                    kube::Api::namespaced(client, &namespace);
                let name = format!("{assessment}-report");
                let cm = cms
                    .get_opt(&name)
                    .await
                    .map_err(|e| format!("cannot read ConfigMap {namespace}/{name}: {e}"))?
                    .ok_or_else(|| format!("no report yet: ConfigMap {namespace}/{name} does not exist (enable spec.reports or annotate maturity.sre.dev/report-now)"))?;
                cm.data
                    .and_then(|d| d.get(&key).cloned())
                    .ok_or_else(|| format!("no {period} report in ConfigMap {namespace}/{name} yet"))
            }
            .await;
            match text {
                Ok(t) => {
                    print!("{t}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("maturity-operator report: {e}");
                    ExitCode::from(maturity_operator::check::EXIT_UNKNOWN)
                }
            }
        }
        Command::Model { output } => {
            print!("{}", model_text(&output));
            ExitCode::SUCCESS
        }
        Command::Crd { out_dir } => match write_crds(out_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("maturity-operator crd: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Rules { files, namespace } => match print_rules(&files, &namespace) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("maturity-operator rules: {e}");
                ExitCode::FAILURE
            }
        },
        Command::SyntheticExporter {
            addr,
            series,
            follow_namespace,
            image_errors,
        } => {
            init_tracing(false);
            let exporter = match synthetic::SyntheticExporter::start(addr).await {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("maturity-operator synthetic-exporter: cannot listen on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            for (labels, traffic) in series {
                exporter.set_traffic(labels, traffic);
            }
            tracing::info!(addr = %exporter.addr(), "synthetic exporter serving /metrics");
            let exporter = std::sync::Arc::new(exporter);
            if let Some(ns) = follow_namespace {
                let client = match kube::Client::try_default().await {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!(
                            "maturity-operator synthetic-exporter: cannot build a Kubernetes client for --follow-namespace: {e}"
                        );
                        return ExitCode::FAILURE;
                    }
                };
                let behaviour = synthetic::follow::Behaviour {
                    rules: image_errors,
                };
                tokio::spawn(synthetic::follow::follow(
                    client,
                    ns,
                    exporter.clone(),
                    behaviour,
                ));
            }
            let _ = tokio::signal::ctrl_c().await;
            ExitCode::SUCCESS
        }
    }
}

fn print_rules(files: &[PathBuf], namespace: &str) -> Result<(), Box<dyn std::error::Error>> {
    use maturity_operator::api::ResponseTimeTarget;
    let mut targets = Vec::new();
    for file in files {
        let text = if file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())?
        } else {
            std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?
        };
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .map_err(|e| format!("{} is not YAML: {e}", file.display()))?;
            if value.get("kind").and_then(|k| k.as_str()) != Some("ResponseTimeTarget") {
                continue;
            }
            let mut target: ResponseTimeTarget = serde_yaml::from_value(value)
                .map_err(|e| format!("{}: not a valid ResponseTimeTarget: {e}", file.display()))?;
            if target.metadata.namespace.is_none() {
                target.metadata.namespace = Some(namespace.to_string());
            }
            targets.push(target);
        }
    }
    let rules = maturity_operator::slo::rules::rule_file(&targets)?;
    print!("{}", serde_yaml::to_string(&rules)?);
    Ok(())
}

fn write_crds(out_dir: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    match out_dir {
        None => print!("{}", api::all_crds_yaml()?),
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for (file, crd) in api::crds() {
                std::fs::write(dir.join(file), api::crd_yaml(&crd)?)?;
            }
        }
    }
    Ok(())
}

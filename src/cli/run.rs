//! `maturity-operator run`: the operator's flags, made into its settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use maturity_operator::operator;

use super::{init_tracing, parse_duration};

/// Where the author key Secret is kept when the operator runs outside a pod and is not told.
const OUTSIDE_A_POD: &str = "kube-system";

/// The flags of `run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Address serving /metrics, /healthz and /readyz.
    #[arg(long, env = "MATURITY_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    #[command(flatten)]
    metrics: MetricsArgs,
    /// Timeout of each API call made at start-up, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    api_timeout: Duration,
    #[command(flatten)]
    log: super::LogArgs,
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
    /// A ResponseTimeTarget's status is written at most once per this period while no
    /// condition changes (figures that only moved wait; a transition is written at once).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    status_period: Duration,
    /// ResponseTimeTarget status writes in flight at most.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    status_writes_in_flight: u16,
    /// Watch and act in this namespace only (default: every namespace).
    #[arg(long, env = "MATURITY_NAMESPACE")]
    namespace: Option<String>,
    /// How often each MaturityAssessment is evaluated again.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    assessment_interval: Duration,
    /// Controllers to run: response-time-targets, canaries, drills, assessments (comma-separated) or all.
    #[arg(long, env = "MATURITY_CONTROLLERS", default_value = "all", value_parser = operator::Controllers::parse)]
    controllers: operator::Controllers,
    /// Every query a user writes (canary metrics, drill checks, assessment signals) reads
    /// only series whose label of this name is the object's namespace.
    #[arg(long, env = "MATURITY_TENANT_LABEL", default_value = "namespace", value_parser = label_name)]
    tenant_label: String,
    /// One team per cluster: send users' queries as written, unscoped (turns the
    /// namespace enforcement off), and act for drills and canaries with the operator's own
    /// rights instead of their authors'.
    #[arg(long, env = "MATURITY_SINGLE_TENANT")]
    single_tenant: bool,
    /// The operator's own namespace: its Lease and the Secret with the key of the authors'
    /// proofs (default: the pod's namespace; outside a pod the Secret goes to kube-system).
    #[arg(long, env = "POD_NAMESPACE")]
    operator_namespace: Option<String>,
    /// The Secret (in the operator's namespace) with the key of the authors' proofs; made
    /// at the first start.
    #[arg(long, default_value = maturity_operator::api::names::AUTHOR_KEY_SECRET)]
    author_key_secret: String,
    /// Hosts (`host` or `host:port`, comma-separated) that assessments' reports may be
    /// delivered to (`spec.reports.webhook`); empty: none, so no report counts as delivered.
    #[arg(long, env = "MATURITY_REPORT_WEBHOOK_HOSTS", value_delimiter = ',')]
    report_webhook_hosts: Vec<String>,
    /// Hosts (`host` or `host:port`, comma-separated) that CanaryPolicies' hooks may call
    /// (`spec.hooks[].url`); empty: none, so a policy with hooks is not used.
    #[arg(long, env = "MATURITY_CANARY_HOOK_HOSTS", value_delimiter = ',')]
    canary_hook_hosts: Vec<String>,
    /// A label (KEY=VALUE, repeatable or comma-separated) on every PrometheusRule the
    /// operator writes, e.g. release=kps: what the Prometheus's `ruleSelector` selects
    /// (kube-prometheus-stack selects `release: <its release name>`).
    #[arg(long, env = "MATURITY_PROMETHEUS_RULE_LABELS", value_delimiter = ',', value_parser = k8s_label)]
    prometheus_rule_label: Vec<(String, String)>,
    /// How long a written PrometheusRule may take to show in Prometheus's rules API before
    /// its target says AlertsLoaded=False (reason NotLoaded).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    rules_load_grace: Duration,
    /// Base URL of the Alertmanager that notifies of the generated alerts, e.g.
    /// http://alertmanager-operated.monitoring:9093: assessments read its routes (where a
    /// namespace's alerts go) and, from Prometheus, its notification counters.
    #[arg(long, env = "MATURITY_ALERTMANAGER_URL", value_parser = http_url)]
    alertmanager_url: Option<String>,
    #[command(flatten)]
    webhook: WebhookArgs,
    #[command(flatten)]
    leader: LeaderArgs,
}

/// Runs the operator until SIGTERM / Ctrl-C; a bad flag or an unusable cluster is a
/// sentence on stderr and exit 1.
pub async fn run(args: RunArgs) -> ExitCode {
    let RunArgs {
        http_addr,
        metrics,
        api_timeout,
        log,
        prometheus_url,
        prometheus_timeout,
        prometheus_max_in_flight,
        prometheus_bearer_token_file,
        prometheus_ca_file,
        prometheus_username,
        tick,
        default_interval,
        status_period,
        status_writes_in_flight,
        namespace,
        assessment_interval,
        controllers,
        tenant_label,
        single_tenant,
        operator_namespace,
        author_key_secret,
        report_webhook_hosts,
        canary_hook_hosts,
        prometheus_rule_label,
        rules_load_grace,
        alertmanager_url,
        webhook,
        leader,
    } = args;
    let operator_namespace = operator_namespace.or_else(|| {
        std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            .ok()
            .map(|s| s.trim().to_string())
    });
    let _telemetry = match init_tracing(&log) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("maturity-operator run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let settings = (|| -> Result<_, String> {
        let metrics = metrics.serving(http_addr)?;
        let mut prometheus =
            maturity_operator::prom::PromConfig::new(prometheus_url.unwrap_or_default());
        prometheus.timeout = prometheus_timeout;
        prometheus.max_in_flight = prometheus_max_in_flight;
        prometheus.auth = prometheus_auth(prometheus_bearer_token_file, prometheus_username)?;
        prometheus.ca_file = prometheus_ca_file;
        let webhook = webhook.config(namespace.clone())?;
        let leader_election = leader.settings(api_timeout, operator_namespace.clone())?;
        let authors = operator::AuthorsConfig {
            checked: !single_tenant,
            namespace: operator_namespace.unwrap_or_else(|| OUTSIDE_A_POD.into()),
            secret: author_key_secret,
        };
        Ok((metrics, prometheus, webhook, leader_election, authors))
    })();
    let (metrics, prometheus, webhook, leader_election, authors) = match settings {
        Ok(s) => s,
        Err(e) => {
            eprintln!("maturity-operator: {e}");
            return ExitCode::FAILURE;
        }
    };
    match operator::run(operator::RunConfig {
        http_addr,
        metrics,
        api_timeout,
        prometheus,
        tick,
        default_interval,
        status_period,
        status_writes_in_flight,
        namespace,
        assessment_interval,
        controllers,
        webhook,
        leader_election,
        tenancy: super::tenancy(single_tenant, tenant_label),
        authors,
        report_hosts: report_webhook_hosts,
        canary_hook_hosts,
        rule_labels: prometheus_rule_label.into_iter().collect(),
        rules_load_grace,
        alertmanager_url,
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

/// Who may read /metrics, and whether it is served over HTTPS.
#[derive(clap::Args)]
struct MetricsArgs {
    /// kubernetes: /metrics needs a bearer token of a user the API server allows to get
    /// the non-resource URL /metrics (TokenReview and SubjectAccessReview); none: no check,
    /// allowed only when --http-addr is a loopback address.
    #[arg(long, env = "MATURITY_METRICS_AUTH", default_value = "kubernetes", value_parser = ["kubernetes", "none"])]
    metrics_auth: String,
    /// Serve --http-addr (the probes too) over HTTPS: on or off (default: on with
    /// --metrics-auth kubernetes, so tokens never cross the network in the clear, or with
    /// --metrics-cert-dir; off otherwise).
    #[arg(long, env = "MATURITY_METRICS_TLS", value_parser = ["on", "off"])]
    metrics_tls: Option<String>,
    /// Directory with tls.crt and tls.key (e.g. a mounted Secret) for HTTPS; default: a
    /// certificate made at start.
    #[arg(long, env = "MATURITY_METRICS_CERT_DIR")]
    metrics_cert_dir: Option<PathBuf>,
}

impl MetricsArgs {
    fn serving(self, http_addr: SocketAddr) -> Result<operator::MetricsServing, String> {
        use operator::metrics_auth::{Mode, check_bind};
        let auth = Mode::parse(&self.metrics_auth)?;
        check_bind(auth, http_addr)?;
        let tls_on = match self.metrics_tls.as_deref() {
            Some("on") => true,
            Some(_) => false,
            None => auth == Mode::Kubernetes || self.metrics_cert_dir.is_some(),
        };
        let tls = match (tls_on, self.metrics_cert_dir) {
            (false, Some(_)) => {
                return Err(
                    "--metrics-cert-dir gives a certificate for HTTPS, which --metrics-tls off turns off: drop one of them".into(),
                );
            }
            (false, None) => None,
            (true, Some(dir)) => Some(operator::MetricsTls::Dir(dir)),
            (true, None) => Some(operator::MetricsTls::SelfSigned),
        };
        Ok(operator::MetricsServing { auth, tls })
    }
}

/// Leader election, for more than one replica.
#[derive(clap::Args)]
struct LeaderArgs {
    /// Elect a leader on a Lease: only the leader reconciles and writes; the others stand by.
    #[arg(long, env = "MATURITY_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the Lease (default: the operator's namespace).
    #[arg(long)]
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
        operator_namespace: Option<String>,
    ) -> Result<Option<maturity_operator::leader::Settings>, String> {
        if !self.leader_election {
            return Ok(None);
        }
        let namespace = self
            .leader_election_namespace
            .or(operator_namespace)
            .ok_or_else(|| {
                "--leader-election needs --leader-election-namespace (or --operator-namespace, POD_NAMESPACE) outside a pod".to_string()
            })?;
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
    /// Name of the MutatingWebhookConfiguration the operator creates and keeps up to date,
    /// with the CA of its certificate (out of cluster, e.g. on a local control plane).
    /// Without it the operator registers nothing: the Helm chart renders the configuration.
    #[arg(long, env = "MATURITY_WEBHOOK_CONFIGURATION")]
    webhook_configuration: Option<String>,
    /// Directory with tls.crt, tls.key and ca.crt (e.g. a mounted Secret); default: a
    /// certificate made at start.
    #[arg(long, env = "MATURITY_WEBHOOK_CERT_DIR")]
    webhook_cert_dir: Option<PathBuf>,
    /// PEM file of the CA that signed the API server's client certificate for webhooks (its
    /// AdmissionConfiguration's kubeConfigFile): callers without such a certificate are
    /// refused at the TLS handshake. Default: any caller.
    #[arg(long, env = "MATURITY_WEBHOOK_CLIENT_CA_FILE")]
    webhook_client_ca_file: Option<PathBuf>,
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
            client_ca_file: self.webhook_client_ca_file,
            hosts,
        }))
    }
}

pub(super) fn prometheus_auth(
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

/// A Kubernetes label `KEY=VALUE`: KEY an optional DNS-subdomain prefix and `/`, then a
/// name of at most 63 characters; VALUE at most 63 characters (may be empty). Both names
/// and values start and end with a letter or digit and have `-`, `_` or `.` between.
pub(super) fn k8s_label(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    let segment = |part: &str, max: usize| {
        !part.is_empty()
            && part.len() <= max
            && part.starts_with(|c: char| c.is_ascii_alphanumeric())
            && part.ends_with(|c: char| c.is_ascii_alphanumeric())
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        p.len() <= 253
            && p.split('.').all(|l| {
                segment(l, 63)
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    });
    if !prefix_ok || !segment(name, 63) {
        return Err(format!(
            "{key:?} is not a label key (an optional DNS-subdomain prefix and '/', then up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
        ));
    }
    if !value.is_empty() && !segment(value, 63) {
        return Err(format!(
            "{value:?} is not a label value (up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// An `http://` or `https://` URL.
fn http_url(s: &str) -> Result<String, String> {
    match reqwest::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(s.to_string()),
        _ => Err(format!("{s:?} is not an http:// or https:// URL")),
    }
}

fn label_name(s: &str) -> Result<String, String> {
    let mut chars = s.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::k8s_label;

    #[test]
    fn rule_labels_are_kubernetes_labels_and_a_bad_one_says_why() {
        let ok = |s: &str, k: &str, v: &str| assert_eq!(k8s_label(s), Ok((k.into(), v.into())));
        ok("release=kps", "release", "kps");
        ok("prometheus.io/rules=main", "prometheus.io/rules", "main");
        ok("empty=", "empty", "");
        for (bad, says) in [
            ("release", "is not KEY=VALUE"),
            ("=kps", "is not a label key"),
            ("-release=kps", "is not a label key"),
            ("Bad.Prefix/x=y", "is not a label key"),
            ("release=kps!", "is not a label value"),
            (
                &format!("release={}", "a".repeat(64)),
                "is not a label value",
            ),
        ] {
            let err = k8s_label(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}

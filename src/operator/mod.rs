//! The `run` command: connects to the cluster, checks the CRDs are installed, watches
//! the four kinds, serves `/metrics` (to callers the API server allows, see
//! [`metrics_auth`]), `/healthz` and `/readyz` ([`server`]), and stops cleanly on SIGTERM
//! or Ctrl-C.

pub mod metrics_auth;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// How long a stop (SIGTERM, or a lost leadership) waits for the controllers, the lease
/// release and the HTTP server to end before the process exits anyway: well within a Pod's
/// default termination grace period (30 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

use futures::StreamExt;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use kube::runtime::reflector::{self, Store};

use crate::api::{CanaryPolicy, DrillSchedule, MaturityAssessment, ResponseTimeTarget};
use crate::authz::Authors;
use crate::clock::Clock;
use crate::controllers::Context;
use crate::controllers::canary_policy as canary;
use crate::controllers::drill_schedule as drill;
use crate::controllers::maturity_assessment as assessment;
use crate::controllers::response_time_target as rtt;
use crate::k8s::{Fence, Kube};
use crate::metrics::Metrics;
use crate::prom::{PromClient, PromConfig};

pub use server::{MetricsServing, MetricsTls};

/// Why the operator could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot build a Kubernetes client ({0}); set KUBECONFIG or run inside a cluster with a service account"
    )]
    Config(#[source] kube::Error),
    #[error(
        "the custom resource definitions are not installed: {missing} not served by the API server; install them with `maturity-operator crd | kubectl apply -f -` (or `kubectl apply -f crds/`)"
    )]
    CrdsMissing { missing: String },
    #[error("cannot reach the Kubernetes API server: {0}")]
    Api(#[source] kube::Error),
    #[error("cannot serve HTTP on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install the signal handler: {0}")]
    Signal(#[source] std::io::Error),
    #[error("invalid Prometheus settings: {0}")]
    Prometheus(#[source] crate::prom::QueryError),
    #[error(transparent)]
    Webhook(#[from] crate::webhook::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::Error),
    #[error(
        "cannot learn the operator's own identity from the API server (a SelfSubjectReview: {0}); the admission webhook needs it to tell the operator's own rollbacks from a user's template change"
    )]
    Identity(#[source] crate::k8s::Error),
    #[error(
        "cannot read or make the key of the authors' proofs (Secret {secret}): {source}; the operator needs get and create on Secrets in its namespace"
    )]
    AuthorKey {
        secret: String,
        #[source]
        source: crate::k8s::Error,
    },
    #[error(
        "lost the leader lease (could not renew it in time, or another process took it over); stopped so that a restart comes back as a standby"
    )]
    LostLeadership,
}

/// Settings of `maturity-operator run`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub http_addr: SocketAddr,
    /// Who may read `/metrics`, and over HTTPS or not.
    pub metrics: MetricsServing,
    /// Timeout of each API call.
    pub api_timeout: Duration,
    /// The Prometheus every measurement comes from.
    pub prometheus: PromConfig,
    /// How often the ResponseTimeTarget loop looks for due groups.
    pub tick: Duration,
    /// Evaluation interval of targets that set none.
    pub default_interval: Duration,
    /// How long a ResponseTimeTarget's moved figures wait for a write.
    pub status_period: Duration,
    /// ResponseTimeTarget status writes in flight at most.
    pub status_writes_in_flight: u16,
    /// Watch and act in this namespace only (None: every namespace).
    pub namespace: Option<String>,
    /// How often each MaturityAssessment is evaluated again.
    pub assessment_interval: Duration,
    /// Which controllers run.
    pub controllers: Controllers,
    /// The admission webhook that holds new templates of governed Deployments (None: off;
    /// CanaryPolicies then cannot hold a rollout).
    pub webhook: Option<WebhookConfig>,
    /// Leader election on a Lease (None: this process always acts; run one replica only).
    pub leader_election: Option<crate::leader::Settings>,
    /// How queries written by users are scoped to their object's namespace.
    pub tenancy: crate::prom::enforce::Tenancy,
    /// Whose rights drills and canaries act with.
    pub authors: AuthorsConfig,
    /// Hosts assessments' reports may be delivered to (`host` or `host:port`).
    pub report_hosts: Vec<String>,
    /// Hosts CanaryPolicies' hooks may call (`host` or `host:port`).
    pub canary_hook_hosts: Vec<String>,
    /// Labels of every PrometheusRule the operator writes (what a Prometheus's
    /// `ruleSelector` selects, e.g. `release: kps`).
    pub rule_labels: std::collections::BTreeMap<String, String>,
    /// How long a written PrometheusRule may take to show in Prometheus's rules API before
    /// its target says `AlertsLoaded=False NotLoaded`.
    pub rules_load_grace: Duration,
    /// The Alertmanager whose routes and notifications assessments read (ORG-2.3, ORG-5.2,
    /// RESP-2.2).
    pub alertmanager_url: Option<String>,
}

/// Whose rights drills and canaries act with, and where the key of the webhook's proofs is.
#[derive(Debug, Clone)]
pub struct AuthorsConfig {
    /// false (`--single-tenant`): act for drills and canaries with the operator's own rights.
    pub checked: bool,
    /// The Secret with the key of the proofs (of authors, attestations and exemptions).
    pub namespace: String,
    pub secret: String,
}

/// Which controllers run (the chart has a switch for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Controllers {
    pub response_time_targets: bool,
    pub canaries: bool,
    pub drills: bool,
    pub assessments: bool,
}

impl Controllers {
    pub const ALL: Controllers = Controllers {
        response_time_targets: true,
        canaries: true,
        drills: true,
        assessments: true,
    };

    /// From a comma-separated list of `response-time-targets`, `canaries`, `drills`,
    /// `assessments` (or `all`).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut c = Controllers {
            response_time_targets: false,
            canaries: false,
            drills: false,
            assessments: false,
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "all" => c = Self::ALL,
                "response-time-targets" => c.response_time_targets = true,
                "canaries" => c.canaries = true,
                "drills" => c.drills = true,
                "assessments" => c.assessments = true,
                other => {
                    return Err(format!(
                        "unknown controller {other:?}: use response-time-targets, canaries, drills, assessments or all"
                    ));
                }
            }
        }
        if c == (Controllers {
            response_time_targets: false,
            canaries: false,
            drills: false,
            assessments: false,
        }) {
            return Err("name at least one controller".into());
        }
        Ok(c)
    }
}

/// The webhook's settings and where its certificate comes from.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub settings: crate::webhook::Settings,
    /// `tls.crt`, `tls.key`, `ca.crt` (a mounted Secret); None: made at start for `hosts`.
    pub cert_dir: Option<std::path::PathBuf>,
    /// The CA of the API server's client certificate; None: any caller is answered.
    pub client_ca_file: Option<std::path::PathBuf>,
    pub hosts: Vec<String>,
}

struct Shared {
    metrics: Metrics,
    /// Kinds whose initial list has completed; ready when all `expected` are.
    synced: AtomicUsize,
    expected: AtomicUsize,
    /// Controllers whose task ended before the operator was told to stop: not ready.
    stopped: std::sync::Mutex<Vec<&'static str>>,
}

/// Fails with [`Error::CrdsMissing`] naming every kind the API server does not serve.
pub async fn check_crds(client: &Client, timeout: Duration) -> Result<(), Error> {
    let mut missing = Vec::new();
    for (kind, plural, result) in [
        probe::<ResponseTimeTarget>(client, timeout).await,
        probe::<CanaryPolicy>(client, timeout).await,
        probe::<DrillSchedule>(client, timeout).await,
        probe::<MaturityAssessment>(client, timeout).await,
    ] {
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {
                missing.push(format!("{kind} ({plural}.{})", crate::api::common::GROUP))
            }
            Err(e) => return Err(Error::Api(e)),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::CrdsMissing {
            missing: missing.join(", "),
        })
    }
}

async fn probe<K>(
    client: &Client,
    timeout: Duration,
) -> (&'static str, &'static str, Result<(), kube::Error>)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let kind = kind_name::<K>();
    let plural = plural_name::<K>();
    let api: Api<K> = Api::all(client.clone());
    let result =
        match tokio::time::timeout(timeout, api.list_metadata(&ListParams::default().limit(1)))
            .await
        {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(kube::Error::Service(
                format!("listing {plural} timed out after {timeout:?}").into(),
            )),
        };
    (kind, plural, result)
}

fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    static_str(K::kind(&()))
}

fn plural_name<K: Resource<DynamicType = ()>>() -> &'static str {
    static_str(K::plural(&()))
}

/// The derive gives static names behind a Cow; an owned one would be a bug elsewhere.
fn static_str(name: std::borrow::Cow<'static, str>) -> &'static str {
    match name {
        std::borrow::Cow::Borrowed(s) => s,
        std::borrow::Cow::Owned(_) => "unknown",
    }
}

/// Runs until SIGTERM / Ctrl-C. Returns an error, never panics, when the cluster is not usable.
pub async fn run(config: RunConfig) -> Result<(), Error> {
    let client = Client::try_default().await.map_err(Error::Config)?;
    check_crds(&client, config.api_timeout).await?;
    // The key proves authors (drills and canaries, unless single-tenant) and the webhook's
    // records of attestations and exemptions (assessments, when the webhook runs).
    let a = &config.authors;
    let check_authors = a.checked && (config.controllers.drills || config.controllers.canaries);
    let record_evidence = config.controllers.assessments && config.webhook.is_some();
    let key = match check_authors || record_evidence {
        true => Some(
            crate::k8s::authz::author_key(&client, &a.namespace, &a.secret, config.api_timeout)
                .await
                .map_err(|source| Error::AuthorKey {
                    secret: format!("{}/{}", a.namespace, a.secret),
                    source,
                })?,
        ),
        false => None,
    };
    let authors = match (&key, check_authors) {
        (Some(key), true) => Authors::Checked(key.clone()),
        _ => Authors::Unchecked,
    };
    let evidence_key = key.filter(|_| record_evidence);
    if config.controllers.assessments && config.webhook.is_none() {
        tracing::warn!(
            "no admission webhook (--webhook-addr): no attestation or exemption is recorded, so none counts toward the level"
        );
    }
    if matches!(authors, Authors::Checked(_)) && config.webhook.is_none() {
        tracing::warn!(
            "no admission webhook (--webhook-addr): no author is recorded, so no drill runs and no canary acts; give --webhook-addr, or --single-tenant"
        );
    }

    let shared = Arc::new(Shared {
        metrics: Metrics::new(),
        synced: AtomicUsize::new(0),
        expected: AtomicUsize::new(usize::MAX),
        stopped: Default::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);

    let (_, http_server) = server::serve(
        config.http_addr,
        &config.metrics,
        shared.clone(),
        &client,
        stop_rx.clone(),
    )
    .await?;

    let prom = PromClient::new(config.prometheus.clone(), shared.metrics.clone())
        .map_err(Error::Prometheus)?;
    let ns = config.namespace.as_deref();
    let on = config.controllers;
    let mut watchers = Vec::new();
    shared.expected.store(0, Ordering::SeqCst);

    // The webhook answers on every replica, a standby too (the Service routes to any ready
    // pod), from its own cache of the policies; it only reads.
    // It holds canaries' new templates, and records the authors of drills and policies.
    let record_authors = matches!(authors, Authors::Checked(_));
    if let Some(w) = config
        .webhook
        .as_ref()
        .filter(|_| on.canaries || (on.drills && record_authors) || evidence_key.is_some())
    {
        shared.expected.fetch_add(1, Ordering::SeqCst);
        let (policies, _, task) = spawn_reflector::<CanaryPolicy>(&client, ns, &shared, &stop_rx);
        watchers.push(task);
        let certs = match &w.cert_dir {
            // The CA is needed only to register the configuration (else the chart or
            // cert-manager's cainjector puts it there).
            Some(dir) => {
                crate::webhook::Certs::from_dir("webhook", dir, w.settings.configuration.is_some())?
            }
            None => crate::webhook::Certs::generate("webhook", &w.hosts)?,
        };
        let certs = match &w.client_ca_file {
            Some(file) => certs.require_clients_of(file)?,
            None => certs,
        };
        // Only the operator's own identity, under its field manager, is let through unheld.
        let me = crate::k8s::identity(&client, config.api_timeout)
            .await
            .map_err(Error::Identity)?;
        tracing::info!(identity = %me, "the webhook lets through unheld only this identity's rollbacks");
        let (_, task) = crate::webhook::serve(
            &w.settings,
            &certs,
            policies,
            shared.metrics.clone(),
            crate::webhook::Checks {
                operator: Some(me),
                authors: authors.clone(),
                tenancy: config.tenancy.clone(),
                evidence: evidence_key.clone().map(|key| crate::webhook::Evidence {
                    key,
                    client: client.clone(),
                    timeout: config.api_timeout,
                }),
            },
            stop_rx.clone(),
        )
        .await?;
        watchers.push(task);
        if let Some(name) = &w.settings.configuration {
            crate::webhook::register(
                &client,
                &w.settings,
                name,
                &certs.ca_pem,
                crate::webhook::Duties {
                    canaries: on.canaries,
                    authors: record_authors,
                    evidence: evidence_key.is_some(),
                },
            )
            .await?;
            tracing::info!(configuration = %name, "admission webhook registered");
        }
    }

    let mut signal = std::pin::pin!(shutdown_signal());
    // The election stops last: the lease is released only once the controllers have
    // stopped, so a standby never acts next to a leader still finishing a reconcile.
    let (election_stop, election_stop_rx) = watch::channel(false);
    let mut election = None;
    let clock = Clock::system();
    let fence = match config.leader_election {
        Some(_) => Fence::closed(),
        None => Fence::open(),
    };
    let mut role = match config.leader_election.clone() {
        Some(settings) => {
            let (role, task) = crate::leader::spawn(
                client.clone(),
                settings,
                shared.metrics.clone(),
                fence.clone(),
                clock.clone(),
                election_stop_rx,
            );
            election = Some(task);
            Some(role)
        }
        None => {
            shared.metrics.leader.set(1);
            None
        }
    };
    let mut deposed = false;
    let mut leading = true;
    if let Some(role) = role.as_mut() {
        tracing::info!("waiting for the leader lease");
        tokio::select! {
            r = &mut signal => { r?; leading = false; }
            r = role.wait_for(|r| *r != crate::leader::Role::Standby) => {
                deposed = !matches!(r.as_deref(), Ok(crate::leader::Role::Leader));
                leading = !deposed;
            }
        }
    }
    if leading {
        let ctx = Arc::new(Context::new(
            Kube::new(
                client.clone(),
                fence,
                config.api_timeout,
                shared.metrics.clone(),
            ),
            prom.clone(),
            shared.metrics.clone(),
            clock,
            crate::controllers::Settings {
                namespace: config.namespace.clone(),
                assessment_interval: config.assessment_interval,
                tick: config.tick,
                default_interval: config.default_interval,
                status_period: config.status_period,
                status_writes_in_flight: config.status_writes_in_flight,
                tenancy: config.tenancy.clone(),
                authors: authors.clone(),
                evidence_key: evidence_key.clone(),
                report_hosts: config.report_hosts.clone(),
                canary_hook_hosts: config.canary_hook_hosts.clone(),
                rules_namespace: config
                    .namespace
                    .clone()
                    .unwrap_or_else(|| config.authors.namespace.clone()),
                rule_labels: config.rule_labels.clone(),
                rules_load_grace: config.rules_load_grace,
                alertmanager_url: config.alertmanager_url.clone(),
            },
        ));
        start_controllers(&config, &ctx, &shared, &stop_rx, &mut watchers);
        match role.as_mut() {
            Some(role) => tokio::select! {
                r = &mut signal => r?,
                _ = role.wait_for(|r| *r == crate::leader::Role::Deposed) => deposed = true,
            },
            None => signal.await?,
        }
    }

    tracing::info!("shutting down");
    let graceful = async {
        let _ = stop_tx.send(true);
        for w in watchers {
            let _ = w.await;
        }
        let _ = election_stop.send(true);
        if let Some(task) = election {
            let _ = task.await;
        }
        if let Err(e) = http_server.await {
            tracing::warn!(error = %e, "HTTP server task failed");
        }
    };
    // A deposed leader must not linger (its writes are fenced already), nor a stopping
    // process wait past its grace on a call or connection that does not end.
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful)
        .await
        .is_err()
    {
        tracing::error!(
            "the shutdown did not finish within {SHUTDOWN_GRACE:?}; exiting without waiting further"
        );
    }
    if deposed {
        return Err(Error::LostLeadership);
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts the enabled controllers (on the leader, or at once without leader election).
fn start_controllers(
    config: &RunConfig,
    ctx: &Arc<Context>,
    shared: &Arc<Shared>,
    stop_rx: &watch::Receiver<bool>,
    watchers: &mut Vec<tokio::task::JoinHandle<()>>,
) {
    let on = config.controllers;
    let expected = [
        on.response_time_targets,
        on.canaries,
        on.drills,
        on.assessments,
    ]
    .iter()
    .filter(|x| **x)
    .count();
    shared.expected.fetch_add(expected, Ordering::SeqCst);
    if on.response_time_targets {
        let (rtt_store, rtt_changes, rtt_watch) = spawn_reflector::<ResponseTimeTarget>(
            ctx.kube.client(),
            config.namespace.as_deref(),
            shared,
            stop_rx,
        );
        watchers.push(rtt_watch);
        watchers.push(supervised(
            "response-time-targets",
            shared,
            stop_rx,
            rtt::Controller::new(ctx.clone(), rtt_store, rtt_changes).run(stop_rx.clone()),
        ));
    }
    if on.canaries {
        let (c, store) = canary::controller(ctx);
        watchers.push(spawn_store_readiness(store, shared, stop_rx));
        let run = canary::run(c, ctx.clone(), stop_rx.clone());
        watchers.push(supervised("canaries", shared, stop_rx, run));
    }
    if on.drills {
        let (c, store) = drill::controller(ctx);
        watchers.push(spawn_store_readiness(store, shared, stop_rx));
        let run = drill::run(c, ctx.clone(), stop_rx.clone());
        watchers.push(supervised("drills", shared, stop_rx, run));
    }
    if on.assessments {
        let (c, store) = assessment::controller(ctx);
        watchers.push(spawn_store_readiness(store, shared, stop_rx));
        let run = assessment::run(c, ctx.clone(), stop_rx.clone());
        watchers.push(supervised("assessments", shared, stop_rx, run));
    }
}

/// Runs controller `name`; if it ends (or panics) before `stop`, `/readyz` fails from then
/// on, naming it, so the kubelet restarts the pod rather than leave a kind unwatched.
fn supervised(
    name: &'static str,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
    run: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let (shared, stop) = (shared.clone(), stop.clone());
    let ends = crate::controllers::guard::ends(name);
    tokio::spawn(async move {
        let ended = match ends {
            true => Ok(()),
            false => tokio::spawn(run).await,
        };
        if !*stop.borrow() {
            tracing::error!(
                controller = name,
                panicked = ended.is_err(),
                "a controller stopped; /readyz fails from now on"
            );
            if let Ok(mut s) = shared.stopped.lock() {
                s.push(name);
            }
        }
    })
}

/// Caches one kind (a reflector) without what no controller reads (`managedFields`, the
/// `last-applied-configuration` annotation: often larger than the rest of the object):
/// keeps its object count in the metrics, counts its changes (every watch event moves the
/// returned counter) and marks the kind synced after its first complete list. Controllers
/// read the returned store.
fn spawn_reflector<K>(
    client: &Client,
    namespace: Option<&str>,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
) -> (Store<K>, Arc<AtomicU64>, tokio::task::JoinHandle<()>)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let kind = kind_name::<K>();
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store();
    let reader = store.clone();
    let shared = shared.clone();
    let mut stop = stop.clone();
    let changes = Arc::new(AtomicU64::new(0));
    let counted = changes.clone();
    let task = tokio::spawn(async move {
        let stream = reflector::reflector(
            writer,
            watcher::watcher(api, watcher::Config::default().any_semantic())
                // kube-runtime's backoff, with the controllers' schedule (0.5 s doubling to
                // 8 s, reset when events flow): a failed watch is not retried in a loop.
                .backoff(crate::controllers::backoff::WatchBackoff::default())
                .modify(prune),
        );
        let mut stream = std::pin::pin!(stream);
        let mut synced_once = false;
        loop {
            let event = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                e = stream.next() => e,
            };
            match event {
                Some(Ok(watcher::Event::InitDone)) if !synced_once => {
                    synced_once = true;
                    shared.synced.fetch_add(1, Ordering::SeqCst);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(kind, error = %e, "watch failed; retrying with backoff")
                }
                None => return,
            }
            counted.fetch_add(1, Ordering::SeqCst);
            shared
                .metrics
                .watched_resources
                .with_label_values(&[kind])
                .set(reader.len() as i64);
        }
    });
    (store, changes, task)
}

/// What no controller reads of a cached object.
pub fn prune<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Marks a controller's own store synced once its first list completed, and keeps its
/// object count in the metrics.
fn spawn_store_readiness<K>(
    store: Store<K>,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let kind = kind_name::<K>();
    let shared = shared.clone();
    let mut stop = stop.clone();
    tokio::spawn(async move {
        // kube's readiness signal wakes only the last task that waited on it (the
        // controller does too), so wait in short rounds, each polling it afresh.
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                r = tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()) => match r {
                    Ok(Ok(())) => break,
                    Ok(Err(_)) => return,
                    Err(_) => continue,
                },
            }
        }
        shared.synced.fetch_add(1, Ordering::SeqCst);
        loop {
            shared
                .metrics
                .watched_resources
                .with_label_values(&[kind])
                .set(store.len() as i64);
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    })
}

async fn shutdown_signal() -> Result<(), Error> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(Error::Signal)?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r.map_err(Error::Signal)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Error paths of the CRD check, against a mocked API server.
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    /// A client whose API server answers every request with `code` and a Status body.
    fn client_answering(code: u16) -> (Client, tokio::task::JoinHandle<Vec<String>>) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let mut paths = Vec::new();
            while let Some((request, send)) = handle.next_request().await {
                paths.push(request.uri().path().to_string());
                let status = serde_json::json!({
                    "kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "the server could not find the requested resource",
                    "reason": if code == 404 { "NotFound" } else { "Forbidden" }, "code": code
                });
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&status).unwrap()))
                        .unwrap(),
                );
            }
            paths
        });
        (Client::new(service, "default"), server)
    }

    #[test]
    fn controller_switches() {
        assert_eq!(Controllers::parse("all").unwrap(), Controllers::ALL);
        let c = Controllers::parse("canaries, assessments").unwrap();
        assert!(c.canaries && c.assessments && !c.drills && !c.response_time_targets);
        assert!(
            Controllers::parse("drill")
                .unwrap_err()
                .contains("unknown controller")
        );
        assert!(Controllers::parse("").is_err());
    }

    #[tokio::test]
    async fn missing_crds_are_all_named_in_one_sentence() {
        let (client, server) = client_answering(404);
        let err = check_crds(&client, Duration::from_secs(5))
            .await
            .unwrap_err();
        drop(client);
        let text = err.to_string();
        for kind in [
            "ResponseTimeTarget",
            "CanaryPolicy",
            "DrillSchedule",
            "MaturityAssessment",
        ] {
            assert!(text.contains(kind), "{text}");
        }
        assert!(text.contains("kubectl apply -f crds/"), "{text}");
        let paths = server.await.unwrap();
        assert_eq!(paths.len(), 4);
        assert!(
            paths[0].starts_with("/apis/maturity.sre.dev/v1alpha1/"),
            "{paths:?}"
        );
    }

    #[tokio::test]
    async fn forbidden_is_an_api_error_not_missing_crds() {
        let (client, _server) = client_answering(403);
        let err = check_crds(&client, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Api(_)), "{err}");
    }
}

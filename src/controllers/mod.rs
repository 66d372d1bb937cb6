//! Controllers: one folder per kind, each read the same way. `observe` makes every read
//! (Kubernetes API through `crate::k8s`, Prometheus) into a plain `Observed` value; the
//! kind's pure core decides (`<core>::decide`: new status with every condition, effects,
//! when to look again); `act` writes status first where an effect must survive a crash,
//! then applies the effects, Events and metrics. [`runtime`] runs them all the same way.

pub mod backoff;
pub mod canary_policy;
pub mod drill_schedule;
pub mod guard;
pub mod maturity_assessment;
pub mod response_time_target;
pub mod runtime;
pub mod writes;

use std::time::Duration;

use crate::authz::{Authority, Authors, Permission, Verdict};
use crate::clock::Clock;
use crate::k8s::{self, Kube};
use crate::metrics::Metrics;
use crate::prom::PromClient;
use crate::prom::enforce::{EnforceError, Tenancy};

/// What every controller shares.
pub struct Context {
    pub kube: Kube,
    pub prom: PromClient,
    pub metrics: Metrics,
    pub clock: Clock,
    pub settings: Settings,
    /// This process, as named in the drill runs it starts (a restarted operator is another).
    pub instance: String,
    /// Each object's status-write budget.
    pub writes: writes::WriteBudget,
    /// Delivers assessments' reports to their receivers.
    pub deliverer: crate::delivery::Deliverer,
    /// Calls CanaryPolicies' hooks (only on `--canary-hook-hosts`).
    pub hooks: crate::delivery::Deliverer,
    /// The Alertmanager assessments read routes from (`--alertmanager-url`; None: none).
    pub alertmanager: Option<crate::prom::alertmanager::Alertmanager>,
}

/// What [`Context::write_status`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Written {
    /// The status was as wanted already.
    Unchanged,
    Written,
    /// The object's write budget is used up: nothing written; do nothing that needs the
    /// write and look again after this long.
    Deferred(Duration),
}

impl Context {
    pub fn new(
        kube: Kube,
        prom: PromClient,
        metrics: Metrics,
        clock: Clock,
        settings: Settings,
    ) -> Self {
        let instance = format!("{:016x}", clock.random());
        let deliverer = crate::delivery::Deliverer::new(settings.report_hosts.clone());
        let hooks = crate::delivery::Deliverer::new(settings.canary_hook_hosts.clone());
        let alertmanager = settings.alertmanager_url.as_deref().and_then(|url| {
            crate::prom::alertmanager::Alertmanager::new(url, Duration::from_secs(10))
                .map_err(|e| tracing::warn!(error = %e, "no Alertmanager client"))
                .ok()
        });
        Self {
            alertmanager,
            deliverer,
            hooks,
            kube,
            prom,
            metrics,
            clock,
            settings,
            instance,
            writes: writes::WriteBudget::default(),
        }
    }
}

impl Context {
    /// Writes `new` as `object`'s status when it differs from `old`, within the object's
    /// write budget ([`writes`]); `busy`: a run or rollout is under way (in `old` or `new`),
    /// so the write is always allowed.
    pub async fn write_status<K, S>(
        &self,
        object: &K,
        old: &S,
        new: &S,
        busy: bool,
    ) -> Result<Written, k8s::Error>
    where
        K: k8s::Namespaced,
        S: serde::Serialize + PartialEq,
    {
        use kube::ResourceExt;
        if old == new {
            return Ok(Written::Unchanged);
        }
        let kind = K::kind(&()).to_string();
        let key = format!(
            "{kind}/{}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        );
        if let writes::Allowance::Wait(wait) = self.writes.ask(&key, busy, self.clock.now()) {
            self.metrics
                .status_writes_deferred
                .with_label_values(&[&kind])
                .inc();
            tracing::debug!(object = %key, ?wait, "status write deferred: write budget used up");
            return Ok(Written::Deferred(wait));
        }
        self.kube.write_status_if_changed(object, old, new).await?;
        Ok(Written::Written)
    }

    /// `query`, written by the author of an object of `namespace`, as it may be sent: every
    /// selector scoped to that namespace (unless the operator runs single-tenant).
    pub fn scoped(&self, query: &str, namespace: &str) -> Result<String, EnforceError> {
        self.settings.tenancy.scope(query, namespace)
    }

    /// `query` as evidence may read it for an object of `namespace`: scoped (as
    /// [`Self::scoped`]) and reading at least one series, or why not (a sentence).
    pub fn evidence(&self, query: &str, namespace: &str) -> Result<String, String> {
        self.settings.tenancy.evidence(query, namespace)
    }

    /// Whether the operator may do `needs` for the author of a `kind` in `namespace` with
    /// these annotations and `spec`: the author proven by the webhook's record, asked with
    /// SubjectAccessReviews (unless authors are not checked). An unknown author is denied.
    pub async fn authorized(
        &self,
        kind: &str,
        namespace: &str,
        annotations: Option<&std::collections::BTreeMap<String, String>>,
        spec: &serde_json::Value,
        needs: &[Permission],
    ) -> Result<Verdict, k8s::Error> {
        match self.settings.authors.of(kind, namespace, annotations, spec) {
            Authority::Unchecked => Ok(Verdict::Allowed),
            Authority::Unknown(why) => Ok(Verdict::Denied(why)),
            Authority::Author(a) => self.kube.may(&a, needs).await,
        }
    }
}

/// Settings of the controllers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Only this namespace (None: all).
    pub namespace: Option<String>,
    /// How often each MaturityAssessment is evaluated again.
    pub assessment_interval: Duration,
    /// How often the ResponseTimeTarget loop looks for due groups.
    pub tick: Duration,
    /// Evaluation interval of targets that set none.
    pub default_interval: Duration,
    /// How long a ResponseTimeTarget's moved figures wait for a write
    /// ([`crate::slo::decide::STATUS_PERIOD`] by default).
    pub status_period: Duration,
    /// ResponseTimeTarget status writes in flight at most.
    pub status_writes_in_flight: u16,
    /// How a query written by a user is scoped to its object's namespace.
    pub tenancy: Tenancy,
    /// Whose rights the operator acts with for a DrillSchedule or CanaryPolicy.
    pub authors: Authors,
    /// The key of the webhook's records of attestations and exemptions (None: no webhook
    /// runs, so none is recorded and none counts).
    pub evidence_key: Option<crate::authz::Key>,
    /// Hosts reports may be delivered to (`host` or `host:port`).
    pub report_hosts: Vec<String>,
    /// Hosts CanaryPolicies' hooks may call (`host` or `host:port`).
    pub canary_hook_hosts: Vec<String>,
    /// Where the operator's own PrometheusRule (the recordings per indicator shape) goes:
    /// the watched namespace, or the operator's.
    pub rules_namespace: String,
    /// Labels of every PrometheusRule the operator writes (`--prometheus-rule-label`).
    pub rule_labels: std::collections::BTreeMap<String, String>,
    /// How long a written PrometheusRule may take to show in Prometheus's rules API.
    pub rules_load_grace: Duration,
    /// The Alertmanager whose routes and notifications assessments read.
    pub alertmanager_url: Option<String>,
}

/// Why a reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] k8s::Error),
    /// Not a failure: something under way must finish first (a drill restoring before its
    /// DrillSchedule may go); looked at again soon, without backoff.
    #[error("{0}")]
    Waiting(String),
    /// The reconcile panicked (a bug): the object gets `Ready=False InternalError` and is
    /// retried with backoff; every other object goes on.
    #[error("the reconcile panicked: {0}")]
    Panicked(String),
}

impl Error {
    /// The metric label, condition and Event reason of the failure.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(e) => e.category(),
            Error::Waiting(_) => "Waiting",
            Error::Panicked(_) => "InternalError",
        }
    }
}

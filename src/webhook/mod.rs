//! The admission webhook server: HTTPS with a certificate the operator makes itself (or
//! one mounted from a Secret), registered by the operator in a
//! MutatingWebhookConfiguration that carries its CA. It serves two hooks: on Deployment
//! updates, whose decision is [`crate::canary::admission::hold_patch`]; on creates and
//! updates of DrillSchedules and CanaryPolicies, which records who wrote the spec
//! ([`crate::authz::record`]); and on creates and updates of MaturityAssessments, which
//! records who attested, who requested and who approved an exemption
//! ([`crate::attest::record`], approvals checked with a SubjectAccessReview) and refuses
//! signal queries that are no evidence.

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::runtime::reflector::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::names::FIELD_MANAGER;
use crate::api::{CanaryPolicy, DrillSchedule, MaturityAssessment};
use crate::authz::{Author, Authors, Seen};
use crate::canary::admission::hold_patch;
use crate::metrics::Metrics;
use crate::prom::enforce::Tenancy;
pub use crate::tls::Certs;
use crate::tls::TlsListener;
use crate::validate::admission;

/// Path of the Deployment hook.
pub const DEPLOYMENT_PATH: &str = "/mutate/deployments";
/// How long a request waits for the first list of CanaryPolicies after a start (the API
/// server gives the webhook 5 s).
const POLICIES_SYNC: std::time::Duration = std::time::Duration::from_secs(3);
/// Path of the hook that records the author of a DrillSchedule's or CanaryPolicy's spec.
pub const AUTHORS_PATH: &str = "/mutate/authors";
/// Path of the hook that records attestations and exemptions of MaturityAssessments.
pub const ASSESSMENTS_PATH: &str = "/mutate/assessments";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tls(#[from] crate::tls::Error),
    #[error("cannot serve the webhook on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot register the MutatingWebhookConfiguration {name}: {source}")]
    Register {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Where the API server reaches the webhook.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// A Service in the cluster: namespace, name, port.
    Service {
        namespace: String,
        name: String,
        port: i32,
    },
    /// A URL (e.g. `https://127.0.0.1:9443` for a local control plane).
    Url(String),
}

/// Settings of the webhook.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: SocketAddr,
    pub endpoint: Endpoint,
    /// Name of the MutatingWebhookConfiguration the operator creates and keeps up to date
    /// (out of cluster). None: it is someone else's (the Helm chart renders it).
    pub configuration: Option<String>,
    /// Only Deployments of this namespace are sent (None: all but kube-system).
    pub namespace: Option<String>,
    /// `Ignore` (default: Deployments can change while the operator is down, without a
    /// canary) or `Fail` (template changes of every selected namespace wait for the operator).
    pub failure_policy: String,
}

/// Who the operator is and what the hooks check for it.
#[derive(Clone)]
pub struct Checks {
    /// The user the API server authenticates this operator as (its ServiceAccount in a pod).
    pub operator: Option<String>,
    /// Whose rights drills and canaries act with (and the key of the authors' proofs).
    pub authors: Authors,
    /// How users' queries are scoped: a drill or policy whose query would read another
    /// namespace is refused at admission.
    pub tenancy: Tenancy,
    /// Records attestations and exemptions of assessments (None: not recorded).
    pub evidence: Option<Evidence>,
}

/// What the assessments' hook needs: the proofs' key, and the API server to ask whether an
/// approver may approve.
#[derive(Clone)]
pub struct Evidence {
    pub key: crate::authz::Key,
    pub client: Client,
    pub timeout: std::time::Duration,
}

/// Which hooks are registered.
#[derive(Debug, Clone, Copy)]
pub struct Duties {
    /// Hold new templates of governed Deployments for their canary.
    pub canaries: bool,
    /// Record the authors of DrillSchedules and CanaryPolicies.
    pub authors: bool,
    /// Record attestations and exemptions of MaturityAssessments.
    pub evidence: bool,
}

#[derive(Clone)]
struct Hook {
    policies: Store<CanaryPolicy>,
    metrics: Metrics,
    checks: Checks,
}

/// Binds the webhook and serves it until `stop`; returns the bound address.
pub async fn serve(
    settings: &Settings,
    certs: &Certs,
    policies: Store<CanaryPolicy>,
    metrics: Metrics,
    checks: Checks,
    mut stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Error> {
    let acceptor = certs.clone().follow(crate::tls::RELOAD_EVERY)?;
    let listen = |source| Error::Listen {
        addr: settings.addr,
        source,
    };
    let tcp = TcpListener::bind(settings.addr).await.map_err(listen)?;
    let listener = TlsListener::new(tcp, acceptor).map_err(listen)?;
    let local = listener.local();
    let app = Router::new()
        .route(DEPLOYMENT_PATH, post(mutate_deployment))
        .route(AUTHORS_PATH, post(record_author))
        .route(ASSESSMENTS_PATH, post(record_evidence))
        .with_state(Hook {
            policies,
            metrics,
            checks,
        });
    let task = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "webhook server stopped with an error");
        }
    });
    tracing::info!(%local, "serving the admission webhook");
    Ok((local, task))
}

async fn mutate_deployment(
    State(hook): State<Hook>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request = match admission(review) {
        Ok(r) => r,
        Err(answer) => return *answer,
    };
    let response = AdmissionResponse::from(&request);
    let (Some(new), Some(old)) = (&request.object, &request.old_object) else {
        return Json(response.into_review());
    };
    let namespace = request.namespace.clone().unwrap_or_default();
    let labels = new.metadata.labels.clone().unwrap_or_default();
    // Right after a start the cache of policies may not be filled yet: wait for it (within
    // the API server's timeout) rather than let a governed template through unheld.
    let _ = tokio::time::timeout(POLICIES_SYNC, hook.policies.wait_until_ready()).await;
    let state = hook.policies.state();
    let policy = crate::canary::governing(state.iter().map(|p| p.as_ref()), &namespace, &labels)
        .filter(|p| crate::canary::admission::may_hold(p, &hook.checks.authors))
        .and_then(|p| p.metadata.name.clone());
    let field_manager = request
        .options
        .as_ref()
        .and_then(|o| o.0.get("fieldManager"))
        .and_then(|f| f.as_str());
    let (old, new) = (
        serde_json::to_value(old).unwrap_or_default(),
        serde_json::to_value(new).unwrap_or_default(),
    );
    let own = crate::canary::admission::operators_own(
        field_manager,
        request.user_info.username.as_deref(),
        hook.checks.operator.as_deref(),
    );
    let Some(ops) = hold_patch(&old, &new, policy.as_deref(), own) else {
        hook.metrics
            .webhook_requests
            .with_label_values(&["allowed"])
            .inc();
        return Json(response.into_review());
    };
    tracing::info!(namespace, deployment = %request.name, policy = policy.as_deref().unwrap_or(""), "holding a new template for its canary");
    patched(&hook, &request, ops, "held")
}

/// The answer that applies JSON Patch `ops` to the request's object, counted as `outcome`.
fn patched(
    hook: &Hook,
    request: &AdmissionRequest<DynamicObject>,
    ops: Vec<serde_json::Value>,
    outcome: &str,
) -> Json<AdmissionReview<DynamicObject>> {
    let response = AdmissionResponse::from(request);
    let patch: json_patch::Patch = match serde_json::from_value(serde_json::Value::Array(ops)) {
        Ok(p) => p,
        Err(e) => return Json(response.deny(format!("internal error: {e}")).into_review()),
    };
    hook.metrics
        .webhook_requests
        .with_label_values(&[outcome])
        .inc();
    match response.with_patch(patch) {
        Ok(r) => Json(r.into_review()),
        Err(e) => Json(
            AdmissionResponse::from(request)
                .deny(format!("internal error: {e}"))
                .into_review(),
        ),
    }
}

/// A DrillSchedule or CanaryPolicy as the operator reads it (typed, so both sides of a
/// proof see the same JSON of its spec).
enum Authored {
    Drill(Box<DrillSchedule>),
    Canary(Box<CanaryPolicy>),
}

impl Authored {
    /// None for another kind or an object the operator cannot read.
    fn of(kind: &str, o: &DynamicObject) -> Option<Self> {
        let v = serde_json::to_value(o).ok()?;
        match kind {
            "DrillSchedule" => serde_json::from_value(v)
                .ok()
                .map(|d| Self::Drill(Box::new(d))),
            "CanaryPolicy" => serde_json::from_value(v)
                .ok()
                .map(|p| Self::Canary(Box::new(p))),
            _ => None,
        }
    }

    fn spec(&self) -> serde_json::Value {
        match self {
            Self::Drill(d) => serde_json::to_value(&d.spec),
            Self::Canary(p) => Ok(crate::canary::authored(p)),
        }
        .unwrap_or_default()
    }
}

/// The request of an AdmissionReview, or the answer to one that has none.
fn admission(
    review: AdmissionReview<DynamicObject>,
) -> Result<AdmissionRequest<DynamicObject>, Box<Json<AdmissionReview<DynamicObject>>>> {
    review.try_into().map_err(|e| {
        Box::new(Json(
            AdmissionResponse::invalid(format!("{e:?}")).into_review(),
        ))
    })
}

async fn record_author(
    State(hook): State<Hook>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request = match admission(review) {
        Ok(r) => r,
        Err(answer) => return *answer,
    };
    let response = AdmissionResponse::from(&request);
    let (Authors::Checked(key), Some(new)) = (&hook.checks.authors, &request.object) else {
        return Json(response.into_review());
    };
    let kind = request.kind.kind.clone();
    let Some(authored) = Authored::of(&kind, new) else {
        return Json(response.into_review());
    };
    let new_spec = authored.spec();
    let old_spec = request
        .old_object
        .as_ref()
        .and_then(|o| Authored::of(&kind, o))
        .map(|o| o.spec());
    // Only a new spec is refused: never a finalizer's or an annotation's change, so an
    // object admitted while the webhook was down can still be changed and deleted.
    let operator = request.user_info.username.as_deref() == hook.checks.operator.as_deref();
    // Why it may not be admitted: a query that would read another namespace's series.
    if old_spec.as_ref() != Some(&new_spec)
        && !operator
        && let Some(why) = admission::refusal(
            &kind,
            &serde_json::to_value(new).unwrap_or_default(),
            request.namespace.as_deref().unwrap_or_default(),
            &hook.checks.tenancy,
        )
    {
        hook.metrics
            .webhook_requests
            .with_label_values(&["refused"])
            .inc();
        return Json(response.deny(why).into_review());
    }
    let empty = std::collections::BTreeMap::new();
    let annotations = |o: &DynamicObject| o.metadata.annotations.clone().unwrap_or_default();
    let (new_annotations, old_annotations) = (
        annotations(new),
        request.old_object.as_ref().map(annotations),
    );
    let old = match (&old_annotations, &old_spec) {
        (Some(a), Some(spec)) => Some(Seen {
            annotations: a,
            spec,
        }),
        (None, _) => None,
        // An old object the operator could not read: nothing of it is kept.
        (Some(_), None) => Some(Seen {
            annotations: &empty,
            spec: &serde_json::Value::Null,
        }),
    };
    let requester = request.user_info.username.clone().map(|username| Author {
        username,
        groups: request.user_info.groups.clone().unwrap_or_default(),
    });
    let ops = crate::authz::record(
        key,
        &kind,
        request.namespace.as_deref().unwrap_or_default(),
        requester.as_ref(),
        hook.checks.operator.as_deref(),
        old,
        Seen {
            annotations: &new_annotations,
            spec: &new_spec,
        },
    );
    if ops.is_empty() {
        return Json(response.into_review());
    }
    patched(&hook, &request, ops, "author-recorded")
}

/// The assessment of an admission request's object, or None (another kind, or not one the
/// operator can read: the API server's validation answers for it).
fn assessment(o: &DynamicObject) -> Option<MaturityAssessment> {
    serde_json::from_value(serde_json::to_value(o).ok()?).ok()
}

async fn record_evidence(
    State(hook): State<Hook>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request = match admission(review) {
        Ok(r) => r,
        Err(answer) => return *answer,
    };
    let response = AdmissionResponse::from(&request);
    let (Some(evidence), Some(new)) = (
        &hook.checks.evidence,
        request.object.as_ref().and_then(assessment),
    ) else {
        return Json(response.into_review());
    };
    let old = request.old_object.as_ref().and_then(assessment);
    let ns = request.namespace.clone().unwrap_or_default();
    let refuse = |why: String| {
        hook.metrics
            .webhook_requests
            .with_label_values(&["refused"])
            .inc();
        Json(AdmissionResponse::from(&request).deny(why).into_review())
    };
    if old.as_ref().map(|o| &o.spec.signals) != Some(&new.spec.signals)
        && let Some(why) = admission::signals_refusal(&new.spec, &hook.checks.tenancy, &ns)
    {
        return refuse(why);
    }
    let Some(user) = request.user_info.username.clone() else {
        return Json(response.into_review());
    };
    let name = new
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| request.name.clone());
    let recorder = crate::attest::Recorder {
        key: &evidence.key,
        namespace: &ns,
        name: &name,
        user: &user,
        today: crate::clock::Clock::system().today(),
    };
    let recording = match crate::attest::record(&recorder, old.as_ref().map(|o| &o.spec), &new.spec)
    {
        Ok(r) => r,
        Err(why) => return refuse(why),
    };
    let approver = Author {
        username: user.clone(),
        groups: request.user_info.groups.clone().unwrap_or_default(),
    };
    for practice in &recording.approvals {
        match crate::k8s::authz::may_approve(
            &evidence.client,
            evidence.timeout,
            &approver,
            &ns,
            &name,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => {
                return refuse(format!(
                    "{user} may not approve the exemption of {practice}: approving needs the verb approve on maturityassessments/exemptions in namespace {ns} (the chart's ClusterRole <release>-exemption-approver, bound to the approver by a RoleBinding)"
                ));
            }
            Err(e) => {
                return refuse(format!(
                    "cannot check whether {user} may approve the exemption of {practice} (a SubjectAccessReview): {e}; try again"
                ));
            }
        }
    }
    if recording.ops.is_empty() {
        return Json(response.into_review());
    }
    patched(&hook, &request, recording.ops, "evidence-recorded")
}

/// Creates or updates the MutatingWebhookConfiguration so the API server sends this
/// operator what its `duties` need (Deployment updates; creates and updates of
/// DrillSchedules and CanaryPolicies; of MaturityAssessments), and trusts its certificate.
pub async fn register(
    client: &Client,
    settings: &Settings,
    name: &str,
    ca_pem: &str,
    duties: Duties,
) -> Result<(), Error> {
    let config = configuration(settings, name, ca_pem, duties);
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&config),
    )
    .await
    .map_err(|source| Error::Register {
        name: name.to_string(),
        source,
    })?;
    Ok(())
}

fn client_config(settings: &Settings, ca_pem: &str, path: &str) -> WebhookClientConfig {
    match &settings.endpoint {
        Endpoint::Service {
            namespace,
            name,
            port,
        } => WebhookClientConfig {
            service: Some(ServiceReference {
                namespace: namespace.clone(),
                name: name.clone(),
                path: Some(path.into()),
                port: Some(*port),
            }),
            ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
            url: None,
        },
        Endpoint::Url(url) => WebhookClientConfig {
            url: Some(format!("{}{path}", url.trim_end_matches('/'))),
            ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
            service: None,
        },
    }
}

/// The MutatingWebhookConfiguration named `name` that sends this operator what its `duties`
/// need. The Helm chart renders the same hooks (a test compares them), with an opt-in
/// namespace label for the Deployment hook.
pub fn configuration(
    settings: &Settings,
    name: &str,
    ca_pem: &str,
    duties: Duties,
) -> MutatingWebhookConfiguration {
    let namespace_selector = match &settings.namespace {
        Some(ns) => LabelSelector {
            match_labels: Some([("kubernetes.io/metadata.name".to_string(), ns.clone())].into()),
            ..Default::default()
        },
        None => LabelSelector {
            match_expressions: Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                    key: "kubernetes.io/metadata.name".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["kube-system".into()]),
                },
            ]),
            ..Default::default()
        },
    };
    let hook = |name: &str, path: &str, rule: RuleWithOperations| MutatingWebhook {
        name: name.into(),
        admission_review_versions: vec!["v1".into()],
        client_config: client_config(settings, ca_pem, path),
        failure_policy: Some(settings.failure_policy.clone()),
        match_policy: Some("Equivalent".into()),
        namespace_selector: Some(namespace_selector.clone()),
        reinvocation_policy: Some("IfNeeded".into()),
        rules: Some(vec![rule]),
        side_effects: "None".into(),
        timeout_seconds: Some(5),
        ..Default::default()
    };
    let mut webhooks = Vec::new();
    if duties.canaries {
        webhooks.push(hook(
            "canary.maturity.sre.dev",
            DEPLOYMENT_PATH,
            RuleWithOperations {
                api_groups: Some(vec!["apps".into()]),
                api_versions: Some(vec!["v1".into()]),
                operations: Some(vec!["UPDATE".into()]),
                resources: Some(vec!["deployments".into()]),
                scope: Some("Namespaced".into()),
            },
        ));
    }
    if duties.authors {
        webhooks.push(hook(
            admission::AUTHORS_HOOK,
            AUTHORS_PATH,
            RuleWithOperations {
                api_groups: Some(vec![crate::api::common::GROUP.into()]),
                api_versions: Some(vec!["*".into()]),
                operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
                resources: Some(vec!["drillschedules".into(), "canarypolicies".into()]),
                scope: Some("Namespaced".into()),
            },
        ));
    }
    if duties.evidence {
        webhooks.push(hook(
            admission::ASSESSMENTS_HOOK,
            ASSESSMENTS_PATH,
            RuleWithOperations {
                api_groups: Some(vec![crate::api::common::GROUP.into()]),
                api_versions: Some(vec!["*".into()]),
                operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
                resources: Some(vec!["maturityassessments".into()]),
                scope: Some("Namespaced".into()),
            },
        ));
    }
    MutatingWebhookConfiguration {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_string(),
                    "maturity-operator".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        webhooks: Some(webhooks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_has_a_hook_per_duty() {
        let settings = Settings {
            addr: "127.0.0.1:0".parse().unwrap(),
            endpoint: Endpoint::Url("https://127.0.0.1:9443".into()),
            configuration: None,
            namespace: None,
            failure_policy: "Ignore".into(),
        };
        let names = |canaries, authors| -> Vec<(String, String)> {
            let duties = Duties {
                canaries,
                authors,
                evidence: false,
            };
            configuration(&settings, "c", "", duties)
                .webhooks
                .unwrap_or_default()
                .into_iter()
                .map(|w| (w.name, w.client_config.url.unwrap_or_default()))
                .collect()
        };
        let canary = (
            "canary.maturity.sre.dev".to_string(),
            "https://127.0.0.1:9443/mutate/deployments".to_string(),
        );
        let authors = (
            "authors.maturity.sre.dev".to_string(),
            "https://127.0.0.1:9443/mutate/authors".to_string(),
        );
        assert_eq!(names(true, true), vec![canary.clone(), authors.clone()]);
        assert_eq!(names(true, false), vec![canary]);
        assert_eq!(names(false, true), vec![authors]);
        let all = Duties {
            canaries: true,
            authors: true,
            evidence: true,
        };
        let hooks = configuration(&settings, "c", "", all)
            .webhooks
            .unwrap_or_default();
        let evidence = hooks.last().unwrap();
        assert_eq!(evidence.name, "assessments.maturity.sre.dev");
        assert_eq!(
            evidence.client_config.url.as_deref(),
            Some("https://127.0.0.1:9443/mutate/assessments")
        );
        let rule = &evidence.rules.as_ref().unwrap()[0];
        assert_eq!(
            rule.resources.as_deref(),
            Some(&["maturityassessments".to_string()][..])
        );
    }
}

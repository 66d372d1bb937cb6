//! The admission webhook server: HTTPS with a certificate the operator makes itself (or
//! one mounted from a Secret), registered by the operator in a
//! MutatingWebhookConfiguration that carries its CA. It serves one hook, on Deployment
//! updates, whose decision is [`crate::canary::admission::hold_patch`].

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

use crate::api::CanaryPolicy;
use crate::api::names::FIELD_MANAGER;
use crate::canary::admission::hold_patch;
use crate::metrics::Metrics;
pub use crate::tls::Certs;
use crate::tls::TlsListener;

/// Path of the Deployment hook.
pub const DEPLOYMENT_PATH: &str = "/mutate/deployments";

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
    /// Name of the MutatingWebhookConfiguration the operator owns.
    pub configuration: String,
    /// Only Deployments of this namespace are sent (None: all but kube-system).
    pub namespace: Option<String>,
    /// `Ignore` (default: Deployments can change while the operator is down, without a
    /// canary) or `Fail` (template changes of every selected namespace wait for the operator).
    pub failure_policy: String,
}

#[derive(Clone)]
struct Hook {
    policies: Store<CanaryPolicy>,
    metrics: Metrics,
    /// The user the API server authenticates this operator as (its ServiceAccount in a pod).
    operator: Option<String>,
}

/// Binds the webhook and serves it until `stop`; returns the bound address.
pub async fn serve(
    settings: &Settings,
    certs: &Certs,
    policies: Store<CanaryPolicy>,
    metrics: Metrics,
    operator: Option<String>,
    mut stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Error> {
    let acceptor = certs.acceptor()?;
    let listen = |source| Error::Listen {
        addr: settings.addr,
        source,
    };
    let tcp = TcpListener::bind(settings.addr).await.map_err(listen)?;
    let listener = TlsListener::new(tcp, acceptor).map_err(listen)?;
    let local = listener.local();
    let app = Router::new()
        .route(DEPLOYMENT_PATH, post(mutate_deployment))
        .with_state(Hook {
            policies,
            metrics,
            operator,
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
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            return Json(AdmissionResponse::invalid(format!("{e:?}")).into_review());
        }
    };
    let response = AdmissionResponse::from(&request);
    let (Some(new), Some(old)) = (&request.object, &request.old_object) else {
        return Json(response.into_review());
    };
    let namespace = request.namespace.clone().unwrap_or_default();
    let labels = new.metadata.labels.clone().unwrap_or_default();
    let state = hook.policies.state();
    let policy = crate::canary::governing(state.iter().map(|p| p.as_ref()), &namespace, &labels)
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
        hook.operator.as_deref(),
    );
    let Some(ops) = hold_patch(&old, &new, policy.as_deref(), own) else {
        hook.metrics
            .webhook_requests
            .with_label_values(&["allowed"])
            .inc();
        return Json(response.into_review());
    };
    let patch: json_patch::Patch = match serde_json::from_value(serde_json::Value::Array(ops)) {
        Ok(p) => p,
        Err(e) => return Json(response.deny(format!("internal error: {e}")).into_review()),
    };
    tracing::info!(namespace, deployment = %request.name, policy = policy.as_deref().unwrap_or(""), "holding a new template for its canary");
    hook.metrics
        .webhook_requests
        .with_label_values(&["held"])
        .inc();
    match response.with_patch(patch) {
        Ok(r) => Json(r.into_review()),
        Err(e) => Json(
            AdmissionResponse::from(&request)
                .deny(format!("internal error: {e}"))
                .into_review(),
        ),
    }
}

/// Creates or updates the MutatingWebhookConfiguration so the API server sends Deployment
/// updates to this operator and trusts its certificate.
pub async fn register(client: &Client, settings: &Settings, ca_pem: &str) -> Result<(), Error> {
    let client_config = match &settings.endpoint {
        Endpoint::Service {
            namespace,
            name,
            port,
        } => WebhookClientConfig {
            service: Some(ServiceReference {
                namespace: namespace.clone(),
                name: name.clone(),
                path: Some(DEPLOYMENT_PATH.into()),
                port: Some(*port),
            }),
            ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
            url: None,
        },
        Endpoint::Url(url) => WebhookClientConfig {
            url: Some(format!("{}{DEPLOYMENT_PATH}", url.trim_end_matches('/'))),
            ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
            service: None,
        },
    };
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
    let config = MutatingWebhookConfiguration {
        metadata: kube::api::ObjectMeta {
            name: Some(settings.configuration.clone()),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_string(),
                    "maturity-operator".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        webhooks: Some(vec![MutatingWebhook {
            name: "canary.maturity.sre.dev".into(),
            admission_review_versions: vec!["v1".into()],
            client_config,
            failure_policy: Some(settings.failure_policy.clone()),
            match_policy: Some("Equivalent".into()),
            namespace_selector: Some(namespace_selector),
            reinvocation_policy: Some("IfNeeded".into()),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec!["apps".into()]),
                api_versions: Some(vec!["v1".into()]),
                operations: Some(vec!["UPDATE".into()]),
                resources: Some(vec!["deployments".into()]),
                scope: Some("Namespaced".into()),
            }]),
            side_effects: "None".into(),
            timeout_seconds: Some(5),
            ..Default::default()
        }]),
    };
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    api.patch(
        &settings.configuration,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&config),
    )
    .await
    .map_err(|source| Error::Register {
        name: settings.configuration.clone(),
        source,
    })?;
    Ok(())
}

//! The operator's HTTP endpoint on `--http-addr`: `/healthz` and `/readyz` for the
//! kubelet's probes (never authenticated), and `/metrics` behind the gate of
//! [`super::metrics_auth`] (`--metrics-auth kubernetes`, the default), over HTTPS with a
//! certificate of its own or a mounted one, as kube-rbac-proxy serves it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::Listener;
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::metrics_auth::{self as auth, Cache, CacheSettings, Decision, Mode};
use super::{Error, Shared};
use crate::metrics::Metrics;
use crate::tls::{Certs, RELOAD_EVERY, TlsListener};

/// How `/metrics` is served (`--metrics-auth`, `--metrics-tls`, `--metrics-cert-dir`).
#[derive(Debug, Clone)]
pub struct MetricsServing {
    pub auth: Mode,
    /// HTTPS on `--http-addr` (the probes too); None: plain HTTP.
    pub tls: Option<MetricsTls>,
}

/// Where the HTTPS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsTls {
    /// A CA and certificate made at start (Prometheus then skips verification).
    SelfSigned,
    /// `tls.crt` and `tls.key` of a mounted Secret.
    Dir(PathBuf),
}

/// The two reviews of one caller take at most this long together; a slower API server
/// gets the caller a 503, and nothing is cached.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);
/// Reviews in flight at most: a burst of new tokens waits instead of flooding the API
/// server.
const REVIEWS_IN_FLIGHT: usize = 4;

#[derive(Clone)]
struct App {
    shared: Arc<Shared>,
    gate: Option<Arc<Gate>>,
}

struct Gate {
    client: Client,
    cache: Mutex<Cache>,
    in_flight: Semaphore,
    metrics: Metrics,
}

/// Binds `addr` and serves until `stop`; returns the bound address.
pub(super) async fn serve(
    addr: SocketAddr,
    serving: &MetricsServing,
    shared: Arc<Shared>,
    client: &Client,
    stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), Error> {
    let acceptor = match &serving.tls {
        None => None,
        Some(MetricsTls::SelfSigned) => {
            let hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            Some(Certs::generate("metrics", &hosts)?.follow(RELOAD_EVERY)?)
        }
        Some(MetricsTls::Dir(dir)) => {
            Some(Certs::from_dir("metrics", dir, false)?.follow(RELOAD_EVERY)?)
        }
    };
    let gate = (serving.auth == Mode::Kubernetes).then(|| {
        Arc::new(Gate {
            client: client.clone(),
            cache: Mutex::new(Cache::new(CacheSettings::default())),
            in_flight: Semaphore::new(REVIEWS_IN_FLIGHT),
            metrics: shared.metrics.clone(),
        })
    });
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(App { shared, gate });
    let listen = |source| Error::Listen { addr, source };
    let tcp = TcpListener::bind(addr).await.map_err(listen)?;
    let local = tcp.local_addr().map_err(listen)?;
    let task = match acceptor {
        Some(acceptor) => {
            let tls = TlsListener::new(tcp, acceptor).map_err(listen)?;
            tokio::spawn(run_server(tls, app, stop))
        }
        None => tokio::spawn(run_server(tcp, app, stop)),
    };
    tracing::info!(%local, auth = ?serving.auth, tls = ?serving.tls, "serving /metrics, /healthz and /readyz");
    Ok((local, task))
}

async fn run_server<L>(listener: L, app: Router, mut stop: watch::Receiver<bool>)
where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "HTTP server stopped with an error");
    }
}

async fn readyz(State(app): State<App>) -> (StatusCode, String) {
    let shared = &app.shared;
    let stopped = shared
        .stopped
        .lock()
        .map(|s| s.join(", "))
        .unwrap_or_default();
    if !stopped.is_empty() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("controllers stopped: {stopped}"),
        )
    } else if shared.synced.load(Ordering::SeqCst) >= shared.expected.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "watches not synced yet".into(),
        )
    }
}

async fn metrics(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(gate) = &app.gate {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok());
        match gate.check(authorization).await {
            Some(Decision::Allowed { .. }) => {}
            Some(refused) => {
                let code = StatusCode::from_u16(refused.status()).unwrap_or(StatusCode::FORBIDDEN);
                let mut response = (code, refused.sentence() + "\n").into_response();
                if code == StatusCode::UNAUTHORIZED {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        header::HeaderValue::from_static("Bearer"),
                    );
                }
                return response;
            }
            None => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cannot check the bearer token now: the API server's review failed or took too long; try again\n",
                )
                    .into_response();
            }
        }
    }
    app.shared.metrics.render().into_response()
}

impl Gate {
    /// The decision for a caller's `Authorization` header: from the cache, else from the
    /// API server (then kept). None when the review failed (not kept).
    async fn check(&self, authorization: Option<&str>) -> Option<Decision> {
        let Some(token) = auth::bearer_token(authorization) else {
            return Some(Decision::Unauthenticated {
                reason: "no bearer token",
            });
        };
        if let Some(d) = self.cached(token) {
            return Some(d);
        }
        let reviewed = tokio::time::timeout(REVIEW_TIMEOUT, async {
            let _permit = self.in_flight.acquire().await.ok();
            // Another request may have reviewed the same token while this one waited.
            match self.cached(token) {
                Some(d) => Ok((d, false)),
                None => review(&self.client, token).await.map(|d| (d, true)),
            }
        })
        .await;
        let counter = |result| {
            self.metrics
                .metrics_auth_reviews
                .with_label_values(&[result])
                .inc()
        };
        match reviewed {
            Ok(Ok((d, fresh))) => {
                if fresh {
                    counter(d.label());
                    tracing::debug!(decision = ?d, "reviewed a /metrics caller");
                    self.cache.lock().unwrap_or_else(|e| e.into_inner()).put(
                        token,
                        d.clone(),
                        Instant::now(),
                    );
                }
                Some(d)
            }
            Ok(Err(e)) => {
                counter("error");
                tracing::warn!(error = %e, "cannot review a /metrics caller's token");
                None
            }
            Err(_) => {
                counter("error");
                tracing::warn!(timeout = ?REVIEW_TIMEOUT, "the review of a /metrics caller's token timed out");
                None
            }
        }
    }

    fn cached(&self, token: &str) -> Option<Decision> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token, Instant::now())
    }
}

/// The gate's only calls to the API server: a TokenReview of `token`, then, for the user
/// it names, a SubjectAccessReview of `get /metrics`.
async fn review(client: &Client, token: &str) -> Result<Decision, kube::Error> {
    let pp = PostParams::default();
    let tokens: Api<TokenReview> = Api::all(client.clone());
    let answer = tokens.create(&pp, &auth::token_review(token)).await?;
    let user = match auth::authenticated(answer.status.as_ref()) {
        Ok(user) => user,
        Err(refused) => return Ok(refused),
    };
    let access: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = access.create(&pp, &auth::access_review(&user)).await?;
    Ok(auth::authorized(&user, answer.status.as_ref()))
}

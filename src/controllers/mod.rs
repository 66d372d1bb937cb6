//! Controllers: thin loops that gather observations (Kubernetes API, Prometheus), call the
//! pure cores (`crate::slo`, ...), and write status only when it changed.

pub mod canary_policy;
pub mod drill_schedule;
pub mod maturity_assessment;
pub mod prometheus_rule;
pub mod response_time_target;

use std::time::Duration;

/// A Kubernetes API call that failed or took too long.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("the API call timed out after {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    NotLeader(#[from] crate::leader::NotLeader),
}

impl ApiError {
    /// The HTTP status of an API answer (404, 409, ...), if it was one.
    pub fn code(&self) -> Option<u16> {
        match self {
            ApiError::Api(kube::Error::Api(s)) => Some(s.code),
            _ => None,
        }
    }
}

/// Every API call of the controllers goes through here: refused unless this process
/// leads ([`crate::leader::fence`]), bounded by `limit`.
pub async fn timed<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, ApiError> {
    crate::leader::fence()?;
    bounded(limit, f).await
}

/// An API call bounded by `limit` and not fenced: only for leader election itself.
pub async fn bounded<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(ApiError::Api),
        Err(_) => Err(ApiError::Timeout(limit)),
    }
}

/// Writes `status` to the status subresource of `name` with one merge patch (lists and
/// objects replaced whole; `nulls` are the status fields to remove), and counts the write.
pub async fn write_status<K>(
    api: &kube::Api<K>,
    name: &str,
    status: &impl serde::Serialize,
    nulls: &[&str],
    limit: Duration,
    metrics: &crate::metrics::Metrics,
) -> Result<(), ApiError>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut body = serde_json::to_value(status).unwrap_or_default();
    for field in nulls {
        body[*field] = serde_json::Value::Null;
    }
    let patch = serde_json::json!({ "status": body });
    timed(
        limit,
        api.patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        ),
    )
    .await?;
    metrics
        .status_writes
        .with_label_values(&[&K::kind(&())])
        .inc();
    Ok(())
}

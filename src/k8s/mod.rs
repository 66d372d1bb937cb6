//! The edge to the Kubernetes API server: the only code that calls it. Every call goes
//! through [`Kube`]: refused unless this process leads ([`Fence`]), bounded by a timeout,
//! failing with one typed [`Error`] whose `category()` names the failure. Status is written
//! with server-side apply under the one field manager, and only when it changed.

pub mod authz;
pub mod dynamic;
pub mod error;
pub mod events;
pub mod fence;
mod nodes;
pub mod workload;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::runtime::finalizer;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use error::Error;
pub use events::Note;
pub use fence::{Fence, NotLeader};
pub use workload::{PodState, WorkloadRef, WorkloadState};

use crate::metrics::Metrics;

pub use crate::api::names::FIELD_MANAGER;

/// A namespaced kind the edge can read and write.
pub trait Namespaced:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
}
impl<K> Namespaced for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// An API call bounded by `limit` and not fenced: only for leader election itself.
pub async fn bounded<T>(
    limit: Duration,
    f: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(Error::Api),
        Err(_) => Err(Error::Timeout(limit)),
    }
}

/// The user the API server authenticates this client as (a SelfSubjectReview): in a pod,
/// `system:serviceaccount:<namespace>:<name>`. Not fenced: a standby needs it too.
pub async fn identity(client: &Client, limit: Duration) -> Result<String, Error> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = bounded(
        limit,
        api.create(
            &kube::api::PostParams::default(),
            &SelfSubjectReview::default(),
        ),
    )
    .await?;
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Error::Encode("the SelfSubjectReview named no user".into()))
}

/// The controllers' handle on the API server (cheap to clone).
#[derive(Clone)]
pub struct Kube {
    client: Client,
    fence: Fence,
    timeout: Duration,
    metrics: Metrics,
    recorder: Recorder,
}

impl Kube {
    pub fn new(client: Client, fence: Fence, timeout: Duration, metrics: Metrics) -> Self {
        let recorder = events::recorder(client.clone());
        Self {
            client,
            fence,
            timeout,
            metrics,
            recorder,
        }
    }

    /// The client, to build watches from (reads through the controller runtime's caches).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The timeout of each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `K` in namespace `ns`.
    pub fn api<K: Namespaced>(&self, ns: &str) -> Api<K> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// `K` in `ns`, or in every namespace.
    pub fn api_in<K: Namespaced>(&self, ns: Option<&str>) -> Api<K> {
        match ns {
            Some(ns) => self.api(ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// Any call: fenced and bounded by the timeout; a `kube` span (kube-client's own `HTTP`
    /// span, at debug, names the verb and URL).
    #[tracing::instrument(name = "kube", skip_all, fields(answer = std::any::type_name::<T>()))]
    pub async fn call<T>(
        &self,
        f: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Error> {
        self.fence.check()?;
        bounded(self.timeout, f).await
    }

    pub async fn get<K: Namespaced>(&self, ns: &str, name: &str) -> Result<Option<K>, Error> {
        self.call(self.api::<K>(ns).get_opt(name)).await
    }

    pub async fn get_cluster<K>(&self, name: &str) -> Result<Option<K>, Error>
    where
        K: Resource<DynamicType = (), Scope = ClusterResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        self.call(Api::<K>::all(self.client.clone()).get_opt(name))
            .await
    }

    /// Objects of `ns` matching the label selector `labels` ("" for all).
    pub async fn list<K: Namespaced>(&self, ns: &str, labels: &str) -> Result<Vec<K>, Error> {
        let lp = ListParams::default().labels(labels);
        Ok(self.call(self.api::<K>(ns).list(&lp)).await?.items)
    }

    /// A JSON patch (RFC 6902) under the field manager.
    pub async fn json_patch<K: Namespaced>(
        &self,
        ns: &str,
        name: &str,
        ops: Vec<Value>,
    ) -> Result<(), Error> {
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))
            .map_err(|e| Error::Encode(format!("a JSON patch for {}/{name}: {e}", K::kind(&()))))?;
        self.patch::<K, ()>(ns, name, &Patch::Json(patch)).await
    }

    async fn patch<K: Namespaced, P: Serialize + Debug>(
        &self,
        ns: &str,
        name: &str,
        patch: &Patch<P>,
    ) -> Result<(), Error> {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        self.call(self.api::<K>(ns).patch(name, &params, patch))
            .await
            .map(|_| ())
    }

    /// A JSON merge patch (RFC 7386) under the field manager.
    pub async fn merge_patch<K: Namespaced>(
        &self,
        ns: &str,
        name: &str,
        patch: &Value,
    ) -> Result<(), Error> {
        self.patch::<K, &Value>(ns, name, &Patch::Merge(patch))
            .await
    }

    /// Server-side apply of `object` (taking over fields other managers set).
    pub async fn apply<K: Namespaced>(
        &self,
        ns: &str,
        name: &str,
        object: &K,
    ) -> Result<(), Error> {
        self.call(self.api::<K>(ns).patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        ))
        .await
        .map(|_| ())
    }

    /// Deletes `name`; false when it was already gone.
    pub async fn delete<K: Namespaced>(&self, ns: &str, name: &str) -> Result<bool, Error> {
        match self
            .call(self.api::<K>(ns).delete(name, &DeleteParams::default()))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes `new` as the status of `object` when it differs from `old` (server-side apply
    /// on `/status`, so a field left out of `new` is removed), and counts the write.
    /// Returns whether it wrote.
    pub async fn write_status_if_changed<K, S>(
        &self,
        object: &K,
        old: &S,
        new: &S,
    ) -> Result<bool, Error>
    where
        K: Namespaced,
        S: Serialize + PartialEq,
    {
        if old == new {
            return Ok(false);
        }
        let (ns, name) = (object.namespace().unwrap_or_default(), object.name_any());
        let status = without_nulls(
            serde_json::to_value(new).map_err(|e| Error::Encode(format!("the status: {e}")))?,
        );
        let body = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": {"name": name, "namespace": ns},
            "status": status,
        });
        let api = self.api::<K>(&ns);
        // Only the status's keys are read back from the answer (not the whole object with
        // its managed fields): they are all the check below needs.
        let request = kube::core::Request::new(api.resource_url())
            .patch_subresource(
                "status",
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .map_err(|e| Error::Encode(format!("the status write: {e}")))?;
        let written: WrittenStatus = self.call(self.client.request(request)).await?;
        self.metrics
            .status_writes
            .with_label_values(&[&K::kind(&())])
            .inc();
        // Fields another manager still holds (an operator before server-side apply wrote
        // status with merge patches) are not removed by an apply: remove them once.
        let stale = stale_fields(&written, &status);
        if !stale.is_empty() {
            let nulls: serde_json::Map<String, Value> =
                stale.into_iter().map(|k| (k, Value::Null)).collect();
            let patch = serde_json::json!({ "status": nulls });
            self.call(api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)))
                .await?;
        }
        Ok(true)
    }

    /// Runs `reconcile` under the finalizer `name`: added before the first Apply, removed
    /// once a Cleanup (the object is being deleted) succeeded.
    pub async fn finalized<K, F, Fut, E>(
        &self,
        obj: Arc<K>,
        name: &str,
        reconcile: F,
    ) -> Result<Action, E>
    where
        K: Namespaced,
        F: FnOnce(finalizer::Event<K>) -> Fut,
        Fut: Future<Output = Result<Action, E>>,
        E: std::error::Error + From<Error> + 'static,
    {
        use finalizer::Error as F;
        self.fence
            .check()
            .map_err(|e| E::from(Error::NotLeader(e)))?;
        let api = self.api::<K>(&obj.namespace().unwrap_or_default());
        match finalizer::finalizer(&api, name, obj, reconcile).await {
            Ok(a) => Ok(a),
            Err(F::ApplyFailed(e) | F::CleanupFailed(e)) => Err(e),
            // A second pass over an object that is already gone: nothing left to do.
            Err(F::RemoveFinalizer(kube::Error::Api(s))) if s.code == 404 => {
                Ok(Action::await_change())
            }
            Err(F::AddFinalizer(e) | F::RemoveFinalizer(e)) => Err(Error::Api(e).into()),
            Err(e) => Err(Error::Encode(e.to_string()).into()),
        }
    }

    /// Sets condition `cond` in `object`'s status (the others kept), by a merge patch on
    /// `/status`, unless it is so already: for a pass that could not decide (it
    /// panicked), so the reason shows.
    pub async fn set_condition<K: Namespaced>(
        &self,
        object: &K,
        cond: crate::conditions::Cond,
        now: jiff::Timestamp,
    ) -> Result<(), Error> {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let value = serde_json::to_value(object).map_err(|e| Error::Encode(e.to_string()))?;
        let existing: Vec<Condition> =
            serde_json::from_value(value["status"]["conditions"].clone()).unwrap_or_default();
        let generation = object.meta().generation;
        let merged = crate::conditions::merge(&existing, &[cond], generation, &Time(now));
        if merged == existing {
            return Ok(());
        }
        let patch = serde_json::json!({"status": {"conditions": merged}});
        let (ns, name) = (object.namespace().unwrap_or_default(), object.name_any());
        let api = self.api::<K>(&ns);
        self.call(api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)))
            .await?;
        Ok(())
    }

    /// Publishes `notes` as Events on `object` (a failure is logged, never fatal).
    pub async fn publish<K: Namespaced>(&self, object: &K, action: &str, notes: &[Note]) {
        if notes.is_empty() || self.fence.check().is_err() {
            return;
        }
        events::publish(&self.recorder, &object.object_ref(&()), action, notes).await;
    }
}

/// `v` without the object fields whose value is null (an apply sets what it names).
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// What a status write reads back of the object: the names of its status fields.
#[derive(serde::Deserialize, Default)]
struct WrittenStatus {
    #[serde(default)]
    status: Option<std::collections::BTreeMap<String, serde::de::IgnoredAny>>,
}

/// Top-level status fields of `written` that `applied` does not have.
fn stale_fields(written: &WrittenStatus, applied: &Value) -> Vec<String> {
    let (Some(w), Some(a)) = (&written.status, applied.as_object()) else {
        return Vec::new();
    };
    w.keys().filter(|k| !a.contains_key(*k)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apply_names_no_null_and_stale_fields_are_found() {
        let v = serde_json::json!({"a": null, "b": {"c": null, "d": 1}, "e": [{"f": null}]});
        assert_eq!(
            without_nulls(v),
            serde_json::json!({"b": {"d": 1}, "e": [{}]})
        );
        // As the apiserver answers: the whole object, managed fields and all.
        let written: WrittenStatus = serde_json::from_str(
            r#"{"metadata": {"name": "a", "managedFields": [{"manager": "x", "fieldsV1": {"f:status": {}}}]},
                "spec": {"level": 3}, "status": {"active": {}, "runs": [], "level": 2}}"#,
        )
        .unwrap();
        let applied = serde_json::json!({"runs": [], "level": 2});
        assert_eq!(stale_fields(&written, &applied), vec!["active".to_string()]);
        assert!(
            stale_fields(
                &written,
                &serde_json::json!({"active": 1, "runs": [], "level": 1})
            )
            .is_empty()
        );
    }
}

//! Kinds the operator knows only at run time (another project's CRDs, e.g. the Prometheus
//! Operator's PrometheusRule), through the same fenced, timed calls.

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, PartialObjectMeta};
use serde_json::Value;

use super::{Error, FIELD_MANAGER, Kube};

impl Kube {
    /// The metadata of objects of `kind` in every namespace matching `labels` (at most
    /// `limit`, 0: all). Fails when the kind is not served.
    pub async fn dynamic_metadata(
        &self,
        kind: &ApiResource,
        labels: &str,
        limit: u32,
    ) -> Result<Vec<PartialObjectMeta<DynamicObject>>, Error> {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), kind);
        let mut lp = ListParams::default().labels(labels);
        if limit > 0 {
            lp = lp.limit(limit);
        }
        Ok(self.call(api.list_metadata(&lp)).await?.items)
    }

    /// The objects of `kind` in namespace `ns`; None when the kind is not served (its
    /// project is not installed) or the operator may not read it (its RBAC switch is off):
    /// an absent tool, not a failure to retry.
    pub async fn dynamic_list_if_served(
        &self,
        ns: &str,
        kind: &ApiResource,
    ) -> Result<Option<Vec<DynamicObject>>, Error> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, kind);
        match self.call(api.list(&ListParams::default())).await {
            Ok(list) => Ok(Some(list.items)),
            Err(e) if matches!(e.code(), Some(403 | 404)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Server-side apply of `object` (a whole manifest of `kind`), taking over its fields.
    pub async fn dynamic_apply(
        &self,
        ns: &str,
        name: &str,
        kind: &ApiResource,
        object: &Value,
    ) -> Result<(), Error> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, kind);
        self.call(api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        ))
        .await
        .map(|_| ())
    }

    /// Deletes `name` of `kind`; false when it was already gone.
    pub async fn dynamic_delete(
        &self,
        ns: &str,
        name: &str,
        kind: &ApiResource,
    ) -> Result<bool, Error> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, kind);
        match self.call(api.delete(name, &DeleteParams::default())).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

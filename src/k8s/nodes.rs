//! Nodes, as node and zone failure drills read and cordon them.

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};

use super::{Error, FIELD_MANAGER, Kube};

impl Kube {
    /// The nodes of `names` that exist.
    pub async fn nodes_named(&self, names: &[String]) -> Result<Vec<Node>, Error> {
        let mut out = Vec::new();
        for n in names {
            if let Some(node) = self.get_cluster::<Node>(n).await? {
                out.push(node);
            }
        }
        Ok(out)
    }

    /// Every node with the label `key` (any value).
    pub async fn nodes_labelled(&self, key: &str) -> Result<Vec<Node>, Error> {
        let lp = ListParams::default().labels(key);
        let api = Api::<Node>::all(self.client.clone());
        Ok(self.call(api.list(&lp)).await?.items)
    }

    /// Sets node `name`'s `spec.unschedulable` (cordon or uncordon); a node that is gone
    /// is left alone.
    pub async fn set_unschedulable(&self, name: &str, unschedulable: bool) -> Result<(), Error> {
        let api = Api::<Node>::all(self.client.clone());
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let patch = serde_json::json!({"spec": {"unschedulable": unschedulable}});
        match self
            .call(api.patch(name, &params, &Patch::Merge(&patch)))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

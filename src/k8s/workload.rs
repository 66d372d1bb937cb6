//! Workloads (Deployment | StatefulSet, room for more kinds) read and scaled through one
//! reference type, so no caller writes a branch per kind.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::ResourceExt;

use super::{Error, Kube, Namespaced};
use crate::api::drill_schedule::WorkloadKind;

/// `Deployment/web`: a workload of a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadRef {
    pub kind: WorkloadKind,
    pub name: String,
}

impl WorkloadRef {
    pub fn new(kind: WorkloadKind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
        }
    }

    /// From `Kind/name` (a bare name is a Deployment).
    pub fn parse(s: &str) -> Self {
        match s.split_once('/') {
            Some(("StatefulSet", n)) => Self::new(WorkloadKind::StatefulSet, n),
            Some((_, n)) => Self::new(WorkloadKind::Deployment, n),
            None => Self::new(WorkloadKind::Deployment, s),
        }
    }
}

impl std::fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

/// What is read of a workload.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkloadState {
    /// `spec.replicas` (1 when unset).
    pub replicas: i32,
    /// Every desired replica is available on the current revision.
    pub available: bool,
    /// Its pods (not being deleted).
    pub pods: Vec<PodState>,
}

/// A pod of a workload, as a drill needs it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodState {
    pub name: String,
    pub uid: String,
    /// Phase Running.
    pub running: bool,
    /// When its Ready condition last became True (None: not Ready).
    pub ready_since: Option<jiff::Timestamp>,
    /// The node it runs on (None: not scheduled).
    pub node: Option<String>,
}

impl PodState {
    fn of(p: &Pod) -> Self {
        let status = p.status.as_ref();
        let ready_since = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
            .map(|c| {
                c.last_transition_time
                    .as_ref()
                    .map_or(jiff::Timestamp::UNIX_EPOCH, |t| t.0)
            });
        Self {
            name: p.name_any(),
            uid: p.uid().unwrap_or_default(),
            running: status.and_then(|s| s.phase.as_deref()) == Some("Running"),
            ready_since,
            node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
        }
    }
}

/// The workload kinds, as the edge reads them.
trait Workload: Namespaced {
    fn replicas(&self) -> i32;
    fn available(&self) -> bool;
    fn selector(&self) -> LabelSelector;
}

impl Workload for Deployment {
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn available(&self) -> bool {
        let st = self.status.clone().unwrap_or_default();
        let r = self.replicas();
        st.observed_generation.unwrap_or(0) >= self.metadata.generation.unwrap_or(0)
            && st.updated_replicas.unwrap_or(0) == r
            && st.available_replicas.unwrap_or(0) == r
            && st.replicas.unwrap_or(0) == r
    }
    fn selector(&self) -> LabelSelector {
        self.spec.clone().unwrap_or_default().selector
    }
}

impl Workload for StatefulSet {
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn available(&self) -> bool {
        let st = self.status.clone().unwrap_or_default();
        let r = self.replicas();
        st.observed_generation.unwrap_or(0) >= self.metadata.generation.unwrap_or(0)
            && st.available_replicas.unwrap_or(0) >= r
            && st.ready_replicas.unwrap_or(0) >= r
    }
    fn selector(&self) -> LabelSelector {
        self.spec.clone().unwrap_or_default().selector
    }
}

impl Kube {
    /// The workload's replicas, availability and running pods; None when it does not exist.
    pub async fn workload(
        &self,
        ns: &str,
        w: &WorkloadRef,
    ) -> Result<Option<WorkloadState>, Error> {
        match w.kind {
            WorkloadKind::Deployment => self.workload_of::<Deployment>(ns, &w.name).await,
            WorkloadKind::StatefulSet => self.workload_of::<StatefulSet>(ns, &w.name).await,
        }
    }

    async fn workload_of<K: Workload>(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<WorkloadState>, Error> {
        let Some(o) = self.get::<K>(ns, name).await? else {
            return Ok(None);
        };
        let pods = self
            .list::<Pod>(ns, &crate::selector::query(&o.selector()))
            .await?
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| PodState::of(&p))
            .collect();
        Ok(Some(WorkloadState {
            replicas: o.replicas(),
            available: o.available(),
            pods,
        }))
    }

    /// The metadata of the workloads of `kind` in `ns` matching `labels`.
    pub async fn workloads(
        &self,
        ns: &str,
        kind: WorkloadKind,
        labels: &str,
    ) -> Result<Vec<ObjectMeta>, Error> {
        fn meta<K: Namespaced>(v: Vec<K>) -> Vec<ObjectMeta> {
            v.into_iter().map(|o| o.meta().clone()).collect()
        }
        Ok(match kind {
            WorkloadKind::Deployment => meta(self.list::<Deployment>(ns, labels).await?),
            WorkloadKind::StatefulSet => meta(self.list::<StatefulSet>(ns, labels).await?),
        })
    }

    /// Sets the workload's `spec.replicas`.
    pub async fn scale(&self, ns: &str, w: &WorkloadRef, replicas: i32) -> Result<(), Error> {
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        match w.kind {
            WorkloadKind::Deployment => self.merge_patch::<Deployment>(ns, &w.name, &patch).await,
            WorkloadKind::StatefulSet => self.merge_patch::<StatefulSet>(ns, &w.name, &patch).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_reads_and_prints_kind_slash_name() {
        let s = WorkloadRef::parse("StatefulSet/db");
        assert_eq!(s, WorkloadRef::new(WorkloadKind::StatefulSet, "db"));
        assert_eq!(s.to_string(), "StatefulSet/db");
        assert_eq!(
            WorkloadRef::parse("Deployment/web").kind,
            WorkloadKind::Deployment
        );
        assert_eq!(WorkloadRef::parse("web").to_string(), "Deployment/web");
    }
}

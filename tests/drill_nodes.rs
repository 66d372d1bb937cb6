//! Node and zone failure drills end to end: kwok nodes made for each test (tainted so that
//! only the test's own pods land on them, so cordoning them touches no other test), a
//! Deployment spread over them by the real scheduler, the operator killed with SIGKILL in
//! the middle of the hold and started again, and every node it cordoned found uncordoned.
//! A tenant who may not patch nodes gets a skipped run with the reason.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use maturity_operator::api::DrillSchedule;
use maturity_operator::api::drill_schedule::{DrillPhase, RunRecord, RunResult};
use serde_json::json;
use support::cluster::TestContext;
use support::eventually;
use support::operator::{Operator, remove_webhook, webhook_flags};

const POOL_LABEL: &str = "maturity.test/pool";
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

struct Harness {
    ctx: TestContext,
    operator: Option<Operator>,
    flags: Vec<String>,
    nodes: Api<Node>,
    drills: Api<DrillSchedule>,
    /// The nodes made for the test, and their zones.
    made: BTreeMap<String, String>,
}

impl Harness {
    /// Kwok nodes `<ns>-<i>` in the zones given (as `<ns>-<zone>`: zones are cluster-wide,
    /// and a zone failure takes every node of its zone), and the operator with its webhook.
    async fn new(name: &str, zones: &[&str]) -> Self {
        let ctx = TestContext::new(name).await;
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        let mut made = BTreeMap::new();
        for (i, zone) in zones.iter().enumerate() {
            let name = format!("{}-{i}", ctx.namespace);
            let zone = format!("{}-{zone}", ctx.namespace);
            let node: Node = serde_json::from_value(json!({
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {"type": "kwok", "kubernetes.io/os": "linux", "kubernetes.io/hostname": name,
                               POOL_LABEL: ctx.namespace, ZONE_LABEL: zone},
                },
                "spec": {"taints": [{"key": POOL_LABEL, "value": ctx.namespace, "effect": "NoSchedule"}]},
                "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                           "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"}},
            }))
            .unwrap();
            nodes
                .create(&PostParams::default(), &node)
                .await
                .expect("create node");
            made.insert(name, zone.to_string());
        }
        let flags = webhook_flags(&ctx.namespace);
        let operator =
            Some(Operator::start_recording(&ctx.env, &ctx.client, &ctx.namespace, &flags).await);
        let drills = Api::namespaced(ctx.client.clone(), &ctx.namespace);
        let h = Self {
            ctx,
            operator,
            flags,
            nodes,
            drills,
            made,
        };
        h.wait_nodes_ready().await;
        h
    }

    async fn wait_nodes_ready(&self) {
        let (nodes, made) = (self.nodes.clone(), self.made.clone());
        eventually("the test's nodes Ready", Duration::from_secs(60), || {
            let (nodes, made) = (nodes.clone(), made.clone());
            async move {
                for n in made.keys() {
                    let node = nodes.get(n).await.map_err(|e| e.to_string())?;
                    let ready = node
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                    if !ready {
                        return Err(format!("{n} not Ready"));
                    }
                }
                Ok(())
            }
        })
        .await;
    }

    /// Deployment `web` with `replicas` pods on the test's nodes only, spread over them.
    async fn create_deployment(&self, replicas: i32) {
        let ns = &self.ctx.namespace;
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {
                                 "nodeSelector": {POOL_LABEL: ns},
                                 "tolerations": [{"key": POOL_LABEL, "operator": "Equal", "value": ns, "effect": "NoSchedule"}],
                                 "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                     "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}],
                                 "containers": [{"name": "app", "image": "shop/web:v1"}]}}
            }
        }))
        .unwrap();
        Api::<Deployment>::namespaced(self.ctx.client.clone(), ns)
            .create(&PostParams::default(), &d)
            .await
            .expect("create deployment");
        self.ctx.wait_available("web", replicas).await;
    }

    /// The node of each running pod of `web`.
    async fn pod_nodes(&self) -> BTreeMap<String, String> {
        Api::<Pod>::namespaced(self.ctx.client.clone(), &self.ctx.namespace)
            .list(&ListParams::default().labels("app=web"))
            .await
            .expect("list pods")
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| {
                let node = p.spec.as_ref()?.node_name.clone()?;
                Some((p.name_any(), node))
            })
            .collect()
    }

    async fn cordoned(&self) -> Vec<String> {
        let mut out = Vec::new();
        for n in self.made.keys() {
            let node = self.nodes.get(n).await.expect("get node");
            if node.spec.and_then(|s| s.unschedulable).unwrap_or(false) {
                out.push(n.clone());
            }
        }
        out
    }

    async fn create_drill(&self, action: serde_json::Value) {
        let d: DrillSchedule = serde_json::from_value(json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "DrillSchedule",
            "metadata": {"name": "down", "annotations": {"maturity.sre.dev/run-now": "1"}},
            "spec": {"schedule": "0 0 1 1 *", "target": {"name": "web"}, "action": action,
                     "checkInterval": "1s", "recoveryDeadline": "60s"},
        }))
        .unwrap();
        self.drills
            .create(&PostParams::default(), &d)
            .await
            .expect("create drill");
    }

    async fn wait_holding(&self) -> Vec<String> {
        let api = self.drills.clone();
        eventually("the drill Holding", Duration::from_secs(30), || {
            let api = api.clone();
            async move {
                let s = api
                    .get("down")
                    .await
                    .map_err(|e| e.to_string())?
                    .status
                    .unwrap_or_default();
                match s.active {
                    Some(a) if a.phase == DrillPhase::Holding => Ok(a.saved.cordoned),
                    other => Err(format!("active {other:?}, runs {:?}", s.runs)),
                }
            }
        })
        .await
    }

    async fn wait_run(&self) -> RunRecord {
        let api = self.drills.clone();
        eventually("a finished run", Duration::from_secs(60), || {
            let api = api.clone();
            async move {
                let s = api
                    .get("down")
                    .await
                    .map_err(|e| e.to_string())?
                    .status
                    .unwrap_or_default();
                match (s.active, s.runs.first()) {
                    (None, Some(r)) => Ok(r.clone()),
                    (a, _) => Err(format!("active {:?}", a.map(|a| a.phase))),
                }
            }
        })
        .await
    }

    /// SIGKILL in the middle of the hold, down past its end, then started again.
    async fn kill_and_restart(&mut self, down: Duration) {
        self.operator = None;
        tokio::time::sleep(down).await;
        self.operator = Some(
            Operator::start_recording(
                &self.ctx.env,
                &self.ctx.client,
                &self.ctx.namespace,
                &self.flags,
            )
            .await,
        );
    }

    async fn cleanup(self) {
        support::cluster::delete_all_and_wait(&self.drills).await;
        drop(self.operator);
        remove_webhook(&self.ctx.client, &self.ctx.namespace).await;
        for n in self.made.keys() {
            let _ = self.nodes.delete(n, &DeleteParams::default()).await;
        }
        self.ctx.cleanup().await;
    }
}

#[tokio::test]
async fn a_node_failure_moves_the_pods_and_is_restored_after_a_kill_of_the_operator() {
    let mut h = Harness::new("dnode", &["a", "b"]).await;
    h.create_deployment(2).await;
    let before = h.pod_nodes().await;
    h.create_drill(json!({"nodeFailure": {"hold": "6s"}})).await;
    let cordoned = h.wait_holding().await;
    assert_eq!(cordoned.len(), 1, "one node: {cordoned:?}");
    let down = cordoned[0].clone();
    assert!(before.values().any(|n| n == &down), "a node of the target");
    // Status first, then the cordon: wait for it, and for the pods to leave the node.
    eventually(
        "the node cordoned and emptied",
        Duration::from_secs(20),
        || async {
            let on_it = h.pod_nodes().await.values().filter(|n| **n == down).count();
            let cordoned = h.cordoned().await;
            if cordoned == [down.clone()] && on_it == 0 {
                Ok(())
            } else {
                Err(format!("cordoned {cordoned:?}, {on_it} pods on {down}"))
            }
        },
    )
    .await;
    h.kill_and_restart(Duration::from_secs(8)).await;
    let r = h.wait_run().await;
    assert_eq!(r.result, RunResult::Passed, "{:?}", r.reason);
    assert!(
        r.reason
            .as_deref()
            .unwrap_or("")
            .contains("restarted operator"),
        "{:?}",
        r.reason
    );
    assert!(h.cordoned().await.is_empty(), "every node uncordoned");
    let after = h.pod_nodes().await;
    assert_eq!(after.len(), 2, "{after:?}");
    eprintln!(
        "nodeFailure: {down} down; recovery {:?} s, restore {:?} s (operator killed during the hold)",
        r.recovery_seconds, r.restore_seconds
    );
    h.cleanup().await;
}

#[tokio::test]
async fn a_zone_failure_takes_every_node_of_the_zone_and_is_restored_after_a_kill() {
    // Zone a: two nodes; zone b: one, where the pods go.
    let mut h = Harness::new("dzone", &["a", "a", "b"]).await;
    h.create_deployment(3).await;
    let (a, b) = (
        format!("{}-a", h.ctx.namespace),
        format!("{}-b", h.ctx.namespace),
    );
    h.create_drill(json!({"zoneFailure": {"zone": a, "hold": "6s"}}))
        .await;
    let mut cordoned = h.wait_holding().await;
    cordoned.sort();
    let zone_a: Vec<String> = h
        .made
        .iter()
        .filter(|(_, z)| **z == a)
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(cordoned, zone_a);
    let zone_b: Vec<String> = h
        .made
        .iter()
        .filter(|(_, z)| **z == b)
        .map(|(n, _)| n.clone())
        .collect();
    eventually("every pod in zone b", Duration::from_secs(30), || async {
        let nodes = h.pod_nodes().await;
        if nodes.len() == 3 && nodes.values().all(|n| zone_b.contains(n)) {
            Ok(())
        } else {
            Err(format!("{nodes:?}"))
        }
    })
    .await;
    h.kill_and_restart(Duration::from_secs(8)).await;
    let r = h.wait_run().await;
    assert_eq!(r.result, RunResult::Passed, "{:?}", r.reason);
    assert!(h.cordoned().await.is_empty(), "zone a uncordoned");
    h.cleanup().await;
}

#[tokio::test]
async fn a_tenant_who_may_not_patch_nodes_gets_no_node_failure() {
    let h = Harness::new("dnodeauth", &["a", "b"]).await;
    h.create_deployment(2).await;
    // The tenant may create the kinds and delete pods here, not patch nodes.
    let rules = json!([
        {"apiGroups": ["maturity.sre.dev"], "resources": ["drillschedules"],
         "verbs": ["get", "list", "watch", "create", "update", "patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "delete"]},
    ]);
    let dev = h.ctx.service_account("dev", rules);
    let manifest = json!({"apiVersion": "maturity.sre.dev/v1alpha1", "kind": "DrillSchedule",
        "metadata": {"name": "down", "annotations": {"maturity.sre.dev/run-now": "1"}},
        "spec": {"schedule": "0 0 1 1 *", "target": {"name": "web"},
                 "action": {"nodeFailure": {"hold": "5s"}},
                 "checkInterval": "1s", "recoveryDeadline": "60s"}});
    let out = h
        .ctx
        .kubectl_as(&dev, &["apply", "-f", "-"], &manifest.to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = h.wait_run().await;
    assert_eq!(r.result, RunResult::Skipped);
    assert_eq!(
        r.reason.as_deref(),
        Some(format!("author {dev} may not patch nodes (cluster-wide)").as_str())
    );
    assert!(h.cordoned().await.is_empty(), "no node touched");
    h.cleanup().await;
}

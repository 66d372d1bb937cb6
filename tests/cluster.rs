//! The local control plane is a real one: a Deployment applied to it is scheduled onto
//! kwok's fake nodes, its pods reach Running, and it becomes Available.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use support::cluster::TestContext;
use support::eventually;

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]}
            }
        }
    }))
    .expect("deployment literal")
}

#[tokio::test]
async fn deployment_becomes_available_with_running_pods_on_kwok_nodes() {
    let ctx = TestContext::new("deploy").await;
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let kwok_nodes = nodes
        .list(&ListParams::default().labels("type=kwok"))
        .await
        .expect("list nodes");
    assert!(
        kwok_nodes.items.len() >= 3,
        "expected at least 3 kwok nodes, found {}",
        kwok_nodes.items.len()
    );

    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    deployments
        .create(&PostParams::default(), &deployment("web", 3))
        .await
        .expect("create deployment");

    let started = std::time::Instant::now();
    eventually(
        "Deployment web Available with 3 available replicas",
        Duration::from_secs(60),
        || {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get("web").await.map_err(|e| e.to_string())?;
                let status = d.status.unwrap_or_default();
                let available = status
                    .conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Available" && c.status == "True");
                let replicas = status.available_replicas.unwrap_or(0);
                if available && replicas == 3 {
                    Ok(())
                } else {
                    Err(format!(
                        "Available={available}, availableReplicas={replicas}"
                    ))
                }
            }
        },
    )
    .await;
    eprintln!("Deployment became Available in {:?}", started.elapsed());

    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list pods");
    assert_eq!(list.items.len(), 3);
    let node_names: Vec<String> = kwok_nodes
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    for pod in &list.items {
        let status = pod.status.clone().unwrap_or_default();
        assert_eq!(
            status.phase.as_deref(),
            Some("Running"),
            "pod {:?}",
            pod.metadata.name
        );
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        assert!(
            node_names.contains(&node),
            "pod scheduled on {node:?}, not a kwok node"
        );
    }
    ctx.cleanup().await;
}

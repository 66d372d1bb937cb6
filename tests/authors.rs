//! The operator acts only within the rights of whoever wrote a drill's or canary's spec
//! (issue 13, escape 2): the admission webhook records the author from the request (a typed
//! or copied author does not count), and before a run starts the operator asks a
//! SubjectAccessReview whether that author may do what the run does. As a ServiceAccount
//! that may only manage the four kinds in its namespace, against the real API server.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use maturity_operator::api::drill_schedule::{RunRecord, RunResult};
use maturity_operator::api::names::{
    AUTHOR_ANNOTATION, AUTHOR_GROUPS_ANNOTATION, AUTHOR_PROOF_ANNOTATION,
};
use maturity_operator::api::{CanaryPolicy, DrillSchedule};
use serde_json::{Value, json};
use support::cluster::TestContext;
use support::eventually;
use support::operator::{Operator, remove_webhook, webhook_flags};

fn apply_as(ctx: &TestContext, user: &str, manifest: &Value) {
    let out = ctx.kubectl_as(user, &["apply", "-f", "-"], &manifest.to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn annotate_as(ctx: &TestContext, user: &str, kind: &str, name: &str, annotation: &str) {
    let out = ctx.kubectl_as(
        user,
        &["annotate", "--overwrite", kind, name, annotation],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The newest run of drill `name` whose `startedAt` is not one of `before`.
async fn next_run(drills: &Api<DrillSchedule>, name: &str, before: usize) -> RunRecord {
    eventually(
        &format!("run {} of {name}", before + 1),
        Duration::from_secs(60),
        || {
            let drills = drills.clone();
            let name = name.to_string();
            async move {
                let d = drills.get(&name).await.map_err(|e| e.to_string())?;
                let s = d.status.unwrap_or_default();
                let done = s.runs.len();
                match s.runs.into_iter().next() {
                    Some(r) if done > before && r.finished_at.is_some() && s.active.is_none() => {
                        Ok(r)
                    }
                    other => Err(format!("runs {done}, newest {other:?}")),
                }
            }
        },
    )
    .await
}

async fn selector(services: &Api<Service>) -> BTreeMap<String, String> {
    services
        .get("web")
        .await
        .unwrap()
        .spec
        .and_then(|s| s.selector)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_drill_runs_only_with_its_authors_rights_checked_at_every_run() {
    let ctx = TestContext::new("authors").await;
    let ns = ctx.namespace.clone();
    // The tenant: the four kinds in its namespace, nothing else (not patch services).
    let kinds = json!({"apiGroups": ["maturity.sre.dev"],
        "resources": ["responsetimetargets", "canarypolicies", "drillschedules", "maturityassessments"],
        "verbs": ["get", "list", "watch", "create", "update", "patch"]});
    let dev = ctx.service_account("dev", json!([kinds]));
    let flags = webhook_flags(&ns);
    let mut operator = Some(Operator::start_recording(&ctx.env, &ctx.client, &ns, &flags).await);

    // The team's workload and its Service, made by the admin.
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    ctx.running_deployment("web", 2, "shop/web:v1").await;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let original = BTreeMap::from([("app".to_string(), "web".to_string())]);
    assert_eq!(
        ctx.kubectl_as(&dev, &["auth", "can-i", "patch", "services"], "")
            .stdout,
        b"no\n"
    );

    // The tenant's failover drill, claiming to be the admin in the annotations.
    let failover = json!({"apiVersion": "maturity.sre.dev/v1alpha1", "kind": "DrillSchedule",
        "metadata": {"name": "switch", "annotations": {
            "maturity.sre.dev/run-now": "1",
            AUTHOR_ANNOTATION: "system:admin",
            AUTHOR_GROUPS_ANNOTATION: "[\"system:masters\"]",
            AUTHOR_PROOF_ANNOTATION: "v1:00"}},
        "spec": {"schedule": "0 0 1 1 *", "target": {"name": "web"},
                 "action": {"failover": {"service": "web", "toSelector": {"app": "evil"}, "hold": "2s"}},
                 "checkInterval": "1s", "recoveryDeadline": "60s"}});
    apply_as(&ctx, &dev, &failover);
    let drills: Api<DrillSchedule> = Api::namespaced(ctx.client.clone(), &ns);
    let recorded = drills.get("switch").await.unwrap();
    let annotations = recorded.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get(AUTHOR_ANNOTATION),
        Some(&dev),
        "the author is who sent the request, not who the annotations say"
    );
    assert!(
        !annotations[AUTHOR_GROUPS_ANNOTATION].contains("system:masters"),
        "{annotations:?}"
    );
    let r = next_run(&drills, "switch", 0).await;
    assert_eq!(r.result, RunResult::Skipped);
    assert_eq!(
        r.reason.as_deref(),
        Some(format!("author {dev} may not patch services in {ns}").as_str())
    );
    assert_eq!(selector(&services).await, original, "the Service untouched");
    eventually(
        "the DrillSkipped Event",
        Duration::from_secs(10),
        || async {
            let reasons = ctx.event_reasons("DrillSchedule").await;
            reasons
                .contains(&"DrillSkipped".to_string())
                .then_some(())
                .ok_or_else(|| format!("{reasons:?}"))
        },
    )
    .await;

    // A scaleDown and a podKill by the same tenant: the same, with what each action needs.
    for (name, action, needs) in [
        (
            "shrink",
            json!({"scaleDown": {"replicas": 1, "hold": "2s"}}),
            "patch deployments",
        ),
        ("kill", json!({"podKill": {"count": 1}}), "delete pods"),
    ] {
        apply_as(
            &ctx,
            &dev,
            &json!({"apiVersion": "maturity.sre.dev/v1alpha1", "kind": "DrillSchedule",
                "metadata": {"name": name, "annotations": {"maturity.sre.dev/run-now": "1"}},
                "spec": {"schedule": "0 0 1 1 *", "target": {"name": "web"}, "action": action,
                         "checkInterval": "1s", "recoveryDeadline": "60s"}}),
        );
        let r = next_run(&drills, name, 0).await;
        assert_eq!(r.result, RunResult::Skipped);
        assert_eq!(
            r.reason.as_deref(),
            Some(format!("author {dev} may not {needs} in {ns}").as_str())
        );
    }
    let web = deployments.get("web").await.unwrap();
    assert_eq!(web.spec.and_then(|s| s.replicas), Some(2), "not scaled");
    assert_eq!(
        ctx.wait_available("web", 2)
            .await
            .status
            .and_then(|s| s.available_replicas),
        Some(2)
    );

    // Granted the right, the same author's next run switches the Service (and restores it).
    let grant = json!([kinds, {"apiGroups": [""], "resources": ["services"], "verbs": ["patch"]}]);
    ctx.service_account("dev", grant);
    annotate_as(
        &ctx,
        &dev,
        "drillschedule",
        "switch",
        "maturity.sre.dev/run-now=2",
    );
    let r = next_run(&drills, "switch", 1).await;
    assert_eq!(r.result, RunResult::Passed, "{:?}", r.reason);
    assert_eq!(
        selector(&services).await,
        original,
        "restored after the hold"
    );

    // Revoked again: checked at every run, so the next one is skipped.
    ctx.service_account("dev", json!([kinds]));
    annotate_as(
        &ctx,
        &dev,
        "drillschedule",
        "switch",
        "maturity.sre.dev/run-now=3",
    );
    let r = next_run(&drills, "switch", 2).await;
    assert_eq!(r.result, RunResult::Skipped);
    assert_eq!(
        r.reason.as_deref(),
        Some(format!("author {dev} may not patch services in {ns}").as_str())
    );

    // Whoever sets run-now is the author of that run: the admin's run-now is the admin's
    // run (the admin may patch services), though the tenant wrote the spec.
    annotate_as(
        &ctx,
        "",
        "drillschedule",
        "switch",
        "maturity.sre.dev/run-now=4",
    );
    let r = next_run(&drills, "switch", 3).await;
    assert_eq!(r.result, RunResult::Passed, "{:?}", r.reason);

    // The webhook bypassed (its registration gone, as with failurePolicy Ignore while the
    // operator is down): a drill carrying the admin's recorded annotations, copied from the
    // drill above, but with a spec of the tenant's own, has no proven author.
    let admins = drills.get("switch").await.unwrap();
    let copied = admins.metadata.annotations.clone().unwrap_or_default();
    assert_ne!(copied.get(AUTHOR_ANNOTATION), Some(&dev));
    drop(operator.take());
    remove_webhook(&ctx.client, &ns).await;
    let mut forged = json!({"apiVersion": "maturity.sre.dev/v1alpha1", "kind": "DrillSchedule",
        "metadata": {"name": "forged", "annotations": {}},
        "spec": {"schedule": "0 0 1 1 *", "target": {"name": "web"},
                 "action": {"failover": {"service": "web", "toSelector": {"app": "forged"}, "hold": "2s"}},
                 "checkInterval": "1s", "recoveryDeadline": "60s"}});
    for k in [
        AUTHOR_ANNOTATION,
        AUTHOR_GROUPS_ANNOTATION,
        AUTHOR_PROOF_ANNOTATION,
    ] {
        forged["metadata"]["annotations"][k] = json!(copied[k]);
    }
    forged["metadata"]["annotations"]["maturity.sre.dev/run-now"] = json!("1");
    apply_as(&ctx, &dev, &forged);
    assert_eq!(
        drills
            .get("forged")
            .await
            .unwrap()
            .metadata
            .annotations
            .unwrap()[AUTHOR_ANNOTATION],
        copied[AUTHOR_ANNOTATION],
        "nothing recorded while the webhook is bypassed"
    );
    operator = Some(Operator::start_recording(&ctx.env, &ctx.client, &ns, &flags).await);
    let r = next_run(&drills, "forged", 0).await;
    assert_eq!(r.result, RunResult::Skipped);
    let reason = r.reason.unwrap_or_default();
    assert!(
        reason.starts_with("no author of this spec is known"),
        "{reason}"
    );
    assert_eq!(selector(&services).await, original);
    // Applied again with the webhook in place, it is the tenant's: still not allowed.
    annotate_as(
        &ctx,
        &dev,
        "drillschedule",
        "forged",
        "maturity.sre.dev/run-now=2",
    );
    let r = next_run(&drills, "forged", 1).await;
    assert_eq!(
        r.reason.as_deref(),
        Some(format!("author {dev} may not patch services in {ns}").as_str())
    );
    assert_eq!(selector(&services).await, original);

    support::cluster::delete_all_and_wait(&drills).await;
    drop(operator);
    remove_webhook(&ctx.client, &ns).await;
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_canary_whose_author_may_not_patch_deployments_holds_nothing() {
    let ctx = TestContext::new("authorcanary").await;
    let ns = ctx.namespace.clone();
    let dev = ctx.service_account(
        "dev",
        json!([{"apiGroups": ["maturity.sre.dev"], "resources": ["canarypolicies"],
                "verbs": ["get", "list", "watch", "create", "update", "patch"]}]),
    );
    let _operator =
        Operator::start_recording(&ctx.env, &ctx.client, &ns, &webhook_flags(&ns)).await;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    ctx.running_deployment("web", 2, "shop/web:v1").await;

    // A policy over the team's Deployment by a tenant who may not patch Deployments.
    apply_as(
        &ctx,
        &dev,
        &json!({"apiVersion": "maturity.sre.dev/v1alpha1", "kind": "CanaryPolicy",
            "metadata": {"name": "gate"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "steps": [{"weight": 50, "analyze": "10s"}],
                     "analysis": {"interval": "5s", "metrics": [{"name": "m", "query": "vector(0)", "max": 1.0}]}}}),
    );
    let policies: Api<CanaryPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let why = format!("author {dev} may not patch deployments in {ns}");
    eventually("the policy refused", Duration::from_secs(30), || {
        let (policies, why) = (policies.clone(), why.clone());
        async move {
            let p = policies.get("gate").await.map_err(|e| e.to_string())?;
            let c = p
                .status
                .and_then(|s| s.common.conditions.into_iter().find(|c| c.type_ == "Ready"))
                .ok_or("no Ready yet")?;
            if (c.status.as_str(), c.reason.as_str(), c.message.as_str())
                == ("False", "AuthorNotAllowed", why.as_str())
            {
                Ok(())
            } else {
                Err(format!("{c:?}"))
            }
        }
    })
    .await;

    // The Deployment's owner rolls out a new image: not held for that policy. (A moment for
    // the webhook's cache of policies to see the status just read.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = ctx.kubectl_as(
        "",
        &["set", "image", "deployment/web", "app=shop/web:v2"],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let web = deployments.get("web").await.unwrap();
    assert_ne!(web.spec.as_ref().and_then(|s| s.paused), Some(true));
    assert!(
        !web.metadata
            .annotations
            .unwrap_or_default()
            .contains_key(maturity_operator::api::names::HOLD_ANNOTATION),
        "not held"
    );
    let p = policies.get("gate").await.unwrap();
    assert!(p.status.unwrap_or_default().rollouts.is_empty());

    let _ = policies.delete("gate", &DeleteParams::default()).await;
    support::cluster::delete_all_and_wait(&policies).await;
    remove_webhook(&ctx.client, &ns).await;
    ctx.cleanup().await;
}

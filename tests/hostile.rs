//! Objects that once stopped or fooled a controller (issue 14), against the real API
//! server: what admission cannot know becomes a condition or a skipped run with a reason,
//! the controller goes on with the namespace's other objects, writes stay bounded, and
//! `/readyz` stays ready. (What admission can know is refused there: the fixtures in
//! `tests/fixtures/invalid/`, e.g. a 213503982333d jitter or a 10000000d reviewEvery.)

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use maturity_operator::api::DrillSchedule;
use maturity_operator::api::drill_schedule::{RunRecord, RunResult};
use serde_json::json;
use support::cluster::{TestContext, apply_assessment, assessment_level};
use support::eventually;
use support::operator::{Operator, remove_webhook, webhook_flags};

fn drill(name: &str, schedule: &str, action: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "maturity.sre.dev/v1alpha1", "kind": "DrillSchedule",
        "metadata": {"name": name, "annotations": {"maturity.sre.dev/run-now": "1"}},
        "spec": {"schedule": schedule, "target": {"name": "web"}, "action": action,
                 "checkInterval": "1s", "recoveryDeadline": "60s"}})
}

async fn first_run(drills: &Api<DrillSchedule>, name: &str) -> RunRecord {
    eventually(&format!("a run of {name}"), Duration::from_secs(60), || {
        let (drills, name) = (drills.clone(), name.to_string());
        async move {
            let d = drills.get(&name).await.map_err(|e| e.to_string())?;
            let s = d.status.unwrap_or_default();
            match s.runs.into_iter().next() {
                Some(r) if r.finished_at.is_some() && s.active.is_none() => Ok(r),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
}

#[tokio::test]
async fn what_admission_cannot_know_is_a_reason_and_the_controller_goes_on() {
    let ctx = TestContext::new("hostile").await;
    let ns = ctx.namespace.clone();
    let operator = Operator::start_recording(&ctx.env, &ctx.client, &ns, &webhook_flags(&ns)).await;
    ctx.running_deployment("web", 2, "shop/web:v1").await;
    let writes_before = operator
        .metric(r#"maturity_operator_status_writes_total{kind="DrillSchedule"}"#)
        .await
        .unwrap_or(0.0);
    let drills: Api<DrillSchedule> = Api::namespaced(ctx.client.clone(), &ns);
    let apply = |doc: serde_json::Value| {
        let drills = drills.clone();
        async move {
            let name = doc["metadata"]["name"].as_str().unwrap().to_string();
            drills
                .patch(
                    &name,
                    &PatchParams::apply("hostile-test"),
                    &Patch::Apply(&doc),
                )
                .await
                .unwrap_or_else(|e| panic!("apply {name}: {e}"));
        }
    };
    // 30 February never comes: no next window, said in Ready (it used to be only a log line).
    apply(drill(
        "never",
        "0 0 30 2 *",
        json!({"podKill": {"count": 1}}),
    ))
    .await;
    // A "scaleDown" to more replicas than run (it used to scale the workload up and pass).
    apply(drill(
        "up",
        "0 0 1 1 *",
        json!({"scaleDown": {"replicas": 5, "hold": "2s"}}),
    ))
    .await;
    // And an ordinary drill next to them, which runs, once "up" was skipped for its own
    // reason (one drill at a time on a workload: started together, either may be first).
    first_run(&drills, "up").await;
    apply(drill("fine", "0 0 1 1 *", json!({"podKill": {"count": 1}}))).await;

    let ready = eventually("never's Ready", Duration::from_secs(30), || {
        let drills = drills.clone();
        async move {
            let d = drills.get("never").await.map_err(|e| e.to_string())?;
            d.status
                .and_then(|s| s.common.conditions.into_iter().find(|c| c.type_ == "Ready"))
                .ok_or_else(|| "no Ready yet".to_string())
        }
    })
    .await;
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NoNextWindow")
    );
    assert!(
        ready
            .message
            .starts_with("no drill can start: no next slot"),
        "{}",
        ready.message
    );
    let up = first_run(&drills, "up").await;
    assert_eq!(up.result, RunResult::Skipped);
    assert_eq!(
        up.reason.as_deref(),
        Some(
            "scaleDown.replicas 5 is not fewer than the 2 Deployment/web has: a scale-down drill never scales up"
        )
    );
    let fine = first_run(&drills, "fine").await;
    assert_eq!(fine.result, RunResult::Passed, "{:?}", fine.reason);
    let web: Deployment = Api::namespaced(ctx.client.clone(), &ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        web.spec.and_then(|s| s.replicas),
        Some(2),
        "never scaled up"
    );

    // Bounded writes: the three drills settle; over the next 10 s (50 ticks of the
    // operator) none of them writes again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = operator
        .metric(r#"maturity_operator_status_writes_total{kind="DrillSchedule"}"#)
        .await
        .unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = operator
        .metric(r#"maturity_operator_status_writes_total{kind="DrillSchedule"}"#)
        .await
        .unwrap_or(0.0);
    assert_eq!(
        after - settled,
        0.0,
        "writes while nothing changes (before the drills: {writes_before}, settled: {settled})"
    );
    let (code, body) = operator.get("/readyz", None).await.unwrap();
    assert_eq!((code, body.as_str()), (200, "ok"));

    support::cluster::delete_all_and_wait(&drills).await;
    drop(operator);
    remove_webhook(&ctx.client, &ns).await;
    ctx.cleanup().await;
}

/// A reconcile that panics (made to, with the operator's failpoint) is that object's
/// `Ready=False InternalError`, retried with backoff; the controller goes on with the other
/// objects and stays ready.
#[tokio::test]
async fn a_panicking_reconcile_is_the_objects_condition_and_the_others_go_on() {
    let ctx = TestContext::new("panic").await;
    let ns = ctx.namespace.clone();
    let operator = Operator::start_with_env(
        &ctx.env,
        &ns,
        &ctx.env.prometheus_url,
        "2s",
        &webhook_flags(&ns),
        &[("MATURITY_FAILPOINT_PANIC", "boom")],
    );
    support::operator::webhook_recording(&ctx.client, &ns).await;
    ctx.running_deployment("web", 2, "shop/web:v1").await;
    let drills: Api<DrillSchedule> = Api::namespaced(ctx.client.clone(), &ns);
    for name in ["boom", "fine"] {
        let doc = drill(name, "0 0 1 1 *", json!({"podKill": {"count": 1}}));
        drills
            .patch(
                name,
                &PatchParams::apply("hostile-test"),
                &Patch::Apply(&doc),
            )
            .await
            .unwrap();
    }
    let ready = eventually("boom's InternalError", Duration::from_secs(30), || {
        let drills = drills.clone();
        async move {
            let d = drills.get("boom").await.map_err(|e| e.to_string())?;
            d.status
                .and_then(|s| s.common.conditions.into_iter().find(|c| c.type_ == "Ready"))
                .filter(|c| c.reason == "InternalError")
                .ok_or_else(|| "no InternalError yet".to_string())
        }
    })
    .await;
    assert_eq!(ready.status, "False");
    assert!(
        ready
            .message
            .contains("failpoint MATURITY_FAILPOINT_PANIC=boom"),
        "{}",
        ready.message
    );
    let fine = first_run(&drills, "fine").await;
    assert_eq!(fine.result, RunResult::Passed, "{:?}", fine.reason);
    let (code, body) = operator.get("/readyz", None).await.unwrap();
    assert_eq!((code, body.as_str()), (200, "ok"));
    let errors = r#"maturity_operator_reconcile_errors_total{category="InternalError",controller="DrillSchedule"}"#;
    let e0 = operator.metric(errors).await.unwrap_or(0.0);
    assert!(e0 >= 1.0);
    // Retried with backoff (1 s doubling), not at once: writing the condition is no new
    // event for it (its text is the same each time; it once named the delay, and every
    // retry then wrote it and was retried at once, dozens of times a second).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let e1 = operator.metric(errors).await.unwrap_or(0.0);
    assert!(e1 - e0 <= 5.0, "{} retries in 10 s (after {e0})", e1 - e0);
    support::cluster::delete_all_and_wait(&drills).await;
    drop(operator);
    remove_webhook(&ctx.client, &ns).await;
    ctx.cleanup().await;
}

/// An object whose status would change on every pass, looked at again at once (made so
/// with the operator's failpoint: the shape of the write storms a wrapped jitter caused,
/// 47 writes a second) is written at most 5 times in a row and then once per 10 s; each
/// write over that is deferred (counted) to when the budget allows, and another
/// assessment is still evaluated meanwhile.
#[tokio::test]
async fn a_status_that_changes_on_every_pass_is_written_within_its_budget() {
    use maturity_operator::api::MaturityAssessment;
    let ctx = TestContext::new("storm").await;
    let ns = ctx.namespace.clone();
    let operator = Operator::start_with_env(
        &ctx.env,
        &ns,
        &ctx.env.prometheus_url,
        "2s",
        &["--assessment-interval=1s".to_string()],
        &[("MATURITY_FAILPOINT_CHURN", "churner")],
    );
    let api: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ns);
    let writes = r#"maturity_operator_status_writes_total{kind="MaturityAssessment"}"#;
    let deferred = r#"maturity_operator_status_writes_deferred_total{kind="MaturityAssessment"}"#;
    apply_assessment(&api, "churner").await;
    // The burst: 5 writes in a row, then deferred.
    eventually("writes deferred", Duration::from_secs(30), || async {
        match operator.metric(deferred).await {
            Some(n) if n > 0.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (w0, d0) = (
        operator.metric(writes).await.unwrap_or(0.0),
        operator.metric(deferred).await.unwrap_or(0.0),
    );
    assert!(w0 <= 5.0, "{w0} writes before the first deferral");
    // Another assessment, created during the storm, is evaluated.
    apply_assessment(&api, "calm").await;
    eventually(
        "the calm assessment evaluated",
        Duration::from_secs(20),
        || assessment_level(&api, "calm"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (wa, da) = (
        operator.metric(writes).await.unwrap_or(0.0),
        operator.metric(deferred).await.unwrap_or(0.0),
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (w1, d1) = (
        operator.metric(writes).await.unwrap_or(0.0),
        operator.metric(deferred).await.unwrap_or(0.0),
    );
    // Over these 20 s: the churner's 2 refills (3 if the window straddles one more), the
    // settled calm one's none.
    assert!(w1 - wa <= 3.0, "{} writes in 20 s", w1 - wa);
    // It still asks to write on every pass: each deferral is counted, and the pass after
    // it comes when the budget allows (so the passes and their queries are bounded too).
    assert!(d1 - da >= 2.0, "only {} deferred in 20 s", d1 - da);
    let churner = api.get("churner").await.unwrap();
    assert!(churner.status.and_then(|s| s.level).is_some());
    println!(
        "storm: {w0} writes before the first deferral ({d0} deferred); later {} writes in 20 s with {} deferred",
        w1 - wa,
        d1 - da
    );
    let (code, _) = operator.get("/readyz", None).await.unwrap();
    assert_eq!(code, 200);
    drop(operator);
    ctx.cleanup().await;
}

/// A controller whose task ended (made to, with the operator's failpoint; nothing else can
/// end one but a bug) makes `/readyz` fail with its name, so the kubelet restarts the pod;
/// `/healthz` stays ok (the process is alive).
#[tokio::test]
async fn a_stopped_controller_fails_readyz_with_its_name() {
    let ctx = TestContext::new("ended").await;
    let operator = Operator::start_with_env(
        &ctx.env,
        &ctx.namespace,
        &ctx.env.prometheus_url,
        "2s",
        &[],
        &[("MATURITY_FAILPOINT_END", "drills")],
    );
    let body = eventually("/readyz 503", Duration::from_secs(30), || async {
        match operator.get("/readyz", None).await {
            Ok((503, body)) if body.contains("controllers stopped") => Ok(body),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(body, "controllers stopped: drills");
    let (code, _) = operator.get("/healthz", None).await.unwrap();
    assert_eq!(code, 200);
    drop(operator);
    ctx.cleanup().await;
}

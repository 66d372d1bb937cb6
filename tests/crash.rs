//! `kill -9` of the operator in every phase of a drill and of a canary rollout (issue 14's
//! fault suite): against the real API server, with pods on kwok that become Ready only
//! 4 s after they are scheduled (the `pod-ready-slow` stage of `hack/kwok/pod-ready.yaml`,
//! chosen by the pod annotation `pod-ready.stage.kwok.x-k8s.io/delay`), so that waiting
//! phases last long enough to land in; the phases that last one pass (a drill's Injecting
//! and Restoring) are made to last by the API proxy (`support::api_proxy`), which holds
//! the operator's next request of that phase and never forwards it: the operator dies in
//! the middle of the action. Each kill is asserted to have landed in its phase: the phase
//! is read before the kill and again after it (the process is gone, so it cannot have
//! moved on). After each restart the run goes on from status; at the end nothing the drill
//! or rollout changed is left changed, and the run is recorded. Recovery times printed
//! (`--nocapture`).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use maturity_operator::api::canary_policy::RolloutPhase;
use maturity_operator::api::drill_schedule::{DrillPhase, RunRecord, RunResult};
use maturity_operator::api::{CanaryPolicy, DrillSchedule};
use maturity_operator::synthetic::SyntheticExporter;
use maturity_operator::synthetic::follow::{Behaviour, follow};
use serde_json::json;
use support::api_proxy::{ApiFault, ApiProxy, Rule};
use support::cluster::TestContext;
use support::eventually;
use support::operator::{Operator, remove_webhook, webhook_flags, webhook_recording};
use support::prom::ScrapeTarget;

/// How long after it is scheduled a test pod becomes Ready.
const READY_AFTER: &str = "4s";

/// Deployment `name` with `replicas` pods that become Ready [`READY_AFTER`] after they are
/// scheduled.
async fn slow_deployment(ctx: &TestContext, name: &str, replicas: i32, image: &str) {
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name},
                                           "annotations": {"pod-ready.stage.kwok.x-k8s.io/delay": READY_AFTER}},
                              "spec": {"containers": [{"name": "app", "image": image}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(ctx.client.clone(), &ctx.namespace)
        .create(&PostParams::default(), &d)
        .await
        .expect("create the Deployment");
    ctx.wait_available(name, replicas).await;
}

/// The operator through `proxy`, with its webhook (which records authors) on the same
/// port each time.
struct Restarts<'a> {
    ctx: &'a TestContext,
    proxy: &'a ApiProxy,
    flags: Vec<String>,
    extra: Vec<String>,
    /// The phases a kill landed in, in order.
    landed: Vec<String>,
}

impl<'a> Restarts<'a> {
    fn new(ctx: &'a TestContext, proxy: &'a ApiProxy, extra: &[&str]) -> Self {
        Self {
            ctx,
            proxy,
            flags: webhook_flags(&ctx.namespace),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            landed: Vec::new(),
        }
    }

    async fn start(&self) -> Operator {
        let mut flags = self.flags.clone();
        flags.extend(self.extra.iter().cloned());
        let kubeconfig = self.proxy.kubeconfig_var();
        let operator = Operator::start_with_env(
            &self.ctx.env,
            &self.ctx.namespace,
            &self.ctx.env.prometheus_url,
            "2s",
            &flags,
            &[("KUBECONFIG", kubeconfig.as_str())],
        );
        webhook_recording(&self.ctx.client, &self.ctx.namespace).await;
        operator
    }

    /// Kills `operator` with SIGKILL, asserting that `phase()` says `want` just before and
    /// just after: the kill landed in that phase.
    async fn kill_in<F, Fut>(&mut self, mut operator: Operator, want: &str, phase: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = String>,
    {
        assert_eq!(phase().await, want, "not in {want} before the kill");
        operator.signal("KILL");
        assert!(
            operator.wait_exit(Duration::from_secs(5)).is_some(),
            "the operator survived kill -9"
        );
        assert_eq!(
            phase().await,
            want,
            "moved on from {want} before the kill landed"
        );
        self.landed.push(want.to_string());
    }
}

async fn drill_phase(api: &Api<DrillSchedule>) -> String {
    let d = api.get("crash").await.expect("read the drill");
    match d.status.and_then(|s| s.active) {
        Some(a) => format!("{:?}", a.phase),
        None => "none".into(),
    }
}

async fn wait_drill_phase(api: &Api<DrillSchedule>, want: DrillPhase) {
    let want = format!("{want:?}");
    eventually(
        &format!("drill {want}"),
        Duration::from_secs(30),
        || async {
            let got = drill_phase(api).await;
            if got == want { Ok(()) } else { Err(got) }
        },
    )
    .await;
}

/// DrillSchedule "crash": scale Deployment web down to 1 for `hold`, run now, recovered
/// within `deadline`.
fn scale_down_drill(hold: &str, deadline: &str) -> DrillSchedule {
    serde_json::from_value(json!({
        "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "DrillSchedule",
        "metadata": {"name": "crash", "annotations": {"maturity.sre.dev/run-now": "1"}},
        "spec": {"schedule": "0 0 1 1 *", "target": {"name": "web"},
                 "action": {"scaleDown": {"replicas": 1, "hold": hold}},
                 "checkInterval": "1s", "recoveryDeadline": deadline}
    }))
    .unwrap()
}

/// Waits until Deployment web has `want` replicas in its spec.
async fn wait_replicas(api: &Api<Deployment>, want: i32) {
    eventually(
        &format!("web at {want} replicas"),
        Duration::from_secs(20),
        || async {
            match replicas(api, "web").await {
                n if n == want => Ok(()),
                n => Err(n.to_string()),
            }
        },
    )
    .await;
}

/// Waits up to `secs` for the drill's run to be recorded (none under way), and returns it.
async fn wait_recorded(drills: &Api<DrillSchedule>, what: &str, secs: u64) -> RunRecord {
    eventually(what, Duration::from_secs(secs), || async {
        let s = drills
            .get("crash")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        match (s.active, s.runs.first()) {
            (None, Some(run)) => Ok(run.clone()),
            (a, _) => Err(format!("{:?}", a.map(|a| a.phase))),
        }
    })
    .await
}

async fn replicas(api: &Api<Deployment>, name: &str) -> i32 {
    api.get(name)
        .await
        .unwrap()
        .spec
        .unwrap()
        .replicas
        .unwrap_or(1)
}

#[tokio::test]
async fn a_drill_killed_in_every_phase_restores_exactly_and_records_the_run() {
    let ctx = TestContext::new("crashdrill").await;
    let ns = ctx.namespace.clone();
    slow_deployment(&ctx, "web", 3, "shop/web:v1").await;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let drills: Api<DrillSchedule> = Api::namespaced(ctx.client.clone(), &ns);
    let proxy = ApiProxy::start(&ctx.env).await;
    let mut r = Restarts::new(&ctx, &proxy, &[]);
    let phase = || drill_phase(&drills);
    let status_path = format!("/namespaces/{ns}/drillschedules/crash/status");

    // Injecting: the start is recorded; the write that moves on to Holding (made before
    // the scale-down) is held.
    proxy.add(Rule::new("PATCH", &status_path, ApiFault::Hold).body(r#""phase":"Holding""#));
    let operator = r.start().await;
    let d = scale_down_drill("8s", "60s");
    drills.create(&PostParams::default(), &d).await.unwrap();
    proxy.wait_held(Duration::from_secs(30)).await;
    r.kill_in(operator, "Injecting", phase).await;
    assert_eq!(
        replicas(&deployments, "web").await,
        3,
        "scaled before the write"
    );

    // Holding: the scale-down is in place for 8 s. The restore (a patch back to 3) will be
    // held next.
    proxy.clear();
    proxy.add(
        Rule::new(
            "PATCH",
            &format!("/namespaces/{ns}/deployments/web"),
            ApiFault::Hold,
        )
        .body(r#""replicas":3"#),
    );
    let operator = r.start().await;
    wait_drill_phase(&drills, DrillPhase::Holding).await;
    wait_replicas(&deployments, 1).await;
    r.kill_in(operator, "Holding", phase).await;

    // Restoring: recorded, and the patch back to 3 replicas held.
    let before = proxy.count(&ApiFault::Hold);
    let operator = r.start().await;
    eventually("the restore held", Duration::from_secs(30), || async {
        if proxy.count(&ApiFault::Hold) > before {
            Ok(())
        } else {
            Err(drill_phase(&drills).await)
        }
    })
    .await;
    r.kill_in(operator, "Restoring", phase).await;
    assert_eq!(
        replicas(&deployments, "web").await,
        1,
        "restored though held"
    );

    // Recovering: restored to 3; the two new pods take 4 s to become Ready.
    proxy.clear();
    let operator = r.start().await;
    wait_drill_phase(&drills, DrillPhase::Recovering).await;
    r.kill_in(operator, "Recovering", phase).await;

    let restarted = Instant::now();
    let _operator = r.start().await;
    let run = wait_recorded(&drills, "the run recorded", 60).await;
    println!(
        "drill: kills landed in {:?}; after the last restart the run was recorded in {:?}: {:?}",
        r.landed,
        restarted.elapsed(),
        run.reason
    );
    assert_eq!(
        r.landed,
        ["Injecting", "Holding", "Restoring", "Recovering"],
        "a kill in every phase"
    );
    assert_eq!(run.result, RunResult::Passed, "{run:?}");
    assert_eq!(
        replicas(&deployments, "web").await,
        3,
        "exactly the original"
    );
    ctx.wait_available("web", 3).await;
    let reasons = ctx.event_reasons("DrillSchedule").await;
    assert!(
        reasons.iter().filter(|r| *r == "DrillResumed").count() >= 1,
        "{reasons:?}"
    );
    support::cluster::delete_all_and_wait(&drills).await;
    drop(_operator);
    remove_webhook(&ctx.client, &ns).await;
    ctx.cleanup().await;
}

async fn rollout_phase(api: &Api<CanaryPolicy>) -> String {
    let p = api.get("crash").await.expect("read the policy");
    match p.status.and_then(|s| s.rollouts.into_iter().next()) {
        Some(r) => format!("{:?} step {}", r.phase, r.step + 1),
        None => "none".into(),
    }
}

async fn wait_rollout_phase(api: &Api<CanaryPolicy>, want: &str) {
    eventually(want, Duration::from_secs(60), || async {
        let got = rollout_phase(api).await;
        if got == want { Ok(()) } else { Err(got) }
    })
    .await;
}

/// Creates policy `p` (named "crash") and waits until it is Ready and the API server's view
/// of the webhook configuration, refreshed by a watch, has had time to follow.
async fn create_ready(policies: &Api<CanaryPolicy>, p: &CanaryPolicy) {
    policies.create(&PostParams::default(), p).await.unwrap();
    eventually("policy Ready", Duration::from_secs(30), || async {
        let p = policies.get("crash").await.map_err(|e| e.to_string())?;
        let ready = p
            .status
            .and_then(|s| s.common.conditions.into_iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status);
        (ready.as_deref() == Some("True"))
            .then_some(())
            .ok_or(format!("Ready={ready:?}"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Creates Deployment `d` (web on shop/web:v1) and waits until it is complete.
async fn create_complete(api: &Api<Deployment>, d: &Deployment) {
    api.create(&PostParams::default(), d).await.unwrap();
    wait_complete(api, "shop/web:v1").await;
}

/// Every replica runs `image`, updated and available, and the Deployment is not paused.
async fn wait_complete(api: &Api<Deployment>, image: &str) {
    eventually(
        &format!("complete on {image}"),
        Duration::from_secs(60),
        || async {
            let d = api.get("web").await.map_err(|e| e.to_string())?;
            let spec = d.spec.clone().unwrap();
            let s = d.status.clone().unwrap_or_default();
            let got = spec.template.spec.as_ref().unwrap().containers[0]
                .image
                .clone();
            let want = spec.replicas;
            if got.as_deref() == Some(image)
                && spec.paused != Some(true)
                && s.updated_replicas == want
                && s.available_replicas == want
                && s.replicas == want
            {
                Ok(())
            } else {
                Err(format!("{got:?} paused {:?} {s:?}", spec.paused))
            }
        },
    )
    .await;
}

async fn set_image(api: &Api<Deployment>, image: &str) {
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
    api.patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("change the template");
}

#[tokio::test]
async fn a_canary_killed_in_every_step_promoting_and_rolling_back_ends_as_analysed() {
    let ctx = TestContext::new("crashcanary").await;
    let ns = ctx.namespace.clone();
    let exporter = Arc::new(
        SyntheticExporter::start("127.0.0.1:0".parse().unwrap())
            .await
            .expect("start exporter"),
    );
    let _target = ScrapeTarget::register(&ctx.env, &ns, exporter.addr(), &[]);
    let app = tokio::spawn(follow(
        ctx.client.clone(),
        ns.clone(),
        exporter.clone(),
        Behaviour {
            rules: vec![(":bad".into(), Some(0.5))],
        },
    ));
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let policies: Api<CanaryPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let proxy = ApiProxy::start(&ctx.env).await;
    let mut r = Restarts::new(&ctx, &proxy, &[]);
    let phase = || rollout_phase(&policies);
    let operator = r.start().await;
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"app": "web", "canary": "on"}},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"},
                                           "annotations": {"pod-ready.stage.kwok.x-k8s.io/delay": READY_AFTER}},
                              "spec": {"containers": [{"name": "app", "image": "shop/web:v1"}]}}}
    }))
    .unwrap();
    create_complete(&deployments, &d).await;
    let strategy = || async {
        let d = deployments.get("web").await.unwrap().spec.unwrap();
        (d.strategy, d.paused)
    };
    let own = strategy().await;
    let error_ratio = r#"(sum(rate(http_requests_total{namespace="{{namespace}}",deployment="{{deployment}}",pod_template_hash="{{canary_hash}}",code="500"}[5s])) or vector(0))
  / sum(rate(http_requests_total{namespace="{{namespace}}",deployment="{{deployment}}",pod_template_hash="{{canary_hash}}"}[5s]))"#;
    let p: CanaryPolicy = serde_json::from_value(json!({
        "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "CanaryPolicy",
        "metadata": {"name": "crash"},
        "spec": {
            "selector": {"matchLabels": {"canary": "on"}},
            "steps": [{"weight": 25, "analyze": "4s"}, {"weight": 50, "analyze": "4s"}],
            "analysis": {"interval": "2s", "failureLimit": 1, "onNoData": "Inconclusive",
                         "metrics": [{"name": "error-ratio", "query": error_ratio, "max": 0.05}]},
            "rollback": "Automatic",
        }
    }))
    .unwrap();
    create_ready(&policies, &p).await;

    // A good version, killed in each step's two phases and while promoting.
    set_image(&deployments, "shop/web:v2").await;
    let mut operator = Some(operator);
    let mut first_started = None;
    for want in [
        "Progressing step 1",
        "Analyzing step 1",
        "Progressing step 2",
        "Analyzing step 2",
        "Promoting step 2",
    ] {
        let running = match operator.take() {
            Some(o) => o,
            None => r.start().await,
        };
        wait_rollout_phase(&policies, want).await;
        if first_started.is_none() {
            let s = policies.get("crash").await.unwrap().status.unwrap();
            first_started = Some(s.rollouts[0].started_at.clone());
        }
        r.kill_in(running, want, phase).await;
    }
    let restarted = Instant::now();
    let running = r.start().await;
    wait_rollout_phase(&policies, "Promoted step 2").await;
    let promoted_after = restarted.elapsed();
    wait_complete(&deployments, "shop/web:v2").await;
    assert_eq!(
        strategy().await,
        own,
        "the Deployment's own settings restored"
    );
    let s = policies.get("crash").await.unwrap().status.unwrap();
    let rollout = &s.rollouts[0];
    assert_eq!(
        Some(rollout.started_at.clone()),
        first_started,
        "the same rollout"
    );
    let step_starts = rollout
        .transitions
        .iter()
        .filter(|t| t.phase == RolloutPhase::Progressing)
        .count();
    assert_eq!(
        step_starts, 2,
        "each step started once: {:#?}",
        rollout.transitions
    );

    // A bad version: killed while rolling back.
    set_image(&deployments, "shop/web:v3:bad").await;
    let restarted_back;
    {
        wait_rollout_phase(&policies, "RollingBack step 1").await;
        r.kill_in(running, "RollingBack step 1", phase).await;
        restarted_back = Instant::now();
        let _running = r.start().await;
        wait_rollout_phase(&policies, "RolledBack step 1").await;
        let rolled_back_after = restarted_back.elapsed();
        wait_complete(&deployments, "shop/web:v2").await;
        assert_eq!(
            strategy().await,
            own,
            "the Deployment's own settings restored"
        );
        println!(
            "canary: kills landed in {:?}; after the last restart Promoted in {promoted_after:?}, RolledBack in {rolled_back_after:?}",
            r.landed
        );
        assert_eq!(
            r.landed,
            [
                "Progressing step 1",
                "Analyzing step 1",
                "Progressing step 2",
                "Analyzing step 2",
                "Promoting step 2",
                "RollingBack step 1"
            ]
        );
        app.abort();
        support::cluster::delete_all_and_wait(&policies).await;
    }
    remove_webhook(&ctx.client, &ns).await;
    ctx.cleanup().await;
}

/// An operator with leader election (lease 6 s, renew deadline 4 s, retry 1 s) and its
/// webhook, acting in the test's namespace.
fn candidate(ctx: &TestContext, identity: &str) -> Operator {
    let mut extra = webhook_flags(&ctx.namespace);
    extra.extend(
        [
            "--leader-election",
            "--leader-election-lease=maturity-operator",
            "--leader-election-lease-duration=6s",
            "--leader-election-renew-deadline=4s",
            "--leader-election-retry-period=1s",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    extra.push(format!("--leader-election-namespace={}", ctx.namespace));
    extra.push(format!("--leader-election-identity={identity}"));
    Operator::start_with(
        &ctx.env,
        &ctx.namespace,
        &ctx.env.prometheus_url,
        "2s",
        &extra,
    )
}

async fn wait_leads(op: &Operator, who: &str) {
    eventually(&format!("{who} leads"), Duration::from_secs(40), || async {
        match op.metric("maturity_operator_leader").await {
            Some(1.0) => Ok(()),
            other => Err(format!("leader gauge {other:?}")),
        }
    })
    .await;
}

/// The leader frozen (SIGSTOP) mid-drill loses its lease: the standby takes over, resumes
/// the drill from status, restores and records it; the old leader, woken, steps down and
/// exits without writing anything or touching the workload.
#[tokio::test]
async fn the_lease_lost_mid_drill_the_successor_restores_and_the_old_leader_does_nothing() {
    let ctx = TestContext::new("crashlease").await;
    let ns = ctx.namespace.clone();
    slow_deployment(&ctx, "web", 3, "shop/web:v1").await;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let drills: Api<DrillSchedule> = Api::namespaced(ctx.client.clone(), &ns);
    let mut a = candidate(&ctx, "a");
    wait_leads(&a, "a").await;
    webhook_recording(&ctx.client, &ns).await;
    // b registers the webhook configuration again, for its own address.
    let b = candidate(&ctx, "b");
    tokio::time::sleep(Duration::from_secs(2)).await;
    webhook_recording(&ctx.client, &ns).await;
    assert_eq!(
        b.metric("maturity_operator_leader").await,
        Some(0.0),
        "b stands by"
    );
    let d = scale_down_drill("15s", "90s");
    drills.create(&PostParams::default(), &d).await.unwrap();
    wait_drill_phase(&drills, DrillPhase::Holding).await;
    // Holding is recorded before the scale-down is sent.
    wait_replicas(&deployments, 1).await;

    a.signal("STOP");
    let frozen = Instant::now();
    assert_eq!(drill_phase(&drills).await, "Holding", "frozen mid-drill");
    wait_leads(&b, "b").await;
    let took_over = frozen.elapsed();
    let run = wait_recorded(&drills, "the run recorded by b", 90).await;
    assert_eq!(run.result, RunResult::Passed, "{run:?}");
    assert!(
        run.reason
            .as_deref()
            .unwrap_or_default()
            .contains("resumed"),
        "{run:?}"
    );
    assert_eq!(replicas(&deployments, "web").await, 3);
    let recorded = drills.get("crash").await.unwrap();

    // The old leader wakes past its lease: it must step down, not write.
    a.signal("CONT");
    let exit = a.wait_exit(Duration::from_secs(20));
    assert!(
        exit.is_some_and(|s| !s.success()),
        "the deposed leader should exit with an error: {exit:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = drills.get("crash").await.unwrap();
    assert_eq!(
        after.status, recorded.status,
        "the old leader wrote after waking"
    );
    assert_eq!(
        replicas(&deployments, "web").await,
        3,
        "the old leader scaled"
    );
    println!(
        "lease lost mid-drill: b led {took_over:?} after a froze; run {:?}",
        run.reason
    );
    support::cluster::delete_all_and_wait(&drills).await;
    drop(b);
    remove_webhook(&ctx.client, &ns).await;
    ctx.cleanup().await;
}

/// SIGTERM while the operator is in the middle of restoring (its patch held by the API
/// proxy): it stops within the API call timeout, exits 0, and the next operator finishes
/// the restore from status.
#[tokio::test]
async fn sigterm_mid_restore_exits_cleanly_and_the_next_operator_restores() {
    let ctx = TestContext::new("crashterm").await;
    let ns = ctx.namespace.clone();
    slow_deployment(&ctx, "web", 3, "shop/web:v1").await;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let drills: Api<DrillSchedule> = Api::namespaced(ctx.client.clone(), &ns);
    let proxy = ApiProxy::start(&ctx.env).await;
    let r = Restarts::new(&ctx, &proxy, &[]);
    proxy.add(
        Rule::new(
            "PATCH",
            &format!("/namespaces/{ns}/deployments/web"),
            ApiFault::Hold,
        )
        .body(r#""replicas":3"#),
    );
    let mut operator = r.start().await;
    let d = scale_down_drill("2s", "60s");
    drills.create(&PostParams::default(), &d).await.unwrap();
    proxy.wait_held(Duration::from_secs(30)).await;
    assert_eq!(drill_phase(&drills).await, "Restoring");
    operator.signal("TERM");
    let termed = Instant::now();
    let exit = operator.wait_exit(Duration::from_secs(30));
    let stopped_in = termed.elapsed();
    assert!(
        exit.is_some_and(|s| s.success()),
        "SIGTERM should end the operator cleanly: {exit:?}"
    );
    assert_eq!(drill_phase(&drills).await, "Restoring");
    assert_eq!(replicas(&deployments, "web").await, 1);

    proxy.clear();
    let restarted = Instant::now();
    let _operator = r.start().await;
    let run = wait_recorded(&drills, "the run recorded", 60).await;
    println!(
        "SIGTERM mid-restore: exited in {stopped_in:?}; the next operator recorded the run {:?} later",
        restarted.elapsed()
    );
    assert_eq!(run.result, RunResult::Passed, "{run:?}");
    assert_eq!(replicas(&deployments, "web").await, 3);
    support::cluster::delete_all_and_wait(&drills).await;
    drop(_operator);
    remove_webhook(&ctx.client, &ns).await;
    ctx.cleanup().await;
}

/// A policy deleted mid-rollout whose give-back patch is refused once (409, as for a
/// Deployment changed since it was read) after the Released record was written: the next
/// pass finds no rollout under way and the Deployment still held with the hold's settings,
/// and must still give back the user's own (minReadySeconds "never" would leave the new pod
/// unavailable for good).
#[tokio::test]
async fn a_give_back_refused_after_the_record_still_restores_the_users_settings() {
    let ctx = TestContext::new("crashgiveback").await;
    let ns = ctx.namespace.clone();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let policies: Api<CanaryPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let proxy = ApiProxy::start(&ctx.env).await;
    let r = Restarts::new(&ctx, &proxy, &[]);
    let operator = r.start().await;
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"app": "web", "canary": "on"}},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                 "minReadySeconds": 1,
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": "shop/web:v1"}]}}}
    }))
    .unwrap();
    create_complete(&deployments, &d).await;
    let settings = || async {
        let d = deployments.get("web").await.unwrap().spec.unwrap();
        (d.strategy, d.min_ready_seconds, d.progress_deadline_seconds)
    };
    let own = settings().await;
    // No series: every check is inconclusive and the step holds.
    let p: CanaryPolicy = serde_json::from_value(json!({
        "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "CanaryPolicy",
        "metadata": {"name": "crash"},
        "spec": {
            "selector": {"matchLabels": {"canary": "on"}},
            "steps": [{"weight": 25, "analyze": "10m"}],
            "analysis": {"interval": "2s", "onNoData": "Inconclusive",
                         "metrics": [{"name": "errors", "max": 0.05,
                                      "query": r#"sum(rate(http_requests_total{namespace="{{namespace}}",deployment="{{deployment}}",code="500"}[5s]))"#}]},
            "rollback": "Automatic",
        }
    }))
    .unwrap();
    create_ready(&policies, &p).await;
    set_image(&deployments, "shop/web:v2").await;
    eventually(
        "the step held (minReadySeconds never)",
        Duration::from_secs(60),
        || async {
            let got = settings().await.1;
            (got == Some(i32::MAX - 1))
                .then_some(())
                .ok_or(format!("minReadySeconds {got:?}"))
        },
    )
    .await;
    // Only a give-back removes the hold annotation.
    let refused = ApiFault::Status {
        code: 409,
        retry_after: None,
    };
    proxy.add(
        Rule::new("PATCH", "/deployments/web", refused.clone())
            .body("~1canary-policy")
            .times(1),
    );
    policies
        .delete("crash", &Default::default())
        .await
        .expect("delete the policy");
    support::cluster::wait_gone(&policies, "crash", |p| {
        format!("still there, finalizers {:?}", p.metadata.finalizers)
    })
    .await;
    assert_eq!(proxy.count(&refused), 1, "the first give-back was refused");
    wait_complete(&deployments, "shop/web:v2").await;
    assert_eq!(
        settings().await,
        own,
        "the Deployment's own settings restored"
    );
    drop(operator);
    remove_webhook(&ctx.client, &ns).await;
    ctx.cleanup().await;
}

//! High availability: operator processes elect a leader on a real Lease with the chart's
//! settings (lease 15 s, renew deadline 10 s, retry 2 s). Only the leader writes status;
//! a standby takes over after the leader is killed (measured), at once after it stops
//! cleanly (it releases the lease), and a leader frozen past its lease (SIGSTOP) steps
//! down when it wakes instead of writing next to its successor.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use maturity_operator::api::MaturityAssessment;
use serde_json::json;
use support::cluster::TestContext;
use support::eventually;
use support::operator::Operator;

const WRITES: &str = "maturity_operator_status_writes_total{kind=\"MaturityAssessment\"}";

fn candidate(ctx: &TestContext, identity: &str) -> Operator {
    let extra: Vec<String> = [
        "--controllers=assessments",
        "--assessment-interval=2s",
        "--leader-election",
        "--leader-election-lease=maturity-operator",
        "--leader-election-lease-duration=15s",
        "--leader-election-renew-deadline=10s",
        "--leader-election-retry-period=2s",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        format!("--leader-election-namespace={}", ctx.namespace),
        format!("--leader-election-identity={identity}"),
    ])
    .collect();
    Operator::start_with(
        &ctx.env,
        &ctx.namespace,
        &ctx.env.prometheus_url,
        "2s",
        &extra,
    )
}

async fn leader_gauge(op: &Operator) -> Option<f64> {
    op.metric("maturity_operator_leader").await
}

async fn writes(op: &Operator) -> f64 {
    op.metric(WRITES).await.unwrap_or(0.0)
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("maturity-operator")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

/// Waits until `op` reports itself leader; returns how long that took from `since`.
async fn wait_leader(op: &Operator, who: &str, since: Instant, within: Duration) -> Duration {
    eventually(&format!("{who} leads"), within, || async {
        match leader_gauge(op).await {
            Some(1.0) => Ok(since.elapsed()),
            other => Err(format!("leader gauge {other:?}")),
        }
    })
    .await
}

async fn create_assessment(api: &Api<MaturityAssessment>, name: &str) {
    let a: MaturityAssessment = serde_json::from_value(json!({
        "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "MaturityAssessment",
        "metadata": {"name": name},
        "spec": {"targetLevel": 2}
    }))
    .unwrap();
    api.create(&PostParams::default(), &a).await.unwrap();
}

/// Waits until `name` has a status with a level; returns how long that took from `since`.
async fn wait_evaluated(
    api: &Api<MaturityAssessment>,
    name: &str,
    since: Instant,
    within: Duration,
) -> Duration {
    eventually(&format!("{name} evaluated"), within, || async {
        let a = api.get(name).await.map_err(|e| e.to_string())?;
        match a.status.and_then(|s| s.level) {
            Some(_) => Ok(since.elapsed()),
            None => Err("no level yet".to_string()),
        }
    })
    .await
}

#[tokio::test]
async fn one_leader_writes_and_a_standby_takes_over() {
    let ctx = TestContext::new("leader").await;
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let assessments: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);

    // A starts first and takes the new lease at once; B stands by.
    let a = candidate(&ctx, "a");
    let t = Instant::now();
    let took = wait_leader(&a, "a", t, Duration::from_secs(20)).await;
    eprintln!("a acquired a new lease in {took:.2?}");
    let b = candidate(&ctx, "b");
    eventually(
        "b is ready as a standby",
        Duration::from_secs(20),
        || async {
            match leader_gauge(&b).await {
                Some(0.0) => Ok(()),
                other => Err(format!("b's leader gauge {other:?}")),
            }
        },
    )
    .await;
    assert_eq!(holder(&leases).await.as_deref(), Some("a"));

    // Only the leader writes: two assessments evaluated, all writes are a's.
    create_assessment(&assessments, "first").await;
    create_assessment(&assessments, "second").await;
    wait_evaluated(
        &assessments,
        "first",
        Instant::now(),
        Duration::from_secs(30),
    )
    .await;
    wait_evaluated(
        &assessments,
        "second",
        Instant::now(),
        Duration::from_secs(30),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (wa, wb) = (writes(&a).await, writes(&b).await);
    assert!(wa >= 2.0, "the leader wrote {wa} statuses");
    assert_eq!(wb, 0.0, "the standby wrote {wb} statuses");
    assert_eq!(leader_gauge(&b).await, Some(0.0));

    // The leader dies without a word: b takes over once the lease has not changed for
    // 15 s by b's clock, i.e. 15-17 s after a's last renewal (renewals every 2 s).
    a.signal("KILL");
    let killed = Instant::now();
    create_assessment(&assessments, "after-kill").await;
    let takeover = wait_leader(&b, "b", killed, Duration::from_secs(30)).await;
    let evaluated =
        wait_evaluated(&assessments, "after-kill", killed, Duration::from_secs(40)).await;
    eprintln!(
        "leader killed: b led after {takeover:.2?}, the assessment created meanwhile was evaluated {evaluated:.2?} after the kill"
    );
    assert!(
        takeover >= Duration::from_secs(12) && takeover <= Duration::from_secs(22),
        "takeover after {takeover:?}: expected about the 15 s lease duration"
    );
    assert_eq!(holder(&leases).await.as_deref(), Some("b"));
    let lease = leases.get("maturity-operator").await.unwrap();
    assert_eq!(lease.spec.unwrap().lease_transitions, Some(1));
    drop(a);

    // A clean stop releases the lease: c takes over within about one retry period.
    let c = candidate(&ctx, "c");
    eventually("c stands by", Duration::from_secs(20), || async {
        match leader_gauge(&c).await {
            Some(0.0) => Ok(()),
            other => Err(format!("c's leader gauge {other:?}")),
        }
    })
    .await;
    let mut b = b;
    b.signal("TERM");
    let stopped = Instant::now();
    let handover = wait_leader(&c, "c", stopped, Duration::from_secs(10)).await;
    let status = b.wait_exit(Duration::from_secs(10));
    eprintln!("leader stopped cleanly: c led after {handover:.2?}; b exited {status:?}");
    assert!(
        status.is_some_and(|s| s.success()),
        "b's exit after SIGTERM: {status:?}"
    );
    assert!(
        handover <= Duration::from_secs(5),
        "handover took {handover:?}"
    );
    assert_eq!(holder(&leases).await.as_deref(), Some("c"));

    // A leader frozen past its lease (SIGSTOP: a stall, a partition) is replaced, and when it
    // wakes it steps down (exits non-zero) without taking the lease back.
    let d = candidate(&ctx, "d");
    eventually("d stands by", Duration::from_secs(20), || async {
        match leader_gauge(&d).await {
            Some(0.0) => Ok(()),
            other => Err(format!("d's leader gauge {other:?}")),
        }
    })
    .await;
    let mut c = c;
    c.signal("STOP");
    let frozen = Instant::now();
    let takeover = wait_leader(&d, "d", frozen, Duration::from_secs(30)).await;
    create_assessment(&assessments, "after-freeze").await;
    wait_evaluated(
        &assessments,
        "after-freeze",
        Instant::now(),
        Duration::from_secs(30),
    )
    .await;
    let d_writes = writes(&d).await;
    c.signal("CONT");
    let woke = Instant::now();
    let status = c.wait_exit(Duration::from_secs(15));
    eprintln!(
        "leader frozen: d led after {takeover:.2?}; c woke and exited {:.2?} later with {status:?}",
        woke.elapsed()
    );
    assert!(
        status.is_some_and(|s| !s.success()),
        "the deposed leader should stop with an error: {status:?}"
    );
    assert_eq!(holder(&leases).await.as_deref(), Some("d"));
    assert_eq!(leader_gauge(&d).await, Some(1.0));
    assert!(d_writes >= 1.0, "the new leader wrote {d_writes} statuses");
    drop(d);
    ctx.cleanup().await;
}

//! Prometheus misbehaving, between the operator and the real Prometheus (issue 14's fault
//! suite, first part): for each fault the assessment's measured practice becomes Unknown
//! with the reason (never Met, never NotMet from a fault), the level does not rise, the
//! operator stays ready, and once Prometheus answers again the practice is measured again.
//! The recovery time of each is printed (`--nocapture`).

mod support;

use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use maturity_operator::api::MaturityAssessment;
use serde_json::json;
use support::cluster::{TestContext, apply_assessment, assessment_level};
use support::eventually;
use support::fault::{Fault, FaultProxy};
use support::operator::Operator;

/// (state, detail) of practice CX-2.3 (customer satisfaction) and the overall level.
async fn satisfaction(
    api: &Api<MaturityAssessment>,
    name: &str,
) -> Result<(String, String, i32), String> {
    let a = api.get(name).await.map_err(|e| e.to_string())?;
    let v = serde_json::to_value(&a).unwrap();
    let p = v["status"]["capabilities"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["practices"].as_array().cloned().unwrap_or_default())
        .find(|p| p["id"] == "CX-2.3")
        .ok_or("not evaluated yet")?;
    Ok((
        p["state"].as_str().unwrap_or_default().to_string(),
        p["detail"].as_str().unwrap_or_default().to_string(),
        v["status"]["level"].as_i64().unwrap_or(0) as i32,
    ))
}

async fn wait_state(
    api: &Api<MaturityAssessment>,
    name: &str,
    want: &str,
    what: &str,
) -> (String, i32, Duration) {
    let since = Instant::now();
    let (_, detail, level) = eventually(what, Duration::from_secs(40), || async {
        let (state, detail, level) = satisfaction(api, name).await?;
        if state == want {
            Ok((state, detail, level))
        } else {
            Err(format!("{state}: {detail}"))
        }
    })
    .await;
    (detail, level, since.elapsed())
}

/// The operator (assessments every second) with `kubeconfig`, once it has evaluated an
/// assessment "before" through it; the assessments of the test's namespace.
async fn operator_through(
    ctx: &TestContext,
    kubeconfig: &str,
) -> (Operator, Api<MaturityAssessment>) {
    let operator = Operator::start_with_env(
        &ctx.env,
        &ctx.namespace,
        &ctx.env.prometheus_url,
        "2s",
        &["--assessment-interval=1s".to_string()],
        &[("KUBECONFIG", kubeconfig)],
    );
    let api: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    apply_assessment(&api, "before").await;
    eventually(
        "evaluated through the faulty link",
        Duration::from_secs(60),
        || assessment_level(&api, "before"),
    )
    .await;
    (operator, api)
}

#[tokio::test]
async fn every_prometheus_fault_is_unknown_never_a_level_and_the_operator_recovers() {
    let ctx = TestContext::new("faults").await;
    let ns = ctx.namespace.clone();
    let _signal = support::prom::satisfaction_signal(&ctx).await;

    let proxy = FaultProxy::start(&ctx.env.prometheus_url).await;
    let operator = Operator::start_with(
        &ctx.env,
        &ns,
        &proxy.url,
        "2s",
        &["--assessment-interval=1s".to_string()],
    );
    let api: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ns);
    // A new assessment for each fault: each goes Met, Unknown, Met, within its write
    // budget (5 in a row), so the times measured are the operator's, not the budget's.
    let measured = |name: String| {
        let api = api.clone();
        async move {
            let a: MaturityAssessment = serde_json::from_value(json!({
                "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "MaturityAssessment",
                "metadata": {"name": name},
                "spec": {"scope": {}, "signals": {"satisfaction": {"query": "avg(satisfaction_score)", "min": 4.0}}}
            }))
            .unwrap();
            api.patch(&name, &PatchParams::apply("faults-test"), &Patch::Apply(&a))
                .await
                .unwrap();
            let (_, level, _) = wait_state(&api, &name, "Met", "measured through the proxy").await;
            level
        }
    };
    for (i, (fault, says)) in [
        (
            Fault::Delay(Duration::from_secs(5)),
            "did not answer within 2s",
        ),
        (Fault::Reset, "is unreachable"),
        (Fault::Hang, "did not answer within 2s"),
        (Fault::Status(500), "rejected the query"),
        (Fault::Status(400), "rejected the query"),
        (Fault::Status(429), "rejected the query"),
        (Fault::Garbage, "cannot read Prometheus's answer"),
        (Fault::Value("NaN"), "returned NaN"),
        (Fault::Value("+Inf"), "returned +Inf"),
        (Fault::Empty, "no live data: the query returned nothing"),
        (Fault::Several, "returned 2 series"),
        (Fault::Stale, "answered for a time 3600 s away"),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("faulty-{i}");
        let healthy_level = measured(name.clone()).await;
        proxy.set(fault.clone());
        let (detail, level, seen) = wait_state(
            &api,
            &name,
            "Unknown",
            &format!("{fault:?} seen as Unknown"),
        )
        .await;
        assert!(detail.contains(says), "{fault:?}: {detail}");
        assert!(
            level <= healthy_level,
            "{fault:?} raised the level to {level}"
        );
        let (code, body) = operator.get("/readyz", None).await.unwrap();
        assert_eq!((code, body.as_str()), (200, "ok"), "{fault:?}");
        proxy.set(Fault::Pass);
        let (_, level, recovered) = wait_state(
            &api,
            &name,
            "Met",
            &format!("measured again after {fault:?}"),
        )
        .await;
        assert_eq!(level, healthy_level);
        println!(
            "{fault:?}: Unknown after {seen:?} ({detail}), measured again {recovered:?} after it ended"
        );
        api.delete(&name, &Default::default()).await.unwrap();
    }
    // A warning with the answer is not a fault: the value counts.
    measured("warned".into()).await;
    proxy.set(Fault::Warnings);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (state, detail, _) = satisfaction(&api, "warned").await.unwrap();
    assert_eq!(state, "Met", "{detail}");
    drop(operator);
    ctx.cleanup().await;
}

/// The API server cut off (every connection reset, as in a restart), then partitioned
/// (nothing flows), then back: the operator does not exit, its watches come back, and an
/// object created while it could not see the API server is evaluated once it can.
#[tokio::test]
async fn the_api_server_cut_off_then_partitioned_then_back_and_the_operator_goes_on() {
    use support::fault::{Link, LinkProxy};
    let ctx = TestContext::new("apifault").await;
    let link = LinkProxy::start(&ctx.env.kubeconfig).await;
    let kubeconfig = link.kubeconfig.to_str().unwrap().to_string();
    let (mut operator, api) = operator_through(&ctx, &kubeconfig).await;

    link.set(Link::Cut);
    tokio::time::sleep(Duration::from_secs(5)).await;
    link.set(Link::Blackhole);
    apply_assessment(&api, "during").await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(
        api.get("during").await.unwrap().status.is_none(),
        "evaluated while the operator could not reach the API server?"
    );
    assert!(operator.running(), "the operator exited during the outage");
    link.set(Link::Up);
    let back = Instant::now();
    eventually(
        "the object made during the outage evaluated",
        Duration::from_secs(90),
        || assessment_level(&api, "during"),
    )
    .await;
    println!(
        "evaluated {:?} after the API server came back",
        back.elapsed()
    );
    assert!(operator.running(), "the operator exited");
    let (code, _) = operator.get("/readyz", None).await.unwrap();
    assert_eq!(code, 200);
    drop(operator);
    ctx.cleanup().await;
}

/// The API server answering badly, through the HTTP fault proxy: 429 with `Retry-After`,
/// 503, slow answers, and watches that end with 410 Gone (the operator must list again).
/// The operator never exits, stays ready, writes nothing it could not, and each assessment
/// made during a fault is evaluated once the fault ends (the time is printed).
#[tokio::test]
async fn api_server_errors_are_retried_and_a_gone_watch_lists_again() {
    use support::api_proxy::{ApiFault, ApiProxy, Rule};
    let ctx = TestContext::new("apihttp").await;
    let ns = ctx.namespace.clone();
    let proxy = ApiProxy::start(&ctx.env).await;
    let kubeconfig = proxy.kubeconfig_var();
    let (mut operator, api) = operator_through(&ctx, &kubeconfig).await;
    let status_writes = format!("/namespaces/{ns}/maturityassessments/");

    // 429 Too Many Requests with Retry-After: 1, for the next 3 status writes.
    let throttled = ApiFault::Status {
        code: 429,
        retry_after: Some(1),
    };
    proxy.add(Rule::new("PATCH", &status_writes, throttled.clone()).times(3));
    let since = Instant::now();
    apply_assessment(&api, "throttled").await;
    eventually("evaluated after 429s", Duration::from_secs(60), || {
        assessment_level(&api, "throttled")
    })
    .await;
    assert_eq!(proxy.count(&throttled), 3, "the 429s were not met");
    println!(
        "429 x3 (Retry-After: 1): evaluated after {:?}",
        since.elapsed()
    );

    // The next 2 status writes: the connection reset without an answer.
    proxy.add(Rule::new("PATCH", &status_writes, ApiFault::Reset).times(2));
    let since = Instant::now();
    apply_assessment(&api, "reset").await;
    eventually("evaluated after resets", Duration::from_secs(60), || {
        assessment_level(&api, "reset")
    })
    .await;
    assert_eq!(proxy.count(&ApiFault::Reset), 2, "the resets were not met");
    println!("connection reset x2: evaluated after {:?}", since.elapsed());

    // 503 on every status write for 5 s.
    let unavailable = ApiFault::Status {
        code: 503,
        retry_after: None,
    };
    proxy.add(Rule::new("PATCH", &status_writes, unavailable.clone()));
    apply_assessment(&api, "unavailable").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(proxy.count(&unavailable) >= 1, "no write met the 503");
    assert!(
        api.get("unavailable").await.unwrap().status.is_none(),
        "a status through a 503?"
    );
    proxy.clear();
    let since = Instant::now();
    eventually("evaluated after the 503s", Duration::from_secs(60), || {
        assessment_level(&api, "unavailable")
    })
    .await;
    println!(
        "503 for 5 s ({} writes refused): evaluated {:?} after it ended",
        proxy.count(&unavailable),
        since.elapsed()
    );

    // Every answer 1.5 s late.
    proxy.add(Rule::new(
        "",
        "/",
        ApiFault::Delay(Duration::from_millis(1500)),
    ));
    let since = Instant::now();
    apply_assessment(&api, "slow").await;
    eventually(
        "evaluated with slow answers",
        Duration::from_secs(60),
        || assessment_level(&api, "slow"),
    )
    .await;
    println!("answers 1.5 s late: evaluated after {:?}", since.elapsed());
    proxy.clear();

    // Every watch cut; the next watch of assessments answered 410 Gone: listed again.
    let gone_watch = Rule::new("GET", "maturityassessments?", ApiFault::Gone).times(1);
    proxy.add(gone_watch);
    let seen_before = proxy.seen().len();
    proxy.cut();
    eventually("a watch answered 410", Duration::from_secs(30), || async {
        if proxy.count(&ApiFault::Gone) == 1 {
            Ok(())
        } else {
            Err("no watch yet".to_string())
        }
    })
    .await;
    let since = Instant::now();
    apply_assessment(&api, "after-gone").await;
    eventually(
        "evaluated after the relist",
        Duration::from_secs(60),
        || assessment_level(&api, "after-gone"),
    )
    .await;
    println!(
        "watch 410 Gone: a new assessment evaluated after {:?}",
        since.elapsed()
    );
    let after: Vec<_> = proxy.seen().into_iter().skip(seen_before).collect();
    let gone_at = after
        .iter()
        .position(|s| s.fault == Some(ApiFault::Gone))
        .unwrap();
    assert!(
        after[gone_at..].iter().any(|s| s.method == "GET"
            && s.path.contains("/maturityassessments?")
            && !s.path.contains("watch=")),
        "no list after the 410: {:?}",
        after[gone_at..]
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect::<Vec<_>>()
    );
    assert!(operator.running(), "the operator exited");
    let (code, _) = operator.get("/readyz", None).await.unwrap();
    assert_eq!(code, 200);
    drop(operator);
    ctx.cleanup().await;
}

/// 1,000 assessments created at once (the proxy in front of Prometheus passes everything
/// and counts): Prometheus never has more than the operator's 4 queries in flight, each
/// assessment costs the queries one assessment costs, status is written about once per
/// assessment, every one is evaluated, and the operator stays ready. Times printed.
#[tokio::test]
async fn a_burst_of_a_thousand_objects_keeps_prometheus_and_the_api_server_load_bounded() {
    use futures::StreamExt;
    const N: usize = 1000;
    let ctx = TestContext::new("burst").await;
    let ns = ctx.namespace.clone();
    let proxy = FaultProxy::start(&ctx.env.prometheus_url).await;
    let operator = Operator::start_with(
        &ctx.env,
        &ns,
        &proxy.url,
        "2s",
        &[
            "--assessment-interval=300s".to_string(),
            "--prometheus-max-in-flight=4".to_string(),
        ],
    );
    let api: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ns);
    let doc = |name: String| -> MaturityAssessment {
        serde_json::from_value(json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "MaturityAssessment",
            "metadata": {"name": name}, "spec": {"scope": {}}
        }))
        .unwrap()
    };
    let levels = |api: Api<MaturityAssessment>| async move {
        api.list(&Default::default())
            .await
            .map(|l| {
                l.items
                    .iter()
                    .filter(|a| a.status.as_ref().and_then(|s| s.level).is_some())
                    .count()
            })
            .unwrap_or(0)
    };
    // What one assessment costs.
    api.create(&Default::default(), &doc("one".into()))
        .await
        .unwrap();
    eventually(
        "the first one evaluated",
        Duration::from_secs(30),
        || async {
            match levels(api.clone()).await {
                1 => Ok(()),
                n => Err(n.to_string()),
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per_object = proxy.answered();
    let writes = r#"maturity_operator_status_writes_total{kind="MaturityAssessment"}"#;
    let writes_one = operator.metric(writes).await.unwrap_or(0.0);
    assert!(per_object > 0, "one assessment sent no query");

    let started = Instant::now();
    futures::stream::iter((0..N).map(|i| {
        let (api, a) = (api.clone(), doc(format!("burst-{i}")));
        async move { api.create(&Default::default(), &a).await.unwrap() }
    }))
    .buffer_unordered(50)
    .collect::<Vec<_>>()
    .await;
    let created = started.elapsed();
    eventually("all evaluated", Duration::from_secs(600), || async {
        match levels(api.clone()).await {
            n if n == N + 1 => Ok(()),
            n => Err(format!("{n} of {}", N + 1)),
        }
    })
    .await;
    let evaluated = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let queries = proxy.answered() - per_object;
    let written = operator.metric(writes).await.unwrap_or(0.0) - writes_one;
    println!(
        "burst of {N}: created in {created:?}, all evaluated after {evaluated:?}; {queries} Prometheus queries ({per_object} for one), at most {} in flight; {written} status writes ({writes_one} for one)",
        proxy.max_in_flight()
    );
    assert!(
        proxy.max_in_flight() <= 4,
        "{} queries in flight",
        proxy.max_in_flight()
    );
    assert!(
        queries <= N * per_object,
        "{queries} queries for {N} assessments, {per_object} for one"
    );
    assert!(
        written <= (N as f64) * writes_one.max(1.0),
        "{written} writes for {N} assessments, {writes_one} for one"
    );
    let (code, _) = operator.get("/readyz", None).await.unwrap();
    assert_eq!(code, 200);
    drop(operator);
    ctx.cleanup().await;
}

/// The API server the operator talks to stopped (SIGTERM, as a restart does) for 10 s and
/// started again: a real kube-apiserver of its own on the cluster's etcd. The operator does
/// not exit, evaluates nothing while it cannot write, and evaluates what was created
/// meanwhile once its API server is back (time printed).
#[tokio::test]
async fn the_api_server_stopped_and_started_again_and_the_operator_goes_on() {
    use support::fault::SecondApiServer;
    let ctx = TestContext::new("apirestart").await;
    let mut second = SecondApiServer::start(&ctx.env);
    let kubeconfig = second.kubeconfig.to_str().unwrap().to_string();
    let (mut operator, api) = operator_through(&ctx, &kubeconfig).await;
    let stopped = Instant::now();
    second.stop();
    println!("the second API server stopped in {:?}", stopped.elapsed());
    apply_assessment(&api, "during").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        api.get("during").await.unwrap().status.is_none(),
        "evaluated while its API server was down?"
    );
    assert!(
        operator.running(),
        "the operator exited while its API server was down"
    );
    let restarted = Instant::now();
    second.resume();
    let ready = restarted.elapsed();
    eventually(
        "evaluated after the restart",
        Duration::from_secs(90),
        || assessment_level(&api, "during"),
    )
    .await;
    println!(
        "API server restarted (ready after {ready:?}): the assessment made meanwhile evaluated {:?} after the restart began",
        restarted.elapsed()
    );
    assert!(operator.running(), "the operator exited");
    let (code, _) = operator.get("/readyz", None).await.unwrap();
    assert_eq!(code, 200);
    drop(operator);
    ctx.cleanup().await;
}

//! Cheap at scale, by counts (the times and memory are `make bench`'s): 200
//! ResponseTimeTargets that share an indicator shape are one group, answered by one
//! Prometheus query per evaluation cycle (the bucket check is cached), counted by the
//! operator's own metrics; a cycle in which nothing changed writes nothing.

mod support;

use std::time::{Duration, Instant};

use kube::api::{Api, PostParams};
use maturity_operator::api::ResponseTimeTarget;
use support::cluster::TestContext;
use support::eventually;
use support::operator::Operator;
use support::prom::{BackfilledPrometheus, LatencyHistory, ServiceTraffic, now_unix};

/// 200 in `make test`; `MATURITY_SCALE_TARGETS=2000` measures a larger namespace.
fn targets() -> usize {
    std::env::var("MATURITY_SCALE_TARGETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The value of a metric line `name{labels} value` whose labels contain every one of `must`.
fn metric(text: &str, name: &str, must: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| must.iter().all(|m| l.contains(m)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn two_hundred_targets_cost_a_handful_of_queries_and_no_idle_writes() {
    let ctx = TestContext::new("scale").await;
    // The operator writes its recordings where PrometheusRules are served.
    support::cluster::install_monitoring_crds(&ctx.env, &ctx.client).await;
    let count = targets();
    // Two hours of history that ended ten minutes ago, with a constant share of good
    // requests per service: every figure is the same at every later evaluation.
    let now = now_unix();
    let step = 60;
    let history = LatencyHistory {
        start: now - 2 * 3600,
        end: now - now % step - 600,
        step,
        namespace: ctx.namespace.clone(),
    };
    let shares: Vec<f64> = (0..count).map(|i| 0.99 + (i % 10) as f64 * 0.001).collect();
    let names: Vec<String> = (0..count).map(|i| format!("svc-{i:03}")).collect();
    let fns: Vec<Box<dyn Fn(i64) -> f64>> = shares
        .iter()
        .map(|s| {
            let s = *s;
            Box::new(move |_| s) as Box<dyn Fn(i64) -> f64>
        })
        .collect();
    let services: Vec<ServiceTraffic<'_>> = names
        .iter()
        .zip(&fns)
        .map(|(n, f)| (n.as_str(), 1.0, f.as_ref()))
        .collect();
    let started = Instant::now();
    let (om, expected) = history.generate(&services, history.start - 1);
    let backfilled = BackfilledPrometheus::start(&ctx.env, &om).await;
    eprintln!("backfilled {count} services in {:?}", started.elapsed());

    let operator = Operator::start(&ctx.env, &ctx.namespace, &backfilled.prom.url, "3s");
    let metrics_url = operator.metrics_url.clone();

    let api: Api<ResponseTimeTarget> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let creating = Instant::now();
    for name in &names {
        let t: ResponseTimeTarget = serde_json::from_value(serde_json::json!({
            "apiVersion": "maturity.sre.dev/v1alpha1",
            "kind": "ResponseTimeTarget",
            "metadata": {"name": name},
            "spec": {
                "service": name, "requestClass": "interactive", "objective": 99.0, "window": "28d",
                "indicator": {"latency": {"histogram": "http_request_duration_seconds",
                                          "selector": format!("{{service=\"{name}\"}}"), "threshold": "300ms"}}
            }
        }))
        .unwrap();
        api.create(&PostParams::default(), &t)
            .await
            .expect("create target");
    }

    eprintln!("created {count} targets in {:?}", creating.elapsed());
    // Every target measured, with its own attainment.
    let started = Instant::now();
    eventually("all targets measured", Duration::from_secs(300), || {
        let api = api.clone();
        let expected = expected.clone();
        async move {
            let list = api
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let mut measured = 0;
            for t in &list.items {
                let Some(a) = t.status.as_ref().and_then(|s| s.attainment) else {
                    continue;
                };
                let i: usize = t.metadata.name.as_ref().unwrap()[4..].parse().unwrap();
                if (a - expected[i]).abs() > 0.01 {
                    return Err(format!(
                        "{:?}: attainment {a} vs {}",
                        t.metadata.name, expected[i]
                    ));
                }
                measured += 1;
            }
            if measured == count {
                Ok(())
            } else {
                Err(format!("{measured} of {count} measured"))
            }
        }
    })
    .await;
    eprintln!(
        "{count} targets measured {:?} after the last was created",
        started.elapsed()
    );

    // Now watch two full cycles: count queries and writes.
    let read = || async {
        let text = reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        (
            metric(
                &text,
                "maturity_operator_cycle_duration_seconds_count",
                &["ResponseTimeTarget"],
            ),
            metric(&text, "maturity_operator_prometheus_queries_total", &[]),
            metric(
                &text,
                "maturity_operator_status_writes_total",
                &["ResponseTimeTarget"],
            ),
            metric(
                &text,
                "maturity_operator_cycle_duration_seconds_sum",
                &["ResponseTimeTarget"],
            ),
        )
    };
    // Let the writes of the first evaluations settle: wait for a cycle that wrote nothing.
    let settle = Instant::now();
    let mut before = read().await;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = read().await;
        if now.0 > before.0 && now.2 == before.2 {
            break;
        }
        assert!(
            settle.elapsed() < Duration::from_secs(30),
            "writes did not settle: {now:?}"
        );
        if now.0 > before.0 {
            before = now;
        }
    }
    let start = read().await;
    let end = eventually("two more cycles", Duration::from_secs(30), || async {
        let now = read().await;
        if now.0 >= start.0 + 2.0 {
            Ok(now)
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await;
    let cycles = end.0 - start.0;
    let queries_per_cycle = (end.1 - start.1) / cycles;
    let cycle_seconds = (end.3 - start.3) / cycles;
    eprintln!(
        "{count} targets: {queries_per_cycle} Prometheus queries and {:.3} s per cycle, {} writes in {cycles} idle cycles",
        cycle_seconds,
        end.2 - start.2
    );
    eprintln!(
        "operator resident memory: {:.1} MiB",
        rss_mib(operator.pid())
    );
    // One group (one shape), one batch: one query per cycle; the bucket check is cached.
    assert_eq!(
        queries_per_cycle,
        1.0,
        "{queries_per_cycle} queries per cycle for one group of {count} (batches of {})",
        maturity_operator::controllers::response_time_target::MAX_BATCH
    );
    let text = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&text, "maturity_rtt_groups", &["kind=\"batched\""]),
        1.0,
        "{count} targets of one shape are one group"
    );
    // One pair of recording rules for the shape, not one per target.
    let rules: Api<kube::api::DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &ctx.namespace,
        &maturity_operator::controllers::response_time_target::rules::api_resource(),
    );
    let recordings = rules
        .get(maturity_operator::api::names::RECORDINGS_RULE)
        .await
        .expect("the recordings PrometheusRule");
    let group = &recordings.data["spec"]["groups"][0];
    assert_eq!(group["interval"], "5m", "{group}");
    let records: Vec<&str> = group["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["record"].as_str())
        .collect();
    assert_eq!(
        records,
        [
            maturity_operator::slo::recordings::GOOD,
            maturity_operator::slo::recordings::TOTAL
        ],
        "{group}"
    );
    assert_eq!(
        end.2 - start.2,
        0.0,
        "a cycle that changes nothing must not write"
    );
    ctx.cleanup().await;
}

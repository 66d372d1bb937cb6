//! The real Prometheus: 28 days of backfilled history are queryable at once, and the
//! synthetic exporter's live series (set by the test) are scraped.

mod support;

use std::time::Duration;

use maturity_operator::synthetic::{SyntheticExporter, Traffic, labels};
use support::cluster::{TestContext, ensure_cluster};
use support::eventually;
use support::prom::{BackfilledPrometheus, OpenMetrics, Prom, ScrapeTarget};

#[tokio::test]
async fn backfilled_history_is_queryable_over_28_days() {
    let env = tokio::task::spawn_blocking(ensure_cluster).await.unwrap();
    let step = 300i64; // one sample every 5 minutes
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end = now - now % step - 600;
    let start = end - 29 * 86_400;
    let window_start = end - 28 * 86_400;

    // A latency histogram whose share of requests within 300ms varies over time.
    let mut om = OpenMetrics::default();
    let (mut good, mut total) = (0.0f64, 0.0f64);
    let (mut good_at_window_start, mut total_at_window_start) = (None, None);
    let mut i = 0i64;
    let mut ts = start;
    while ts <= end {
        total += 100.0;
        good += if (i / 12) % 10 == 0 { 80.0 } else { 99.0 };
        if ts <= window_start {
            good_at_window_start = Some(good);
            total_at_window_start = Some(total);
        }
        om.latency_point("latency_seconds", r#"job="checkout""#, good, total, ts);
        i += 1;
        ts += step;
    }
    let expected =
        (good - good_at_window_start.unwrap()) / (total - total_at_window_start.unwrap());

    let started = std::time::Instant::now();
    let backfilled = BackfilledPrometheus::start(&env, &om.render()).await;
    eprintln!(
        "backfill of {i} points per series loaded in {:?}",
        started.elapsed()
    );

    let q = r#"sum(increase(latency_seconds_bucket{job="checkout",le="0.3"}[28d])) / sum(increase(latency_seconds_count{job="checkout"}[28d]))"#;
    let samples = backfilled
        .prom
        .query_at(q, Some(end as f64))
        .await
        .unwrap_or_else(|e| panic!("{e}; Prometheus log: {}", backfilled.log_path().display()));
    assert_eq!(samples.len(), 1, "{samples:?}");
    let got = samples[0].value;
    assert!(
        (got - expected).abs() < 1e-4,
        "28-day ratio {got} differs from the generator's {expected}"
    );

    // The oldest day of the window is there too: a query at its start sees data.
    let early = backfilled
        .prom
        .query_at(
            r#"latency_seconds_count{job="checkout"}"#,
            Some((window_start + 3600) as f64),
        )
        .await
        .unwrap();
    assert_eq!(
        early.len(),
        1,
        "no sample near the start of the 28-day window"
    );
}

#[tokio::test]
async fn synthetic_exporter_series_are_scraped_and_follow_what_the_test_sets() {
    let ctx = TestContext::new("scrape").await;
    let exporter = SyntheticExporter::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let stable = labels(&[("service", "checkout"), ("pod_template_hash", "stable1")]);
    let canary = labels(&[("service", "checkout"), ("pod_template_hash", "canary1")]);
    exporter.set_traffic(stable.clone(), Traffic::steady(50.0, 0.0, 0.05));
    exporter.set_traffic(canary.clone(), Traffic::steady(50.0, 0.2, 0.5));
    let _target = ScrapeTarget::register(
        &ctx.env,
        &ctx.namespace,
        exporter.addr(),
        &[("test_ns", &ctx.namespace)],
    );
    let prom = Prom::new(ctx.env.prometheus_url.clone());
    let ns = ctx.namespace.clone();

    let error_ratio = |hash: &'static str| {
        let prom = prom.clone();
        let ns = ns.clone();
        move || {
            let prom = prom.clone();
            let q = format!(
                r#"sum(rate(http_requests_total{{test_ns="{ns}",pod_template_hash="{hash}",code="500"}}[4s])) / sum(rate(http_requests_total{{test_ns="{ns}",pod_template_hash="{hash}"}}[4s]))"#
            );
            async move { prom.scalar(&q).await }
        }
    };

    let started = std::time::Instant::now();
    let canary_ratio = eventually("canary error ratio scraped", Duration::from_secs(30), {
        let f = error_ratio("canary1");
        move || {
            let fut = f();
            async move {
                fut.await
                    .and_then(|v| if v.is_nan() { Err("NaN".into()) } else { Ok(v) })
            }
        }
    })
    .await;
    eprintln!(
        "first scraped series queryable after {:?}",
        started.elapsed()
    );
    assert!(
        (canary_ratio - 0.2).abs() < 0.02,
        "canary error ratio {canary_ratio}"
    );
    let stable_ratio = error_ratio("stable1")().await.unwrap();
    assert!(
        stable_ratio.abs() < 1e-9,
        "stable error ratio {stable_ratio}"
    );

    // Latency: the canary's requests take 500ms, so none is within 300ms.
    let within = prom
        .scalar(&format!(
            r#"sum(rate(http_request_duration_seconds_bucket{{test_ns="{ns}",pod_template_hash="canary1",le="0.3"}}[4s]))"#
        ))
        .await
        .unwrap();
    assert_eq!(within, 0.0);

    // What the test sets next is what Prometheus sees next.
    exporter.set_traffic(canary.clone(), Traffic::steady(50.0, 0.0, 0.05));
    eventually("canary error ratio back to 0", Duration::from_secs(30), {
        let f = error_ratio("canary1");
        move || {
            let fut = f();
            async move {
                let v = fut.await?;
                if v.abs() < 1e-9 {
                    Ok(())
                } else {
                    Err(format!("ratio {v}"))
                }
            }
        }
    })
    .await;
    ctx.cleanup().await;
}

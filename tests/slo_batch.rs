//! The batched query against a real Prometheus on 28 days of backfilled history: two
//! services in one group, one healthy and one degraded, are answered by one query, and
//! each one's attainment matches the generator's own figure within 0.01 percentage points.

mod support;

use std::time::Duration;

use maturity_operator::api::response_time_target::ResponseTimeTargetSpec;
use maturity_operator::conditions::Status;
use maturity_operator::metrics::Metrics;
use maturity_operator::prom::enforce::Tenancy;
use maturity_operator::prom::{PromClient, PromConfig};
use maturity_operator::slo::batch::{Source, group_query, membership, split_answer};
use maturity_operator::slo::{OBJECTIVE_MET, State, Target, evaluate};
use support::cluster::ensure_cluster;
use support::prom::{BackfilledPrometheus, OpenMetrics};

fn spec(service: &str) -> ResponseTimeTargetSpec {
    serde_saphyr::from_str(&format!(
        r#"{{service: {service}, requestClass: interactive, objective: 99.5, window: 28d, minRequestRate: 0.1,
           indicator: {{latency: {{histogram: http_request_duration_seconds, selector: '{{service="{service}"}}', threshold: 300ms}}}}}}"#
    ))
    .unwrap()
}

#[tokio::test]
async fn batched_attainment_matches_the_generated_history() {
    let env = tokio::task::spawn_blocking(ensure_cluster).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let step = 300i64;
    let end = now - now % step - 300;
    let window_start = end - 28 * 86_400;

    // Per service: requests per step and the share within 300 ms, varying by day.
    let services = [("healthy", 0.9995, 0.9985), ("degraded", 0.99, 0.95)];
    let mut om = OpenMetrics::default();
    let mut expected = Vec::new();
    for (service, usual, bad_day) in services {
        let (mut good, mut total) = (0.0f64, 0.0f64);
        let (mut good0, mut total0) = (0.0, 0.0);
        let mut ts = window_start - 86_400;
        while ts <= end {
            let day = (ts - window_start).div_euclid(86_400);
            let share = if day % 7 == 3 { bad_day } else { usual };
            let n = 600.0 + (ts / step % 5) as f64 * 60.0;
            total += n;
            good += (n * share).floor();
            if ts <= window_start {
                (good0, total0) = (good, total);
            }
            for (le, v) in [("0.3", good), ("+Inf", total)] {
                om.sample(
                    "http_request_duration_seconds",
                    "histogram",
                    &format!(
                        r#"http_request_duration_seconds_bucket{{service="{service}",le="{le}"}}"#
                    ),
                    v,
                    ts,
                );
            }
            om.sample(
                "http_request_duration_seconds",
                "histogram",
                &format!(r#"http_request_duration_seconds_count{{service="{service}"}}"#),
                total,
                ts,
            );
            ts += step;
        }
        expected.push(100.0 * (good - good0) / (total - total0));
    }
    let backfilled = BackfilledPrometheus::start(&env, &om.render()).await;

    let specs = [spec("healthy"), spec("degraded")];
    let members: Vec<_> = specs
        .iter()
        .map(|s| membership("shop", s, &Tenancy::Single).unwrap())
        .collect();
    assert_eq!(members[0].key, members[1].key, "one group");
    let values: Vec<&[String]> = members.iter().map(|m| m.values.as_slice()).collect();
    let query = group_query(&members[0].key, &values, Source::Raw);

    let metrics = Metrics::new();
    let mut config = PromConfig::new(backfilled.prom.url.clone());
    config.timeout = Duration::from_secs(30);
    let prom = PromClient::new(config, metrics.clone()).unwrap();
    let samples = prom.instant(&query, Some(end as f64)).await.unwrap();
    let observations = split_answer(&members[0].key, &values, &samples);
    assert_eq!(
        metrics
            .prometheus_queries
            .with_label_values(&["instant", "ok"])
            .get(),
        1
    );

    for ((s, obs), want) in specs.iter().zip(&observations).zip(&expected) {
        let target = Target {
            objective: s.objective,
            window: s.window.parse().unwrap(),
            min_request_rate: s.min_request_rate,
        };
        let e = evaluate(&target, obs);
        let got = e
            .attainment
            .unwrap_or_else(|| panic!("{}: no attainment: {:?}", s.service, e.conditions));
        assert!(
            (got - want).abs() < 0.01,
            "{}: attainment {got} vs generated {want}",
            s.service
        );
        let met = e
            .conditions
            .iter()
            .find(|c| c.type_ == OBJECTIVE_MET)
            .unwrap();
        let budget = 1.0 - (1.0 - want / 100.0) / 0.005;
        assert!(
            (e.error_budget_remaining.unwrap() - budget).abs() < 0.02,
            "{}: budget {:?} vs {budget}",
            s.service,
            e.error_budget_remaining
        );
        if s.service == "healthy" {
            assert_eq!((e.state, met.status), (State::Met, Status::True), "{met:?}");
        } else {
            assert_eq!(
                (e.state, met.status),
                (State::Missed, Status::False),
                "{met:?}"
            );
        }
    }
}

//! The recordings per indicator shape against a real Prometheus: 31 days of 2-minute
//! history (a recorded 5-minute increase needs two samples in 5 minutes) for three services in three namespaces, the operator's recording rules for a
//! group of two of them backfilled with `promtool tsdb create-blocks-from rules` (as a
//! Prometheus that has run them for a month would hold them), then:
//! - the coverage check finds both members covered, and the third namespace was never
//!   recorded (a rule reads only its members' namespaces);
//! - the group query that reads the window and the 1d and 3d burn windows from the
//!   recordings gives each member the attainment the generator worked out, within
//!   0.05 percentage points (a recorded sample covers 5 minutes), as the raw query does;
//! - the generated 3d ticket alert reads its long window from the recordings, gets the
//!   generated share of bad events, and fires for the degraded service only.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use maturity_operator::api::response_time_target::ResponseTimeTargetSpec;
use maturity_operator::controllers::response_time_target::rules::recording_group;
use maturity_operator::metrics::Metrics;
use maturity_operator::prom::enforce::Tenancy;
use maturity_operator::prom::{PromClient, PromConfig};
use maturity_operator::slo::batch::{Source, group_query, membership, split_answer};
use maturity_operator::slo::recordings::{self, coverage_query, needed, shape_id};
use maturity_operator::slo::{Target, evaluate};
use support::cluster::ensure_cluster;
use support::prom::{BackfilledPrometheus, OpenMetrics};

fn spec(service: &str) -> ResponseTimeTargetSpec {
    serde_saphyr::from_str(&format!(
        r#"{{service: {service}, requestClass: interactive, objective: 99.5, window: 28d,
           indicator: {{latency: {{histogram: http_request_duration_seconds, selector: '{{service="{service}"}}', threshold: 300ms}}}}}}"#
    ))
    .unwrap()
}

#[tokio::test]
async fn recorded_windows_give_the_generated_attainment_and_read_only_member_namespaces() {
    let env = tokio::task::spawn_blocking(ensure_cluster).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let step = 120i64;
    let end = now - now % 300 - 600;
    let window_start = end - 28 * 86_400;
    let history_start = end - 31 * 86_400;

    // (namespace, service, usual share good, share on the bad day of each week)
    let services = [
        ("shop", "healthy", 0.9995, 0.9985),
        ("web", "degraded", 0.99, 0.95),
        ("other", "healthy", 0.999, 0.999),
    ];
    let mut om = OpenMetrics::default();
    let mut expected = Vec::new();
    // Each service's share of bad events over the last 3 days (the 3d ticket's window).
    let mut bad_3d = Vec::new();
    for (ns, service, usual, bad_day) in services {
        let (mut good, mut total) = (0.0f64, 0.0f64);
        let (mut good0, mut total0) = (0.0, 0.0);
        let (mut good3, mut total3) = (0.0, 0.0);
        let mut ts = history_start;
        while ts <= end {
            let day = (ts - window_start).div_euclid(86_400);
            let share = if day.rem_euclid(7) == 3 {
                bad_day
            } else {
                usual
            };
            let n = 600.0 + (ts / step % 5) as f64 * 60.0;
            total += n;
            good += (n * share).floor();
            if ts <= window_start {
                (good0, total0) = (good, total);
            }
            if ts <= end - 3 * 86_400 {
                (good3, total3) = (good, total);
            }
            let l = format!(r#"namespace="{ns}",service="{service}""#);
            for (le, v) in [("0.3", good), ("+Inf", total)] {
                om.sample(
                    "http_request_duration_seconds",
                    "histogram",
                    &format!(r#"http_request_duration_seconds_bucket{{{l},le="{le}"}}"#),
                    v,
                    ts,
                );
            }
            om.sample(
                "http_request_duration_seconds",
                "histogram",
                &format!(r#"http_request_duration_seconds_count{{{l}}}"#),
                total,
                ts,
            );
            ts += step;
        }
        expected.push(100.0 * (good - good0) / (total - total0));
        bad_3d.push(1.0 - (good - good3) / (total - total3));
    }
    let mut backfilled = BackfilledPrometheus::start(&env, &om.render()).await;

    // The group of the first two: one shape across two namespaces.
    let tenancy = Tenancy::default();
    let members: Vec<_> = [("shop", spec("healthy")), ("web", spec("degraded"))]
        .iter()
        .map(|(ns, s)| membership(ns, s, &tenancy).unwrap())
        .collect();
    assert_eq!(members[0].key, members[1].key, "one group");
    let key = members[0].key.clone();
    let group = recording_group(
        &[(key.clone(), BTreeSet::from(["shop".into(), "web".into()]))],
        Some("namespace"),
    );
    let rules = serde_saphyr::to_string(&serde_json::json!({"groups": [group]})).unwrap();
    assert_eq!(
        group["rules"].as_array().map(Vec::len),
        Some(2),
        "one pair of rules for the shape: {rules}"
    );
    backfilled
        .backfill_rules(&env, &rules, history_start, end + 300, "5m")
        .await;

    let metrics = Metrics::new();
    let mut config = PromConfig::new(backfilled.prom.url.clone());
    config.timeout = Duration::from_secs(30);
    let prom = PromClient::new(config, metrics.clone()).unwrap();
    let at = Some(end as f64);
    let values: Vec<&[String]> = members.iter().map(|m| m.values.as_slice()).collect();

    // Covered: both members had a recorded sample 28 days ago.
    let coverage = coverage_query(&key, &values, needed(Duration::from_secs(28 * 86_400)));
    let covered = prom.instant(&coverage, at).await.unwrap();
    let mut tuples: Vec<(String, String)> = covered
        .iter()
        .map(|s| (s.labels["namespace"].clone(), s.labels["service"].clone()))
        .collect();
    tuples.sort();
    assert_eq!(
        tuples,
        [
            ("shop".to_string(), "healthy".to_string()),
            ("web".to_string(), "degraded".to_string())
        ],
        "{coverage}"
    );
    // The third namespace's series were read by no rule.
    let other = format!(r#"count({}{{namespace="other"}})"#, recordings::TOTAL);
    assert!(
        prom.instant(&other, at).await.unwrap().is_empty(),
        "a namespace with no member is not recorded"
    );

    let id = shape_id(&key);
    for source in [Source::Recorded(&id), Source::Raw] {
        let query = group_query(&key, &values, source);
        let samples = prom.instant(&query, at).await.unwrap();
        let observations = split_answer(&key, &values, &samples);
        for ((obs, want), m) in observations.iter().zip(&expected).zip(&members) {
            let target = Target {
                objective: 99.5,
                window: Duration::from_secs(28 * 86_400),
                min_request_rate: None,
            };
            let e = evaluate(&target, obs);
            let got = e
                .attainment
                .unwrap_or_else(|| panic!("{source:?} {:?}: no attainment: {obs:?}", m.values));
            assert!(
                (got - want).abs() < 0.05,
                "{source:?} {:?}: attainment {got} vs generated {want}",
                m.values
            );
            // Every burn window has an answer, recorded (1d, 3d) or raw.
            for w in maturity_operator::slo::BURN_WINDOWS.iter().copied() {
                assert!(
                    obs.error_ratios[w].is_ok(),
                    "{source:?} {:?}: burn window {w}: {:?}",
                    m.values,
                    obs.error_ratios[w]
                );
            }
        }
    }

    // The burn-rate alerts read their 1d and 3d windows from the same recordings: the 3d
    // share of bad events each member's alert reads is the generated one, and the 3d ticket
    // (objective 99.5 % over 28 days: a threshold of 0.1 × 28 / 3 × 0.005 = 0.00467) fires
    // for the degraded service (about 1.5 % bad) and not for the healthy one (about 0.06 %).
    for (i, m) in members.iter().enumerate() {
        let ratio = prom
            .instant(&recordings::error_ratio(m, "3d"), at)
            .await
            .unwrap();
        let got = ratio.first().map(|s| s.value).expect("a 3d error ratio");
        assert!(
            (got - bad_3d[i]).abs() < 0.0005,
            "{:?}: recorded 3d error ratio {got} vs generated {}",
            m.values,
            bad_3d[i]
        );
    }
    for (ns, service, fires) in [("shop", "healthy", false), ("web", "degraded", true)] {
        let mut target = maturity_operator::api::ResponseTimeTarget::new("t", spec(service));
        target.metadata.namespace = Some(ns.into());
        target.spec.alerting =
            Some(serde_json::from_value(serde_json::json!({"burnRateAlerts": true})).unwrap());
        let group = maturity_operator::slo::rules::burn_rate_group(&target, &tenancy)
            .unwrap()
            .unwrap();
        let ticket = group
            .rules
            .iter()
            .find(|r| r.labels["long_window"] == "3d")
            .expect("a 3d ticket");
        assert!(ticket.expr.contains(recordings::TOTAL), "{}", ticket.expr);
        let firing = prom.instant(&ticket.expr, at).await.unwrap();
        assert_eq!(!firing.is_empty(), fires, "{ns}/{service}: {}", ticket.expr);
    }
}

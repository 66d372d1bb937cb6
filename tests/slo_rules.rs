//! Burn-rate alert rules: `maturity-operator rules` prints a file `promtool check rules`
//! accepts, and its page alert fires in a real Prometheus on a fast-burn history and
//! stays silent on a healthy one.

mod support;

use std::process::Command;
use std::time::Duration;

use support::cluster::{ensure_cluster, repo_dir};
use support::eventually;
use support::prom::{BackfilledPrometheus, OpenMetrics};

const BIN: &str = env!("CARGO_BIN_EXE_maturity-operator");

/// Runs `maturity-operator rules` with `args`; its stdout, or the test fails with its stderr.
fn run_rules(args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = Command::new(BIN).arg("rules").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn rules_for(manifest: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("target.yaml");
    std::fs::write(&file, manifest).unwrap();
    String::from_utf8(run_rules(&["-f".as_ref(), file.as_os_str()])).unwrap()
}

#[test]
fn generated_rules_pass_promtool_check_rules() {
    let env = ensure_cluster();
    let latency = repo_dir().join("examples/rtt-checkout-latency.yaml");
    let availability = repo_dir().join("examples/rtt-checkout-availability.yaml");
    let rules = run_rules(&[
        "-n".as_ref(),
        "shop".as_ref(),
        "-f".as_ref(),
        latency.as_os_str(),
        "-f".as_ref(),
        availability.as_os_str(),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let check = Command::new(env.tool("promtool"))
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "promtool rejected the rules: {report}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // The latency example asks for alerts (4 burn-rate alerts for a 28d window and the
    // no-data one); the availability one does not.
    assert!(report.contains("SUCCESS: 5 rules found"), "{report}");
}

#[test]
fn rules_of_a_bad_manifest_exit_non_zero_with_a_sentence() {
    let out = Command::new(BIN)
        .args(["rules", "-f", "/no/such/file.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read /no/such/file.yaml"),
        "{stderr}"
    );
}

#[test]
fn rules_with_nothing_to_write_exit_non_zero_with_a_sentence() {
    // The availability example asks for no alerts; a manifest of another kind has none.
    let availability = repo_dir().join("examples/rtt-checkout-availability.yaml");
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("cm.yaml");
    std::fs::write(
        &other,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .unwrap();
    for (kind, file) in [
        ("rulefile", availability.as_os_str()),
        ("prometheusrule", availability.as_os_str()),
        ("rulefile", other.as_os_str()),
    ] {
        let out = Command::new(BIN)
            .args(["rules", "--kind", kind, "-f"])
            .arg(file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{kind} {file:?}");
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("nothing to write: no ResponseTimeTarget in")
                && stderr.contains("has alerting (spec.alerting)"),
            "{stderr}"
        );
    }
}

#[test]
fn rules_print_json_as_they_print_yaml() {
    let latency = repo_dir().join("examples/rtt-checkout-latency.yaml");
    let yaml = run_rules(&["-f".as_ref(), latency.as_os_str()]);
    let json = run_rules(&[
        "-o".as_ref(),
        "json".as_ref(),
        "-f".as_ref(),
        latency.as_os_str(),
    ]);
    let from_yaml: serde_json::Value = serde_saphyr::from_slice(&yaml).unwrap();
    let from_json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(from_yaml, from_json);
    // Four burn-rate alerts and the no-data one, as promtool counts above.
    assert_eq!(
        from_json["groups"][0]["rules"].as_array().map(Vec::len),
        Some(5)
    );
}

const TARGET: &str = r#"
apiVersion: maturity.sre.dev/v1alpha1
kind: ResponseTimeTarget
metadata: {name: checkout, namespace: shop}
spec:
  service: checkout
  requestClass: interactive
  objective: 99.5
  window: 28d
  indicator: {latency: {histogram: latency_seconds, selector: '{job="checkout"}', threshold: 300ms}}
  minRequestRate: 1
  alerting: {burnRateAlerts: true, runbookURL: "https://wiki.example/checkout"}
"#;

/// Two hours of traffic up to 30 s ago at 100 requests/s, `good_share` of them within 300 ms.
fn history(good_share: f64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let step = 15;
    let end = now - 30;
    let mut om = OpenMetrics::default();
    let (mut good, mut total) = (0.0, 0.0);
    let mut ts = end - 2 * 3600;
    while ts <= end {
        total += 100.0 * step as f64;
        good += 100.0 * step as f64 * good_share;
        // In the target's namespace: its rules read only that namespace's series.
        om.latency_point(
            "latency_seconds",
            r#"job="checkout",namespace="shop""#,
            good,
            total,
            ts,
        );
        ts += step;
    }
    om.render()
}

/// The page (critical) alert, pending or firing: it fires after its `for:` (2m), which
/// `tests/alertmanager.rs` waits for; here the expression being true is what is tested.
const PAGE_FIRING: &str =
    r#"ALERTS{alertname="ErrorBudgetBurn",severity="critical",alertstate=~"pending|firing"}"#;

#[tokio::test]
async fn page_alert_fires_for_a_fast_burn_and_not_for_a_healthy_history() {
    let env = tokio::task::spawn_blocking(ensure_cluster).await.unwrap();
    let rules = rules_for(TARGET);

    // 20% of requests slower than 300 ms: 40x the 0.5% budget, far above 13.44x.
    let burning = BackfilledPrometheus::start_with_rules(&env, &history(0.80), Some(&rules)).await;
    let firing = eventually("page alert firing", Duration::from_secs(30), || {
        let prom = burning.prom.clone();
        async move {
            let s = prom.query(PAGE_FIRING).await?;
            if s.is_empty() {
                Err("not firing yet".into())
            } else {
                Ok(s)
            }
        }
    })
    .await;
    assert!(
        firing.iter().any(|s| s.labels["long_window"] == "1h"),
        "{firing:?}"
    );
    assert_eq!(firing[0].labels["response_time_target"], "checkout");
    drop(burning);

    // 99.9% within 300 ms: burn rate 0.2, nothing fires.
    let healthy = BackfilledPrometheus::start_with_rules(&env, &history(0.999), Some(&rules)).await;
    let states = settled_states(&healthy.prom, 5).await;
    assert!(
        states.iter().all(|(_, s)| s == "inactive"),
        "rule states {states:?}"
    );
    let quiet = healthy
        .prom
        .query(r#"ALERTS{alertname="ErrorBudgetBurn"}"#)
        .await
        .unwrap();
    assert!(quiet.is_empty(), "a healthy history raised {quiet:?}");
    // The same query does return data there: the silence is not for want of series.
    let ratio = healthy
        .prom
        .scalar(r#"1 - (sum(rate(latency_seconds_bucket{job="checkout",le="0.3"}[1h])) / sum(rate(latency_seconds_count{job="checkout"}[1h])))"#)
        .await
        .unwrap();
    assert!((ratio - 0.001).abs() < 1e-4, "error ratio {ratio}");
}

/// Waits until Prometheus has evaluated every one of its `n` rules without error, and a
/// few rounds more; returns each alert's (name, state).
async fn settled_states(prom: &support::prom::Prom, n: usize) -> Vec<(String, String)> {
    eventually("rules evaluated", Duration::from_secs(30), || {
        let prom = prom.clone();
        async move {
            let rules = prom.rules().await?;
            let evaluated = rules.len() == n
                && rules.iter().all(|r| {
                    r["health"] == "ok"
                        && !r["lastEvaluation"]
                            .as_str()
                            .unwrap_or("0001")
                            .starts_with("0001")
                });
            evaluated.then_some(()).ok_or_else(|| format!("{rules:?}"))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    prom.rules()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_string(),
                r["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn too_little_traffic_does_not_page_and_gone_series_say_no_data() {
    let env = tokio::task::spawn_blocking(ensure_cluster).await.unwrap();
    // The same fast burn as above (20 % slow), but the target asks for 1,000 requests a
    // second before its objective means anything, and the service has 100.
    let quiet = rules_for(&TARGET.replace("minRequestRate: 1\n", "minRequestRate: 1000\n"));
    let low = BackfilledPrometheus::start_with_rules(&env, &history(0.80), Some(&quiet)).await;
    let states = settled_states(&low.prom, 5).await;
    assert!(
        states.iter().all(|(_, s)| s == "inactive"),
        "a service below minRequestRate paged: {states:?}"
    );
    drop(low);

    // No sample of the indicator at all (only an unrelated series): the no-data alert.
    let now = support::prom::now_unix();
    let mut om = OpenMetrics::default();
    for i in 0..10 {
        om.sample(
            "other_total",
            "counter",
            r#"other_total{job="x"}"#,
            i as f64,
            now - 600 + i * 60,
        );
    }
    let rules = rules_for(TARGET);
    let empty = BackfilledPrometheus::start_with_rules(&env, &om.render(), Some(&rules)).await;
    let states = settled_states(&empty.prom, 5).await;
    let no_data: Vec<&(String, String)> = states
        .iter()
        .filter(|(name, _)| name == "ResponseTimeTargetNoData")
        .collect();
    assert_eq!(
        no_data,
        [&(
            "ResponseTimeTargetNoData".to_string(),
            "pending".to_string()
        )],
        "{states:?}"
    );
    assert!(
        states
            .iter()
            .filter(|(name, _)| name == "ErrorBudgetBurn")
            .all(|(_, s)| s == "inactive"),
        "{states:?}"
    );
}

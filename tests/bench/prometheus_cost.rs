//! The Prometheus cost of 50 latency objectives with 28 days of 1-minute history: the
//! operator's (its batched queries every minute and its recordings per shape) against
//! Sloth's generated rules (v0.16.0, built from its Go module) on the same data, in two
//! layouts: the 50 share a namespace, and each is alone in its own.
//!
//! Each tool's recordings hold 28 days of history, as after a month of running: the
//! operator's `maturity:rtt_*:increase5m` and Sloth's `slo:sli_error:ratio_rate5m` (the
//! series its 4-week SLI reads) are backfilled with `promtool tsdb create-blocks-from
//! rules`. The other rules of each are evaluated live. Prometheus's CPU per minute is read
//! from its own `process_cpu_seconds_total`, over 5 minutes; the ratio is of the gross
//! figures (an upper bound of the ratio net of idle, see [`table`]), the net ones are shown
//! beside it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use maturity_operator::api::ResponseTimeTarget;
use maturity_operator::controllers::response_time_target::rules::recording_group;
use maturity_operator::prom::enforce::Tenancy;
use maturity_operator::slo::batch::membership;

use super::support::cluster::ClusterEnv;
use super::support::operator::Operator;
use super::support::prom::{OpenMetrics, backfill_openmetrics, backfill_recordings, free_port};
use super::support::run_ok;
use super::{metric, text};

/// Objectives compared.
pub const OBJECTIVES: usize = 50;
/// History: 28 days and one more, at one sample a minute.
const HISTORY_DAYS: i64 = 29;
const STEP: i64 = 60;
const MEASURE: Duration = Duration::from_secs(300);
const IDLE: Duration = Duration::from_secs(180);

/// Where the 50 objectives live.
#[derive(Clone, Copy, Debug)]
pub enum Layout {
    Shared,
    Alone,
}

impl Layout {
    fn namespace(self, i: usize) -> String {
        match self {
            Layout::Shared => "cost-shared".to_string(),
            Layout::Alone => format!("cost-alone-{i:02}"),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Layout::Shared => "50 objectives in one namespace",
            Layout::Alone => "50 objectives, each alone in its namespace",
        }
    }
}

/// One layout's figures: Prometheus CPU seconds per minute over idle.
pub struct Cost {
    pub layout: Layout,
    pub idle: f64,
    pub ours: f64,
    pub sloth: f64,
    pub ours_queries: f64,
}

/// A Prometheus on backfilled blocks that can be restarted on its data with a rule file.
struct Prom {
    url: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    bin: PathBuf,
}

impl Prom {
    fn config(&self, rules: Option<&Path>) -> PathBuf {
        let file = self.dir.path().join("prometheus.yml");
        let mut text = format!(
            "global: {{scrape_interval: 15s, evaluation_interval: 1m}}\n\
             scrape_configs:\n- job_name: prometheus\n  static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            self.port
        );
        if let Some(r) = rules {
            text.push_str(&format!("rule_files: [{:?}]\n", r.display().to_string()));
        }
        std::fs::write(&file, text).unwrap();
        file
    }

    async fn start(&mut self, rules: Option<&Path>) {
        self.stop();
        let config = self.config(rules);
        let log = std::fs::File::create(self.dir.path().join("prometheus.log")).unwrap();
        self.child = Some(
            Command::new(&self.bin)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    self.dir.path().join("data").display()
                ))
                .arg("--storage.tsdb.retention.time=400d")
                .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start prometheus"),
        );
        let ready = format!("{}/-/ready", self.url);
        super::support::eventually("cost Prometheus ready", Duration::from_secs(300), || {
            let ready = ready.clone();
            async move {
                match reqwest::get(&ready).await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(r.status().to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await;
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Prometheus's own CPU seconds so far.
    async fn cpu(&self) -> f64 {
        metric(
            &text(&format!("{}/metrics", self.url)).await,
            "process_cpu_seconds_total",
            &[],
        )
    }

    /// CPU seconds per minute over `d`.
    async fn cpu_per_minute(&self, d: Duration) -> f64 {
        let (a, t) = (self.cpu().await, Instant::now());
        tokio::time::sleep(d).await;
        (self.cpu().await - a) / (t.elapsed().as_secs_f64() / 60.0)
    }
}

impl Drop for Prom {
    fn drop(&mut self) {
        self.stop();
    }
}

fn service(i: usize) -> String {
    format!("svc-{i:02}")
}

/// 29 days of one sample a minute: a share of good requests under 300 ms that varies by
/// service and by day.
fn history(layout: Layout, end: i64) -> String {
    let mut om = OpenMetrics::default();
    for i in 0..OBJECTIVES {
        let l = format!(
            r#"namespace="{}",service="{}""#,
            layout.namespace(i),
            service(i)
        );
        let (mut good, mut total) = (0.0f64, 0.0f64);
        let mut ts = end - HISTORY_DAYS * 86_400;
        while ts <= end {
            let day = ts / 86_400;
            let share = if (day + i as i64) % 9 == 0 {
                0.99
            } else {
                0.9992
            };
            let n = 300.0 + (i % 5) as f64 * 60.0;
            total += n;
            good += (n * share).floor();
            om.sample(
                "http_request_duration_seconds",
                "histogram",
                &format!(r#"http_request_duration_seconds_bucket{{{l},le="0.3"}}"#),
                good,
                ts,
            );
            om.sample(
                "http_request_duration_seconds",
                "histogram",
                &format!(r#"http_request_duration_seconds_count{{{l}}}"#),
                total,
                ts,
            );
            ts += STEP;
        }
    }
    om.render()
}

fn spec(layout: Layout, i: usize) -> serde_json::Value {
    let s = service(i);
    serde_json::json!({
        "service": s, "requestClass": "interactive", "objective": 99.5, "window": "28d",
        "indicator": {"latency": {"histogram": "http_request_duration_seconds",
            "selector": format!("{{service=\"{s}\"}}"), "threshold": "300ms"}},
        "_namespace": layout.namespace(i),
    })
}

/// Sloth's spec of the same objectives (28-day period, page and ticket alerts).
fn sloth_specs(layout: Layout) -> String {
    let mut out = String::new();
    for i in 0..OBJECTIVES {
        let (ns, s) = (layout.namespace(i), service(i));
        let sel = format!(r#"namespace="{ns}",service="{s}""#);
        out.push_str(&format!(
            "---\nversion: \"prometheus/v1\"\nservice: \"{ns}-{s}\"\nslos:\n  - name: \"latency\"\n    objective: 99.5\n    sli:\n      events:\n        error_query: sum(rate(http_request_duration_seconds_count{{{sel}}}[{{{{.window}}}}])) - sum(rate(http_request_duration_seconds_bucket{{{sel},le=\"0.3\"}}[{{{{.window}}}}]))\n        total_query: sum(rate(http_request_duration_seconds_count{{{sel}}}[{{{{.window}}}}]))\n    alerting:\n      name: SloLatency\n      page_alert: {{disable: false}}\n      ticket_alert: {{disable: false}}\n"
        ));
    }
    out
}

/// The groups of Sloth's output, one YAML document per service, as one rules file's
/// groups (Prometheus reads only the first document of a rules file).
fn sloth_groups(yaml: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple::<serde_json::Value>(yaml)
        .expect("Sloth's rules parse")
        .into_iter()
        .flat_map(|doc| doc["groups"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// The groups whose rules all record `record` (Sloth's 5-minute ratios), as a rules file.
fn only_record(groups: &[serde_json::Value], record: &str) -> String {
    let groups: Vec<serde_json::Value> = groups
        .iter()
        .cloned()
        .map(|mut g| {
            let rules: Vec<serde_json::Value> = g["rules"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r["record"].as_str() == Some(record))
                .collect();
            g["rules"] = serde_json::Value::Array(rules);
            g
        })
        .filter(|g| g["rules"].as_array().is_some_and(|r| !r.is_empty()))
        .collect();
    serde_saphyr::to_string(&serde_json::json!({ "groups": groups })).unwrap()
}

async fn targets(client: &Client, layout: Layout, create: bool) {
    for i in 0..OBJECTIVES {
        let mut spec = spec(layout, i);
        let ns = spec["_namespace"].as_str().unwrap().to_string();
        spec.as_object_mut().unwrap().remove("_namespace");
        if create {
            let n: k8s_openapi::api::core::v1::Namespace =
                serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns, "labels": {"maturity-bench": "true"}}}))
                .unwrap();
            let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
                .create(&PostParams::default(), &n)
                .await;
            let t: ResponseTimeTarget = serde_json::from_value(serde_json::json!({
                "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "ResponseTimeTarget",
                "metadata": {"name": service(i), "namespace": ns}, "spec": spec}))
            .unwrap();
            Api::<ResponseTimeTarget>::namespaced(client.clone(), &ns)
                .create(&PostParams::default(), &t)
                .await
                .expect("create target");
        } else {
            let _ = Api::<ResponseTimeTarget>::namespaced(client.clone(), &ns)
                .delete(&service(i), &DeleteParams::default())
                .await;
        }
    }
}

/// The operator's recordings for the layout's one shape, as a rules file.
fn our_recordings(layout: Layout) -> String {
    let tenancy = Tenancy::default();
    let mut key = None;
    let mut namespaces = BTreeSet::new();
    for i in 0..OBJECTIVES {
        let mut s = spec(layout, i);
        let ns = s["_namespace"].as_str().unwrap().to_string();
        s.as_object_mut().unwrap().remove("_namespace");
        let m = membership(&ns, &serde_json::from_value(s).unwrap(), &tenancy).unwrap();
        key = Some(m.key);
        namespaces.insert(ns);
    }
    let group = recording_group(&[(key.unwrap(), namespaces)], Some("namespace"));
    serde_saphyr::to_string(&serde_json::json!({ "groups": [group] })).unwrap()
}

pub async fn layout(env: &ClusterEnv, client: &Client, layout: Layout) -> Cost {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end = now - now % STEP;
    let dir = tempfile::tempdir().unwrap();
    let om = dir.path().join("history.om");
    let started = Instant::now();
    std::fs::write(&om, history(layout, end)).unwrap();
    backfill_openmetrics(env, &om, &dir.path().join("data"));
    let _ = std::fs::remove_file(&om);
    eprintln!(
        "{layout:?}: 29 days of history in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let port = free_port();
    let mut prom = Prom {
        url: format!("http://127.0.0.1:{port}"),
        port,
        dir,
        child: None,
        bin: env.tool("prometheus"),
    };
    prom.start(None).await;

    // Both tools' recordings, backfilled over the 28 days.
    let ours = our_recordings(layout);
    let sloth_in = prom.dir.path().join("slos.yaml");
    std::fs::write(&sloth_in, sloth_specs(layout)).unwrap();
    let sloth_rules = prom.dir.path().join("sloth-rules.yaml");
    run_ok(
        Command::new(env.tool("sloth"))
            .args(["generate", "--default-slo-period=28d", "-i"])
            .arg(&sloth_in)
            .arg("-o")
            .arg(&sloth_rules),
        "sloth generate",
    );
    let sloth_all = sloth_groups(&std::fs::read_to_string(&sloth_rules).unwrap());
    eprintln!(
        "{layout:?}: Sloth generated {} rules in {} groups",
        sloth_all
            .iter()
            .map(|g| g["rules"].as_array().map_or(0, |r| r.len()))
            .sum::<usize>(),
        sloth_all.len()
    );
    std::fs::write(
        &sloth_rules,
        serde_saphyr::to_string(&serde_json::json!({ "groups": sloth_all })).unwrap(),
    )
    .unwrap();
    let started = Instant::now();
    for (name, rules, step) in [
        ("ours", ours.clone(), "5m"),
        (
            "sloth",
            only_record(&sloth_all, "slo:sli_error:ratio_rate5m"),
            "1m",
        ),
    ] {
        let file = prom.dir.path().join(format!("backfill-{name}.yaml"));
        std::fs::write(&file, rules).unwrap();
        let out = prom.dir.path().join(format!("recorded-{name}"));
        let range = (end - 28 * 86_400 - 3600, end);
        backfill_recordings(env, &prom.url, &file, range, step, &out);
        for block in std::fs::read_dir(&out).unwrap() {
            let block = block.unwrap();
            std::fs::rename(
                block.path(),
                prom.dir.path().join("data").join(block.file_name()),
            )
            .unwrap();
        }
    }
    eprintln!(
        "{layout:?}: recordings backfilled in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    prom.start(None).await;
    // Started on the moved blocks, Prometheus compacts them in its first minutes: not idle.
    tokio::time::sleep(Duration::from_secs(180)).await;
    let idle = prom.cpu_per_minute(IDLE).await;

    // Ours: the recordings evaluated every 5 minutes, the operator querying every minute.
    let ours_file = prom.dir.path().join("ours.yaml");
    std::fs::write(&ours_file, &ours).unwrap();
    prom.start(Some(&ours_file)).await;
    targets(client, layout, true).await;
    let extra: Vec<String> = [
        "--controllers",
        "response-time-targets",
        "--tick",
        "1s",
        "--prometheus-timeout",
        "60s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let op = Operator::start_all_namespaces(env, &prom.url, "1m", &extra);
    // Let the first evaluations (and the coverage check) pass.
    tokio::time::sleep(Duration::from_secs(90)).await;
    let q0 = metric(
        &text(&op.metrics_url).await,
        "maturity_operator_prometheus_queries_total",
        &[],
    );
    let ours_cpu = prom.cpu_per_minute(MEASURE).await;
    let q1 = metric(
        &text(&op.metrics_url).await,
        "maturity_operator_prometheus_queries_total",
        &[],
    );
    drop(op);
    targets(client, layout, false).await;

    // Sloth: all its rules, every minute.
    prom.start(Some(&sloth_rules)).await;
    tokio::time::sleep(Duration::from_secs(90)).await;
    let sloth_cpu = prom.cpu_per_minute(MEASURE).await;
    Cost {
        layout,
        idle,
        ours: ours_cpu - idle,
        sloth: sloth_cpu - idle,
        ours_queries: (q1 - q0) / (MEASURE.as_secs_f64() / 60.0),
    }
}

/// Gross figures and their ratio: with ours below Sloth's, (ours - idle) / (Sloth - idle)
/// is at most ours / Sloth for any idle of at least 0, so the gross ratio bounds the net
/// one whatever the idle measurement's error.
pub fn table(costs: &[Cost]) -> String {
    let mut out = String::from(
        "| layout | Prometheus CPU per minute, idle | ours (queries per minute) | Sloth v0.16.0's rules | ours / Sloth (at most) | net of idle: ours, Sloth |\n|---|---|---|---|---|---|\n",
    );
    for c in costs {
        let (ours, sloth) = (c.ours + c.idle, c.sloth + c.idle);
        out.push_str(&format!(
            "| {} | {:.2} s | {:.2} s ({:.1}) | {:.2} s | {:.2} | {:.2} s, {:.2} s |\n",
            c.layout.describe(),
            c.idle,
            ours,
            c.ours_queries,
            sloth,
            ours / sloth.max(1e-9),
            c.ours,
            c.sloth,
        ));
    }
    out
}

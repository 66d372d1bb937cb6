//! Prometheus helpers: instant queries, scrape-target registration through file_sd, and a
//! Prometheus started on backfilled history (OpenMetrics -> `promtool tsdb
//! create-blocks-from openmetrics` -> blocks), so 28-day windows are testable at once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::cluster::ClusterEnv;

/// One sample of an instant-vector result.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A thin Prometheus HTTP API client for tests (the operator has its own, typed client).
#[derive(Debug, Clone)]
pub struct Prom {
    pub url: String,
    http: reqwest::Client,
}

impl Prom {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
        }
    }

    /// Runs an instant query (at `time`, unix seconds, when given); errors carry Prometheus's message.
    pub async fn query_at(&self, q: &str, time: Option<f64>) -> Result<Vec<Sample>, String> {
        let mut form = vec![("query", q.to_string())];
        if let Some(t) = time {
            form.push(("time", format!("{t}")));
        }
        let resp = self
            .http
            .post(format!("{}/api/v1/query", self.url))
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("query {q:?}: {e}"))?;
        let body: Value = resp.json().await.map_err(|e| format!("query {q:?}: {e}"))?;
        if body["status"] != "success" {
            return Err(format!("query {q:?} failed: {body}"));
        }
        let result = &body["data"]["result"];
        let samples = match body["data"]["resultType"].as_str() {
            Some("vector") => result
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|s| Sample {
                    labels: serde_json::from_value(s["metric"].clone()).unwrap_or_default(),
                    value: parse_value(&s["value"][1]),
                })
                .collect(),
            Some("scalar") => vec![Sample {
                labels: BTreeMap::new(),
                value: parse_value(&result[1]),
            }],
            other => return Err(format!("query {q:?}: unexpected result type {other:?}")),
        };
        Ok(samples)
    }

    pub async fn query(&self, q: &str) -> Result<Vec<Sample>, String> {
        self.query_at(q, None).await
    }

    /// The alerting and recording rules Prometheus has loaded (`/api/v1/rules`), flattened.
    pub async fn rules(&self) -> Result<Vec<Value>, String> {
        let body: Value = self
            .http
            .get(format!("{}/api/v1/rules", self.url))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        Ok(body["data"]["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect())
    }

    /// The single value of a query that must return exactly one sample.
    pub async fn scalar(&self, q: &str) -> Result<f64, String> {
        let samples = self.query(q).await?;
        match samples.as_slice() {
            [s] => Ok(s.value),
            _ => Err(format!(
                "query {q:?} returned {} samples, expected 1: {samples:?}",
                samples.len()
            )),
        }
    }
}

fn parse_value(v: &Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

/// A scrape target registered with the shared Prometheus through a file_sd file;
/// removed when dropped.
pub struct ScrapeTarget {
    file: PathBuf,
}

impl ScrapeTarget {
    /// Makes the shared Prometheus scrape `addr` (job `local`, every second) with `labels` added.
    pub fn register(
        env: &ClusterEnv,
        name: &str,
        addr: SocketAddr,
        labels: &[(&str, &str)],
    ) -> Self {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let body = serde_json::json!([{ "targets": [addr.to_string()], "labels": labels }]);
        let file = env.targets_dir.join(format!("{name}.json"));
        let tmp = env.targets_dir.join(format!(".{name}.json.tmp"));
        std::fs::write(&tmp, body.to_string()).expect("write scrape target");
        std::fs::rename(&tmp, &file).expect("publish scrape target");
        Self { file }
    }
}

impl Drop for ScrapeTarget {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// (series with labels, value, unix seconds)
type Point = (String, f64, i64);

/// Builds an OpenMetrics text file of samples at explicit timestamps.
#[derive(Default)]
pub struct OpenMetrics {
    /// family -> (type, points)
    families: BTreeMap<String, (String, Vec<Point>)>,
}

impl OpenMetrics {
    /// Adds a sample of family `family` (type `counter`, `gauge` or `histogram`): `series` is the
    /// full series name with labels, e.g. `x_bucket{le="0.3"}`; `ts` in unix seconds.
    pub fn sample(&mut self, family: &str, kind: &str, series: &str, value: f64, ts: i64) {
        self.families
            .entry(family.to_string())
            .or_insert_with(|| (kind.to_string(), Vec::new()))
            .1
            .push((series.to_string(), value, ts));
    }

    /// One point of histogram `family{labels}`: `good` requests within 300 ms of `total`
    /// (buckets `le="0.3"` and `+Inf`, and `_count`); `labels` like `job="checkout"`.
    pub fn latency_point(&mut self, family: &str, labels: &str, good: f64, total: f64, ts: i64) {
        for (le, v) in [("0.3", good), ("+Inf", total)] {
            let series = format!(r#"{family}_bucket{{{labels},le="{le}"}}"#);
            self.sample(family, "histogram", &series, v, ts);
        }
        self.sample(
            family,
            "histogram",
            &format!("{family}_count{{{labels}}}"),
            total,
            ts,
        );
    }

    /// The text, families in order, series grouped and their samples in time order.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (family, (kind, samples)) in &self.families {
            let _ = writeln!(out, "# TYPE {family} {kind}");
            let mut by_series: BTreeMap<&str, Vec<(i64, f64)>> = BTreeMap::new();
            for (series, value, ts) in samples {
                by_series.entry(series).or_default().push((*ts, *value));
            }
            for (series, mut points) in by_series {
                points.sort_by_key(|p| p.0);
                for (ts, value) in points {
                    let _ = writeln!(out, "{series} {value} {ts}");
                }
            }
        }
        out.push_str("# EOF\n");
        out
    }
}

/// Turns the OpenMetrics file `input` into TSDB blocks in `data`: blocks of up to 20 days
/// (486h, a compaction range), not the default 2 hours, as promtool reads the whole input
/// once per block (a month in 2-hour blocks is read some 350 times).
pub fn backfill_openmetrics(env: &ClusterEnv, input: &std::path::Path, data: &std::path::Path) {
    super::run_ok(
        Command::new(env.tool("promtool"))
            .args(["tsdb", "create-blocks-from", "--max-block-duration=486h"])
            .args(["openmetrics", "-q"])
            .arg(input)
            .arg(data),
        "promtool tsdb create-blocks-from openmetrics",
    );
}

/// Evaluates the recording rules of `rules_file` over `range` (unix seconds) at `step`
/// (`1m`, `5m`) against the Prometheus at `url`, into blocks in `out_dir`, with
/// `promtool tsdb create-blocks-from rules`. A block is the largest compaction range
/// whose range query stays within Prometheus's 11,000 points per series (2 hours by
/// default: 336 range queries per rule over 28 days).
pub fn backfill_recordings(
    env: &ClusterEnv,
    url: &str,
    rules_file: &std::path::Path,
    range: (i64, i64),
    step: &str,
    out_dir: &std::path::Path,
) {
    let step_s: u64 = match step.split_at(step.len() - 1) {
        (n, "m") => n.parse::<u64>().expect("a step in minutes") * 60,
        (n, "s") => n.parse().expect("a step in seconds"),
        _ => panic!("a step like 1m or 30s, not {step}"),
    };
    let block_h = [486, 162, 54, 18, 6, 2]
        .into_iter()
        .find(|h| h * 3600 / step_s <= 11_000)
        .unwrap_or(2);
    super::run_ok(
        Command::new(env.tool("promtool"))
            .args(["tsdb", "create-blocks-from"])
            .arg(format!("--max-block-duration={block_h}h"))
            .arg("rules")
            .arg(format!("--start={}", range.0))
            .arg(format!("--end={}", range.1))
            .arg(format!("--url={url}"))
            .arg(format!("--output-dir={}", out_dir.display()))
            .arg(format!("--eval-interval={step}"))
            .arg(rules_file),
        "promtool tsdb create-blocks-from rules",
    );
}

/// A Prometheus of its own, started on backfilled blocks; killed when dropped.
pub struct BackfilledPrometheus {
    pub prom: Prom,
    child: Child,
    _dir: tempfile::TempDir,
}

impl BackfilledPrometheus {
    /// Writes `openmetrics` to a file, turns it into TSDB blocks with promtool, and starts
    /// Prometheus on them (retention long enough to keep them) on a free loopback port.
    pub async fn start(env: &ClusterEnv, openmetrics: &str) -> Self {
        Self::start_with_rules(env, openmetrics, None).await
    }

    /// Like [`Self::start`], also evaluating `rules` (a rule file) every second.
    pub async fn start_with_rules(
        env: &ClusterEnv,
        openmetrics: &str,
        rules: Option<&str>,
    ) -> Self {
        Self::start_with(env, openmetrics, rules, &[], "").await
    }

    /// Like [`Self::start_with_rules`], with extra Prometheus flags and `config` added to
    /// its configuration file (YAML: e.g. `alerting:` and `scrape_configs:`).
    pub async fn start_with(
        env: &ClusterEnv,
        openmetrics: &str,
        rules: Option<&str>,
        extra_args: &[&str],
        config: &str,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("history.om");
        std::fs::write(&input, openmetrics).expect("write OpenMetrics file");
        let data = dir.path().join("data");
        backfill_openmetrics(env, &input, &data);
        let port = free_port();
        let config_file = dir.path().join("prometheus.yml");
        let mut config_text =
            String::from("global: {scrape_interval: 1m, evaluation_interval: 1s}\n");
        if let Some(rules) = rules {
            let rules_file = dir.path().join("rules.yml");
            std::fs::write(&rules_file, rules).expect("write rules");
            config_text.push_str(&format!(
                "rule_files: [{:?}]\n",
                rules_file.display().to_string()
            ));
        }
        config_text.push_str(config);
        std::fs::write(&config_file, config_text).expect("write config");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(env.tool("prometheus"))
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg("--storage.tsdb.retention.time=400d")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let me = Self {
            prom: Prom::new(format!("http://127.0.0.1:{port}")),
            child,
            _dir: dir,
        };
        super::wait_ready(
            "backfilled Prometheus ready",
            &format!("{}/-/ready", me.prom.url),
        )
        .await;
        me
    }

    pub fn log_path(&self) -> PathBuf {
        self._dir.path().join("prometheus.log")
    }

    /// Backfills recording `rules` (a rule file) from `start` to `end` (unix seconds) at
    /// `step` with `promtool tsdb create-blocks-from rules` against this Prometheus, then
    /// restarts it on its data with the new blocks added (same address).
    pub async fn backfill_rules(
        &mut self,
        env: &ClusterEnv,
        rules: &str,
        start: i64,
        end: i64,
        step: &str,
    ) {
        let rules_file = self._dir.path().join("backfill-rules.yml");
        std::fs::write(&rules_file, rules).expect("write rules");
        let out_dir = self._dir.path().join("recorded");
        backfill_recordings(
            env,
            &self.prom.url,
            &rules_file,
            (start, end),
            step,
            &out_dir,
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
        let data = self._dir.path().join("data");
        for block in std::fs::read_dir(&out_dir).expect("recorded blocks") {
            let block = block.expect("block");
            std::fs::rename(block.path(), data.join(block.file_name())).expect("move block");
        }
        let port = self
            .prom
            .url
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_string();
        let log = std::fs::File::create(self._dir.path().join("prometheus-2.log")).expect("log");
        self.child = Command::new(env.tool("prometheus"))
            .arg(format!(
                "--config.file={}",
                self._dir.path().join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg("--storage.tsdb.retention.time=400d")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("restart prometheus");
        super::wait_ready(
            "restarted Prometheus ready",
            &format!("{}/-/ready", self.prom.url),
        )
        .await;
    }
}

impl Drop for BackfilledPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A synthetic exporter on a free loopback port serving `traffic` for service `service` of
/// namespace `namespace` (labels `namespace`, `service`).
pub async fn service_exporter(
    namespace: &str,
    service: &str,
    traffic: maturity_operator::synthetic::Traffic,
) -> maturity_operator::synthetic::SyntheticExporter {
    use maturity_operator::synthetic::{SyntheticExporter, labels};
    let exporter = SyntheticExporter::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("start the synthetic exporter");
    exporter.set_traffic(
        labels(&[("namespace", namespace), ("service", service)]),
        traffic,
    );
    exporter
}

/// A free loopback TCP port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// (service, requests per second, share within 300 ms on day N of the history)
pub type ServiceTraffic<'a> = (&'a str, f64, &'a dyn Fn(i64) -> f64);

/// A latency history of `http_request_duration_seconds` per service (in `namespace`), one sample every
/// `step` seconds from `start` to `end`, with `rps` requests a second of which `share(day)`
/// (day 0 = the day of `start`) are within 300 ms. Returns the OpenMetrics text and, per
/// service, the exact share within 300 ms over `(from, end]`, computed from the generated
/// counters.
pub struct LatencyHistory {
    pub start: i64,
    pub end: i64,
    pub step: i64,
    /// The `namespace` label of every series (the operator scopes its queries by it).
    pub namespace: String,
}

impl LatencyHistory {
    pub fn generate(&self, services: &[ServiceTraffic<'_>], from: i64) -> (String, Vec<f64>) {
        let mut om = OpenMetrics::default();
        let mut expected = Vec::new();
        for (service, rps, share) in services {
            let (mut good, mut total) = (0.0f64, 0.0f64);
            let (mut good0, mut total0) = (0.0, 0.0);
            let mut ts = self.start;
            while ts <= self.end {
                let n = (rps * self.step as f64).round();
                total += n;
                good += (n * share((ts - self.start).div_euclid(86_400))).floor();
                if ts <= from {
                    (good0, total0) = (good, total);
                }
                let f = "http_request_duration_seconds";
                for (le, v) in [
                    ("0.1", good * 0.5),
                    ("0.3", good),
                    ("1", good + (total - good) * 0.5),
                    ("+Inf", total),
                ] {
                    om.sample(
                        f,
                        "histogram",
                        &format!(
                            r#"{f}_bucket{{namespace="{}",service="{service}",le="{le}"}}"#,
                            self.namespace
                        ),
                        v.floor(),
                        ts,
                    );
                }
                om.sample(
                    f,
                    "histogram",
                    &format!(
                        r#"{f}_count{{namespace="{}",service="{service}"}}"#,
                        self.namespace
                    ),
                    total,
                    ts,
                );
                ts += self.step;
            }
            expected.push(if total > total0 {
                100.0 * (good - good0) / (total - total0)
            } else {
                f64::NAN
            });
        }
        (om.render(), expected)
    }
}

/// Unix seconds now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// A synthetic exporter serving `satisfaction_score{namespace=<ns>} 4.6`, registered as a
/// scrape target of the shared Prometheus, once Prometheus has scraped it: a real
/// business signal for an assessment of `ctx`'s namespace. Keep both for the test.
#[allow(dead_code)] // not every test binary uses it
pub async fn satisfaction_signal(
    ctx: &super::cluster::TestContext,
) -> (
    std::sync::Arc<maturity_operator::synthetic::SyntheticExporter>,
    ScrapeTarget,
) {
    use maturity_operator::synthetic::{SyntheticExporter, labels};
    let ns = &ctx.namespace;
    let exporter = std::sync::Arc::new(
        SyntheticExporter::start("127.0.0.1:0".parse().unwrap())
            .await
            .expect("start the exporter"),
    );
    exporter.set_gauge("satisfaction_score", labels(&[("namespace", ns)]), 4.6);
    let target = ScrapeTarget::register(&ctx.env, ns, exporter.addr(), &[]);
    let prom = Prom::new(ctx.env.prometheus_url.clone());
    let q = format!("satisfaction_score{{namespace=\"{ns}\"}}");
    super::eventually("satisfaction scraped", Duration::from_secs(30), || {
        let (prom, q) = (prom.clone(), q.clone());
        async move { prom.scalar(&q).await.map(|_| ()) }
    })
    .await;
    (exporter, target)
}

/// Writes `rules` (a Prometheus rule file) as `<namespace>.yml` into the shared Prometheus's
/// rules directory, reloads it, and waits until its rules API answers with `needle`.
#[allow(dead_code)] // not every test binary uses it
pub async fn load_rule_file(
    env: &super::cluster::ClusterEnv,
    namespace: &str,
    rules: &str,
    needle: &str,
) {
    std::fs::write(env.rules_dir.join(format!("{namespace}.yml")), rules)
        .expect("write the rule file");
    let prom = env.prometheus_url.clone();
    let client = reqwest::Client::new();
    client
        .post(format!("{prom}/-/reload"))
        .send()
        .await
        .expect("reload Prometheus");
    super::eventually("the rules loaded", Duration::from_secs(30), || {
        let (client, prom) = (client.clone(), prom.clone());
        async move {
            let body = client
                .get(format!("{prom}/api/v1/rules?type=alert"))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            body.contains(needle)
                .then_some(())
                .ok_or_else(|| "not yet".to_string())
        }
    })
    .await;
}

//! `make bench`: the operator (release build) on 1,000 and 10,000 ResponseTimeTargets in
//! 10 and 100 namespaces of the local control plane, four indicator shapes, with live
//! traffic from an exporter in this process scraped by a Prometheus of the bench's own.
//! For each size it prints, and writes to `docs/bench.md`:
//! - the floor: the same number of bare status patches, of the size the operator writes,
//!   sent with one client and the operator's concurrency (the apiserver's own limit);
//! - the time from the operator's start to every target measured;
//! - steady and peak memory (RSS, VmHWM), operator CPU per minute with steady traffic and
//!   with moving traffic, status writes per minute, Prometheus queries per minute, and
//!   Prometheus's own CPU per minute.
//!
//! Then the Prometheus cost of 50 objectives with 28 days of history, the operator's
//! against Sloth's generated rules ([`prometheus_cost`]).
//!
//! Not part of `make test` (it takes about 70 minutes); `make test` checks the counts
//! behind these figures (queries per cycle, writes per idle period, groups per shape).
//! Sizes: `MATURITY_BENCH_SIZES=1000,10000` (the default; `0` skips them);
//! `MATURITY_BENCH_COST=0` skips the Prometheus cost; `MATURITY_BENCH_IN_FLIGHT` (16) sets
//! the status writes in flight of the floor and the operator alike.

#[path = "prometheus_cost.rs"]
mod prometheus_cost;
#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use maturity_operator::api::ResponseTimeTarget;
use support::cluster::{ClusterEnv, client, ensure_cluster, install_crds, repo_dir};
use support::operator::Operator;
use support::prom::free_port;

/// Status writes in flight, for the floor and the operator alike (the operator's default;
/// `MATURITY_BENCH_IN_FLIGHT` measures another).
fn in_flight() -> usize {
    std::env::var("MATURITY_BENCH_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(16)
}
/// Targets per namespace.
const PER_NAMESPACE: usize = 100;
/// How often the bench's Prometheus scrapes the exporter.
const SCRAPE: u64 = 15;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("scale: skipped (a benchmark, not a test: run `make bench`)");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(run());
}

/// One service's traffic: requests per second and the share of good ones.
#[derive(Clone)]
struct Service {
    namespace: String,
    name: String,
    rate: f64,
    share: f64,
    good: f64,
    total: f64,
    fast: f64,
}

/// What the exporter serves; counters move at each scrape by the time since the last.
#[derive(Default)]
struct Traffic {
    services: Vec<Service>,
    last: Option<Instant>,
    /// Moving traffic: each scrape's share of good requests varies.
    noisy: bool,
    scrapes: u64,
}

impl Traffic {
    fn advance(&mut self) {
        let now = Instant::now();
        let dt = self
            .last
            .map_or(0.0, |l| now.duration_since(l).as_secs_f64());
        self.last = Some(now);
        self.scrapes += 1;
        let wobble = if self.noisy {
            // A share that moves by up to ±0.4 pp from scrape to scrape, the same for all.
            ((self.scrapes * 7919) % 9) as f64 * 0.001 - 0.004
        } else {
            0.0
        };
        for s in &mut self.services {
            let n = s.rate * dt;
            let share = (s.share + wobble).clamp(0.0, 1.0);
            s.total += n;
            s.good += n * share;
            // Under 100 ms: all but 0.05 pp of the good ones, so that the 100 ms shape meets
            // its 99 % too (its lowest share, 0.995 - 0.004 - 0.0005, is still above 0.99).
            s.fast += n * (share - 0.0005).max(0.0);
        }
    }

    fn render(&self) -> String {
        let mut out = String::with_capacity(self.services.len() * 400);
        out.push_str("# TYPE bench_request_duration_seconds histogram\n");
        for s in &self.services {
            let l = format!("namespace=\"{}\",service=\"{}\"", s.namespace, s.name);
            for (le, v) in [("0.1", s.fast), ("0.3", s.good), ("+Inf", s.total)] {
                out.push_str(&format!(
                    "bench_request_duration_seconds_bucket{{{l},le=\"{le}\"}} {v}\n"
                ));
            }
            out.push_str(&format!(
                "bench_request_duration_seconds_count{{{l}}} {}\n",
                s.total
            ));
        }
        out.push_str("# TYPE bench_requests_total counter\n");
        for s in &self.services {
            let l = format!("namespace=\"{}\",service=\"{}\"", s.namespace, s.name);
            out.push_str(&format!(
                "bench_requests_total{{{l},code=\"200\"}} {}\n",
                s.good
            ));
            out.push_str(&format!(
                "bench_requests_total{{{l},code=\"500\"}} {}\n",
                s.total - s.good
            ));
        }
        out
    }
}

async fn exporter(traffic: Arc<Mutex<Traffic>>) -> SocketAddr {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let traffic = traffic.clone();
            async move {
                let mut t = traffic.lock().unwrap();
                t.advance();
                t.render()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A Prometheus of the bench's own, scraping the exporter and itself.
struct BenchPrometheus {
    url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for BenchPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn prometheus(env: &ClusterEnv, exporter: SocketAddr) -> BenchPrometheus {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "global: {{scrape_interval: {SCRAPE}s, evaluation_interval: 1m}}\n\
         scrape_configs:\n\
         - job_name: bench\n  honor_labels: true\n  static_configs: [{{targets: ['{exporter}']}}]\n\
         - job_name: prometheus\n  static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    );
    let file = dir.path().join("prometheus.yml");
    std::fs::write(&file, config).unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new(env.tool("prometheus"))
        .arg(format!("--config.file={}", file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let p = BenchPrometheus {
        url: format!("http://127.0.0.1:{port}"),
        child,
        _dir: dir,
    };
    let ready = format!("{}/-/ready", p.url);
    support::eventually("bench Prometheus ready", Duration::from_secs(60), || {
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
    p
}

/// CPU seconds (user + system) a process used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the command: state is field 0, utime 11, stime 12 (fields 14 and 15 of stat).
    (ticks(11) + ticks(12)) / 100.0
}

/// A `/proc/<pid>/status` field in MiB (VmRSS, VmHWM).
fn memory_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// The sum of a metric's series in a `/metrics` text whose labels contain all of `must`.
fn metric(text: &str, name: &str, must: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| must.iter().all(|m| l.contains(m)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn text(url: &str) -> String {
    match reqwest::get(url).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The spec of target `i` of a namespace: four shapes (latency at 300 ms and at 100 ms
/// over 28 days, latency at 300 ms over 7 days, a ratio of codes over 28 days).
fn target(namespace: &str, i: usize) -> ResponseTimeTarget {
    let service = format!("svc-{i:03}");
    let indicator = match i % 4 {
        0 => serde_json::json!({"latency": {"histogram": "bench_request_duration_seconds",
            "selector": format!("{{service=\"{service}\"}}"), "threshold": "300ms"}}),
        1 => serde_json::json!({"latency": {"histogram": "bench_request_duration_seconds",
            "selector": format!("{{service=\"{service}\"}}"), "threshold": "100ms"}}),
        2 => serde_json::json!({"latency": {"histogram": "bench_request_duration_seconds",
            "selector": format!("{{service=\"{service}\"}}"), "threshold": "300ms"}}),
        _ => serde_json::json!({"ratio": {
            "good": format!("bench_requests_total{{service=\"{service}\", code!~\"5..\"}}"),
            "total": format!("bench_requests_total{{service=\"{service}\"}}")}}),
    };
    let window = if i % 4 == 2 { "7d" } else { "28d" };
    serde_json::from_value(serde_json::json!({
        "apiVersion": "maturity.sre.dev/v1alpha1",
        "kind": "ResponseTimeTarget",
        "metadata": {"name": service, "namespace": namespace},
        "spec": {"service": service, "requestClass": "interactive", "objective": 99.0,
                 "window": window, "indicator": indicator}
    }))
    .unwrap()
}

/// A status of the size the operator writes, with `observedGeneration` 0 so that the
/// operator still evaluates the target at once.
fn floor_status(t: &ResponseTimeTarget) -> serde_json::Value {
    let msg = "attainment 99.12% (objective 99%), 12% of the error budget left";
    let cond = |type_: &str, reason: &str| {
        serde_json::json!({"type": type_, "status": "True", "reason": reason, "message": msg,
            "lastTransitionTime": "2026-12-01T00:00:00Z", "observedGeneration": 0})
    };
    let q = format!(
        "sum(increase(bench_request_duration_seconds_bucket{{namespace=\"{}\",service=\"{}\",le=\"0.3\"}}[28d]))",
        t.namespace().unwrap_or_default(),
        t.name_any()
    );
    serde_json::json!({
        "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "ResponseTimeTarget",
        "metadata": {"name": t.name_any(), "namespace": t.namespace()},
        "status": {
            "observedGeneration": 0, "lastEvaluated": "2026-12-01T00:00:00Z",
            "conditions": [cond("DataAvailable", "Measured"), cond("ObjectiveMet", "WithinObjective"), cond("Ready", "Evaluated")],
            "attainment": 99.12, "errorBudgetRemaining": 0.12,
            "burnRates": {"5m": 0.9, "1h": 0.88, "6h": 0.9, "1d": 0.87, "3d": 0.88},
            "events": {"good": 99100.0, "total": 100000.0},
            "queries": {"buckets": q.clone(), "good": q.clone(), "total": q.clone(), "errorRatio1h": q}
        }
    })
}

/// One size's figures.
#[derive(Default)]
struct Figures {
    targets: usize,
    namespaces: usize,
    create_s: f64,
    floor_s: f64,
    /// The floor again with a watch on every target open.
    watched_s: f64,
    /// CPU seconds of the apiserver and etcd during the floor, the watched floor and the
    /// operator's first evaluation.
    floor_cp: (f64, f64),
    watched_cp: (f64, f64),
    first_cp: (f64, f64),
    first_s: f64,
    /// Operator start → its first status write.
    first_write_s: f64,
    /// Operator CPU seconds from its start until every target was measured.
    first_cpu: f64,
    rss_steady: f64,
    rss_peak: f64,
    /// RSS before the apiserver restarted and the peak while the operator listed every
    /// target again (NaN: no relist seen).
    rss_before_relist: f64,
    rss_relist_peak: f64,
    cpu_idle: f64,
    cpu_live: f64,
    writes_idle: f64,
    writes_live: f64,
    queries: f64,
    prom_cpu: f64,
}

/// Counters read from the operator and Prometheus at one moment.
struct Reading {
    at: Instant,
    cpu: f64,
    writes: f64,
    queries: f64,
    prom_cpu: f64,
    /// Each `maturity_operator_prometheus_queries_total` series (its labels) and its value.
    queries_by: Vec<(String, f64)>,
}

async fn reading(op: &Operator, prom_url: &str) -> Reading {
    let m = text(&op.metrics_url).await;
    let p = text(&format!("{prom_url}/metrics")).await;
    Reading {
        at: Instant::now(),
        cpu: cpu_seconds(op.pid()),
        writes: metric(
            &m,
            "maturity_operator_status_writes_total",
            &["ResponseTimeTarget"],
        ),
        queries: metric(&m, "maturity_operator_prometheus_queries_total", &[]),
        prom_cpu: metric(&p, "process_cpu_seconds_total", &[]),
        queries_by: m
            .lines()
            .filter_map(|l| l.strip_prefix("maturity_operator_prometheus_queries_total{"))
            .filter_map(|l| {
                let (labels, value) = l.rsplit_once(' ')?;
                Some((
                    labels.trim_end_matches('}').to_string(),
                    value.parse().ok()?,
                ))
            })
            .collect(),
    }
}

/// CPU used between two [`control_plane`] readings.
fn since(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    (b.0 - a.0, b.1 - a.1)
}

/// Per minute between two readings: (operator CPU s, writes, queries, Prometheus CPU s).
fn per_minute(a: &Reading, b: &Reading) -> (f64, f64, f64, f64) {
    let minutes = b.at.duration_since(a.at).as_secs_f64() / 60.0;
    (
        (b.cpu - a.cpu) / minutes,
        (b.writes - a.writes) / minutes,
        (b.queries - a.queries) / minutes,
        (b.prom_cpu - a.prom_cpu) / minutes,
    )
}

async fn create_targets(client: &Client, namespaces: &[String]) -> Vec<ResponseTimeTarget> {
    let mut all = Vec::new();
    for ns in namespaces {
        let n: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"maturity-bench": "true"}}
        }))
        .unwrap();
        let _ = Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &n)
            .await;
        all.extend((0..PER_NAMESPACE).map(|i| target(ns, i)));
    }
    let created: Vec<ResponseTimeTarget> = futures::stream::iter(all)
        .map(|t| {
            let api: Api<ResponseTimeTarget> =
                Api::namespaced(client.clone(), &t.namespace().unwrap_or_default());
            async move {
                api.create(&PostParams::default(), &t)
                    .await
                    .expect("create target")
            }
        })
        .buffer_unordered(in_flight())
        .collect()
        .await;
    created
}

/// Sends one bare status patch per target, [`in_flight`] at a time: the floor.
/// `evaluated` goes into each status, so that a second pass changes every object.
async fn floor(client: &Client, targets: &[ResponseTimeTarget], evaluated: &str) -> Duration {
    let started = Instant::now();
    futures::stream::iter(targets)
        .map(|t| {
            let api: Api<ResponseTimeTarget> =
                Api::namespaced(client.clone(), &t.namespace().unwrap_or_default());
            let mut body = floor_status(t);
            body["status"]["lastEvaluated"] = evaluated.into();
            async move {
                api.patch_status(
                    &t.name_any(),
                    &PatchParams::apply(maturity_operator::api::names::FIELD_MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await
                .expect("floor status patch")
            }
        })
        .buffer_unordered(in_flight())
        .collect::<Vec<_>>()
        .await;
    started.elapsed()
}

/// The floor again while a watch on every target is open and drained, decoded as the
/// operator's cache decodes it: the cost of the watch events each write makes. Returns the
/// time and the watch events received while the patches were sent.
async fn floor_watched(client: &Client, targets: &[ResponseTimeTarget]) -> (Duration, usize) {
    use kube::runtime::watcher;
    let api: Api<ResponseTimeTarget> = Api::all(client.clone());
    let (ready, listed) = tokio::sync::oneshot::channel();
    let events = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = events.clone();
    let watch = tokio::spawn(async move {
        let mut ready = Some(ready);
        let mut stream = std::pin::pin!(watcher(api, watcher::Config::default().any_semantic()));
        while let Some(e) = stream.next().await {
            match e {
                Ok(watcher::Event::InitDone) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(watcher::Event::Apply(_)) => {
                    seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                _ => {}
            }
        }
    });
    let _ = listed.await;
    let took = floor(client, targets, "2026-12-01T00:00:01Z").await;
    let received = events.load(std::sync::atomic::Ordering::Relaxed);
    watch.abort();
    (took, received)
}

/// CPU seconds the local control plane's `component` (kube-apiserver, etcd) used so far.
fn component_cpu(env: &ClusterEnv, component: &str) -> f64 {
    std::fs::read_to_string(env.dir.join("pids").join(format!("{component}.pid")))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .map_or(f64::NAN, cpu_seconds)
}

/// CPU seconds of the apiserver and of etcd so far.
fn control_plane(env: &ClusterEnv) -> (f64, f64) {
    (
        component_cpu(env, "kube-apiserver"),
        component_cpu(env, "etcd"),
    )
}

/// The apiserver's requests so far, by verb and resource (`PATCH responsetimetargets/status`),
/// from its own `apiserver_request_total`.
async fn apiserver_requests(client: &Client) -> BTreeMap<String, f64> {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap_or_default();
    let mut out = BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let label = |k: &str| {
            l.split_once(&format!(",{k}=\""))
                .or_else(|| l.split_once(&format!("{{{k}=\"")))
                .and_then(|(_, rest)| rest.split_once('"'))
                .map_or("", |(v, _)| v)
                .to_string()
        };
        let Some(v) = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let sub = label("subresource");
        let key = format!(
            "{} {}{}",
            label("verb"),
            label("resource"),
            if sub.is_empty() {
                String::new()
            } else {
                format!("/{sub}")
            }
        );
        *out.entry(key).or_default() += v;
    }
    out
}

/// The requests made between two [`apiserver_requests`] readings, most first, those of at
/// least `min`.
fn requests_since(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>, min: f64) -> String {
    let mut d: Vec<(&String, f64)> = b
        .iter()
        .map(|(k, v)| (k, v - a.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v >= min)
        .collect();
    d.sort_by(|x, y| y.1.total_cmp(&x.1));
    d.iter()
        .map(|(k, v)| format!("{k} {v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Restarts the cluster's kube-apiserver as an upgrade or a crash would (SIGTERM, then the
/// same flags on the same port): every open watch ends, and the new apiserver's cache starts
/// after the resource versions the watchers last saw, so they list again.
async fn restart_apiserver(env: &ClusterEnv) {
    let pidfile = env.dir.join("pids/kube-apiserver.pid");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .expect("the apiserver's pid file")
        .trim()
        .parse()
        .expect("a pid");
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let until = Instant::now() + Duration::from_secs(30);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    let args = support::fault::apiserver_args(env);
    let server = support::cluster::kubeconfig_server(
        &std::fs::read_to_string(&env.kubeconfig).expect("the kubeconfig"),
    );
    let port = server.rsplit(':').next().expect("a port").to_string();
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(env.dir.join("logs/kube-apiserver.log"))
        .unwrap();
    // setsid, as hack/cluster-up.sh starts it: `make cluster-down` stops it by its pid file.
    let child = Command::new("setsid")
        .arg(env.tool("kube-apiserver"))
        .args(&args)
        .arg(format!("--secure-port={port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start kube-apiserver again");
    std::fs::write(&pidfile, child.id().to_string()).unwrap();
    // Reaped when it exits (`make cluster-down` stops it).
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    let ready = format!("{server}/readyz");
    support::eventually(
        "kube-apiserver ready again",
        Duration::from_secs(90),
        || {
            let ready = ready.clone();
            async move {
                let out = Command::new("curl")
                    .args(["-fsSk", "--max-time", "2", &ready])
                    .output()
                    .map_err(|e| e.to_string())?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr).to_string())
                }
            }
        },
    )
    .await;
}

/// The relist after an apiserver restart: the operator's RSS just before, and its peak
/// from then until its list of every target is done and 20 s more (NaN when it did not
/// list again within two minutes).
async fn relist(env: &ClusterEnv, client: &Client, op: &Operator) -> (f64, f64) {
    let pid = op.pid();
    // Resets VmHWM to the RSS of now (proc(5), clear_refs).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the peak RSS");
    let before = memory_mib(pid, "VmRSS:");
    restart_apiserver(env).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        // The new apiserver counts from zero.
        let lists = apiserver_requests(client)
            .await
            .get("LIST responsetimetargets")
            .copied()
            .unwrap_or(0.0);
        if lists >= 1.0 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            return (before, memory_mib(pid, "VmHWM:"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    (before, f64::NAN)
}

/// How many targets are measured: their status describes their generation, with a figure.
async fn measured(client: &Client) -> usize {
    let api: Api<ResponseTimeTarget> = Api::all(client.clone());
    let mut n = 0;
    let mut lp = ListParams::default().labels("").limit(1000);
    loop {
        let Ok(page) = api.list(&lp).await else {
            return 0;
        };
        n += page
            .items
            .iter()
            .filter(|t| {
                t.status.as_ref().is_some_and(|s| {
                    s.common.observed_generation == t.metadata.generation && s.attainment.is_some()
                })
            })
            .count();
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => return n,
        }
    }
}

/// Deletes `namespaces` (none given: every namespace the bench made) and waits until no
/// namespace of the bench is left.
async fn delete_namespaces(client: &Client, namespaces: &[String]) {
    let api = Api::<Namespace>::all(client.clone());
    let labelled = ListParams::default().labels("maturity-bench=true");
    let all: Vec<String> = match namespaces.is_empty() {
        true => api
            .list(&labelled)
            .await
            .map(|l| l.items.iter().map(|n| n.name_any()).collect())
            .unwrap_or_default(),
        false => namespaces.to_vec(),
    };
    for ns in &all {
        let _ = api.delete(ns, &DeleteParams::default()).await;
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(600) {
        let left = api
            .list(&ListParams::default().labels("maturity-bench=true"))
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn size(
    env: &ClusterEnv,
    client: &Client,
    traffic: &Arc<Mutex<Traffic>>,
    prom: &BenchPrometheus,
    n: usize,
) -> Figures {
    let namespaces: Vec<String> = (0..n.div_ceil(PER_NAMESPACE))
        .map(|i| format!("bench-{n}-{i:03}"))
        .collect();
    delete_namespaces(client, &namespaces).await;
    {
        let mut t = traffic.lock().unwrap();
        t.noisy = false;
        t.services = namespaces
            .iter()
            .flat_map(|ns| {
                (0..PER_NAMESPACE).map(move |i| Service {
                    namespace: ns.clone(),
                    name: format!("svc-{i:03}"),
                    rate: 5.0 + (i % 7) as f64,
                    // Every service meets its 99 % with room for the moving traffic's
                    // ±0.4 pp: a figure that moves is what is measured, not a flapping
                    // condition (a first evaluation that misses adds one Event).
                    share: 0.995 + (i % 5) as f64 * 0.001,
                    good: 0.0,
                    total: 0.0,
                    fast: 0.0,
                })
            })
            .collect();
    }
    let mut f = Figures {
        targets: n,
        namespaces: namespaces.len(),
        ..Figures::default()
    };
    let started = Instant::now();
    let targets = create_targets(client, &namespaces).await;
    f.create_s = started.elapsed().as_secs_f64();
    eprintln!("{n}: created in {:.0} s", f.create_s);
    let cp = control_plane(env);
    let reqs = apiserver_requests(client).await;
    f.floor_s = floor(client, &targets, "2026-12-01T00:00:00Z")
        .await
        .as_secs_f64();
    f.floor_cp = since(cp, control_plane(env));
    eprintln!(
        "{n}: floor {:.1} s (apiserver {:.1} s CPU, etcd {:.1} s; requests: {})",
        f.floor_s,
        f.floor_cp.0,
        f.floor_cp.1,
        requests_since(&reqs, &apiserver_requests(client).await, 10.0)
    );
    let cp = control_plane(env);
    let (watched, events) = floor_watched(client, &targets).await;
    f.watched_s = watched.as_secs_f64();
    f.watched_cp = since(cp, control_plane(env));
    eprintln!(
        "{n}: floor with a watch open {:.1} s ({events} events; apiserver {:.1} s CPU, etcd {:.1} s)",
        f.watched_s, f.watched_cp.0, f.watched_cp.1
    );
    drop(targets);
    // Let every series have a few scrapes, so every rate has an answer.
    tokio::time::sleep(Duration::from_secs(3 * SCRAPE)).await;

    let extra: Vec<String> = [
        "--controllers",
        "response-time-targets",
        "--tick",
        "1s",
        "--prometheus-timeout",
        "30s",
        "--status-writes-in-flight",
        &in_flight().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cp = control_plane(env);
    let reqs = apiserver_requests(client).await;
    let op = Operator::start_all_namespaces(env, &prom.url, "1m", &extra);
    let started = Instant::now();
    // Watched through the operator's own count of status writes (cheap), not by listing
    // 10,000 objects over and over while the apiserver is busy with the writes; then
    // checked with one list.
    loop {
        let writes = metric(
            &text(&op.metrics_url).await,
            "maturity_operator_status_writes_total",
            &["ResponseTimeTarget"],
        );
        if writes > 0.0 && f.first_write_s == 0.0 {
            f.first_write_s = started.elapsed().as_secs_f64();
        }
        if writes >= n as f64 {
            f.first_s = started.elapsed().as_secs_f64();
            f.first_cpu = cpu_seconds(op.pid());
            f.first_cp = since(cp, control_plane(env));
            let m = measured(client).await;
            if m >= n {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(900) {
            eprintln!("{n}: not every target measured after 15 min");
            f.first_s = started.elapsed().as_secs_f64();
            break;
        }
        // Once a second: a read of `/metrics` renders every target's series (about 10 MB
        // at 10,000), so a faster poll would load the operator it measures.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "{n}: every target measured {:.1} s after the start (first write at {:.1} s; operator CPU {:.1} s; apiserver {:.1} s, etcd {:.1} s; requests: {})",
        f.first_s,
        f.first_write_s,
        f.first_cpu,
        f.first_cp.0,
        f.first_cp.1,
        requests_since(&reqs, &apiserver_requests(client).await, 10.0)
    );

    // Steady traffic: let the first writes' watch events settle, then two minutes.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let a = reading(&op, &prom.url).await;
    let mut rss = Vec::new();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        rss.push(memory_mib(op.pid(), "VmRSS:"));
    }
    let b = reading(&op, &prom.url).await;
    (f.cpu_idle, f.writes_idle, _, _) = per_minute(&a, &b);
    // Moving traffic: six minutes, longer than the status period.
    traffic.lock().unwrap().noisy = true;
    let a = reading(&op, &prom.url).await;
    for _ in 0..36 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        rss.push(memory_mib(op.pid(), "VmRSS:"));
    }
    let b = reading(&op, &prom.url).await;
    (f.cpu_live, f.writes_live, f.queries, f.prom_cpu) = per_minute(&a, &b);
    // Which queries: by kind and outcome, per minute.
    let minutes = b.at.duration_since(a.at).as_secs_f64() / 60.0;
    for (labels, value) in &b.queries_by {
        let before = a
            .queries_by
            .iter()
            .find(|(l, _)| l == labels)
            .map_or(0.0, |(_, v)| *v);
        eprintln!(
            "{n}: Prometheus queries per min with moving traffic {{{labels}}}: {:.1}",
            (value - before) / minutes
        );
    }
    rss.sort_by(|x, y| x.total_cmp(y));
    f.rss_steady = rss[rss.len() / 2];
    f.rss_peak = memory_mib(op.pid(), "VmHWM:");
    (f.rss_before_relist, f.rss_relist_peak) = relist(env, client, &op).await;
    eprintln!(
        "{n}: relist after an apiserver restart: RSS {:.0} MiB before, peak {:.0} MiB",
        f.rss_before_relist, f.rss_relist_peak
    );
    drop(op);
    delete_namespaces(client, &namespaces).await;
    f
}

fn table(figures: &[Figures]) -> String {
    let mut out = String::from(
        "| targets (namespaces) | create | floor: bare status patches | floor with a watch open | operator start → all measured | first write; operator CPU until all measured | apiserver CPU: floor / with a watch / operator | RSS steady / peak | RSS before a relist / its peak | operator CPU per min, steady / moving traffic | status writes per min, steady / moving | Prometheus queries per min | Prometheus CPU per min |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for f in figures {
        out.push_str(&format!(
            "| {} ({}) | {:.0} s | {:.1} s | {:.1} s | {:.1} s ({:.2} × floor) | {:.1} s; {:.1} s | {:.0} / {:.0} / {:.0} s | {:.0} / {:.0} MiB | {:.0} / {:.0} MiB | {:.2} / {:.2} s | {:.0} / {:.0} | {:.1} | {:.2} s |\n",
            f.targets,
            f.namespaces,
            f.create_s,
            f.floor_s,
            f.watched_s,
            f.first_s,
            f.first_s / f.floor_s.max(0.001),
            f.first_write_s,
            f.first_cpu,
            f.floor_cp.0,
            f.watched_cp.0,
            f.first_cp.0,
            f.rss_steady,
            f.rss_peak,
            f.rss_before_relist,
            f.rss_relist_peak,
            f.cpu_idle,
            f.cpu_live,
            f.writes_idle,
            f.writes_live,
            f.queries,
            f.prom_cpu,
        ));
    }
    out
}

/// `doc` with the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` replaced by
/// `body` (the marks and `body` added at the end when `doc` has no such marks): a run
/// rewrites the tables of what it measured and leaves the rest of the file as written.
fn between_marks(doc: &str, name: &str, body: &str) -> String {
    let (open, close) = (
        format!("<!-- bench:{name} -->"),
        format!("<!-- /bench:{name} -->"),
    );
    let block = format!("{open}\n{body}{close}");
    match (doc.find(&open), doc.find(&close)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{block}{}", &doc[..a], &doc[b + close.len()..])
        }
        _ => format!("{}\n{block}\n", doc.trim_end()),
    }
}

async fn run() {
    let env = tokio::task::spawn_blocking(ensure_cluster).await.unwrap();
    let client = client(&env).await;
    install_crds(&client).await;
    let sizes: Vec<usize> = std::env::var("MATURITY_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    support::cluster::install_monitoring_crds(&env, &client).await;
    let traffic = Arc::new(Mutex::new(Traffic::default()));
    let addr = exporter(traffic.clone()).await;
    let prom = prometheus(&env, addr).await;
    let mut figures = Vec::new();
    for n in sizes.into_iter().filter(|n| *n > 0) {
        figures.push(size(&env, &client, &traffic, &prom, n).await);
        println!("{}", table(&figures));
    }
    drop(prom);
    let mut costs = Vec::new();
    if std::env::var("MATURITY_BENCH_COST").as_deref() != Ok("0") {
        for layout in [
            prometheus_cost::Layout::Shared,
            prometheus_cost::Layout::Alone,
        ] {
            costs.push(prometheus_cost::layout(&env, &client, layout).await);
            println!("{}", prometheus_cost::table(&costs));
        }
    }
    delete_namespaces(&client, &[]).await;
    let machine = BTreeMap::from([(
        "cores",
        std::thread::available_parallelism()
            .map_or(0, |n| n.get())
            .to_string(),
    )]);
    let commit = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(repo_dir())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let stamp = format!(
        "Written by `make bench` ({}; code {commit}; {} cores, release build, local control \
         plane with kwok; status writes in flight: {}).",
        maturity_operator::clock::Clock::system().now(),
        machine["cores"],
        in_flight(),
    );
    let path = repo_dir().join("docs/bench.md");
    let mut doc = std::fs::read_to_string(&path).unwrap_or_default();
    if !figures.is_empty() {
        doc = between_marks(&doc, "scale", &format!("{stamp}\n\n{}", table(&figures)));
    }
    if !costs.is_empty() {
        doc = between_marks(
            &doc,
            "cost",
            &format!("{stamp}\n\n{}", prometheus_cost::table(&costs)),
        );
    }
    std::fs::write(&path, doc).expect("write docs/bench.md");
    println!("wrote docs/bench.md");
}

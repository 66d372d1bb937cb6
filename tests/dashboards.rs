//! The Grafana dashboards shipped in the chart (`charts/maturity-operator/dashboards/*.json`).
//!
//! Without a cluster: every dashboard is well-formed Grafana JSON (unique panel ids, the
//! `${datasource}` variable everywhere, the `maturity-operator` tag), every query parses
//! once Grafana's variables are substituted, every metric it names is one the operator
//! defines (`src/metrics.rs`, `src/controllers/<kind>/metrics.rs`), and `helm template` renders one ConfigMap per dashboard
//! with the sidecar label, the chart labels and the folder annotation.
//!
//! Against the local cluster: a real operator process, scraped by the shared real
//! Prometheus, with its admission webhook registered, and in the test's namespace a
//! ResponseTimeTarget fed by the synthetic exporter, a MaturityAssessment, a CanaryPolicy
//! governing a Deployment (updated once through the webhook) and a DrillSchedule run once.
//! Every panel query (rows' nested panels too), with the variables set to the test's
//! namespace and the operator's instance, must run without error as an instant query (and
//! as a range query for time-series panels); the label names it matches and groups by must
//! be labels Prometheus has for those metrics; every variable query must run and offer the
//! test's namespace, job and instance; and every core panel must show data.
//!
//! Core panels are those whose description ends with `[core]` (documented in
//! docs/dashboards.md): panels that always have data on a working operator once there is a
//! resource of each kind, a drill has run and a Deployment update went through the
//! webhook. Core here means: every query of the panel returns at least one sample with a
//! finite value (a count of 0 is data). `REQUIRED_CORE` lists panels that must stay marked.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use maturity_operator::api::{CanaryPolicy, DrillSchedule, MaturityAssessment, ResponseTimeTarget};
use maturity_operator::synthetic::{SyntheticExporter, Traffic, labels};
use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr, VectorSelector};
use serde_json::{Value, json};
use support::cluster::{TestContext, delete_all_and_wait, repo_dir};
use support::eventually;
use support::operator::Operator;
use support::prom::{Prom, ScrapeTarget, free_port};

/// The suffix of a core panel's description.
const CORE_MARK: &str = "[core]";

/// The dashboards the chart ships.
const FILES: &[&str] = &[
    "operator.json",
    "overview.json",
    "releases-and-drills.json",
    "slos.json",
];

/// Panels that must stay marked core, so the live check cannot be weakened by removing a
/// marker. More panels are marked in the files.
const REQUIRED_CORE: &[(&str, &str)] = &[
    ("overview.json", "Maturity level by capability"),
    ("overview.json", "Practices by state"),
    ("overview.json", "Overall maturity level"),
    ("slos.json", "Attainment"),
    ("slos.json", "Error budget remaining"),
    ("slos.json", "Burn rate by window"),
    ("releases-and-drills.json", "Rollouts by policy and outcome"),
    ("releases-and-drills.json", "Drill runs by result"),
    (
        "releases-and-drills.json",
        "Recovery time of the latest recovered run",
    ),
    ("operator.json", "Status writes"),
    ("operator.json", "Evaluation cycles (reconciles)"),
    ("operator.json", "Prometheus query rate"),
    ("operator.json", "Prometheus query latency"),
    ("operator.json", "Watched resources"),
    ("operator.json", "Leader"),
];

/// Metrics the dashboards may use that the operator does not define: Prometheus's own.
const PROMETHEUS_METRICS: &[&str] = &["up", "ALERTS"];

/// Grafana's built-in variables and the values the test gives them.
const BUILTINS: &[(&str, &str)] = &[
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__range", "5m"),
];

fn dashboards_dir() -> PathBuf {
    repo_dir().join("charts/maturity-operator/dashboards")
}

struct Dashboard {
    file: String,
    json: Value,
}

/// One query of one panel.
struct Query {
    dashboard: String,
    panel: String,
    panel_type: String,
    core: bool,
    ref_id: String,
    expr: String,
}

impl Query {
    fn what(&self) -> String {
        format!(
            "{} / panel {:?} / {}: {}",
            self.dashboard, self.panel, self.ref_id, self.expr
        )
    }

    fn is_timeseries(&self) -> bool {
        matches!(self.panel_type.as_str(), "timeseries" | "state-timeline")
    }
}

fn load() -> Vec<Dashboard> {
    let mut found: Vec<String> = std::fs::read_dir(dashboards_dir())
        .expect("read charts/maturity-operator/dashboards")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    found.sort();
    assert_eq!(found, FILES, "the chart's dashboards");
    found
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(dashboards_dir().join(&file)).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{file} is not valid JSON: {e}"));
            Dashboard { file, json }
        })
        .collect()
}

/// Every panel, rows' nested panels included (a collapsed row keeps its panels inside).
fn panels(d: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

fn queries(d: &Dashboard) -> Vec<Query> {
    let mut out = Vec::new();
    for p in panels(&d.json) {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        let core = p["description"]
            .as_str()
            .is_some_and(|s| s.ends_with(CORE_MARK));
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                dashboard: d.file.clone(),
                panel: title.clone(),
                panel_type: p["type"].as_str().unwrap_or_default().to_string(),
                core,
                ref_id: t["refId"].as_str().unwrap_or_default().to_string(),
                expr: t["expr"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    out
}

/// The dashboard's template variables of type `query`: (name, query).
fn query_variables(d: &Value) -> Vec<(String, String)> {
    d["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = match &v["query"] {
                Value::String(s) => s.clone(),
                other => other["query"].as_str().unwrap_or_default().to_string(),
            };
            (v["name"].as_str().unwrap_or_default().to_string(), q)
        })
        .collect()
}

/// Replaces Grafana's variables (`$name`, `${name}`, `${name:fmt}`, `[[name]]`) with
/// `values` or the built-ins; a variable that is neither is an error.
fn substitute(expr: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let re = regex::Regex::new(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]").unwrap();
    let mut unknown = Vec::new();
    let out = re.replace_all(expr, |c: &regex::Captures| {
        let name = c
            .get(1)
            .or_else(|| c.get(2))
            .or_else(|| c.get(3))
            .unwrap()
            .as_str();
        if let Some(v) = values.get(name) {
            return v.clone();
        }
        if let Some((_, v)) = BUILTINS.iter().find(|(b, _)| *b == name) {
            return v.to_string();
        }
        unknown.push(name.to_string());
        String::new()
    });
    if unknown.is_empty() {
        Ok(out.into_owned())
    } else {
        Err(format!("undefined variables {unknown:?}"))
    }
}

/// A value for a regex matcher (`=~"$var"`), escaped the way Grafana escapes it.
fn regex_value(v: &str) -> String {
    regex::escape(v).replace('\\', "\\\\")
}

/// Every query variable of `d` set to `.*`, then those in `set`.
fn variable_values(d: &Value, set: &[(&str, String)]) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = query_variables(d)
        .into_iter()
        .map(|(n, _)| (n, ".*".to_string()))
        .collect();
    for (k, v) in set {
        if values.contains_key(*k) {
            values.insert(k.to_string(), v.clone());
        }
    }
    values
}

/// `label_values(selector, label)` as a PromQL query returning one series per value.
fn label_values_query(q: &str) -> Result<(String, String), String> {
    let inner = q
        .trim()
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("{q:?} is not label_values(selector, label)"))?;
    let (selector, label) = inner
        .rsplit_once(',')
        .ok_or_else(|| format!("{q:?} has no label"))?;
    let label = label.trim().to_string();
    Ok((format!("count by ({label}) ({})", selector.trim()), label))
}

/// Metric names and label names an expression refers to.
#[derive(Default, Debug)]
struct Refs {
    /// (metric names, label names in the matchers)
    selectors: Vec<(Vec<String>, Vec<String>)>,
    /// Labels in by/without, on/ignoring, group_left/right and label_join's sources.
    grouping: Vec<String>,
    /// Labels label_join/label_replace create.
    created: Vec<String>,
}

fn selector_refs(v: &VectorSelector) -> (Vec<String>, Vec<String>) {
    let mut names: Vec<String> = v.name.iter().cloned().collect();
    let mut labels = Vec::new();
    let all = v
        .matchers
        .matchers
        .iter()
        .chain(v.matchers.or_matchers.iter().flatten());
    for m in all {
        if m.name == "__name__" {
            match &m.op {
                MatchOp::Equal => names.push(m.value.clone()),
                MatchOp::Re(_) => names.extend(m.value.split('|').map(str::to_string)),
                _ => {}
            }
        } else {
            labels.push(m.name.clone());
        }
    }
    names.sort();
    names.dedup();
    (names, labels)
}

fn collect(e: &Expr, r: &mut Refs) {
    match e {
        Expr::Aggregate(a) => {
            if let Some(m) = &a.modifier {
                r.grouping.extend(m.labels().labels.iter().cloned());
            }
            collect(&a.expr, r);
            if let Some(p) = &a.param {
                collect(p, r);
            }
        }
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier {
                if let Some(on) = &m.matching {
                    r.grouping.extend(on.labels().labels.iter().cloned());
                }
                if let Some(l) = m.card.labels() {
                    r.grouping.extend(l.labels.iter().cloned());
                }
            }
            collect(&b.lhs, r);
            collect(&b.rhs, r);
        }
        Expr::Unary(u) => collect(&u.expr, r),
        Expr::Paren(p) => collect(&p.expr, r),
        Expr::Subquery(s) => collect(&s.expr, r),
        Expr::VectorSelector(v) => r.selectors.push(selector_refs(v)),
        Expr::MatrixSelector(m) => r.selectors.push(selector_refs(&m.vs)),
        Expr::Call(c) => {
            if matches!(c.func.name, "label_join" | "label_replace") {
                let strings: Vec<String> = c
                    .args
                    .args
                    .iter()
                    .filter_map(|a| match a.as_ref() {
                        Expr::StringLiteral(s) => Some(s.val.clone()),
                        _ => None,
                    })
                    .collect();
                if let Some(dst) = strings.first() {
                    r.created.push(dst.clone());
                }
                // label_join(v, dst, sep, src...): the sources are labels of v.
                if c.func.name == "label_join" {
                    r.grouping.extend(strings.iter().skip(2).cloned());
                } else if let Some(src) = strings.get(2) {
                    r.grouping.push(src.clone());
                }
            }
            for a in &c.args.args {
                collect(a, r);
            }
        }
        _ => {}
    }
}

fn parse(expr: &str) -> Result<Refs, String> {
    let ast = promql_parser::parser::parse(expr)?;
    let mut r = Refs::default();
    collect(&ast, &mut r);
    Ok(r)
}

/// Metric names the operator defines (`src/metrics.rs` and each kind's
/// `src/controllers/<kind>/metrics.rs`), with `_bucket`, `_count` and `_sum` for histograms.
fn defined_metrics() -> BTreeSet<String> {
    let mut src = std::fs::read_to_string(repo_dir().join("src/metrics.rs")).unwrap();
    let kinds = std::fs::read_dir(repo_dir().join("src/controllers")).unwrap();
    for kind in kinds {
        let file = kind.unwrap().path().join("metrics.rs");
        if file.exists() {
            src.push_str(&std::fs::read_to_string(file).unwrap());
        }
    }
    let name = regex::Regex::new(r#""(maturity_[a-z0-9_]+)""#).unwrap();
    let histogram = regex::Regex::new(r#"HistogramOpts::new\(\s*"(maturity_[a-z0-9_]+)""#).unwrap();
    let mut out: BTreeSet<String> = name.captures_iter(&src).map(|c| c[1].to_string()).collect();
    for c in histogram.captures_iter(&src) {
        for suffix in ["_bucket", "_count", "_sum"] {
            out.insert(format!("{}{suffix}", &c[1]));
        }
    }
    out
}

#[test]
fn every_dashboard_is_well_formed_and_uses_only_metrics_the_operator_defines() {
    let dashboards = load();
    let defined = defined_metrics();
    let mut uids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    let mut problems = Vec::new();
    for d in &dashboards {
        let (f, j) = (&d.file, &d.json);
        let text = std::fs::read_to_string(dashboards_dir().join(f)).unwrap();
        // kubectl apply keeps the whole ConfigMap in an annotation (256 KiB for all).
        assert!(text.len() < 128 * 1024, "{f}: {} bytes", text.len());
        let uid = j["uid"].as_str().unwrap_or_default();
        assert!(
            !uid.is_empty() && uid.len() <= 40 && uids.insert(uid.to_string()),
            "{f}: uid {uid:?} must be set, at most 40 characters and unique"
        );
        assert!(
            titles.insert(j["title"].as_str().unwrap_or_default().to_string()),
            "{f}: title not unique"
        );
        let schema = j["schemaVersion"].as_i64().unwrap_or_default();
        assert!((36..=41).contains(&schema), "{f}: schemaVersion {schema}");
        assert!(
            j["tags"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("maturity-operator"))),
            "{f}: tags {}",
            j["tags"]
        );
        assert!(
            j.get("id").is_none_or(Value::is_null),
            "{f}: id must be null so Grafana assigns one"
        );
        let vars = j["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            vars.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "{f}: no datasource variable of type prometheus"
        );
        // Variable queries (label_values) refer to metrics and variables that exist.
        let all_vars = variable_values(j, &[]);
        for v in &vars {
            // Grafana shows `definition` and runs `query`: they must not drift apart.
            if v["type"] == "query" && v.get("definition").is_some() {
                assert_eq!(
                    v["definition"], v["query"],
                    "{f}: variable {}: definition and query differ",
                    v["name"]
                );
            }
        }
        for (name, q) in query_variables(j) {
            let checked = label_values_query(&q)
                .and_then(|(q, _)| substitute(&q, &all_vars))
                .and_then(|q| parse(&q));
            match checked {
                Ok(r) => {
                    for (names, _) in &r.selectors {
                        for n in names {
                            if !defined.contains(n) {
                                problems.push(format!("{f}: variable {name}: unknown metric {n}"));
                            }
                        }
                    }
                }
                Err(e) => problems.push(format!("{f}: variable {name} {q:?}: {e}")),
            }
        }
        // Panels: unique ids, the datasource variable, queries that parse.
        let mut ids = BTreeSet::new();
        for p in panels(j) {
            let title = p["title"].as_str().unwrap_or_default();
            let id = p["id"].as_i64();
            assert!(
                id.is_some_and(|id| ids.insert(id)),
                "{f}: panel {title:?} id {id:?} missing or not unique"
            );
            assert!(
                p["gridPos"]["w"].as_i64().is_some(),
                "{f}: {title:?} gridPos"
            );
            if p["type"] == "row" {
                continue;
            }
            assert!(!title.is_empty(), "{f}: panel {id:?} has no title");
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{f}: panel {title:?} datasource"
            );
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            assert!(!targets.is_empty(), "{f}: panel {title:?} has no query");
            let mut refs = BTreeSet::new();
            for t in &targets {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{f}: panel {title:?} target datasource"
                );
                assert!(
                    refs.insert(t["refId"].as_str().unwrap_or_default().to_string()),
                    "{f}: panel {title:?}: refIds not unique"
                );
            }
        }
        for q in queries(d) {
            let parsed = substitute(&q.expr, &all_vars).and_then(|e| parse(&e));
            let refs = match parsed {
                Ok(r) => r,
                Err(e) => {
                    problems.push(format!("{}: {e}", q.what()));
                    continue;
                }
            };
            for (names, _) in &refs.selectors {
                for n in names {
                    if !defined.contains(n) && !PROMETHEUS_METRICS.contains(&n.as_str()) {
                        problems.push(format!(
                            "{}: metric {n} is not defined in src/metrics.rs or src/controllers/*/metrics.rs",
                            q.what()
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The required core panels exist and are marked.
    for (file, title) in REQUIRED_CORE {
        let d = dashboards.iter().find(|d| d.file == *file).unwrap();
        let qs: Vec<Query> = queries(d)
            .into_iter()
            .filter(|q| q.panel == *title)
            .collect();
        assert!(
            !qs.is_empty() && qs.iter().all(|q| q.core),
            "{file}: panel {title:?} must exist and its description end with {CORE_MARK}"
        );
    }
}

/// helm from the tool cache (`hack/build-tools.sh`, run by `make test` before the tests).
fn helm(args: &[&str], home: &Path) -> String {
    let cache = std::env::var_os("MATURITY_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/maturity-operator")
        });
    let bin = cache.join("bin/helm");
    assert!(
        bin.exists(),
        "helm not found at {}: run hack/build-tools.sh (make test does)",
        bin.display()
    );
    let out = support::run_ok(
        Command::new(&bin)
            .args(args)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data")),
        &format!("helm {args:?}"),
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The ConfigMaps of a `helm template` output that carry a dashboard.
fn dashboard_configmaps(yaml: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple::<serde_json::Value>(yaml)
        .expect("rendered YAML parses")
        .into_iter()
        .filter(|v| v["kind"] == "ConfigMap")
        .filter(|v| {
            v["data"]
                .as_object()
                .is_some_and(|m| m.keys().any(|k| k.ends_with(".json")))
        })
        .collect()
}

#[test]
fn the_chart_renders_one_configmap_per_dashboard_for_the_grafana_sidecar() {
    let home = tempfile::tempdir().unwrap();
    let chart = repo_dir().join("charts/maturity-operator");
    let chart = chart.to_str().unwrap();
    let base = ["template", "rel", chart, "--kube-version", "1.34.4"];
    let files: BTreeMap<String, Value> = load().into_iter().map(|d| (d.file, d.json)).collect();

    // Defaults: one ConfigMap per file in the release namespace, sidecar label "1".
    let yaml = helm(&[&base[..], &["--namespace", "obs"]].concat(), home.path());
    let cms = dashboard_configmaps(&yaml);
    assert_eq!(cms.len(), files.len(), "{yaml}");
    let mut names = BTreeSet::new();
    for cm in &cms {
        let md = &cm["metadata"];
        let name = md["name"].as_str().unwrap().to_string();
        assert!(
            name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
        assert!(names.insert(name.clone()), "{name} twice");
        assert_eq!(md["namespace"], "obs", "{name}");
        assert_eq!(
            md["labels"]["grafana_dashboard"], "1",
            "{name}: sidecar label"
        );
        assert_eq!(md["labels"]["app.kubernetes.io/name"], "maturity-operator");
        assert_eq!(md["labels"]["app.kubernetes.io/instance"], "rel");
        assert_eq!(md["labels"]["app.kubernetes.io/managed-by"], "Helm");
        assert_eq!(md["annotations"]["grafana_folder"], "Maturity");
        let data = cm["data"].as_object().unwrap();
        assert_eq!(data.len(), 1, "{name}");
        let (key, text) = data.iter().next().unwrap();
        let key = key.as_str();
        let file = key
            .strip_prefix("maturity-operator-")
            .unwrap_or_else(|| panic!("{name}: key {key} lacks the maturity-operator- prefix"));
        let rendered: Value = serde_json::from_str(text.as_str().unwrap())
            .unwrap_or_else(|e| panic!("{name}: {key} is not JSON after rendering: {e}"));
        assert_eq!(
            Some(&rendered),
            files.get(file),
            "{name}: {key} differs from dashboards/{file}"
        );
    }

    // The chart's ServiceMonitor keeps the operator's own namespace and service labels
    // (the dashboards' variables are built on them).
    let yaml = helm(
        &[&base[..], &["--set", "serviceMonitor.enabled=true"]].concat(),
        home.path(),
    );
    let sm = serde_saphyr::from_multiple::<serde_json::Value>(&yaml)
        .unwrap()
        .into_iter()
        .find(|v| v["kind"] == "ServiceMonitor")
        .expect("a ServiceMonitor");
    assert_eq!(
        sm["spec"]["endpoints"][0]["honorLabels"],
        serde_json::Value::Bool(true),
        "{sm:?}"
    );

    // Switched off: none.
    let yaml = helm(
        &[&base[..], &["--set", "dashboards.enabled=false"]].concat(),
        home.path(),
    );
    assert!(dashboard_configmaps(&yaml).is_empty());

    // Another namespace, label, value (kept a string), folder; a long release name.
    let long = "a-release-name-long-enough-to-need-truncation-0123";
    let yaml = helm(
        &[
            "template",
            long,
            chart,
            "--kube-version",
            "1.34.4",
            "--namespace",
            "obs",
            "--set",
            "dashboards.namespace=monitoring",
            "--set",
            "dashboards.label=example.com/grafana-dashboard",
            "--set-string",
            "dashboards.labelValue=yes",
            "--set",
            "dashboards.folder=SRE: maturity",
        ],
        home.path(),
    );
    // Quoted: Kubernetes reads YAML 1.1, where a bare yes is a boolean.
    assert!(
        yaml.contains("example.com/grafana-dashboard: \"yes\""),
        "the label value is not quoted:\n{yaml}"
    );
    let cms = dashboard_configmaps(&yaml);
    assert_eq!(cms.len(), files.len());
    let names: BTreeSet<&str> = cms
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), files.len(), "names stay unique: {names:?}");
    for cm in &cms {
        let md = &cm["metadata"];
        assert!(md["name"].as_str().unwrap().len() <= 63);
        assert_eq!(md["namespace"], "monitoring");
        assert_eq!(
            md["labels"]["example.com/grafana-dashboard"],
            serde_json::Value::String("yes".into())
        );
        assert_eq!(md["annotations"]["grafana_folder"], "SRE: maturity");
    }
}

/// Core queries without data, and the number of samples of each query, at one point in time.
struct Observation {
    empty_core: Vec<String>,
    samples: BTreeMap<String, usize>,
}

/// Runs every query; a query Prometheus refuses fails the test at once.
async fn observe(prom: &Prom, all: &[(Query, String)]) -> Observation {
    let mut empty_core = Vec::new();
    let mut samples = BTreeMap::new();
    for (q, expr) in all {
        let result = prom.query(expr).await;
        let found = match result {
            Ok(s) => s,
            Err(e) => panic!("{} failed in Prometheus: {e}", q.what()),
        };
        let finite = found.iter().filter(|s| s.value.is_finite()).count();
        samples.insert(q.what(), found.len());
        if q.core && finite == 0 {
            empty_core.push(format!(
                "{} (samples: {:?})",
                q.what(),
                found.iter().map(|s| s.value).collect::<Vec<_>>()
            ));
        }
    }
    Observation {
        empty_core,
        samples,
    }
}

async fn range_query(prom: &Prom, expr: &str) -> Result<(), String> {
    let end = support::prom::now_unix();
    let body: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/query_range", prom.url))
        .form(&[
            ("query", expr.to_string()),
            ("start", (end - 120).to_string()),
            ("end", end.to_string()),
            ("step", "5".to_string()),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if body["status"] == "success" {
        Ok(())
    } else {
        Err(body.to_string())
    }
}

/// Label names of each metric Prometheus has for `selector` (`/api/v1/series`).
async fn series_labels(prom: &Prom, selector: &str) -> BTreeMap<String, BTreeSet<String>> {
    let body: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/series", prom.url))
        .form(&[("match[]", selector)])
        .send()
        .await
        .expect("series request")
        .json()
        .await
        .expect("series answer");
    assert_eq!(body["status"], "success", "{body}");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in body["data"].as_array().into_iter().flatten() {
        let Some(m) = s.as_object() else { continue };
        let name = m["__name__"].as_str().unwrap_or_default().to_string();
        out.entry(name)
            .or_default()
            .extend(m.keys().filter(|k| *k != "__name__").cloned());
    }
    out
}

#[tokio::test]
async fn every_panel_query_runs_against_prometheus_scraping_a_running_operator() {
    let started = Instant::now();
    let ctx = TestContext::new("dash").await;
    let ns = ctx.namespace.clone();
    let prom = Prom::new(&ctx.env.prometheus_url);

    // Traffic for the ResponseTimeTarget and a satisfaction signal for the assessment.
    let exporter = Arc::new(
        SyntheticExporter::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap(),
    );
    exporter.set_traffic(
        labels(&[("namespace", &ns), ("service", "pay")]),
        Traffic::steady(50.0, 0.002, 0.05),
    );
    exporter.set_gauge("satisfaction_score", labels(&[("namespace", &ns)]), 4.6);
    let _exporter_target =
        ScrapeTarget::register(&ctx.env, &format!("{ns}-exporter"), exporter.addr(), &[]);

    // The operator with its admission webhook registered under a name of this test's own.
    let webhook_port = free_port();
    let webhook_configuration = format!("maturity-{ns}");
    let operator = Operator::start_with(
        &ctx.env,
        &ns,
        &ctx.env.prometheus_url,
        "2s",
        &[
            "--assessment-interval".into(),
            "1s".into(),
            "--webhook-addr".into(),
            format!("127.0.0.1:{webhook_port}"),
            "--webhook-url".into(),
            format!("https://127.0.0.1:{webhook_port}"),
            "--webhook-configuration".into(),
            webhook_configuration.clone(),
        ],
    );
    support::operator::webhook_recording(&ctx.client, &ns).await;
    let operator_addr: SocketAddr = operator
        .metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .expect("the operator's metrics address");
    let _operator_target =
        ScrapeTarget::register(&ctx.env, &format!("{ns}-operator"), operator_addr, &[]);

    let rtt: ResponseTimeTarget = serde_json::from_value(json!({
        "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "ResponseTimeTarget",
        "metadata": {"name": "pay-availability"},
        "spec": {"service": "pay", "requestClass": "all", "objective": 99.0, "window": "1h",
                 "indicator": {"ratio": {
                     "good": format!("http_requests_total{{namespace=\"{ns}\",service=\"pay\",code!~\"5..\"}}"),
                     "total": format!("http_requests_total{{namespace=\"{ns}\",service=\"pay\"}}")}}}
    }))
    .unwrap();
    let assessment: MaturityAssessment = serde_json::from_value(json!({
        "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "MaturityAssessment",
        "metadata": {"name": "payments"},
        "spec": {"targetLevel": 2,
                 "signals": {"satisfaction": {"query": format!("satisfaction_score{{namespace=\"{ns}\"}}"), "min": 4.0}}}
    }))
    .unwrap();
    let canary: CanaryPolicy = serde_json::from_value(json!({
        "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "CanaryPolicy",
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"team": "web"}},
                 "steps": [{"weight": 50, "analyze": "1m"}],
                 "analysis": {"interval": "30s", "metrics": [{"name": "up", "query": "vector(1)", "min": 1}]}}
    }))
    .unwrap();
    // Run once now (no scheduled runs): a result and a recovery time.
    let drill: DrillSchedule = serde_json::from_value(json!({
        "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "DrillSchedule",
        "metadata": {"name": "web-podkill", "annotations": {"maturity.sre.dev/run-now": "1"}},
        "spec": {"schedule": "0 10 * * 1-5", "timeZone": "UTC", "suspend": true,
                 "target": {"name": "web"}, "action": {"podKill": {"count": 1}},
                 "checkInterval": "1s", "recoveryDeadline": "60s"}
    }))
    .unwrap();
    // The workload the canary policy governs and the drill targets (pods run on kwok).
    let web: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"app": "web", "team": "web"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": "web:1"}]}}}
    }))
    .unwrap();
    let pp = PostParams::default();
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    deployments.create(&pp, &web).await.unwrap();
    let rtts: Api<ResponseTimeTarget> = Api::namespaced(ctx.client.clone(), &ns);
    rtts.create(&pp, &rtt).await.unwrap();
    let assessments: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ns);
    assessments.create(&pp, &assessment).await.unwrap();
    let canaries: Api<CanaryPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    canaries.create(&pp, &canary).await.unwrap();
    // The drill needs its target Available, or the run is skipped.
    ctx.wait_available("web", 1).await;
    let drills: Api<DrillSchedule> = Api::namespaced(ctx.client.clone(), &ns);
    drills.create(&pp, &drill).await.unwrap();
    // An update of the Deployment (not of its template) goes through the webhook, allowed;
    // repeated until the API server calls the newly registered webhook.
    let mut touch = 0u32;
    let metrics_url = operator.metrics_url.clone();
    eventually("a webhook request counted", Duration::from_secs(30), || {
        touch += 1;
        let (deployments, url) = (deployments.clone(), metrics_url.clone());
        async move {
            let patch = json!({"metadata": {"labels": {"touched": touch.to_string()}}});
            deployments
                .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| e.to_string())?;
            let metrics = reqwest::get(&url)
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            if metrics.contains("maturity_operator_webhook_requests_total{") {
                Ok(())
            } else {
                Err("no webhook request yet".into())
            }
        }
    })
    .await;

    // Every panel query with the dashboard's variables set to this test's scope.
    let dashboards = load();
    let scope = [
        ("namespace", regex_value(&ns)),
        ("instance", regex_value(&operator_addr.to_string())),
        ("job", "local".to_string()),
    ];
    let mut all: Vec<(Query, String)> = Vec::new();
    for d in &dashboards {
        let values = variable_values(&d.json, &scope);
        for q in queries(d) {
            let expr = substitute(&q.expr, &values).unwrap_or_else(|e| panic!("{}: {e}", q.what()));
            all.push((q, expr));
        }
    }
    // Query errors fail at once; core panels get until the operator and Prometheus have
    // caught up (a few evaluation and scrape intervals).
    let all_ref = &all;
    let prom_ref = &prom;
    let observation = eventually(
        "every core panel has data",
        Duration::from_secs(60),
        || async move {
            let o = observe(prom_ref, all_ref).await;
            if o.empty_core.is_empty() {
                Ok(o)
            } else {
                Err(format!(
                    "{} core queries without data:\n{}",
                    o.empty_core.len(),
                    o.empty_core.join("\n")
                ))
            }
        },
    )
    .await;
    let data_at = started.elapsed();

    // Time-series panels as Grafana asks for them: range queries.
    for (q, expr) in all.iter().filter(|(q, _)| q.is_timeseries()) {
        if let Err(e) = range_query(&prom, expr).await {
            panic!("{} failed as a range query: {e}", q.what());
        }
    }

    // Label names: what each query matches and groups by must be labels Prometheus has for
    // the metrics it reads (checked for every metric the running operator has series of).
    let known = series_labels(
        &prom,
        &format!(r#"{{job="local", instance="{operator_addr}"}}"#),
    )
    .await;
    let mut unverified = BTreeSet::new();
    let mut label_problems = Vec::new();
    for (q, expr) in &all {
        let refs = parse(expr).unwrap_or_else(|e| panic!("{}: {e}", q.what()));
        let mut union: BTreeSet<String> = refs.created.iter().cloned().collect();
        union.extend(["job", "instance"].map(String::from));
        let mut complete = true;
        for (names, matched) in &refs.selectors {
            for n in names {
                match known.get(n) {
                    Some(have) => {
                        union.extend(have.iter().cloned());
                        for l in matched {
                            if !have.contains(l) {
                                label_problems.push(format!(
                                    "{}: {n} has no label {l:?} ({have:?})",
                                    q.what()
                                ));
                            }
                        }
                    }
                    None => {
                        complete = false;
                        unverified.insert(n.clone());
                    }
                }
            }
        }
        if complete {
            for l in &refs.grouping {
                if !union.contains(l) {
                    label_problems.push(format!(
                        "{}: groups or matches on {l:?}, which none of its metrics has ({union:?})",
                        q.what()
                    ));
                }
            }
        }
    }
    assert!(label_problems.is_empty(), "{}", label_problems.join("\n"));

    // Variable queries run and offer this test's namespace, operator instance and job.
    for d in &dashboards {
        let values = variable_values(&d.json, &scope);
        for (name, q) in query_variables(&d.json) {
            let (query, label) = label_values_query(&q).unwrap();
            let query = substitute(&query, &values).unwrap();
            let found = prom
                .query(&query)
                .await
                .unwrap_or_else(|e| panic!("{}: variable {name}: {e}", d.file));
            let offered: BTreeSet<&str> = found
                .iter()
                .filter_map(|s| s.labels.get(&label).map(String::as_str))
                .collect();
            let want = match name.as_str() {
                "namespace" => Some(ns.clone()),
                "instance" => Some(operator_addr.to_string()),
                "job" => Some("local".to_string()),
                _ => None,
            };
            if let Some(want) = want {
                assert!(
                    offered.contains(want.as_str()),
                    "{}: variable {name} ({q}) offers {offered:?}, not {want}",
                    d.file
                );
            } else {
                assert!(
                    !offered.is_empty(),
                    "{}: variable {name} ({q}) offers nothing",
                    d.file
                );
            }
        }
    }

    // What the panels showed, for the record.
    let core = all.iter().filter(|(q, _)| q.core).count();
    let empty: Vec<&String> = observation
        .samples
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(w, _)| w)
        .collect();
    eprintln!(
        "{} queries in {} dashboards ran; {core} core queries had data after {data_at:.1?}; \
         no data (not core): {empty:#?}; labels unverified (no series in this test): {unverified:?}",
        all.len(),
        dashboards.len()
    );

    // The canary policy and the drill have finalizers: let the operator run them first.
    delete_all_and_wait(&canaries).await;
    delete_all_and_wait(&drills).await;
    drop(operator);
    let _ = Api::<MutatingWebhookConfiguration>::all(ctx.client.clone())
        .delete(&webhook_configuration, &DeleteParams::default())
        .await;
    ctx.cleanup().await;
    eprintln!("took {:.1?}", started.elapsed());
}

//! The CRD upgrade path of docs/upgrade.md, on a control plane of its own (the shared
//! one's CRDs are every other test's): the chart installed with the previous CRDs
//! (tests/fixtures/crds-previous), objects written under them, then the chart upgraded.
//! `helm upgrade` alone leaves the CRDs as they were (Helm never upgrades `crds/`);
//! `kubectl apply --server-side --force-conflicts -f crds/` brings the current schemas, the
//! stored objects read as the current types, and the new fields are accepted and checked.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::cluster::{chart_dir, repo_dir};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A control plane started by hack/cluster-up.sh in a folder of its own (free ports), and
/// stopped by hack/cluster-down.sh when dropped.
struct OwnCluster {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    tools: PathBuf,
}

impl OwnCluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let up = Command::new(repo_dir().join("hack/cluster-up.sh"))
            .env("MATURITY_CLUSTER_DIR", dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(up.status.success(), "hack/cluster-up.sh: {}", text(&up));
        let env = std::fs::read_to_string(dir.path().join("cluster.env")).unwrap();
        let var = |k: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("export {k}=")))
                .map(|v| PathBuf::from(v.split_whitespace().next().unwrap_or_default()))
                .unwrap_or_else(|| panic!("{k} in cluster.env"))
        };
        let (kubeconfig, tools) = (var("KUBECONFIG"), var("MATURITY_TOOLS_BIN"));
        Self {
            dir,
            kubeconfig,
            tools,
        }
    }

    fn run(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new(self.tools.join(tool))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.dir.path().join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.path().join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.path().join("helm/data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn ok(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(tool, args, stdin);
        assert!(out.status.success(), "{tool} {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The served schema's `spec` properties of CRD `name`.
    fn spec_fields(&self, crd: &str) -> Vec<String> {
        let json = self.ok("kubectl", &["get", "crd", crd, "-o", "json"], None);
        let crd: serde_json::Value = serde_json::from_str(&json).unwrap();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new(repo_dir().join("hack/cluster-down.sh"))
            .env("MATURITY_CLUSTER_DIR", self.dir.path())
            .output();
    }
}

/// The chart as it was released with the previous CRDs: a copy whose `crds/` holds them.
fn previous_chart(into: &Path) -> PathBuf {
    let chart = into.join("maturity-operator");
    let copied = Command::new("cp")
        .args(["-r"])
        .arg(chart_dir())
        .arg(&chart)
        .output()
        .unwrap();
    assert!(copied.status.success(), "{}", text(&copied));
    for entry in std::fs::read_dir(repo_dir().join("tests/fixtures/crds-previous")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, chart.join("crds").join(path.file_name().unwrap())).unwrap();
        }
    }
    chart
}

const OLD_POLICY: &str = r#"
apiVersion: maturity.sre.dev/v1alpha1
kind: CanaryPolicy
metadata: {name: web, namespace: team}
spec:
  selector: {matchLabels: {app: web}}
  steps: [{weight: 50, analyze: 2m}]
  analysis:
    interval: 30s
    metrics:
      - name: errors
        query: x{pod_template_hash="{{canary_hash}}"}
        max: 1
"#;

const NEW_POLICY: &str = r#"
apiVersion: maturity.sre.dev/v1alpha1
kind: CanaryPolicy
metadata: {name: web-hooks, namespace: team}
spec:
  selector: {matchLabels: {app: web}}
  steps: [{weight: 50, analyze: 2m}]
  progressDeadline: 5m
  analysis:
    interval: 30s
    metrics:
      - name: errors
        query: x{pod_template_hash="{{canary_hash}}"}
        max: 1
  hooks:
    - {name: load, type: Rollout, url: "http://loadtester.team/"}
"#;

const NEW_DRILL: &str = r#"
apiVersion: maturity.sre.dev/v1alpha1
kind: DrillSchedule
metadata: {name: zone, namespace: team}
spec:
  schedule: "0 3 * * 1"
  target: {name: web}
  action: {zoneFailure: {zone: eu-west-1a, hold: 5m}}
  recoveryDeadline: 10m
"#;

#[test]
fn the_documented_crd_upgrade_brings_the_new_schemas_and_keeps_the_objects() {
    let cluster = OwnCluster::start();
    let work = tempfile::tempdir().unwrap();
    let previous = previous_chart(work.path());
    let chart = |p: &Path| p.to_str().unwrap().to_string();
    let install = [
        "-n",
        "maturity",
        "--set",
        "watchNamespace=team",
        "--set",
        "prometheus.url=http://prometheus.invalid:9090",
        // No webhook: its pods would run on kwok, where nothing answers.
        "--set",
        "controllers.canaries=false",
        "--set",
        "controllers.assessments=false",
    ];
    // Installed with the previous CRDs (Helm installs crds/ on the first install).
    cluster.ok(
        "helm",
        &[
            &["install", "mo", &chart(&previous), "--create-namespace"][..],
            &install[..],
        ]
        .concat(),
        None,
    );
    let old_fields = cluster.spec_fields("canarypolicies.maturity.sre.dev");
    assert!(!old_fields.contains(&"hooks".to_string()), "{old_fields:?}");
    cluster.ok("kubectl", &["create", "namespace", "team"], None);
    cluster.ok("kubectl", &["apply", "-f", "-"], Some(OLD_POLICY));
    // Not known to the previous schema: pruned or refused, never kept.
    let refused = cluster.run("kubectl", &["apply", "-f", "-"], Some(NEW_DRILL));
    assert!(!refused.status.success(), "{}", text(&refused));

    // `helm upgrade` alone: the CRDs stay the previous ones.
    cluster.ok(
        "helm",
        &[&["upgrade", "mo", &chart(&chart_dir())][..], &install[..]].concat(),
        None,
    );
    assert_eq!(
        cluster.spec_fields("canarypolicies.maturity.sre.dev"),
        old_fields,
        "helm upgrade changed the CRDs: docs/upgrade.md says it does not"
    );

    // docs/upgrade.md: the CRDs first, server-side, then the chart.
    let crds = repo_dir().join("crds");
    cluster.ok(
        "kubectl",
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crds.to_str().unwrap(),
        ],
        None,
    );
    for (crd, new) in [
        ("canarypolicies.maturity.sre.dev", "hooks"),
        ("canarypolicies.maturity.sre.dev", "progressDeadline"),
    ] {
        let fields = cluster.spec_fields(crd);
        assert!(
            fields.contains(&new.to_string()),
            "{crd} lacks {new}: {fields:?}"
        );
    }
    let drill = cluster.ok(
        "kubectl",
        &[
            "get",
            "crd",
            "drillschedules.maturity.sre.dev",
            "-o",
            "json",
        ],
        None,
    );
    assert!(
        drill.contains("zoneFailure"),
        "drillschedules lack zoneFailure"
    );
    cluster.ok(
        "helm",
        &[&["upgrade", "mo", &chart(&chart_dir())][..], &install[..]].concat(),
        None,
    );
    // Every CRD served is the current one, field for field.
    for entry in std::fs::read_dir(&crds).unwrap() {
        let path = entry.unwrap().path();
        let want: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = want["metadata"]["name"].as_str().unwrap();
        let served: serde_json::Value =
            serde_json::from_str(&cluster.ok("kubectl", &["get", "crd", name, "-o", "json"], None))
                .unwrap();
        let mut differ = Vec::new();
        diff(
            "",
            &served["spec"]["versions"],
            &want["spec"]["versions"],
            &mut differ,
        );
        assert!(
            differ.is_empty(),
            "{name} is not the current CRD: {differ:?}"
        );
    }

    // The object written under the previous schema reads as the current type.
    let old: maturity_operator::api::CanaryPolicy = serde_json::from_str(&cluster.ok(
        "kubectl",
        &["get", "canarypolicy", "web", "-n", "team", "-o", "json"],
        None,
    ))
    .expect("a CanaryPolicy of the previous schema reads as the current type");
    assert_eq!(old.spec.steps.len(), 1);
    // The new fields are accepted, and checked by the new rules.
    cluster.ok("kubectl", &["apply", "-f", "-"], Some(NEW_POLICY));
    cluster.ok("kubectl", &["apply", "-f", "-"], Some(NEW_DRILL));
    let bad = cluster.run(
        "kubectl",
        &["apply", "-f", "-"],
        Some(&NEW_POLICY.replace("http://loadtester.team/", "ftp://loadtester.team/")),
    );
    assert!(!bad.status.success(), "{}", text(&bad));
    let said = text(&bad);
    let expected = support::cluster::expected_refusal(
        &repo_dir().join("tests/fixtures/invalid/cpol-hook-not-http.yaml"),
    );
    assert!(said.contains(&expected), "{said}");
}

/// The paths where `a` and `b` differ (at most 20).
fn diff(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    if out.len() >= 20 {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let null = Value::Null;
                diff(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), p, q, out);
            }
        }
        // YAML's 100.0 is JSON's 100.
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a != b => out.push(format!("{path}: served {a}, file {b}")),
        _ => {}
    }
}

//! `maturity-operator validate` offline (no cluster): every invalid fixture is refused
//! with the sentence its `# expect:` line names (the one the real API server's 422
//! contains, `tests/admission.rs`), every example is accepted, and the webhook's tenancy
//! refusal is given as the webhook words it (`tests/tenancy.rs`).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

fn validate(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
        .arg("validate")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run maturity-operator");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn temp_file(name: &str, content: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    (dir, path)
}

#[test]
fn each_invalid_fixture_is_refused_with_its_expected_sentence() {
    let files = yaml_files(&repo().join("tests/fixtures/invalid"));
    assert!(files.len() >= 30, "found {} fixtures", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let expect = support::cluster::expected_refusal(file);
        let shown = file.display().to_string();
        let out = validate(&["-f", &shown], None);
        let stdout = text(&out.stdout);
        let refusal = stdout
            .lines()
            .any(|l| l.starts_with(&format!("{shown}: ")) && l.contains(&expect));
        if out.status.code() != Some(1) || !refusal {
            failures.push(format!(
                "{shown}: exit {:?}, expected 1 and a line containing {expect:?}; stdout:\n{stdout}stderr:\n{}",
                out.status.code(),
                text(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn a_refusal_is_worded_as_the_api_server_words_it() {
    let file = "tests/fixtures/invalid/rtt-window-zero.yaml";
    let out = validate(&["-f", file], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{file}: ResponseTimeTarget.maturity.sre.dev \"rtt-window-zero\" is invalid: spec.window: Invalid value: \"string\": window must be longer than zero\n"
        )
    );
}

#[test]
fn every_example_is_accepted() {
    let files = yaml_files(&repo().join("examples"));
    assert!(files.len() >= 4, "found {} examples", files.len());
    for file in &files {
        let shown = file.display().to_string();
        let out = validate(&["-f", &shown], None);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{shown}:\n{stdout}{}",
            text(&out.stderr)
        );
        assert!(
            stdout
                .lines()
                .all(|l| l.starts_with(&format!("{shown}: ")) && l.ends_with(" is valid")),
            "{stdout}"
        );
    }
    // The folder at once: its files in order, one line per document.
    let examples = repo().join("examples").display().to_string();
    let out = validate(&["-f", &examples], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let shown: Vec<&str> = stdout
        .lines()
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    let mut sorted = shown.clone();
    sorted.sort();
    assert_eq!(shown, sorted);
    assert!(shown.len() >= files.len());
}

#[test]
fn a_file_that_cannot_be_read_or_parsed_exits_2_with_a_sentence() {
    let out = validate(&["-f", "no/such/manifest.yaml"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot read no/such/manifest.yaml"),
        "{}",
        text(&out.stderr)
    );
    let (_dir, path) = temp_file("broken.yaml", "kind: [unclosed\n");
    let out = validate(&["-f", &path.display().to_string()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is not YAML"),
        "{}",
        text(&out.stderr)
    );
    // A refused document elsewhere does not hide the unreadable file.
    let out = validate(
        &[
            "-f",
            "tests/fixtures/invalid/rtt-window-zero.yaml",
            "-f",
            "no/such.yaml",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("window must be longer than zero"));
}

#[test]
fn other_kinds_are_skipped_with_a_note() {
    let manifest = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  a: b
---
apiVersion: maturity.sre.dev/v1alpha1
kind: ResponseTimeTarget
metadata:
  name: checkout
spec:
  service: checkout
  requestClass: api
  objective: 99.5
  window: 28d
  indicator:
    ratio:
      good: ok_total
      total: all_total
";
    let out = validate(&["-f", "-"], Some(manifest));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "-: ResponseTimeTarget checkout is valid\n"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("skipped") && stderr.contains("ConfigMap"),
        "{stderr}"
    );
}

const DRILL: &str = r#"apiVersion: maturity.sre.dev/v1alpha1
kind: DrillSchedule
metadata:
  name: peek
spec:
  schedule: "0 10 * * 1"
  target:
    kind: Deployment
    name: web
  action:
    podKill:
      count: 1
  recoveryDeadline: 1m
  steadyState:
  - name: rich
    query: max(bank_balance{namespace="bank"})
    min: 1
"#;

#[test]
fn a_query_naming_another_namespace_is_refused_unless_single_tenant() {
    let out = validate(&["-f", "-", "-n", "shop"], Some(DRILL));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // The sentence tests/tenancy.rs reads from the real webhook.
    assert!(
        stdout.starts_with(
            "-: admission webhook \"authors.maturity.sre.dev\" denied the request: steadyState check rich (#1): the query may only read namespace shop"
        ),
        "{stdout}"
    );
    let out = validate(&["-f", "-", "-n", "shop", "--single-tenant"], Some(DRILL));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    // Its own namespace's series: admitted.
    let own = DRILL.replace(r#"{namespace="bank"}"#, "");
    let out = validate(&["-f", "-", "-n", "shop"], Some(&own));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    // The label is the one named.
    let out = validate(
        &["-f", "-", "-n", "shop", "--tenant-label", "tenant"],
        Some(DRILL),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    let assessment = r#"apiVersion: maturity.sre.dev/v1alpha1
kind: MaturityAssessment
metadata:
  name: names-other
  namespace: shop
spec:
  signals:
    satisfaction:
      query: avg(satisfaction_score{namespace="bank"})
      min: 4
"#;
    let out = validate(&["-f", "-"], Some(assessment));
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("admission webhook \"assessments.maturity.sre.dev\" denied the request: spec.signals.satisfaction.query:")
            && stdout.contains("may only read namespace shop"),
        "{stdout}"
    );
    let out = validate(&["-f", "-", "--single-tenant"], Some(assessment));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

//! The command line as users meet it: shell completion, `-o json|yaml` on what prints
//! objects, and the binary installed as the kubectl plugin `kubectl-maturity`, found and run
//! by the real kubectl against the local cluster.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use kube::api::{Api, Patch, PatchParams, PostParams};
use maturity_operator::api::MaturityAssessment;
use support::cluster::{TestContext, assessment};

const BIN: &str = env!("CARGO_BIN_EXE_maturity-operator");

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A folder holding the binary as `kubectl-maturity` (a symbolic link, as a user installs
/// it), and a PATH that finds it first.
fn plugin_path(dir: &Path) -> std::ffi::OsString {
    std::os::unix::fs::symlink(BIN, dir.join("kubectl-maturity")).unwrap();
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

#[test]
fn completion_scripts_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        for command in ["check", "report", "rules", "validate", "completion"] {
            assert!(script.contains(command), "{shell}: {command} missing");
        }
        assert!(
            !script.contains("synthetic-exporter"),
            "{shell}: the test exporter is offered"
        );
    }
    let bad = Command::new(BIN)
        .args(["completion", "cmd"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("invalid value 'cmd'"), "{}", text(&bad));
}

#[test]
fn the_model_and_the_crds_print_as_json_and_yaml() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        out.stdout
    };
    let json: serde_json::Value = serde_json::from_slice(&run(&["model", "-o", "json"])).unwrap();
    let yaml: serde_json::Value = serde_saphyr::from_slice(&run(&["model", "-o", "yaml"])).unwrap();
    assert_eq!(json, yaml);
    // The model's practices: ORG-2.1 first (docs/model.md: level 1 asks for nothing).
    assert_eq!(json[0]["id"], "ORG-2.1", "{}", json[0]);

    let list: serde_json::Value = serde_json::from_slice(&run(&["crd", "-o", "json"])).unwrap();
    let mut kinds: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["spec"]["names"]["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "CanaryPolicy",
            "DrillSchedule",
            "MaturityAssessment",
            "ResponseTimeTarget"
        ]
    );
    let yaml: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(std::str::from_utf8(&run(&["crd"])).unwrap()).unwrap();
    assert_eq!(yaml, list["items"].as_array().unwrap().clone());
}

#[tokio::test]
async fn kubectl_runs_it_as_the_maturity_plugin() {
    let ctx = TestContext::new("cli").await;
    let ns = ctx.namespace.as_str();
    let dir = tempfile::tempdir().unwrap();
    let path = plugin_path(dir.path());
    let kubectl = |args: &[&str]| {
        Command::new(ctx.env.tool("kubectl"))
            .args(args)
            .env("PATH", &path)
            .env("KUBECONFIG", &ctx.env.kubeconfig)
            .output()
            .unwrap()
    };

    let listed = kubectl(&["plugin", "list"]);
    assert!(
        text(&listed).contains("kubectl-maturity"),
        "{}",
        text(&listed)
    );
    let help = kubectl(&["maturity", "--help"]);
    assert!(help.status.success(), "{}", text(&help));
    assert!(
        text(&help).contains("Usage: kubectl maturity <COMMAND>"),
        "{}",
        text(&help)
    );

    // An assessment at level 2 of a wanted 3, its status written as the operator would
    // (no operator runs here): `check` reads it through the plugin.
    let api: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), ns);
    let created = api
        .create(
            &PostParams::default(),
            &assessment("payments", serde_json::json!({"targetLevel": 3})),
        )
        .await
        .unwrap();
    let now = jiff::Timestamp::now().to_string();
    let status = serde_json::json!({"status": {
        "level": 2,
        "observedGeneration": created.metadata.generation,
        "heartbeat": now,
        "capabilities": [{"id": "ORG", "level": 2, "practices": []}],
        "nextLevel": {"level": 3, "missing": [{"practice": "ORG-3.1", "why": "NotMet: no owner"}]},
        "conditions": [{"type": "Ready", "status": "True", "reason": "Evaluated",
            "message": "level 2", "lastTransitionTime": now,
            "observedGeneration": created.metadata.generation}]
    }});
    api.patch_status("payments", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();

    let table = kubectl(&["maturity", "check", "payments", "-n", ns]);
    assert_eq!(table.status.code(), Some(1), "{}", text(&table));
    assert!(
        text(&table).contains(&format!(
            "MaturityAssessment {ns}/payments: level 2 (wanted 3)"
        )),
        "{}",
        text(&table)
    );
    let json = kubectl(&["maturity", "check", "payments", "-n", ns, "-o", "json"]);
    assert_eq!(json.status.code(), Some(1), "{}", text(&json));
    let verdict: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(verdict["result"], "Below");
    assert_eq!(verdict["exitCode"], 1);
    assert_eq!(verdict["level"], 2);
    assert_eq!(verdict["wanted"], 3);
    assert_eq!(verdict["message"], "below the wanted level 3");
    assert_eq!(verdict["nextLevel"]["missing"][0]["practice"], "ORG-3.1");
    let yaml = kubectl(&["maturity", "check", "payments", "-n", ns, "-o", "yaml"]);
    let as_yaml: serde_json::Value = serde_saphyr::from_slice(&yaml.stdout).unwrap();
    assert_eq!(as_yaml, verdict);
    // A lower wanted level is met.
    let met = kubectl(&[
        "maturity",
        "check",
        "payments",
        "-n",
        ns,
        "--min-level",
        "2",
        "-o",
        "json",
    ]);
    assert_eq!(met.status.code(), Some(0), "{}", text(&met));
    let verdict: serde_json::Value = serde_json::from_slice(&met.stdout).unwrap();
    assert_eq!(verdict["result"], "Met");
    // No such assessment: unknown, exit 3, in every format.
    let missing = kubectl(&["maturity", "check", "nosuch", "-n", ns, "-o", "json"]);
    assert_eq!(missing.status.code(), Some(3), "{}", text(&missing));
    let verdict: serde_json::Value = serde_json::from_slice(&missing.stdout).unwrap();
    assert_eq!(verdict["result"], "Unknown");
    assert_eq!(
        verdict["message"],
        format!("no MaturityAssessment nosuch in namespace {ns}")
    );
    ctx.cleanup().await;
}

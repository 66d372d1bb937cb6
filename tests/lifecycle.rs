//! The scripts that build tools and start the cluster: `cluster-up` then `cluster-down`
//! leaves no process behind; a component that fails to start, or a tool that fails to
//! build, is named together with the path of its log.
//!
//! These start a second, throwaway cluster in a temporary folder, beside the shared one;
//! having no CRDs, it also shows the operator refusing to start without them.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::cluster::{ensure_cluster, repo_dir};

/// Pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

fn script(name: &str, cluster_dir: &Path, extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(repo_dir().join("hack").join(name));
    cmd.env("MATURITY_CLUSTER_DIR", cluster_dir);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn cluster_up_then_down_leaves_no_process_running() {
    ensure_cluster(); // tools built once, by the shared cluster
    let dir = tempfile::tempdir().unwrap();
    let cluster_dir = dir.path().join("cluster");
    let needle = cluster_dir.to_string_lossy().into_owned();

    let up = script("cluster-up.sh", &cluster_dir, &[]);
    assert!(
        up.status.success(),
        "cluster-up failed:\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(stderr.contains("Local cluster is up"), "{stderr}");
    assert!(
        stderr.contains("KUBECONFIG"),
        "cluster-up should say how to use it: {stderr}"
    );
    let running = processes_mentioning(&needle);
    let names: Vec<&str> = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "prometheus",
    ]
    .into_iter()
    .filter(|n| {
        running
            .iter()
            .any(|(_, c)| c.split(' ').next().is_some_and(|b| b.ends_with(n)))
    })
    .collect();
    assert_eq!(
        names.len(),
        6,
        "expected all six components running, found {names:?}: {running:?}"
    );

    // This fresh cluster has no CRDs: the operator refuses to start, with one sentence.
    let run = Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
        .args(["run", "--http-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", cluster_dir.join("kubeconfig"))
        .output()
        .unwrap();
    let run_err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        run.status.code(),
        Some(1),
        "operator without CRDs: {run_err}"
    );
    assert!(
        run_err.contains("the custom resource definitions are not installed")
            && run_err.contains("ResponseTimeTarget (responsetimetargets.maturity.sre.dev)")
            && run_err.contains("MaturityAssessment"),
        "{run_err}"
    );
    assert!(!run_err.contains("panicked"), "{run_err}");

    let down = script("cluster-down.sh", &cluster_dir, &[]);
    assert!(
        down.status.success(),
        "cluster-down failed:\n{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let left = processes_mentioning(&needle);
    assert!(
        left.is_empty(),
        "processes left after cluster-down: {left:?}"
    );
    assert!(
        !cluster_dir.exists(),
        "cluster-down should remove {}",
        cluster_dir.display()
    );
}

#[test]
fn a_component_that_fails_to_start_is_named_with_its_log_and_nothing_is_left() {
    ensure_cluster();
    let dir = tempfile::tempdir().unwrap();
    let cluster_dir = dir.path().join("cluster");
    let needle = cluster_dir.to_string_lossy().into_owned();
    let up = script(
        "cluster-up.sh",
        &cluster_dir,
        &[(
            "MATURITY_APISERVER_EXTRA_ARGS",
            "--no-such-flag-for-the-test",
        )],
    );
    assert!(!up.status.success(), "cluster-up should fail");
    let stderr = String::from_utf8_lossy(&up.stderr);
    let log = cluster_dir.join("logs/kube-apiserver.log");
    assert!(
        stderr.contains(&format!(
            "kube-apiserver failed to start; log: {}",
            log.display()
        )),
        "{stderr}"
    );
    assert!(log.exists(), "the log named in the message should be kept");
    let left = processes_mentioning(&needle);
    assert!(
        left.is_empty(),
        "processes left after a failed start: {left:?}"
    );
}

#[test]
fn a_tool_that_fails_to_build_is_named_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(repo_dir().join("hack/build-tools.sh"))
        .arg("kwok")
        .env("MATURITY_CACHE_DIR", dir.path())
        .env("KWOK_VERSION", "v0.0.0-no-such-version")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = dir.path().join("logs/build-kwok.log");
    assert!(
        stderr.contains(&format!(
            "building kwok failed; full log: {}",
            log.display()
        )),
        "{stderr}"
    );
}

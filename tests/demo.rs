//! `make demo` (hack/demo.sh) end to end on the shared local cluster: it ends with a
//! summary in which every object of the four kinds has its status filled, the canary
//! promoted the good version and rolled back the bad one, the drill ran, and the
//! assessment shows its level and next steps; Ctrl-C stops what the run started.
//!
//! The demo owns namespace `demo`: a demo operator or exporter already running (from a
//! `make demo` of yours) is stopped first, through the pid files the demo wrote.

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::cluster::{ClusterEnv, ensure_cluster, repo_dir};

fn demo(env: &ClusterEnv) -> Command {
    let mut c = Command::new(repo_dir().join("hack/demo.sh"));
    c.current_dir(repo_dir())
        .env("MATURITY_CLUSTER_DIR", &env.dir)
        .env(
            "MATURITY_OPERATOR_BIN",
            env!("CARGO_BIN_EXE_maturity-operator"),
        )
        .stdin(Stdio::null());
    c
}

fn pid_of(env: &ClusterEnv, name: &str) -> Option<u32> {
    std::fs::read_to_string(env.dir.join("pids").join(format!("{name}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

/// Stops the demo's operator and exporter, if running, the way cluster-down would.
fn stop_demo_processes(env: &ClusterEnv) {
    for name in ["operator", "exporter"] {
        if let Some(pid) = pid_of(env, name) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            // The kernel keeps 15 characters of the name.
            if comm.trim() == "maturity-operat" {
                let _ = Command::new("kill").arg(pid.to_string()).status();
                let until = Instant::now() + Duration::from_secs(10);
                while alive(pid) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(100));
                }
                assert!(
                    !alive(pid),
                    "the demo's {name} (pid {pid}) did not stop on SIGTERM"
                );
            }
            let _ = std::fs::remove_file(env.dir.join("pids").join(format!("{name}.pid")));
        }
    }
}

/// Both scenarios in one test: they share namespace `demo` and must not overlap.
#[test]
fn make_demo_fills_every_status_and_ctrl_c_cleans_up() {
    let env = ensure_cluster();
    stop_demo_processes(&env);

    // 1. A whole run.
    let started = Instant::now();
    let out = demo(&env).output().expect("run hack/demo.sh");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let all = format!("{stdout}\n--- stderr ---\n{stderr}");
    assert!(out.status.success(), "the demo failed:\n{all}");
    eprintln!("the demo ran in {took:.1?} (cluster already up, operator built):\n{stderr}");

    // Every object of the four kinds has a Ready condition.
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("== the status of every object"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    for kind in [
        "ResponseTimeTarget",
        "CanaryPolicy",
        "DrillSchedule",
        "MaturityAssessment",
    ] {
        let rows: Vec<&&str> = table.iter().filter(|l| l.starts_with(kind)).collect();
        assert!(!rows.is_empty(), "no {kind} in the summary:\n{all}");
        for row in rows {
            let cols: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(
                cols.get(2),
                Some(&"True"),
                "status not filled: {row}\n{all}"
            );
            assert!(
                cols.get(3).is_some_and(|r| *r != "<none>"),
                "no reason: {row}"
            );
        }
    }
    // The canary, the drill and the assessment did what the demo says.
    assert!(stdout.contains(": Promoted, checks passed"), "{all}");
    assert!(
        stdout.contains(": RolledBack, checks passed 0 failed 1"),
        "{all}"
    );
    assert!(stdout.contains("   Passed: "), "drill result:\n{all}");
    let level_line = stdout
        .lines()
        .find(|l| l.starts_with("== assessment payments: level "))
        .unwrap_or_else(|| panic!("no assessment line:\n{all}"));
    assert!(
        !level_line.contains("level  of"),
        "assessment without a level: {level_line}"
    );
    assert!(stdout.contains("level 2 misses:"), "next steps:\n{all}");
    assert!(stdout.contains("Explore:"), "{all}");
    let operator = pid_of(&env, "operator").expect("the demo's operator pid file");
    assert!(
        alive(operator),
        "the operator keeps running for exploration"
    );
    stop_demo_processes(&env);

    // 2. Ctrl-C in the middle: SIGINT to the demo's process group, as a terminal sends it.
    let mut child = demo(&env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start hack/demo.sh");
    let until = Instant::now() + Duration::from_secs(120);
    let operator = loop {
        if let Some(pid) = pid_of(&env, "operator").filter(|p| alive(*p)) {
            break pid;
        }
        assert!(
            Instant::now() < until,
            "the demo did not start its operator"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let exporter = pid_of(&env, "exporter").expect("the demo's exporter pid file");
    std::thread::sleep(Duration::from_secs(3));
    let pgid = child.id();
    assert!(
        Command::new("kill")
            .args(["-INT", "--", &format!("-{pgid}")])
            .status()
            .unwrap()
            .success()
    );
    let interrupted = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            interrupted.elapsed() < Duration::from_secs(30),
            "the demo did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut said = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    eprintln!(
        "Ctrl-C: the demo stopped {:.2?} after SIGINT",
        interrupted.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(said.contains("stopped the operator"), "{said}");
    assert!(said.contains("keeps running"), "{said}");
    for (name, pid) in [("operator", operator), ("exporter", exporter)] {
        let until = Instant::now() + Duration::from_secs(10);
        while alive(pid) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(!alive(pid), "the demo's {name} still runs after Ctrl-C");
        assert!(pid_of(&env, name).is_none(), "{name}.pid left behind");
    }
    let webhook = Command::new(env.tool("kubectl"))
        .args([
            "get",
            "mutatingwebhookconfiguration",
            "maturity-operator-demo",
            "--ignore-not-found",
            "-o",
            "name",
        ])
        .env("KUBECONFIG", &env.kubeconfig)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&webhook.stdout).trim().is_empty(),
        "the demo's webhook registration is left behind"
    );
}

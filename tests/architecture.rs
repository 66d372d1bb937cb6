//! The layering of `src/`, checked on the source text (see docs/development.md,
//! "Architecture"): the pure cores import no Kubernetes client and none of the edges; the
//! clock is read in one place; controllers stay small; only `k8s/` calls the API server
//! from a controller.

use std::path::{Path, PathBuf};

/// The pure cores: decisions from plain values.
const CORES: &[&str] = &["slo", "canary", "drill", "model"];
/// Plain modules outside the cores that the cores import, and `validate/` (offline
/// checks): as plain as the cores.
const PLAIN: &[&str] = &[
    "attest.rs",
    "authz.rs",
    "prom/enforce.rs",
    "prom/template.rs",
];

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The file's code lines (comments dropped), with their numbers.
fn code(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("").to_string()))
        .collect()
}

/// Lines of `files` that contain any of `needles`, as `path:line: text`.
fn offending(files: &[PathBuf], needles: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for f in files {
        for (n, line) in code(f) {
            if needles.iter().any(|x| line.contains(x)) {
                out.push(format!("{}:{n}: {}", f.display(), line.trim()));
            }
        }
    }
    out
}

#[test]
fn the_cores_import_no_kubernetes_client_and_no_edge() {
    let files: Vec<PathBuf> = CORES
        .iter()
        .flat_map(|c| rust_files(&src().join(c)))
        .chain(PLAIN.iter().map(|f| src().join(f)))
        .chain(rust_files(&src().join("validate")))
        .collect();
    assert!(files.len() >= 18, "found only {} core files", files.len());
    let bad = offending(
        &files,
        &[
            "kube::",
            "use kube",
            "crate::k8s",
            "crate::controllers",
            "crate::operator",
            "crate::leader",
            "crate::webhook",
            "tokio::",
            "PromClient",
        ],
    );
    assert!(
        bad.is_empty(),
        "a core imports an edge:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_clock_and_randomness_are_read_only_in_clock_rs() {
    let files: Vec<PathBuf> = rust_files(&src())
        .into_iter()
        .filter(|f| !f.ends_with("clock.rs"))
        .collect();
    let bad = offending(
        &files,
        &[
            "Timestamp::now()",
            "SystemTime::now()",
            "RandomState",
            "SystemRandom",
        ],
    );
    assert!(
        bad.is_empty(),
        "read the clock through crate::clock:\n{}",
        bad.join("\n")
    );
}

#[test]
fn controllers_call_the_api_server_only_through_k8s() {
    let files = rust_files(&src().join("controllers"));
    let bad = offending(
        &files,
        &[
            "PatchParams",
            "DeleteParams",
            "PostParams",
            "tokio::time::timeout",
            ".patch_status(",
            "Recorder",
            "finalizer::finalizer",
        ],
    );
    assert!(bad.is_empty(), "use crate::k8s::Kube:\n{}", bad.join("\n"));
}

/// (file, function name, lines) of every `fn` in `path` (a brace count from its signature).
fn functions(path: &Path) -> Vec<(String, String, usize)> {
    let lines = code(path);
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].1.trim_start();
        let is_fn = [
            "fn ",
            "pub fn ",
            "async fn ",
            "pub async fn ",
            "pub(crate) fn ",
            "pub(super) fn ",
            "pub(crate) async fn ",
            "pub(super) async fn ",
        ]
        .iter()
        .any(|p| l.starts_with(p));
        if !is_fn {
            i += 1;
            continue;
        }
        let name = l
            .split("fn ")
            .nth(1)
            .unwrap_or("")
            .split(['(', '<'])
            .next()
            .unwrap_or("")
            .to_string();
        let (mut depth, mut opened, start) = (0i32, false, i);
        while i < lines.len() {
            for ch in lines[i].1.chars() {
                match ch {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    ';' if !opened && depth == 0 => {
                        // A declaration without a body.
                        opened = true;
                    }
                    _ => {}
                }
            }
            if opened && depth <= 0 {
                break;
            }
            i += 1;
        }
        out.push((path.display().to_string(), name, i - start + 1));
        i += 1;
    }
    out
}

#[test]
fn controllers_are_small_files_of_short_functions() {
    let files = rust_files(&src().join("controllers"));
    assert!(
        files.len() >= 12,
        "found only {} controller files",
        files.len()
    );
    let long_files: Vec<String> = files
        .iter()
        .map(|f| (f, std::fs::read_to_string(f).unwrap().lines().count()))
        .filter(|(_, n)| *n > 300)
        .map(|(f, n)| format!("{}: {n} lines", f.display()))
        .collect();
    assert!(
        long_files.is_empty(),
        "controller files over 300 lines:\n{}",
        long_files.join("\n")
    );
    let long_fns: Vec<String> = files
        .iter()
        .flat_map(|f| functions(f))
        .filter(|(_, _, n)| *n > 80)
        .map(|(f, name, n)| format!("{f}: fn {name}: {n} lines"))
        .collect();
    assert!(
        long_fns.is_empty(),
        "controller functions over 80 lines:\n{}",
        long_fns.join("\n")
    );
}

#[test]
fn the_function_counter_counts_bodies() {
    // A file written for this test: 3 functions of 3, 1 and 6 lines.
    let dir = std::env::temp_dir().join(format!("arch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("x.rs");
    std::fs::write(
        &f,
        "fn a() {\n    x();\n}\npub fn b();\nasync fn c(\n    y: u8,\n) {\n    if y { z() }\n    // }\n}\n",
    )
    .unwrap();
    let got: Vec<(String, usize)> = functions(&f).into_iter().map(|(_, n, l)| (n, l)).collect();
    assert_eq!(
        got,
        [
            ("a".to_string(), 3),
            ("b".to_string(), 1),
            ("c".to_string(), 6)
        ]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

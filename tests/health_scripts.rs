//! The Argo CD health scripts of docs/argocd/resource_customizations, run as Argo CD runs
//! them, against their own `health_test.yaml` (the layout and format of Argo CD's
//! `resource_customizations`, whose `util/lua/health_test.go` runs every case the same way).
//!
//! How Argo CD runs a script (its `util/lua/lua.go`, `runLua` and `ExecuteHealthLua`):
//! - a gopher-lua state (Lua 5.1) with only the base, package and table libraries and a
//!   reduced `os` (no `string`, no `math`) unless `useOpenLibs` is set: the scripts are
//!   meant for `argocd-cm` without it, so they run here with base, package and table only
//!   (`os` is left out: none of them uses it);
//! - a one-second limit (a context deadline): here an instruction hook;
//! - the object in the global `obj`, converted by its `decodeValue`: a JSON object becomes
//!   a table keyed by strings, an array a table indexed 1..n in order (`Append`), every
//!   number a Lua number (float64), a string a string, a bool a boolean, null nil;
//! - the script's last returned value must be a table; its `status` and `message` are read
//!   (a missing message is ""), and a status other than Healthy, Progressing, Degraded,
//!   Suspended, Missing or Unknown becomes Unknown with "Lua returned an invalid health
//!   status".
//!
//! Argo CD's test reads each `testdata` object with sigs.k8s.io/yaml (YAML to JSON): here
//! serde-saphyr into serde_json values.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Value, VmState};
use serde::Deserialize;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn customizations() -> PathBuf {
    repo().join("docs/argocd/resource_customizations")
}

/// `health_test.yaml`, as Argo CD's `TestStructure`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HealthTest {
    input_path: String,
    health_status: HealthStatus,
}

#[derive(Deserialize, Debug, PartialEq, Eq, Clone)]
#[serde(deny_unknown_fields)]
struct HealthStatus {
    status: String,
    #[serde(default)]
    message: String,
}

/// Every `<group>/<Kind>` folder under resource_customizations, sorted.
fn kind_dirs() -> Vec<(String, String, PathBuf)> {
    let mut out = Vec::new();
    for group in read_dir_sorted(&customizations()) {
        if !group.is_dir() {
            continue;
        }
        for kind in read_dir_sorted(&group) {
            if kind.is_dir() {
                out.push((file_name(&group), file_name(&kind), kind));
            }
        }
    }
    assert!(
        !out.is_empty(),
        "no <group>/<Kind> folder under {}",
        customizations().display()
    );
    out
}

fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    v.sort();
    v
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load_tests(dir: &Path) -> HealthTests {
    let path = dir.join("health_test.yaml");
    serde_saphyr::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A testdata object as Argo CD's test reads it: YAML turned into JSON.
fn load_object(path: &Path) -> serde_json::Value {
    serde_saphyr::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Argo CD's `decodeValue`: JSON to Lua values.
fn to_lua(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
    Ok(match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        // float64 in Go; Lua 5.1 numbers are doubles too.
        serde_json::Value::Number(n) => Value::Number(n.as_f64().expect("a finite number")),
        serde_json::Value::String(s) => Value::String(lua.create_string(s)?),
        serde_json::Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
        serde_json::Value::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, item) in map {
                t.raw_set(k.as_str(), to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
    })
}

const VALID_STATUSES: [&str; 6] = [
    "Unknown",
    "Progressing",
    "Suspended",
    "Healthy",
    "Degraded",
    "Missing",
];

/// Runs `script` with `obj` as Argo CD's `ExecuteHealthLua` does (without useOpenLibs).
fn run_health(
    script_name: &str,
    script: &str,
    obj: &serde_json::Value,
) -> Result<HealthStatus, String> {
    let lua = Lua::new_with(StdLib::TABLE | StdLib::PACKAGE, LuaOptions::default())
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(1);
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(1000),
        move |_, _| {
            if Instant::now() > deadline {
                Err(mlua::Error::runtime(
                    "the script ran longer than Argo CD's 1 s",
                ))
            } else {
                Ok(VmState::Continue)
            }
        },
    )
    .map_err(|e| e.to_string())?;
    let value = to_lua(&lua, obj).map_err(|e| e.to_string())?;
    lua.globals().set("obj", value).map_err(|e| e.to_string())?;
    let returned: mlua::MultiValue = lua
        .load(script)
        .set_name(script_name)
        .call(())
        .map_err(|e| e.to_string())?;
    // Argo CD reads the top of the stack: the last returned value.
    let table = match returned.into_iter().last() {
        Some(Value::Table(t)) => t,
        other => {
            return Err(format!(
                "expect table output from Lua script, not {}",
                other.map(|v| v.type_name()).unwrap_or("nil")
            ));
        }
    };
    let field = |name: &str| -> Result<String, String> {
        match table.raw_get::<Value>(name).map_err(|e| e.to_string())? {
            Value::Nil => Ok(String::new()),
            Value::String(s) => Ok(s.to_str().map_err(|e| e.to_string())?.to_string()),
            other => Err(format!(
                "hs.{name} is a {}, not a string",
                other.type_name()
            )),
        }
    };
    let status = field("status")?;
    let message = field("message")?;
    if !VALID_STATUSES.contains(&status.as_str()) {
        return Ok(HealthStatus {
            status: "Unknown".into(),
            message: "Lua returned an invalid health status".into(),
        });
    }
    Ok(HealthStatus { status, message })
}

#[test]
fn every_case_of_health_test_yaml_gives_its_status_and_message() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for (group, kind, dir) in kind_dirs() {
        let script = read(&dir.join("health.lua"));
        for case in load_tests(&dir).tests {
            let input = dir.join(&case.input_path);
            let obj = load_object(&input);
            let name = format!("{group}/{kind}/{}", case.input_path);
            ran += 1;
            match run_health(&format!("{group}/{kind}/health.lua"), &script, &obj) {
                Ok(got) if got == case.health_status => {}
                Ok(got) => failures.push(format!(
                    "{name}:\n    expected {:?}\n    got      {got:?}",
                    case.health_status
                )),
                Err(e) => failures.push(format!("{name}: the script failed: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} health cases differ:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn every_kind_of_the_crds_has_a_health_check_folder_and_no_other_is_there() {
    let mut kinds = BTreeSet::new();
    for path in read_dir_sorted(&repo().join("crds")) {
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let crd: serde_json::Value = serde_saphyr::from_str(&read(&path))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let group = crd["spec"]["group"].as_str().expect("spec.group");
        let kind = crd["spec"]["names"]["kind"]
            .as_str()
            .expect("spec.names.kind");
        kinds.insert((group.to_string(), kind.to_string()));
    }
    assert!(!kinds.is_empty(), "no CRD in crds/");
    let dirs: BTreeSet<(String, String)> =
        kind_dirs().into_iter().map(|(g, k, _)| (g, k)).collect();
    let missing: Vec<_> = kinds.difference(&dirs).collect();
    assert!(
        missing.is_empty(),
        "kinds of crds/*.yaml without a health check in docs/argocd/resource_customizations/<group>/<Kind>: {missing:?}"
    );
    let extra: Vec<_> = dirs.difference(&kinds).collect();
    assert!(
        extra.is_empty(),
        "folders in docs/argocd/resource_customizations that are no kind of crds/*.yaml: {extra:?}"
    );
}

fn condition<'a>(obj: &'a serde_json::Value, type_: &str) -> Option<&'a serde_json::Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

#[test]
fn every_kind_folder_is_complete_and_its_cases_cover_the_rule() {
    for (group, kind, dir) in kind_dirs() {
        let here = format!("{group}/{kind}");
        for file in ["health.lua", "health_test.yaml"] {
            assert!(dir.join(file).is_file(), "{here} has no {file}");
        }
        let tests = load_tests(&dir).tests;
        let mut used = BTreeSet::new();
        let (mut healthy, mut degraded_by_stalled, mut older_generation, mut no_status) =
            (false, false, false, false);
        for case in &tests {
            let input = dir.join(&case.input_path);
            assert!(
                input.is_file(),
                "{here}: {} does not exist",
                case.input_path
            );
            assert!(
                VALID_STATUSES.contains(&case.health_status.status.as_str()),
                "{here}: {}: {} is not an Argo CD health status",
                case.input_path,
                case.health_status.status
            );
            used.insert(input.canonicalize().expect("a testdata path"));
            let obj = load_object(&input);
            assert_eq!(obj["kind"], kind.as_str(), "{here}: {}", case.input_path);
            let api_version = obj["apiVersion"].as_str().unwrap_or_default();
            assert!(
                api_version.starts_with(&format!("{group}/")),
                "{here}: {}: apiVersion {api_version}",
                case.input_path
            );
            let expected = &case.health_status;
            healthy |= expected.status == "Healthy";
            let stalled = condition(&obj, "Stalled").is_some_and(|c| c["status"] == "True");
            let generation = obj["metadata"]["generation"].as_f64();
            let observed = obj["status"]["observedGeneration"].as_f64();
            let current = matches!((generation, observed), (Some(g), Some(o)) if o >= g);
            degraded_by_stalled |= stalled && current && expected.status == "Degraded";
            older_generation |=
                !current && obj["status"].is_object() && expected.status == "Progressing";
            no_status |= obj.get("status").is_none() && expected.status == "Progressing";
        }
        assert!(healthy, "{here}: no Healthy case");
        assert!(
            degraded_by_stalled,
            "{here}: no case Degraded by Stalled=True"
        );
        assert!(
            older_generation,
            "{here}: no Progressing case with a status of an older generation"
        );
        assert!(no_status, "{here}: no Progressing case without a status");
        // Every testdata file is a case: none is left unchecked.
        for file in read_dir_sorted(&dir.join("testdata")) {
            assert!(
                used.contains(&file.canonicalize().expect("a testdata path")),
                "{here}: {} is in no case of health_test.yaml",
                file.display()
            );
        }
    }
}

/// The scripts run without `useOpenLibs`: a script that used `string.*` (or the string
/// methods) would fail in Argo CD with "attempt to index a nil value".
#[test]
fn the_scripts_run_without_the_string_library_as_argo_cd_runs_them() {
    let obj = serde_json::json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}});
    let err = run_health(
        "probe.lua",
        "return {status = string.upper('healthy')}",
        &obj,
    )
    .expect_err("string is not opened");
    assert!(err.contains("string"), "{err}");
    let err = run_health(
        "probe.lua",
        "local s = 'x'; return {status = s:upper()}",
        &obj,
    )
    .expect_err("strings have no methods without the string library");
    assert!(err.contains("attempt to index"), "{err}");
    let ok = run_health(
        "probe.lua",
        "local t = {}; table.insert(t, obj.metadata.name); return {status = 'Healthy', message = table.concat(t, ',')}",
        &obj,
    );
    assert_eq!(
        ok,
        Ok(HealthStatus {
            status: "Healthy".into(),
            message: "a".into()
        })
    );
    // Arrays are 1-based, numbers print as Lua 5.1 prints a whole float.
    let obj = serde_json::json!({"metadata": {"generation": 3}, "status": {"runs": [{"r": "first"}, {"r": "second"}]}});
    let ok = run_health(
        "probe.lua",
        "return {status = 'Progressing', message = obj.status.runs[1].r .. ' ' .. #obj.status.runs .. ' ' .. obj.metadata.generation}",
        &obj,
    );
    assert_eq!(
        ok,
        Ok(HealthStatus {
            status: "Progressing".into(),
            message: "first 2 3".into()
        })
    );
    let ok = run_health("probe.lua", "return {status = 'Fine'}", &obj);
    assert_eq!(
        ok,
        Ok(HealthStatus {
            status: "Unknown".into(),
            message: "Lua returned an invalid health status".into()
        })
    );
    let err = run_health("probe.lua", "while true do end", &obj).expect_err("stopped at 1 s");
    assert!(err.contains("1 s"), "{err}");
}

/// docs/gitops.md installs the files and keeps no second copy of a script.
#[test]
fn gitops_doc_links_each_script_and_holds_no_copy() {
    let doc = read(&repo().join("docs/gitops.md"));
    for (group, kind, dir) in kind_dirs() {
        let rel = format!("argocd/resource_customizations/{group}/{kind}/health.lua");
        assert!(doc.contains(&rel), "docs/gitops.md does not link {rel}");
        let script = read(&dir.join("health.lua"));
        for line in script.lines().map(str::trim).filter(|l| l.len() > 40) {
            assert!(
                !doc.contains(line),
                "docs/gitops.md holds a copy of {group}/{kind}/health.lua (line {line:?}): link the file instead"
            );
        }
    }
}

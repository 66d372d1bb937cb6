//! The CRDs committed under `crds/` and the model catalogue in `docs/model.md` are exactly
//! what the code generates (`make crds` rewrites them), and `maturity-operator crd` /
//! `model --output markdown` print the same.

use std::process::Command;

use maturity_operator::api;

#[test]
fn committed_crds_match_the_generated_ones() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut stale = Vec::new();
    for (file, crd) in api::crds() {
        let generated = api::crd_yaml(&crd).unwrap();
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        if committed != generated {
            stale.push(file);
        }
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = api::crds().iter().map(|(f, _)| f.to_string()).collect();
    expected.sort();
    assert!(
        stale.is_empty(),
        "crds/{stale:?} differ from the code: run `make crds` and commit the result"
    );
    assert_eq!(
        on_disk, expected,
        "crds/ holds files the code does not generate"
    );
}

#[test]
fn crd_subcommand_prints_every_crd() {
    let out = Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, api::all_crds_yaml().unwrap());
    for name in [
        "responsetimetargets.maturity.sre.dev",
        "canarypolicies.maturity.sre.dev",
        "drillschedules.maturity.sre.dev",
        "maturityassessments.maturity.sre.dev",
    ] {
        assert!(text.contains(&format!("name: {name}")), "{name} missing");
    }
}

#[test]
fn every_kind_has_status_short_name_category_and_columns() {
    for (file, crd) in api::crds() {
        let names = &crd.spec.names;
        assert_eq!(crd.spec.scope, "Namespaced", "{file}");
        assert!(
            names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{file}: short name"
        );
        assert_eq!(
            names.categories.as_deref(),
            Some(&["maturity".to_string()][..]),
            "{file}: category"
        );
        let v = &crd.spec.versions[0];
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{file}: status subresource"
        );
        assert!(
            v.additional_printer_columns
                .as_ref()
                .is_some_and(|c| c.len() >= 4),
            "{file}: printer columns"
        );
    }
}

#[test]
fn the_model_catalogue_in_docs_matches_the_model() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/model.md");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == maturity_operator::model::markdown(),
        "docs/model.md differs from src/model/catalogue.rs: run `make crds` and commit the result"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
        .args(["model", "--output", "markdown"])
        .output()
        .expect("run maturity-operator model");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), committed);
    let json = Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
        .args(["model", "-o", "json"])
        .output()
        .expect("run maturity-operator model -o json");
    let practices: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(practices.len(), maturity_operator::model::PRACTICES.len());
    assert_eq!(practices[0]["capability"], "ORG");
}

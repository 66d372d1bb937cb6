//! Admission against the real kube-apiserver: every example is accepted by server-side
//! apply, and each invalid manifest in `tests/fixtures/invalid/` (one per validation
//! rule) is rejected with the message its `# expect:` line names.

mod support;

use std::path::{Path, PathBuf};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::pinned_kind;
use maturity_operator::api::{CanaryPolicy, DrillSchedule, MaturityAssessment, ResponseTimeTarget};
use support::cluster::{TestContext, repo_dir};

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn documents(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple::<serde_json::Value>(&text)
        .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

async fn resource_for(client: &kube::Client, doc: &serde_json::Value) -> ApiResource {
    let (group, version) = doc["apiVersion"]
        .as_str()
        .unwrap()
        .split_once('/')
        .unwrap_or(("", "v1"));
    let gvk = GroupVersionKind::gvk(group, version, doc["kind"].as_str().unwrap());
    let (ar, _) = pinned_kind(client, &gvk).await.expect("discover kind");
    ar
}

async fn apply(ctx: &TestContext, doc: &serde_json::Value) -> Result<DynamicObject, kube::Error> {
    let ar = resource_for(&ctx.client, doc).await;
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &ar);
    let name = doc["metadata"]["name"].as_str().unwrap();
    api.patch(
        name,
        &PatchParams::apply("maturity-tests"),
        &Patch::Apply(doc),
    )
    .await
}

/// How `validate`'s offline verdict on `doc` differs from the API server's `message`.
fn offline_differs(doc: &serde_json::Value, namespace: &str, message: &str) -> Option<String> {
    use maturity_operator::validate::{Settings, Validator, Verdict};
    let settings = Settings {
        namespace: namespace.to_string(),
        tenancy: maturity_operator::prom::enforce::Tenancy::Enforced {
            label: "namespace".into(),
        },
    };
    let mut doc = doc.clone();
    doc["metadata"]["namespace"] = namespace.into();
    match Validator::new().document(doc, &settings).verdict {
        Verdict::Refused {
            lines,
            message: offline,
        } => {
            let missing: Vec<&String> = lines
                .iter()
                .filter(|l| {
                    let cause = l.split_once(" is invalid: ").map_or(l.as_str(), |(_, c)| c);
                    !message.contains(cause)
                })
                .collect();
            if !missing.is_empty() {
                Some(format!(
                    "validate said {missing:?}, the API server {message:?}"
                ))
            } else if offline.len() != message.len() {
                Some(format!(
                    "validate said {offline:?}, the API server {message:?}"
                ))
            } else {
                None
            }
        }
        other => Some(format!(
            "validate: {other:?}, the API server refused it: {message:?}"
        )),
    }
}

/// The typed API accepts the document too (examples must match the Rust types exactly).
fn deserializes_as_typed(doc: &serde_json::Value) -> Result<(), String> {
    let r = match doc["kind"].as_str() {
        Some("ResponseTimeTarget") => {
            serde_json::from_value::<ResponseTimeTarget>(doc.clone()).map(|_| ())
        }
        Some("CanaryPolicy") => serde_json::from_value::<CanaryPolicy>(doc.clone()).map(|_| ()),
        Some("DrillSchedule") => serde_json::from_value::<DrillSchedule>(doc.clone()).map(|_| ()),
        Some("MaturityAssessment") => {
            serde_json::from_value::<MaturityAssessment>(doc.clone()).map(|_| ())
        }
        other => return Err(format!("unexpected kind {other:?}")),
    };
    r.map_err(|e| e.to_string())
}

#[tokio::test]
async fn every_example_is_accepted_by_server_side_apply() {
    let ctx = TestContext::new("examples").await;
    let files = yaml_files(&repo_dir().join("examples"));
    assert!(!files.is_empty(), "no examples found");
    let mut kinds = std::collections::BTreeSet::new();
    let mut count = 0;
    for file in &files {
        for doc in documents(file) {
            deserializes_as_typed(&doc).unwrap_or_else(|e| {
                panic!("{}: does not match the Rust types: {e}", file.display())
            });
            apply(&ctx, &doc)
                .await
                .unwrap_or_else(|e| panic!("{} was rejected: {e}", file.display()));
            kinds.insert(doc["kind"].as_str().unwrap().to_string());
            count += 1;
        }
    }
    eprintln!("{count} example objects accepted");
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "CanaryPolicy",
            "DrillSchedule",
            "MaturityAssessment",
            "ResponseTimeTarget"
        ],
        "examples should cover every kind"
    );
    ctx.cleanup().await;
}

#[tokio::test]
async fn each_invalid_manifest_is_rejected_with_its_message() {
    let ctx = TestContext::new("invalid").await;
    let files = yaml_files(&repo_dir().join("tests/fixtures/invalid"));
    assert!(
        files.len() >= 30,
        "expected a fixture per rule, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let expect = support::cluster::expected_refusal(file);
        let doc = documents(file).remove(0);
        match apply(&ctx, &doc).await {
            Ok(_) => failures.push(format!(
                "{}: accepted, expected rejection with {expect:?}",
                file.display()
            )),
            Err(kube::Error::Api(status)) => {
                if status.code != 422 || !status.message.contains(&expect) {
                    failures.push(format!(
                        "{}: rejected with {} {:?}, expected 422 containing {expect:?}",
                        file.display(),
                        status.code,
                        status.message
                    ));
                }
                // `maturity-operator validate` says offline what the API server said:
                // every cause, and nothing more (the server orders sibling causes at
                // random, so the whole messages are compared by length).
                if let Some(why) = offline_differs(&doc, &ctx.namespace, &status.message) {
                    failures.push(format!("{}: {why}", file.display()));
                }
            }
            Err(e) => failures.push(format!("{}: unexpected error {e}", file.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} invalid manifests rejected with their messages",
        files.len()
    );
    ctx.cleanup().await;
}

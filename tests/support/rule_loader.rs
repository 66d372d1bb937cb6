//! What the Prometheus Operator does for a Prometheus with a `ruleSelector`: every
//! PrometheusRule that carries the selector's labels, in the namespaces it is told to look
//! in (its `ruleNamespaceSelector`), becomes a rule file of that Prometheus, which is then
//! reloaded. A rule without those labels is never loaded: the failure users of Sloth and
//! Pyrra reported with kube-prometheus-stack, whose Prometheus selects `release: <name>`.
//!
//! Like the Prometheus Operator it leaves out a rule that Prometheus would refuse (checked
//! with `promtool check rules`), so one bad rule does not stop every other from loading.
//! The files go into the shared Prometheus's rules directory, named as the Prometheus
//! Operator names them (`<namespace>-<name>-<uid>.yaml`: the operator's assessments find a
//! namespace's rules by it), and are removed when the loader is dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};

use super::cluster::ClusterEnv;

pub struct RuleSelectorLoader {
    task: tokio::task::JoinHandle<()>,
    written: Arc<Mutex<BTreeMap<PathBuf, String>>>,
    prometheus_url: String,
}

fn prometheus_rules() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PrometheusRule"),
        "prometheusrules",
    )
}

impl RuleSelectorLoader {
    /// Loads into the shared Prometheus the PrometheusRules of `namespaces` that match the
    /// label `selector` (e.g. `release=kps`), looking every second.
    pub fn start(env: &ClusterEnv, client: &Client, namespaces: &[&str], selector: &str) -> Self {
        Self::start_enforcing(env, client, namespaces, selector, None)
    }

    /// Like [`Self::start`], for a Prometheus with `enforcedNamespaceLabel: <label>`: as the
    /// Prometheus Operator does then (with prom-label-proxy's rule), every rule's selectors
    /// get `<label>="<the PrometheusRule's namespace>"`, and so does every rule's output.
    pub fn start_enforcing(
        env: &ClusterEnv,
        client: &Client,
        namespaces: &[&str],
        selector: &str,
        enforced: Option<&str>,
    ) -> Self {
        let enforced = enforced.map(|l| l.to_string());
        let written: Arc<Mutex<BTreeMap<PathBuf, String>>> = Arc::default();
        let prometheus_url = env.prometheus_url.clone();
        let (env, client, selector) = (env.clone(), client.clone(), selector.to_string());
        let namespaces: Vec<String> = namespaces.iter().map(|s| s.to_string()).collect();
        let files = written.clone();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let mut wanted = BTreeMap::new();
                let mut listed = true;
                for ns in &namespaces {
                    let api: Api<DynamicObject> =
                        Api::namespaced_with(client.clone(), ns, &prometheus_rules());
                    match api.list(&ListParams::default().labels(&selector)).await {
                        Ok(list) => {
                            for rule in list {
                                let name = rule.metadata.name.clone().unwrap_or_default();
                                let uid = rule.metadata.uid.clone().unwrap_or_default();
                                let file = env.rules_dir.join(format!("{ns}-{name}-{uid}.yaml"));
                                let mut groups = rule.data["spec"]["groups"].clone();
                                if let Some(label) = &enforced {
                                    enforce(&mut groups, label, ns);
                                }
                                let text = serde_json::json!({ "groups": groups }).to_string();
                                wanted.insert(file, text);
                            }
                        }
                        Err(_) => listed = false,
                    }
                }
                if listed {
                    sync_files(&env, &http, &files, wanted).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Self {
            task,
            written,
            prometheus_url,
        }
    }
}

/// The Prometheus Operator's `enforcedNamespaceLabel` on the rule groups of a
/// PrometheusRule of namespace `ns`.
fn enforce(groups: &mut serde_json::Value, label: &str, ns: &str) {
    let tenancy = maturity_operator::prom::enforce::Tenancy::Enforced {
        label: label.to_string(),
    };
    for group in groups.as_array_mut().into_iter().flatten() {
        for rule in group["rules"].as_array_mut().into_iter().flatten() {
            let expr = rule["expr"].as_str().unwrap_or_default().to_string();
            if let Ok(scoped) = tenancy.scope(&expr, ns) {
                rule["expr"] = scoped.into();
            }
            if !rule["labels"].is_object() {
                rule["labels"] = serde_json::json!({});
            }
            rule["labels"][label] = ns.into();
        }
    }
}

/// Writes the rule files that changed (each checked with promtool first), removes those no
/// longer selected, and reloads Prometheus if anything changed.
async fn sync_files(
    env: &ClusterEnv,
    http: &reqwest::Client,
    files: &Mutex<BTreeMap<PathBuf, String>>,
    mut wanted: BTreeMap<PathBuf, String>,
) {
    let current = files.lock().unwrap().clone();
    let mut changed = false;
    for path in current.keys().filter(|p| !wanted.contains_key(*p)) {
        let _ = std::fs::remove_file(path);
        changed = true;
    }
    for (path, text) in &wanted {
        if current.get(path) == Some(text) {
            continue;
        }
        let check = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(check.path(), text).expect("write the rule file to check");
        let ok = std::process::Command::new(env.tool("promtool"))
            .args(["check", "rules"])
            .arg(check.path())
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            std::fs::write(path, text).expect("write the rule file");
            changed = true;
        } else {
            eprintln!(
                "rule loader: {} is not a valid rule file, left out",
                path.display()
            );
            let _ = std::fs::remove_file(path);
        }
    }
    wanted.retain(|p, _| p.exists());
    if changed {
        let _ = http
            .post(format!("{}/-/reload", env.prometheus_url))
            .send()
            .await;
    }
    *files.lock().unwrap() = wanted;
}

impl Drop for RuleSelectorLoader {
    fn drop(&mut self) {
        self.task.abort();
        for path in self.written.lock().unwrap().keys() {
            let _ = std::fs::remove_file(path);
        }
        // Reload so the shared Prometheus forgets them (a plain request: no runtime here).
        if let Some(addr) = self.prometheus_url.strip_prefix("http://") {
            use std::io::{Read, Write};
            if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                let _ = write!(
                    s,
                    "POST /-/reload HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = s.read_to_end(&mut Vec::new());
            }
        }
    }
}

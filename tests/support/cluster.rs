//! The local cluster: started once per test run by `hack/cluster-up.sh` (idempotent,
//! serialised with `flock` across test binaries), CRDs installed, one namespace per test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// What `hack/cluster-up.sh` wrote to `cluster.env`.
#[derive(Debug, Clone)]
pub struct ClusterEnv {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub prometheus_url: String,
    pub targets_dir: PathBuf,
    pub rules_dir: PathBuf,
    pub tools_bin: PathBuf,
}

impl ClusterEnv {
    /// Path of a pinned tool (kubectl, promtool, prometheus, helm, ...).
    pub fn tool(&self, name: &str) -> PathBuf {
        self.tools_bin.join(name)
    }

    /// Runs the pinned helm against the cluster, its caches under the cluster directory.
    #[allow(dead_code)] // not every test binary uses it
    pub fn helm(&self, args: &[&str]) -> std::process::Output {
        Command::new(self.tool("helm"))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"))
            .output()
            .expect("run helm")
    }
}

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Helm chart's folder.
#[allow(dead_code)] // not every test binary uses it
pub fn chart_dir() -> PathBuf {
    repo_dir().join("charts/maturity-operator")
}

fn cluster_dir() -> PathBuf {
    std::env::var_os("MATURITY_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir().join(".cluster"))
}

fn read_env_file(path: &Path) -> Option<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

static CLUSTER: OnceLock<ClusterEnv> = OnceLock::new();

/// Starts the local cluster if it is not running (once per process; `flock` keeps test
/// binaries from starting two) and returns how to reach it. Panics with the script's
/// message when the cluster cannot start: integration tests never pass without it.
pub fn ensure_cluster() -> ClusterEnv {
    // Every HTTP client in the tests needs a TLS crypto provider.
    maturity_operator::prom::init_tls();
    CLUSTER
        .get_or_init(|| {
            let dir = cluster_dir();
            let lock = repo_dir().join(".cluster.lock");
            // -o: the lock is not inherited by the cluster's processes, only held while
            // cluster-up.sh runs.
            let out = Command::new("flock")
                .arg("-o")
                .arg(&lock)
                .arg(repo_dir().join("hack/cluster-up.sh"))
                .env("MATURITY_CLUSTER_DIR", &dir)
                .output()
                .expect("run flock hack/cluster-up.sh (is util-linux installed?)");
            if !out.status.success() {
                panic!(
                    "the local cluster did not start (hack/cluster-up.sh exited {}):\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let vars = read_env_file(&dir.join("cluster.env")).unwrap_or_else(|| {
                panic!(
                    "{} missing after cluster-up",
                    dir.join("cluster.env").display()
                )
            });
            let get = |k: &str| {
                vars.get(k)
                    .cloned()
                    .unwrap_or_else(|| panic!("{k} missing from cluster.env"))
            };
            ClusterEnv {
                dir,
                kubeconfig: PathBuf::from(get("KUBECONFIG")),
                prometheus_url: get("MATURITY_PROMETHEUS_URL"),
                targets_dir: PathBuf::from(get("MATURITY_PROMETHEUS_TARGETS_DIR")),
                rules_dir: PathBuf::from(get("MATURITY_PROMETHEUS_RULES_DIR")),
                tools_bin: PathBuf::from(get("MATURITY_TOOLS_BIN")),
            }
        })
        .clone()
}

/// A client for the local cluster (admin).
pub async fn client(env: &ClusterEnv) -> Client {
    let kubeconfig = Kubeconfig::read_from(&env.kubeconfig).expect("read the local kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("load the local kubeconfig");
    Client::try_from(config).expect("build a client")
}

/// Installs (server-side apply) the CRDs generated by the code and waits until each is Established.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply("maturity-tests").force();
    for (_, crd) in maturity_operator::api::crds() {
        let name = crd.metadata.name.clone().expect("CRD has a name");
        api.patch(&name, &pp, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
        super::eventually(
            &format!("CRD {name} Established"),
            Duration::from_secs(30),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await.map_err(|e| e.to_string())?;
                    let established = crd
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    if established {
                        Ok(())
                    } else {
                        Err("not Established yet".into())
                    }
                }
            },
        )
        .await;
    }
}

/// Everything a test needs: the cluster, a client, and its own namespace.
pub struct TestContext {
    pub env: ClusterEnv,
    pub client: Client,
    pub namespace: String,
}

impl TestContext {
    /// Ensures the cluster is up and the CRDs installed, and creates a fresh namespace
    /// `t-<name>-<random>` labelled `maturity-test=true`.
    pub async fn new(name: &str) -> Self {
        let env = tokio::task::spawn_blocking(ensure_cluster)
            .await
            .expect("cluster start-up task");
        let client = client(&env).await;
        install_crds(&client).await;
        let suffix: u32 = rand_suffix();
        let namespace = format!("t-{name}-{suffix:05x}");
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"maturity-test": "true"}}
        }))
        .expect("namespace literal");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {namespace}: {e}"));
        Self {
            env,
            client,
            namespace,
        }
    }

    /// `kubectl ARGS` in the test's namespace as `user` (impersonated with the admin's
    /// kubeconfig; "" is the admin itself), with `stdin` piped in.
    #[allow(dead_code)] // not every test binary uses it
    pub fn kubectl_as(&self, user: &str, args: &[&str], stdin: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = Command::new(self.env.tool("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.env.kubeconfig)
            .args(["--as", user, "-n", &self.namespace])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl");
        let mut input = child.stdin.take().expect("kubectl's stdin");
        input
            .write_all(stdin.as_bytes())
            .expect("write kubectl's stdin");
        drop(input);
        child.wait_with_output().expect("wait for kubectl")
    }

    /// A ServiceAccount `name` of the test's namespace bound to a Role with `rules`; returns
    /// its user name.
    #[allow(dead_code)] // not every test binary uses it
    pub fn service_account(&self, name: &str, rules: serde_json::Value) -> String {
        let ns = &self.namespace;
        let rbac = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name, "namespace": ns},
             "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name, "namespace": ns},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
             "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}
        ]});
        let out = self.kubectl_as("", &["apply", "-f", "-"], &rbac.to_string());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("system:serviceaccount:{ns}:{name}")
    }

    /// A token of ServiceAccount `name` of the test's namespace (the TokenRequest API, as
    /// `kubectl create token`), for the API server's own audience.
    #[allow(dead_code)] // not every test binary uses it
    pub fn token(&self, name: &str) -> String {
        let out = self.kubectl_as("", &["create", "token", name, "--duration=1h"], "");
        assert!(
            out.status.success(),
            "kubectl create token {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Reasons of the Events in the test's namespace about objects of `kind`.
    #[allow(dead_code)] // not every test binary uses it
    pub async fn event_reasons(&self, kind: &str) -> Vec<String> {
        let events: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.client.clone(), &self.namespace);
        events
            .list(&kube::api::ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.involved_object.kind.as_deref() == Some(kind))
            .filter_map(|e| e.reason)
            .collect()
    }

    /// Creates Deployment `name` (label `app: name`, `replicas` pods running `image` on kwok)
    /// in the test's namespace and waits until every replica is available.
    #[allow(dead_code)] // not every test binary uses it
    pub async fn running_deployment(&self, name: &str, replicas: i32, image: &str) {
        let d: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}}
        }))
        .expect("a Deployment");
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
            self.client.clone(),
            &self.namespace,
        )
        .create(&Default::default(), &d)
        .await
        .expect("create the Deployment");
        self.wait_available(name, replicas).await;
    }

    /// Waits until Deployment `name` in the test's namespace has exactly `replicas`
    /// replicas, all updated and available.
    #[allow(dead_code)] // not every test binary uses it
    pub async fn wait_available(
        &self,
        name: &str,
        replicas: i32,
    ) -> k8s_openapi::api::apps::v1::Deployment {
        let api: Api<k8s_openapi::api::apps::v1::Deployment> =
            Api::namespaced(self.client.clone(), &self.namespace);
        super::eventually(
            &format!("Deployment {name} with {replicas} available replicas"),
            Duration::from_secs(60),
            || {
                let api = api.clone();
                async move {
                    let d = api.get(name).await.map_err(|e| e.to_string())?;
                    let s = d.status.clone().unwrap_or_default();
                    let want = Some(replicas);
                    if s.replicas == want
                        && s.updated_replicas == want
                        && s.available_replicas == want
                    {
                        Ok(d)
                    } else {
                        Err(format!("{s:?}"))
                    }
                }
            },
        )
        .await
    }

    /// Deletes the test's namespace (call at the end of a passing test; a failed test's
    /// namespace stays for inspection until `make cluster-down`).
    pub async fn cleanup(self) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(&self.namespace, &DeleteParams::background())
            .await;
    }
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() & 0xfffff) as u32
}

/// Deletes every object of `api` and waits until they are gone (their finalizers ran),
/// so an operator can release what they hold before the test stops it.
#[allow(dead_code)] // not every test binary uses it
pub async fn delete_all_and_wait<K>(api: &Api<K>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let _ = api
        .delete_collection(&DeleteParams::default(), &kube::api::ListParams::default())
        .await;
    super::eventually("objects deleted", Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let n = api
                .list(&kube::api::ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .len();
            if n == 0 {
                Ok(())
            } else {
                Err(format!("{n} left"))
            }
        }
    })
    .await;
}

/// Waits until `name` no longer exists (its finalizers ran); `describe` tells what is
/// still there while waiting.
#[allow(dead_code)] // not every test binary uses it
pub async fn wait_gone<K>(api: &Api<K>, name: &str, describe: fn(&K) -> String)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    super::eventually(&format!("{name} gone"), Duration::from_secs(30), || {
        let api = api.clone();
        let name = name.to_string();
        async move {
            match api.get_opt(&name).await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(o) => Err(describe(&o)),
            }
        }
    })
    .await;
}

/// Applies (server-side) MaturityAssessment `name` with an empty scope: the whole
/// namespace, nothing declared.
#[allow(dead_code)] // not every test binary uses it
pub async fn apply_assessment(api: &Api<maturity_operator::api::MaturityAssessment>, name: &str) {
    let a: maturity_operator::api::MaturityAssessment = serde_json::from_value(serde_json::json!({
        "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "MaturityAssessment",
        "metadata": {"name": name}, "spec": {"scope": {}}
    }))
    .expect("a MaturityAssessment");
    api.patch(name, &PatchParams::apply("tests"), &Patch::Apply(&a))
        .await
        .expect("apply the MaturityAssessment");
}

/// The level in assessment `name`'s status, or why there is none yet.
#[allow(dead_code)] // not every test binary uses it
pub async fn assessment_level(
    api: &Api<maturity_operator::api::MaturityAssessment>,
    name: &str,
) -> Result<i32, String> {
    let a = api.get(name).await.map_err(|e| e.to_string())?;
    a.status
        .and_then(|s| s.level)
        .ok_or_else(|| "not evaluated yet".to_string())
}

/// The `server:` of a kubeconfig's text (the local one has one cluster).
#[allow(dead_code)] // not every test binary uses it
pub fn kubeconfig_server(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("a server in the kubeconfig")
        .trim()
        .to_string()
}

/// The PrometheusRule CRD (`monitoring.coreos.com/v1`) as a permissive stand-in, so the
/// operator writes its PrometheusRules (their content is checked by loading it into a
/// real Prometheus, not by this schema).
#[allow(dead_code)] // not every test binary uses it
pub async fn install_prometheus_rule_stand_in(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "prometheusrules.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {"kind": "PrometheusRule", "plural": "prometheusrules", "singular": "prometheusrule", "listKind": "PrometheusRuleList"},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]
        }
    }))
    .expect("CRD literal");
    Api::<CustomResourceDefinition>::all(client.clone())
        .patch(
            "prometheusrules.monitoring.coreos.com",
            &kube::api::PatchParams::apply("maturity-tests").force(),
            &kube::api::Patch::Apply(&crd),
        )
        .await
        .expect("install the PrometheusRule CRD");
    // Served once the API server has it in discovery.
    for _ in 0..50 {
        let api: Api<kube::api::DynamicObject> = Api::all_with(
            client.clone(),
            &kube::core::ApiResource::from_gvk_with_plural(
                &kube::core::GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PrometheusRule"),
                "prometheusrules",
            ),
        );
        if api.list(&Default::default()).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("the PrometheusRule CRD is not served after 10 s");
}

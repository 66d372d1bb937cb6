//! A real cert-manager for one test's namespace: its CRDs (as its module ships them) and
//! its controller and cainjector (cert-manager's own controller packages, built by
//! `hack/build-tools.sh cert-manager` at `CERT_MANAGER_VERSION`), run out of cluster
//! against the local API server with the admin's kubeconfig; killed when dropped.
//!
//! Both are scoped to the namespace (`--namespace`): the controller sees only that
//! namespace's Issuers, Certificates, CertificateRequests and Secrets, and the cainjector
//! injects only CAs of that namespace's Certificates and Secrets (into any webhook
//! configuration, APIService or CRD, which are cluster-wide). So tests running at the same
//! time each have their own, and none acts on another's objects. Not supported here:
//! ClusterIssuers (they need a cluster-wide controller), ACME, Vault, Venafi, and
//! cert-manager's own webhook (no validation nor defaulting of its objects: the controller
//! applies its defaults itself).
//!
//! Logs: `target/tmp/cert-manager-<namespace>/{controller,cainjector}.log`, kept after the
//! test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};

use super::cluster::{ClusterEnv, TestContext, install_third_party_crds};

/// cert-manager's CRDs the tests install (from `MATURITY_CRDS_DIR`).
pub const CRDS: [&str; 4] = [
    "cert-manager.io_certificates.yaml",
    "cert-manager.io_certificaterequests.yaml",
    "cert-manager.io_issuers.yaml",
    "cert-manager.io_clusterissuers.yaml",
];

/// The annotation by which the cainjector writes a Certificate's CA into a webhook
/// configuration's `caBundle`: `<namespace>/<certificate>`.
pub const INJECT_CA_FROM: &str = "cert-manager.io/inject-ca-from";

/// cert-manager.io/v1 `kind` (plural `plural`).
pub fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", kind),
        plural,
    )
}

/// Certificates of `namespace`.
pub fn certificates(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &resource("Certificate", "certificates"),
    )
}

/// Issuers of `namespace`.
pub fn issuers(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &resource("Issuer", "issuers"))
}

/// Installs (server-side apply, idempotent) cert-manager's CRDs and waits until they are
/// served. [`CertManager::start`] does it too; call it first when something else needs
/// the kinds before cert-manager runs (e.g. `helm install` of a chart with a Certificate).
pub async fn install_crds(env: &ClusterEnv, client: &Client) {
    install_third_party_crds(env, client, &CRDS).await;
}

/// cert-manager's controller and cainjector for one namespace; both killed when dropped.
pub struct CertManager {
    pub namespace: String,
    client: Client,
    log_dir: PathBuf,
    /// (name, process): the controller and the cainjector.
    children: Mutex<Vec<(&'static str, Child)>>,
}

impl CertManager {
    /// Installs cert-manager's CRDs and starts its controller and cainjector for the test's
    /// namespace (see the module's doc); returns once both run.
    pub async fn start(ctx: &TestContext) -> Self {
        Self::start_in(&ctx.env, &ctx.client, &ctx.namespace, &[]).await
    }

    /// Like [`Self::start`] for `namespace`, with extra flags for the controller (e.g.
    /// `--enable-certificate-owner-ref`: each Certificate then owns its Secret, deleted
    /// with it). A failed issuance is tried again after 10 s (upstream: 1 h).
    pub async fn start_in(
        env: &ClusterEnv,
        client: &Client,
        namespace: &str,
        controller_args: &[&str],
    ) -> Self {
        install_crds(env, client).await;
        let log_dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cert-manager-{namespace}"));
        std::fs::create_dir_all(&log_dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_dir.display()));
        let spawn = |name: &'static str, args: &[&str]| -> (&'static str, Child) {
            let log_path = log_dir.join(format!("{name}.log"));
            let log = std::fs::File::create(&log_path)
                .unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
            let binary = env.tool(&format!("cert-manager-{name}"));
            let child = Command::new(&binary)
                .arg(format!("--kubeconfig={}", env.kubeconfig.display()))
                .arg(format!("--namespace={namespace}"))
                .arg("--leader-elect=false")
                .arg("-v=2")
                .args(args)
                .stdout(log.try_clone().expect("log file"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "start {} (built by hack/build-tools.sh cert-manager): {e}",
                        binary.display()
                    )
                });
            (name, child)
        };
        let mut controller_flags = vec!["--certificate-request-minimum-backoff-duration=10s"];
        controller_flags.extend_from_slice(controller_args);
        let me = Self {
            namespace: namespace.to_string(),
            client: client.clone(),
            children: Mutex::new(vec![
                spawn("controller", &controller_flags),
                spawn("cainjector", &[]),
            ]),
            log_dir,
        };
        // Our mains log these lines once their informers are started.
        for (name, line) in [
            ("controller", "cert-manager controllers started"),
            ("cainjector", "Starting workers"),
        ] {
            super::eventually(
                &format!("cert-manager's {name} started"),
                Duration::from_secs(60),
                || {
                    let res = me.check_running().map(|()| me.log(name));
                    async move {
                        match res? {
                            l if l.contains(line) => Ok(()),
                            _ => Err(format!("no {line:?} in its log yet")),
                        }
                    }
                },
            )
            .await;
        }
        me
    }

    /// Where the logs are (`controller.log`, `cainjector.log`).
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The log of `name` (`controller` or `cainjector`) so far.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Err (with the end of its log) when the controller or the cainjector has exited.
    pub fn check_running(&self) -> Result<(), String> {
        let mut children = self.children.lock().unwrap();
        for (name, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let log = self.log(name);
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(format!(
                    "cert-manager's {name} exited ({status}); its log ends with:\n{}",
                    tail.join("\n")
                ));
            }
        }
        Ok(())
    }

    /// Waits (`timeout`) until `what` holds: `check` gives Ok, or Err with what it saw.
    /// Fails at once if a process exited, and names the logs on timeout.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let what = format!("{what} (cert-manager's logs: {})", self.log_dir.display());
        super::eventually(&what, timeout, || {
            let running = self.check_running();
            let fut = check();
            async move {
                if let Err(e) = running {
                    panic!("{e}");
                }
                fut.await
            }
        })
        .await
    }

    /// Waits until Certificate `name` is Ready (condition `Ready` True for its current
    /// generation) and returns it.
    pub async fn wait_certificate_ready(&self, name: &str) -> DynamicObject {
        let api = certificates(&self.client, &self.namespace);
        self.wait_for(
            &format!("Certificate {name} Ready"),
            Duration::from_secs(60),
            || {
                let api = api.clone();
                async move {
                    let cert = api.get(name).await.map_err(|e| e.to_string())?;
                    let generation = cert.metadata.generation;
                    let conditions = cert.data["status"]["conditions"].clone();
                    let ready = conditions.as_array().into_iter().flatten().any(|c| {
                        c["type"] == "Ready"
                            && c["status"] == "True"
                            && c["observedGeneration"].as_i64() == generation
                    });
                    match ready {
                        true => Ok(cert),
                        false => Err(format!("conditions: {conditions}")),
                    }
                }
            },
        )
        .await
    }

    /// Waits until Secret `name` holds `tls.crt`, `tls.key` and `ca.crt` (a Certificate's
    /// Secret once issued) and returns it.
    pub async fn wait_tls_secret(&self, name: &str) -> Secret {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        self.wait_for(
            &format!("Secret {name} with tls.crt, tls.key and ca.crt"),
            Duration::from_secs(60),
            || {
                let api = api.clone();
                async move {
                    let secret = api
                        .get_opt(name)
                        .await
                        .map_err(|e| e.to_string())?
                        .ok_or("no Secret yet")?;
                    let data = secret.data.clone().unwrap_or_default();
                    let missing: Vec<&str> = ["tls.crt", "tls.key", "ca.crt"]
                        .into_iter()
                        .filter(|k| data.get(*k).is_none_or(|v| v.0.is_empty()))
                        .collect();
                    match missing.is_empty() {
                        true => Ok(secret),
                        false => Err(format!("missing {missing:?}")),
                    }
                }
            },
        )
        .await
    }

    /// Waits until every webhook of MutatingWebhookConfiguration `name` has `ca_bundle`
    /// as its `caBundle` (written by the cainjector) and returns the configuration.
    pub async fn wait_ca_injected(
        &self,
        name: &str,
        ca_bundle: &[u8],
    ) -> MutatingWebhookConfiguration {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        self.wait_for(
            &format!("the CA injected into MutatingWebhookConfiguration {name}"),
            Duration::from_secs(60),
            || {
                let api = api.clone();
                async move {
                    let mwc = api.get(name).await.map_err(|e| e.to_string())?;
                    let bundles: Vec<Option<&ByteString>> = mwc
                        .webhooks
                        .iter()
                        .flatten()
                        .map(|w| w.client_config.ca_bundle.as_ref())
                        .collect();
                    let injected = !bundles.is_empty()
                        && bundles
                            .iter()
                            .all(|b| b.is_some_and(|b| b.0.as_slice() == ca_bundle));
                    match injected {
                        true => Ok(mwc),
                        false => Err(format!(
                            "caBundle lengths {:?}",
                            bundles
                                .iter()
                                .map(|b| b.map(|b| b.0.len()))
                                .collect::<Vec<_>>()
                        )),
                    }
                }
            },
        )
        .await
    }

    /// Asks for Certificate `name` to be issued again now, as `cmctl renew` does: once no
    /// issuance is under way, the `Issuing` condition set True (reason `ManuallyTriggered`)
    /// in its status. The new certificate (and, by default, a new key) is written into the
    /// same Secret: wait for it with [`Self::wait_tls_crt_changed`].
    pub async fn renew(&self, name: &str) {
        let api = certificates(&self.client, &self.namespace);
        self.wait_for(
            &format!("the renewal of Certificate {name} asked for"),
            Duration::from_secs(60),
            || {
                let api = api.clone();
                async move {
                    let mut cert = api.get(name).await.map_err(|e| e.to_string())?;
                    let conditions = cert.data["status"]["conditions"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    if conditions
                        .iter()
                        .any(|c| c["type"] == "Issuing" && c["status"] == "True")
                    {
                        return Err("an issuance is under way".to_string());
                    }
                    let now = jiff::Timestamp::now()
                        .strftime("%Y-%m-%dT%H:%M:%SZ")
                        .to_string();
                    let mut conditions: Vec<serde_json::Value> = conditions
                        .into_iter()
                        .filter(|c| c["type"] != "Issuing")
                        .collect();
                    conditions.push(serde_json::json!({
                        "type": "Issuing", "status": "True", "reason": "ManuallyTriggered",
                        "message": "Certificate re-issuance manually triggered",
                        "lastTransitionTime": now, "observedGeneration": cert.metadata.generation
                    }));
                    cert.data["status"]["conditions"] = serde_json::Value::Array(conditions);
                    // resourceVersion is sent: a status changed meanwhile is a conflict,
                    // and the next try reads it again.
                    api.replace_status(name, &PostParams::default(), &cert)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
            },
        )
        .await;
    }

    /// Waits until Secret `name`'s `tls.crt` is no longer `old` and returns the Secret.
    pub async fn wait_tls_crt_changed(&self, name: &str, old: &[u8]) -> Secret {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        self.wait_for(
            &format!("a new tls.crt in Secret {name}"),
            Duration::from_secs(60),
            || {
                let api = api.clone();
                async move {
                    let secret = api.get(name).await.map_err(|e| e.to_string())?;
                    let crt = secret
                        .data
                        .as_ref()
                        .and_then(|d| d.get("tls.crt"))
                        .map(|v| v.0.clone())
                        .unwrap_or_default();
                    match !crt.is_empty() && crt != old {
                        true => Ok(secret),
                        false => Err("tls.crt unchanged".to_string()),
                    }
                }
            },
        )
        .await
    }
}

impl Drop for CertManager {
    fn drop(&mut self) {
        if let Ok(mut children) = self.children.lock() {
            for (_, child) in children.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `key` of a Secret's data (empty when missing).
pub fn secret_data(secret: &Secret, key: &str) -> Vec<u8> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.0.clone())
        .unwrap_or_default()
}

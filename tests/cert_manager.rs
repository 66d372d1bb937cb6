//! A real cert-manager (its controller and cainjector, `support::cert_manager`), on its own,
//! before the chart relies on it: in the test's namespace, the usual bootstrap (a
//! self-signed Issuer, a CA Certificate, a CA Issuer) issues a serving Certificate for
//! `svc.<ns>.svc`; the cainjector writes the CA into the `caBundle` of a
//! MutatingWebhookConfiguration annotated `cert-manager.io/inject-ca-from`; a renewal
//! writes a new certificate into the same Secret (what the operator's certificate reload
//! relies on). Each step's duration is printed.

mod support;

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use support::cert_manager::{CertManager, INJECT_CA_FROM, certificates, issuers, secret_data};
use support::cluster::TestContext;

/// Ok when `crt_pem` (a chain, leaf first) is valid for `dns_name` under the root
/// `ca_pem` alone, and `key_pem` is the leaf's private key.
fn verify_serving(
    ca_pem: &[u8],
    crt_pem: &[u8],
    key_pem: &[u8],
    dns_name: &str,
) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(ca.map_err(|e| format!("ca.crt: {e}"))?)
            .map_err(|e| format!("ca.crt as a root: {e}"))?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    let leaf = chain.first().ok_or("tls.crt holds no certificate")?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(dns_name.to_string()).map_err(|e| e.to_string())?;
    verifier
        .verify_server_cert(leaf, &chain[1..], &name, &[], UnixTime::now())
        .map_err(|e| format!("tls.crt for {dns_name} under ca.crt: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("tls.key: {e}"))?;
    rustls::sign::CertifiedKey::from_der(chain, key, &provider)
        .and_then(|k| k.keys_match())
        .map_err(|e| format!("tls.key is not tls.crt's key: {e}"))
}

/// Deletes a MutatingWebhookConfiguration (cluster-wide, so not deleted with the test's
/// namespace) when dropped, also when the test fails.
struct DeleteWebhookConfiguration<'a>(&'a TestContext, String);

impl Drop for DeleteWebhookConfiguration<'_> {
    fn drop(&mut self) {
        let kubeconfig = self.0.env.kubeconfig.display().to_string();
        let _ = std::process::Command::new(self.0.env.tool("kubectl"))
            .args([
                "--kubeconfig",
                &kubeconfig,
                "delete",
                "mutatingwebhookconfiguration",
            ])
            .args([&self.1, "--ignore-not-found", "--wait=false"])
            .output();
    }
}

async fn create(api: &Api<DynamicObject>, object: serde_json::Value) {
    let object: DynamicObject = serde_json::from_value(object).expect("an object");
    let name = object.metadata.name.clone().unwrap_or_default();
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
}

#[tokio::test]
async fn cert_manager_issues_injects_the_ca_and_renews() {
    let started = Instant::now();
    let mut step = Instant::now();
    let mut lap = |what: &str| {
        eprintln!("[cert_manager] {what}: {:.2?}", step.elapsed());
        step = Instant::now();
    };

    let ctx = TestContext::new("certmanager").await;
    let ns = ctx.namespace.clone();
    lap("cluster and namespace");
    let cm = CertManager::start(&ctx).await;
    lap("CRDs applied, controller and cainjector started");

    // The bootstrap: a self-signed Issuer signs a CA Certificate, whose Secret a CA Issuer
    // signs with; then the serving Certificate of a webhook's Service.
    let issuers = issuers(&ctx.client, &ns);
    let certs = certificates(&ctx.client, &ns);
    let dns_name = format!("svc.{ns}.svc");
    create(
        &issuers,
        serde_json::json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Issuer",
            "metadata": {"name": "selfsigned"}, "spec": {"selfSigned": {}}
        }),
    )
    .await;
    create(&certs, serde_json::json!({
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "ca"},
        "spec": {"isCA": true, "commonName": format!("{ns}-ca"), "secretName": "ca",
                 "privateKey": {"algorithm": "ECDSA", "size": 256},
                 "issuerRef": {"group": "cert-manager.io", "kind": "Issuer", "name": "selfsigned"}}
    }))
    .await;
    create(
        &issuers,
        serde_json::json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Issuer",
            "metadata": {"name": "ca"}, "spec": {"ca": {"secretName": "ca"}}
        }),
    )
    .await;
    create(&certs, serde_json::json!({
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "serving"},
        "spec": {"secretName": "serving", "dnsNames": [dns_name],
                 "usages": ["digital signature", "key encipherment", "server auth"],
                 "issuerRef": {"group": "cert-manager.io", "kind": "Issuer", "name": "ca"}}
    }))
    .await;
    // One webhook for a harmless rule: ConfigMap creations in namespaces labelled with a
    // label no namespace has, failing open, at an address nothing listens on.
    let mwc_name = format!("{ns}-cert-manager-probe");
    let mwcs: Api<MutatingWebhookConfiguration> = Api::all(ctx.client.clone());
    let mwc: MutatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
        "metadata": {"name": mwc_name, "annotations": {INJECT_CA_FROM: format!("{ns}/serving")}},
        "webhooks": [{
            "name": "probe.certmanager.maturity.test",
            "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Ignore",
            "clientConfig": {"url": "https://127.0.0.1:1/x"},
            "namespaceSelector": {"matchLabels": {"maturity.test/cert-manager-probe": "never"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["configmaps"]}]
        }]
    }))
    .expect("a MutatingWebhookConfiguration");
    mwcs.create(&PostParams::default(), &mwc)
        .await
        .expect("create the MutatingWebhookConfiguration");
    let delete_mwc = DeleteWebhookConfiguration(&ctx, mwc_name.clone());
    lap("Issuers, Certificates and webhook configuration created");

    cm.wait_certificate_ready("ca").await;
    let ca_secret = cm.wait_tls_secret("ca").await;
    lap("CA Certificate Ready (self-signed)");
    cm.wait_certificate_ready("serving").await;
    let serving = cm.wait_tls_secret("serving").await;
    lap("serving Certificate Ready (signed by the CA Issuer)");

    let ca_crt = secret_data(&ca_secret, "tls.crt");
    assert_eq!(
        secret_data(&ca_secret, "ca.crt"),
        ca_crt,
        "the CA is self-signed: its ca.crt is its own certificate"
    );
    assert_eq!(
        secret_data(&serving, "ca.crt"),
        ca_crt,
        "the serving Secret's ca.crt is the CA's certificate"
    );
    let crt = secret_data(&serving, "tls.crt");
    verify_serving(&ca_crt, &crt, &secret_data(&serving, "tls.key"), &dns_name)
        .unwrap_or_else(|e| panic!("the serving certificate: {e}"));

    cm.wait_ca_injected(&mwc_name, &ca_crt).await;
    lap("cainjector wrote the CA into caBundle");

    // A renewal, as `cmctl renew` asks for one: a new certificate (and key) in the same
    // Secret, still under the same CA, so the injected caBundle stays valid.
    let uid = serving.metadata.uid.clone();
    cm.renew("serving").await;
    let renewed = cm.wait_tls_crt_changed("serving", &crt).await;
    lap("renewal: a new tls.crt in the Secret");
    assert_eq!(
        renewed.metadata.uid, uid,
        "the Secret is updated in place, not replaced"
    );
    verify_serving(
        &ca_crt,
        &secret_data(&renewed, "tls.crt"),
        &secret_data(&renewed, "tls.key"),
        &dns_name,
    )
    .unwrap_or_else(|e| panic!("the renewed certificate: {e}"));
    assert_ne!(
        secret_data(&renewed, "tls.key"),
        secret_data(&serving, "tls.key"),
        "a renewal makes a new key (rotationPolicy Always, the default)"
    );
    // The Secret is written before the Certificate's status says so: wait for revision 2,
    // Ready and no issuance left.
    let certs = support::cert_manager::certificates(&ctx.client, &ctx.namespace);
    cm.wait_for(
        "Certificate serving at revision 2, Ready, not issuing",
        std::time::Duration::from_secs(30),
        || {
            let certs = certs.clone();
            async move {
                let c = certs.get("serving").await.map_err(|e| e.to_string())?;
                let status = &c.data["status"];
                let has = |t: &str| {
                    status["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|x| x["type"] == t && x["status"] == "True")
                };
                match (status["revision"].as_i64(), has("Ready"), has("Issuing")) {
                    (Some(2), true, false) => Ok(()),
                    other => Err(format!("{other:?}: {status}")),
                }
            }
        },
    )
    .await;
    cm.wait_ca_injected(&mwc_name, &ca_crt).await;

    mwcs.delete(&mwc_name, &DeleteParams::default())
        .await
        .expect("delete the MutatingWebhookConfiguration");
    drop(delete_mwc);
    drop(cm);
    ctx.cleanup().await;
    lap("cleanup");
    eprintln!("[cert_manager] total: {:.2?}", started.elapsed());
}

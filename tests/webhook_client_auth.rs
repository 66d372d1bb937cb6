//! The admission webhook answers only the API server when given the CA of the API server's
//! client certificate (issue 13, escape 5: "the webhook answers any caller"). The local
//! API server presents `webhook-client.crt` to every webhook (its AdmissionConfiguration,
//! written by hack/cluster-up.sh); the operator runs with `--webhook-client-ca-file` of its
//! CA. Callers are plain `curl`s to the webhook's port.

mod support;

use std::path::Path;
use std::process::Command;

use support::cluster::TestContext;
use support::operator::{Operator, remove_webhook, webhook_flags};

/// `curl` POSTs an empty review to `url` (trusting any server certificate) with `cert`
/// (certificate and key file) if given: the HTTP status, or curl's error when the TLS
/// handshake was refused.
fn post(url: &str, cert: Option<(&Path, &Path)>) -> Result<u16, String> {
    let mut c = Command::new("curl");
    c.args([
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "5",
    ])
    .args(["-H", "Content-Type: application/json", "-d", "{}"]);
    if let Some((crt, key)) = cert {
        c.arg("--cert").arg(crt).arg("--key").arg(key);
    }
    let out = c.arg(url).output().expect("run curl");
    let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match (out.status.success(), code.parse::<u16>()) {
        (true, Ok(code)) if code != 0 => Ok(code),
        _ => Err(format!(
            "curl exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

#[tokio::test]
async fn with_a_client_ca_the_webhook_answers_only_the_api_server() {
    let ctx = TestContext::new("webhookca").await;
    let ns = ctx.namespace.clone();
    let pki = ctx.env.dir.join("pki");
    let flags = webhook_flags(&ns);
    let url = flags
        .iter()
        .find_map(|f| f.strip_prefix("--webhook-url="))
        .expect("the webhook's URL")
        .to_string();
    let mut with_ca = flags.clone();
    with_ca.push(format!(
        "--webhook-client-ca-file={}",
        pki.join("webhook-client-ca.crt").display()
    ));
    // The API server, presenting its client certificate, is answered: it records authors.
    let operator = Operator::start_recording(&ctx.env, &ctx.client, &ns, &with_ca).await;
    let hook = format!("{url}/mutate/authors");
    // Anyone else is refused at the handshake: no certificate, or one of another CA (the
    // cluster admin's own).
    let refused = post(&hook, None);
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    let other_ca = post(
        &hook,
        Some((&pki.join("admin.crt"), &pki.join("admin.key"))),
    );
    assert!(other_ca.is_err(), "another CA's certificate: {other_ca:?}");
    // The API server's certificate gets an HTTP answer (this empty review is malformed).
    let api_server = post(
        &hook,
        Some((
            &pki.join("webhook-client.crt"),
            &pki.join("webhook-client.key"),
        )),
    );
    assert!(
        matches!(api_server, Ok(code) if code < 500),
        "the API server's certificate: {api_server:?}"
    );
    drop(operator);

    // Without the flag, any caller is answered (what the flag changes).
    let operator = Operator::start_recording(&ctx.env, &ctx.client, &ns, &flags).await;
    let anyone = post(&hook, None);
    assert!(
        matches!(anyone, Ok(code) if code < 500),
        "no client CA: {anyone:?}"
    );
    drop(operator);
    remove_webhook(&ctx.client, &ns).await;
    ctx.cleanup().await;
}

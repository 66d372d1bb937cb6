//! The level is evidence (issue 15): routes to a higher level that a team could take
//! without changing any practice, each tried against the real API server, operator and
//! Prometheus, and shown not to raise the level. Expected practice states are written out
//! by hand from the rule in docs/maturity.md, not computed by the model.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use maturity_operator::api::MaturityAssessment;
use serde_json::json;
use support::cluster::TestContext;
use support::cluster::{assessment, assessments_recorded, attestation, practices, today};
use support::eventually;
use support::operator::Operator;

async fn apply(api: &Api<MaturityAssessment>, name: &str, signals: serde_json::Value) {
    let a: MaturityAssessment = serde_json::from_value(json!({
        "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "MaturityAssessment",
        "metadata": {"name": name}, "spec": {"scope": {}, "signals": signals}
    }))
    .unwrap();
    api.patch(
        name,
        &PatchParams::apply("evidence-test"),
        &Patch::Apply(&a),
    )
    .await
    .unwrap();
}

/// Signals made of literals only (`vector(5)`, a capacity typed as a number) are no
/// evidence: the practices they would satisfy stay Unknown with the reason, and the level
/// is the one the same namespace has without signals. The same signal reading a real
/// series (a scraped satisfaction score) is Met: the route works when it is real.
#[tokio::test]
async fn signal_queries_of_literals_only_do_not_raise_the_level() {
    let ctx = TestContext::new("evconst").await;
    let ns = ctx.namespace.clone();
    let _signal = support::prom::satisfaction_signal(&ctx).await;
    let operator = operator(&ctx, &[]);
    let api: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ns);
    apply(&api, "plain", json!({})).await;
    apply(
        &api,
        "constants",
        json!({
            "satisfaction": {"query": "vector(5)", "min": 1},
            "complaints": {"query": "vector(1)"},
            "demand": {"query": "vector(1)", "capacity": "1e9", "horizon": "7d"},
        }),
    )
    .await;
    apply(
        &api,
        "real",
        json!({"satisfaction": {"query": "avg(satisfaction_score)", "min": 4.0}}),
    )
    .await;
    let (plain, plain_level) = evaluated(&api, "plain").await;
    let (constants, constants_level) = evaluated(&api, "constants").await;
    // Every practice the three signals decide (docs/maturity.md, "Measured evidence").
    for id in [
        "CX-2.3", "ORG-3.5", "COMM-2.4", "CX-3.3", "CX-4.2", "RESP-4.4", "CX-4.5",
    ] {
        let (state, detail) = &constants[id];
        assert_eq!(state, "Unknown", "{id}: {detail}");
        assert!(
            detail.contains("reads no series, only literals"),
            "{id}: {detail}"
        );
    }
    assert_eq!(
        constants_level, plain_level,
        "constants raised the level: {constants:?}"
    );
    assert!(constants_level <= 5);
    let (real, _) = eventually("real evaluated", Duration::from_secs(30), || async {
        let (p, level) = practices(&api, "real").await?;
        match p.get("CX-2.3") {
            Some((state, _)) if state == "Met" => Ok((p, level)),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(real["CX-2.3"].0, "Met");
    // Without any signal the practice is not Met either.
    assert_ne!(plain["CX-2.3"].0, "Met", "{:?}", plain["CX-2.3"]);
    drop(operator);
    ctx.cleanup().await;
}

/// The operator for the test's namespace, evaluating assessments every second, with `extra`
/// flags.
fn operator(ctx: &TestContext, extra: &[String]) -> Operator {
    let mut flags = vec!["--assessment-interval=1s".to_string()];
    flags.extend_from_slice(extra);
    Operator::start_with(
        &ctx.env,
        &ctx.namespace,
        &ctx.env.prometheus_url,
        "2s",
        &flags,
    )
}

/// The operator with its webhook (records attestations and exemptions).
fn start_recording(ctx: &TestContext) -> Operator {
    operator(ctx, &support::operator::webhook_flags(&ctx.namespace))
}

/// The practices and level of `name` once the operator has evaluated it.
async fn evaluated(
    api: &Api<MaturityAssessment>,
    name: &str,
) -> (BTreeMap<String, (String, String)>, i64) {
    eventually(
        &format!("{name} evaluated"),
        Duration::from_secs(30),
        || practices(api, name),
    )
    .await
}

/// A test namespace and an operator whose webhook records its assessments' evidence.
async fn recording(prefix: &str) -> (TestContext, Api<MaturityAssessment>, Operator) {
    let ctx = TestContext::new(prefix).await;
    let api: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let operator = start_recording(&ctx);
    assessments_recorded(&api).await;
    (ctx, api, operator)
}

/// Stops the operator, removes its webhook registration and the namespace.
async fn finish(ctx: TestContext, operator: Operator) {
    drop(operator);
    support::operator::remove_webhook(&ctx.client, &ctx.namespace).await;
    ctx.cleanup().await;
}

fn days_from_today(n: i64) -> String {
    let t = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    t.checked_add(jiff::Span::new().days(n))
        .unwrap()
        .to_string()
}

/// The message of an API server refusal, or why there was none.
fn refusal<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> String {
    match r {
        Err(kube::Error::Api(s)) => s.message,
        other => panic!("not refused: {other:?}"),
    }
}

/// An attestation counts only as the webhook recorded it: the identity of whoever applied it
/// (a typed `by` is overwritten), with a proof. One made while the webhook was not there,
/// with a typed identity and a made-up proof, is Unverified and does not count. Dates in
/// the future and reviews longer than the practice's maximum validity are refused.
#[tokio::test]
async fn attestations_count_only_as_the_webhook_recorded_them() {
    let ctx = TestContext::new("evattest").await;
    let api: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    // No operator, no webhook yet: the API server stores what was typed.
    let mut forged = attestation("ORG-2.4", "the CEO", &today());
    forged["proof"] = json!(format!("v1:{}", "ab".repeat(32)));
    api.create(
        &Default::default(),
        &assessment("bypassed", json!({"attestations": [forged]})),
    )
    .await
    .unwrap();
    let operator = start_recording(&ctx);
    assessments_recorded(&api).await;
    let me = maturity_operator::k8s::identity(&ctx.client, Duration::from_secs(10))
        .await
        .unwrap();
    let admitted = api
        .create(
            &Default::default(),
            &assessment(
                "recorded",
                json!({"attestations": [attestation("ORG-2.4", "the CEO", &today())]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        admitted.spec.attestations[0].by.as_deref(),
        Some(me.as_str()),
        "the typed identity is overwritten"
    );

    let (recorded, _) = evaluated(&api, "recorded").await;
    let (state, detail) = &recorded["ORG-2.4"];
    assert_eq!(state, "Met", "{detail}");
    assert!(
        detail.starts_with(&format!("attested by {me} on {}", today())),
        "{detail}"
    );
    let (bypassed, level) = evaluated(&api, "bypassed").await;
    let (state, detail) = &bypassed["ORG-2.4"];
    assert_eq!(state, "Unverified", "{detail}");
    assert!(
        detail.contains("was not recorded by the operator's admission webhook"),
        "{detail}"
    );
    assert!(
        !detail.contains("the CEO"),
        "a typed identity is never shown as the attester: {detail}"
    );
    // Nothing in the namespace: every capability misses level-2 practices, so level 1.
    assert_eq!(level, 1);

    // Dated after tomorrow: refused with the sentence.
    let e = refusal(
        api.create(
            &Default::default(),
            &assessment(
                "future",
                json!({"attestations": [attestation("ORG-2.4", "me", "2099-01-01")]}),
            ),
        )
        .await,
    );
    assert!(
        e.contains(&format!(
            "the attestation of ORG-2.4 is dated 2099-01-01, in the future (today is {})",
            today()
        )),
        "{e}"
    );
    // Reviewed less often than ORG-5.4's (level 5) maximum validity of 90 days: refused.
    let mut long = attestation("ORG-5.4", "me", &today());
    long["reviewEvery"] = json!("365d");
    let e = refusal(
        api.create(
            &Default::default(),
            &assessment("long", json!({"attestations": [long]})),
        )
        .await,
    );
    assert!(
        e.contains("reviewEvery 365d is longer than the practice's maximum validity of 90d"),
        "{e}"
    );
    finish(ctx, operator).await;
}

/// An exemption asked for by the team counts only once another user, one who holds the
/// approver permission (`approve` on `maturityassessments/exemptions`), approves it; the
/// team cannot approve its own, nor can a user without the permission; status shows who
/// asked, who approved and until when; longer than 180 days is refused.
#[tokio::test]
async fn an_exemption_counts_only_once_another_user_with_the_permission_approves_it() {
    let (ctx, api, operator) = recording("evexempt").await;
    let edit = json!([{"apiGroups": ["maturity.sre.dev"], "resources": ["maturityassessments"], "verbs": ["get", "list", "create", "patch", "update"]}]);
    let team = ctx.service_account("team", edit.clone());
    let peer = ctx.service_account("peer", edit);
    let approver = ctx.service_account("approver", json!([
        {"apiGroups": ["maturity.sre.dev"], "resources": ["maturityassessments/exemptions"], "verbs": ["approve"]},
        {"apiGroups": ["maturity.sre.dev"], "resources": ["maturityassessments"], "verbs": ["get", "patch"]}
    ]));
    let until = days_from_today(30);
    // The team asks, and types approved: true and an approver: recorded as a request only.
    let asked = json!({"apiVersion": "maturity.sre.dev/v1alpha1", "kind": "MaturityAssessment",
        "metadata": {"name": "exempted", "namespace": ctx.namespace},
        "spec": {"exemptions": [{"practice": "ORG-2.4", "reason": "no customers yet", "until": until,
                                  "approved": true, "approvedBy": "the CEO"}]}});
    let out = ctx.kubectl_as(&team, &["create", "-f", "-"], &asked.to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = api.get("exempted").await.unwrap();
    let e = &a.spec.exemptions[0];
    assert_eq!(
        (
            e.requested_by.as_deref(),
            e.approved_by.as_deref(),
            e.approved
        ),
        (Some(team.as_str()), None, None)
    );
    let (p, _) = evaluated(&api, "exempted").await;
    assert_eq!(p["ORG-2.4"].0, "Unverified", "{:?}", p["ORG-2.4"]);
    assert!(
        p["ORG-2.4"]
            .1
            .contains(&format!("requested by {team} and is not approved yet")),
        "{:?}",
        p["ORG-2.4"]
    );

    let approve = r#"[{"op": "add", "path": "/spec/exemptions/0/approved", "value": true}]"#;
    let patch = |user: &str| {
        ctx.kubectl_as(
            user,
            &[
                "patch",
                "maturityassessment",
                "exempted",
                "--type=json",
                "-p",
                approve,
            ],
            "",
        )
    };
    // The requester may not approve its own.
    let out = patch(&team);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{team} requested the exemption of ORG-2.4, so may not approve it"
        )),
        "{err}"
    );
    // Another user of the team, without the approver permission, may not either.
    let out = patch(&peer);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{peer} may not approve the exemption of ORG-2.4: approving needs the verb approve on maturityassessments/exemptions")), "{err}");
    assert_eq!(
        practices(&api, "exempted").await.unwrap().0["ORG-2.4"].0,
        "Unverified"
    );
    // The approver may.
    let out = patch(&approver);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (p, _) = eventually("exempt", Duration::from_secs(30), || async {
        let (p, level) = practices(&api, "exempted").await?;
        match p["ORG-2.4"].0.as_str() {
            "Exempt" => Ok((p, level)),
            _ => Err(format!("{:?}", p["ORG-2.4"])),
        }
    })
    .await;
    assert_eq!(
        p["ORG-2.4"].1,
        format!(
            "exempt until {until} (requested by {team} on {}, approved by {approver} on {}): no customers yet",
            today(),
            today()
        )
    );
    // Longer than 180 days: refused.
    let far = json!({"apiVersion": "maturity.sre.dev/v1alpha1", "kind": "MaturityAssessment",
        "metadata": {"name": "far", "namespace": ctx.namespace},
        "spec": {"exemptions": [{"practice": "COMM-5.2", "reason": "never", "until": days_from_today(181)}]}});
    let out = ctx.kubectl_as(&team, &["create", "-f", "-"], &far.to_string());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("more than 180 days from today ({})", today())),
        "{err}"
    );
    finish(ctx, operator).await;
}

/// With the webhook, a signal query of literals is refused at admission with the sentence
/// (without it, the controller leaves its practices Unknown: the test above).
#[tokio::test]
async fn signal_queries_of_literals_are_refused_at_admission() {
    let (ctx, api, operator) = recording("evadmit").await;
    for (signals, field, query) in [
        (
            json!({"satisfaction": {"query": "vector(5)", "min": 1}}),
            "satisfaction.query",
            "vector(5)",
        ),
        (
            json!({"complaints": {"query": "vector(1) > 0"}}),
            "complaints.query",
            "vector(1) > 0",
        ),
        (
            json!({"demand": {"query": "sum(rate(requests_total[5m]))", "capacity": "1e9", "horizon": "7d"}}),
            "demand.capacity",
            "1e9",
        ),
    ] {
        let e = refusal(
            api.create(
                &Default::default(),
                &assessment("constants", json!({"signals": signals})),
            )
            .await,
        );
        assert!(
            e.contains(&format!(
                "spec.signals.{field}: the query {query:?} reads no series, only literals"
            )),
            "{e}"
        );
    }
    // Another namespace's series: refused too.
    let e = refusal(api.create(&Default::default(), &assessment("other", json!({"signals": {"satisfaction": {"query": "avg(satisfaction_score{namespace=\"kube-system\"})", "min": 1}}}))).await);
    assert!(
        e.contains("spec.signals.satisfaction.query:") && e.contains("kube-system"),
        "{e}"
    );
    // A real series is admitted.
    api.create(
        &Default::default(),
        &assessment(
            "real",
            json!({"signals": {"satisfaction": {"query": "avg(satisfaction_score)", "min": 1}}}),
        ),
    )
    .await
    .unwrap();
    finish(ctx, operator).await;
}

/// `check` exits 3 on a stale status: the operator stopped and its heartbeat 42 minutes old,
/// or a spec generation the operator has not evaluated. While the operator runs it is 0.
#[tokio::test]
async fn a_stale_status_makes_check_exit_3() {
    let ctx = TestContext::new("evstale").await;
    let ns = ctx.namespace.clone();
    let api: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ns);
    let operator = operator(&ctx, &[]);
    api.create(
        &Default::default(),
        &assessment("gate", json!({"targetLevel": 1})),
    )
    .await
    .unwrap();
    evaluated(&api, "gate").await;
    let check = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
            .args(["check", "gate", "-n", &ns])
            .env("KUBECONFIG", &ctx.env.kubeconfig)
            .output()
            .expect("run check");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = check();
    assert_eq!(code, 0, "{text}");
    drop(operator);
    // The operator is gone; its last heartbeat ages (written here as 42 minutes ago).
    let aged = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(42);
    api.patch_status(
        "gate",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"heartbeat": aged.to_string()}})),
    )
    .await
    .unwrap();
    let (code, text) = check();
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("stale: last evaluated 42 min ago"), "{text}");
    // A fresh heartbeat, but a spec the operator never saw.
    api.patch_status(
        "gate",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"heartbeat": jiff::Timestamp::now().to_string()}})),
    )
    .await
    .unwrap();
    assert_eq!(check().0, 0, "fresh again");
    api.patch(
        "gate",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"targetLevel": 2}})),
    )
    .await
    .unwrap();
    let (code, text) = check();
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains(
            "stale: the spec's generation 2 was not evaluated yet (the status is of generation 1)"
        ),
        "{text}"
    );
    ctx.cleanup().await;
}

/// A rule anyone can write with the two labels of the operator's burn-rate alerts
/// (`vector(0) > 1`, labelled `namespace` and `response_time_target`) is not the operator's
/// alert: RESP-2.3 and COMM-2.2 stay NotMet. (`tests/maturity_assessment.rs` loads the
/// operator's own rules into the same Prometheus and shows them Met.)
#[tokio::test]
async fn a_rule_with_the_labels_of_a_burn_rate_alert_is_not_one() {
    let ctx = TestContext::new("evburn").await;
    let ns = ctx.namespace.clone();
    let rtt: maturity_operator::api::ResponseTimeTarget = serde_json::from_value(json!({
        "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "ResponseTimeTarget",
        "metadata": {"name": "pay"},
        "spec": {"service": "pay", "requestClass": "all", "objective": 99.9, "window": "1h",
                 "indicator": {"ratio": {"good": "http_requests_total{code!~\"5..\"}", "total": "http_requests_total"}},
                 "alerting": {"burnRateAlerts": true}}
    }))
    .unwrap();
    Api::namespaced(ctx.client.clone(), &ns)
        .create(&Default::default(), &rtt)
        .await
        .unwrap();
    let file = ctx.env.rules_dir.join(format!("{ns}.yml"));
    let rules = format!(
        "groups:\n- name: fake-{ns}\n  rules:\n  - alert: ErrorBudgetBurn\n    expr: vector(0) > 1\n    labels: {{namespace: {ns}, response_time_target: pay, severity: page}}\n"
    );
    support::prom::load_rule_file(&ctx.env, &ns, &rules, &format!("fake-{ns}")).await;
    let prom = ctx.env.prometheus_url.clone();
    let operator = operator(&ctx, &[]);
    let api: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ns);
    api.create(&Default::default(), &assessment("burn", json!({})))
        .await
        .unwrap();
    let (p, _) = evaluated(&api, "burn").await;
    for id in ["RESP-2.3", "COMM-2.2"] {
        let (state, detail) = &p[id];
        assert_eq!(state, "NotMet", "{id}: {detail}");
        assert!(
            detail.contains("no burn-rate alert of the operator loaded for pay"),
            "{id}: {detail}"
        );
    }
    drop(operator);
    let _ = std::fs::remove_file(&file);
    let _ = reqwest::Client::new()
        .post(format!("{prom}/-/reload"))
        .send()
        .await;
    ctx.cleanup().await;
}

/// The state and detail of `id`, and the status's last delivery, once `ok` holds.
async fn delivery(
    api: &Api<MaturityAssessment>,
    name: &str,
    id: &str,
    ok: impl Fn(&str, &str, &serde_json::Value) -> bool,
) -> (String, String, serde_json::Value) {
    eventually(&format!("{name} {id}"), Duration::from_secs(30), || {
        let api = api.clone();
        let ok = &ok;
        async move {
            let (p, _) = practices(&api, name).await?;
            let a = serde_json::to_value(api.get(name).await.map_err(|e| e.to_string())?).unwrap();
            let last = a["status"]["reports"]["lastDelivery"].clone();
            let (state, detail) = p[id].clone();
            match ok(&state, &detail, &last) {
                true => Ok((state, detail, last)),
                false => Err(format!("{state} {detail}; last delivery {last}")),
            }
        }
    })
    .await
}

/// A report counts for CX-3.4 when it was delivered, not when it was produced: enabled
/// without a receiver it is NotMet; a receiver answering 500 is recorded and NotMet; once
/// it answers 2xx it is Met. A receiver on a host the operator does not allow is never sent to.
#[tokio::test]
async fn a_report_counts_when_it_was_delivered_not_when_it_was_produced() {
    let ctx = TestContext::new("evreport").await;
    let ns = ctx.namespace.clone();
    let receiver = support::receiver::Receiver::start().await;
    let operator = operator(&ctx, &["--report-webhook-hosts=127.0.0.1".to_string()]);
    let api: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ns);
    let elsewhere = receiver.url.replace("127.0.0.1", "127.0.0.2");
    for (name, reports) in [
        ("unsent", json!({"weekly": true})),
        (
            "sent",
            json!({"weekly": true, "webhook": {"url": receiver.url}}),
        ),
        (
            "elsewhere",
            json!({"weekly": true, "webhook": {"url": elsewhere}}),
        ),
    ] {
        api.create(
            &Default::default(),
            &assessment(name, json!({"reports": reports})),
        )
        .await
        .unwrap();
    }
    let (_, detail, _) = delivery(&api, "unsent", "CX-3.4", |s, _, _| s == "NotMet").await;
    assert_eq!(
        detail,
        "weekly reports are produced but delivered to nobody: a report counts once spec.reports.webhook answered 2xx"
    );
    let (_, _, last) = delivery(&api, "sent", "CX-3.4", |s, _, l| {
        s == "NotMet" && l["result"] == "HTTP 500"
    })
    .await;
    assert_eq!(
        (last["period"].as_str(), last["delivered"].as_bool()),
        (Some("weekly"), Some(false))
    );
    let (_, _, last) = delivery(&api, "elsewhere", "CX-3.4", |s, _, l| {
        s == "NotMet" && !l.is_null()
    })
    .await;
    let refused = last["result"].as_str().unwrap();
    assert!(
        refused.starts_with("host 127.0.0.2 is not one the operator delivers reports to"),
        "{refused}"
    );
    // The receiver answers 204 now; a report asked for at once is delivered.
    receiver
        .code
        .store(204, std::sync::atomic::Ordering::SeqCst);
    api.patch(
        "sent",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"maturity.sre.dev/report-now": "1"}}})),
    )
    .await
    .unwrap();
    let (_, detail, _) = delivery(&api, "sent", "CX-3.4", |s, _, _| s == "Met").await;
    assert!(
        detail.starts_with("weekly report delivered at "),
        "{detail}"
    );
    let bodies = receiver.bodies.lock().unwrap().clone();
    assert!(bodies.len() >= 2, "{bodies:?}");
    assert!(
        bodies
            .iter()
            .all(|b| b["assessment"] == "sent" && b["period"] == "weekly"),
        "only the allowed receiver was sent to: {bodies:?}"
    );
    drop(operator);
    ctx.cleanup().await;
}

/// An old value is no evidence: `max_over_time(satisfaction_score[3650d])` keeps answering
/// 4.6 from Prometheus after the exporter is gone, but the operator sends it guarded by the
/// series being live, so CX-2.3 turns Unknown ("no live data").
#[tokio::test]
async fn a_signal_whose_series_stopped_is_unknown_not_met() {
    let ctx = TestContext::new("evstale-signal").await;
    let ns = ctx.namespace.clone();
    let (_exporter, target) = support::prom::satisfaction_signal(&ctx).await;
    let operator = operator(&ctx, &[]);
    let api: Api<MaturityAssessment> = Api::namespaced(ctx.client.clone(), &ns);
    let kept = "max_over_time(satisfaction_score[3650d])";
    api.create(
        &Default::default(),
        &assessment(
            "kept",
            json!({"signals": {"satisfaction": {"query": kept, "min": 4.0}}}),
        ),
    )
    .await
    .unwrap();
    let met = |want: &'static str| {
        let api = api.clone();
        move || {
            let api = api.clone();
            async move {
                let (p, _) = practices(&api, "kept").await?;
                match p["CX-2.3"].0 == want {
                    true => Ok(p["CX-2.3"].1.clone()),
                    false => Err(format!("{:?}", p["CX-2.3"])),
                }
            }
        }
    };
    let detail = eventually(
        "CX-2.3 Met while the series is live",
        Duration::from_secs(30),
        met("Met"),
    )
    .await;
    assert_eq!(detail, "satisfaction 4.6 (target at least 4)");
    // The target is removed: Prometheus stops scraping and marks its series stale.
    drop(target);
    let detail = eventually(
        "CX-2.3 Unknown once the series stopped",
        Duration::from_secs(60),
        met("Unknown"),
    )
    .await;
    assert!(detail.contains("no live data"), "{detail}");
    // Prometheus alone still answers the query with the old value: the guard is what stops it.
    let prom = support::prom::Prom::new(ctx.env.prometheus_url.clone());
    let old = prom
        .scalar(&format!(
            "max_over_time(satisfaction_score{{namespace=\"{ns}\"}}[3650d])"
        ))
        .await
        .unwrap();
    assert_eq!(old, 4.6);
    drop(operator);
    ctx.cleanup().await;
}

//! MaturityAssessment end to end: a scenario namespace on the real API server (Deployments
//! with owner labels, a ResponseTimeTarget whose burn-rate alert rules are loaded into the
//! shared real Prometheus, a satisfaction signal scraped from the synthetic exporter, and
//! attestations) reaches exactly the level written out by hand from the model's rules (not
//! computed by the crate); taking away one piece of evidence lowers exactly its capability;
//! attestations expire; an exemption counts once approved by another user who may approve,
//! and lapses; `check` exit codes and `kubectl wait --for=condition=TargetLevelMet` gate on it.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use maturity_operator::api::MaturityAssessment;
use maturity_operator::api::maturity_assessment::{PracticeState, PracticeStatus};
use maturity_operator::model::{Evidence, PRACTICES};
use maturity_operator::synthetic::{SyntheticExporter, labels};
use serde_json::json;
use support::cluster::{ClusterEnv, TestContext};
use support::eventually;
use support::operator::Operator;
use support::prom::ScrapeTarget;

/// Level-2 practices the scenario proves by measurement.
const MEASURED_AT_2: &[&str] = &[
    "ORG-2.1", "CX-2.3", "CX-2.4", "COMM-2.2", "COMM-2.4", "RESP-2.3",
];

fn days_ago(n: i64) -> String {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    today
        .checked_sub(jiff::Span::new().days(n))
        .unwrap()
        .to_string()
}

/// Levels written out by hand: the overall level and each capability's, in the order
/// ORG, CX, BIZ, COMM, RESP. (By the rule in docs/maturity.md: a capability is at L when
/// every practice of it at levels 2..L is Met or Exempt; the overall level is the lowest.)
fn by_hand(overall: u8, [org, cx, biz, comm, resp]: [i32; 5]) -> (u8, BTreeMap<String, i32>) {
    let caps = [
        ("ORG", org),
        ("CX", cx),
        ("BIZ", biz),
        ("COMM", comm),
        ("RESP", resp),
    ];
    (
        overall,
        caps.into_iter().map(|(c, l)| (c.to_string(), l)).collect(),
    )
}

fn levels(a: &MaturityAssessment) -> (Option<i32>, BTreeMap<String, i32>) {
    let s = a.status.clone().unwrap_or_default();
    (
        s.level,
        s.capabilities
            .into_iter()
            .map(|c| (c.id, c.level))
            .collect(),
    )
}

async fn wait_levels(
    api: &Api<MaturityAssessment>,
    want: (u8, BTreeMap<String, i32>),
) -> MaturityAssessment {
    eventually(&format!("levels {want:?}"), Duration::from_secs(60), || {
        let (api, want) = (api.clone(), want.clone());
        async move {
            let a = api.get("payments").await.map_err(|e| e.to_string())?;
            let (level, caps) = levels(&a);
            if level == Some(want.0 as i32) && caps == want.1 {
                Ok(a)
            } else {
                Err(format!(
                    "level {level:?} {caps:?}; next {:?}",
                    a.status.and_then(|s| s.next_level)
                ))
            }
        }
    })
    .await
}

fn run_check(env: &ClusterEnv, ns: &str, name: &str, extra: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
        .args(["check", name, "-n", ns])
        .args(extra)
        .env("KUBECONFIG", &env.kubeconfig)
        .output()
        .expect("run check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Loads the burn-rate alert rules of `rtt_manifest` (as `maturity-operator rules` prints
/// them) into the shared Prometheus and waits until it serves them.
async fn load_rules(env: &ClusterEnv, ns: &str, rtt_manifest: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rtt.yaml");
    std::fs::write(&file, rtt_manifest).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
        .args(["rules", "-n", ns, "-f"])
        .arg(&file)
        .output()
        .expect("run rules");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plus one alert of the team's own, without a runbook.
    let mut rules: serde_json::Value = serde_saphyr::from_slice(&out.stdout).unwrap();
    let own: serde_json::Value = serde_saphyr::from_str(&format!(
        "name: own-{ns}\nrules:\n- alert: PayQueueLong\n  expr: vector(0) > 1\n  labels: {{severity: ticket, namespace: {ns}}}\n"
    ))
    .unwrap();
    rules["groups"].as_array_mut().unwrap().push(own);
    let text = serde_saphyr::to_string(&rules).unwrap();
    support::prom::load_rule_file(env, ns, &text, &format!("\"namespace\":\"{ns}\"")).await;
}

struct Scenario {
    ctx: TestContext,
    operator: Operator,
    _exporter: Arc<SyntheticExporter>,
    _target: ScrapeTarget,
    assessments: Api<MaturityAssessment>,
    deployments: Api<Deployment>,
}

impl Scenario {
    async fn new(name: &str, prometheus_url: Option<&str>) -> Self {
        let ctx = TestContext::new(name).await;
        let ns = ctx.namespace.clone();
        let exporter = Arc::new(
            SyntheticExporter::start("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap(),
        );
        exporter.set_gauge("satisfaction_score", labels(&[("namespace", &ns)]), 4.6);
        let target = ScrapeTarget::register(&ctx.env, &ns, exporter.addr(), &[]);
        let operator = Operator::start_with(
            &ctx.env,
            &ns,
            prometheus_url.unwrap_or(&ctx.env.prometheus_url),
            "2s",
            &[
                ["--assessment-interval".into(), "1s".into()].as_slice(),
                &support::operator::webhook_flags(&ns),
            ]
            .concat(),
        );
        // The drill and the policy below get their author from the webhook.
        support::operator::webhook_recording(&ctx.client, &ns).await;
        let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
        for d in ["pay", "web"] {
            let dep: Deployment = serde_json::from_value(json!({
                "metadata": {"name": d, "labels": {"app": d, "team": "payments"}},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": d}},
                         "template": {"metadata": {"labels": {"app": d}}, "spec": {"containers": [{"name": "app", "image": "x"}]}}}
            }))
            .unwrap();
            deployments
                .create(&PostParams::default(), &dep)
                .await
                .unwrap();
        }
        // The drill below must find its target Available, or it would be Skipped.
        for d in ["pay", "web"] {
            ctx.wait_available(d, 1).await;
        }
        let rtt = format!(
            r#"apiVersion: maturity.sre.dev/v1alpha1
kind: ResponseTimeTarget
metadata: {{name: pay-availability, namespace: {ns}}}
spec:
  service: pay
  requestClass: all
  objective: 99.9
  window: 1h
  indicator:
    ratio:
      good: 'http_requests_total{{namespace="{ns}",service="pay",code!~"5.."}}'
      total: 'http_requests_total{{namespace="{ns}",service="pay"}}'
  alerting: {{burnRateAlerts: true, runbookURL: "https://wiki.example/pay"}}
"#
        );
        let obj: maturity_operator::api::ResponseTimeTarget = serde_saphyr::from_str(&rtt).unwrap();
        Api::namespaced(ctx.client.clone(), &ns)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap();
        if prometheus_url.is_none() {
            load_rules(&ctx.env, &ns, &rtt).await;
        }
        // A canary policy over the team's Deployments (no rollout analysed yet) and an
        // unannounced pod-kill drill run once now (its history).
        let cpol: maturity_operator::api::CanaryPolicy = serde_json::from_value(json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "CanaryPolicy",
            "metadata": {"name": "payments"},
            "spec": {"selector": {"matchLabels": {"team": "payments"}},
                     "steps": [{"weight": 50, "analyze": "1m"}],
                     "analysis": {"interval": "30s", "metrics": [{"name": "up", "query": "vector(1)", "min": 1}]}}
        }))
        .unwrap();
        Api::namespaced(ctx.client.clone(), &ns)
            .create(&PostParams::default(), &cpol)
            .await
            .unwrap();
        let drill: maturity_operator::api::DrillSchedule = serde_json::from_value(json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "DrillSchedule",
            "metadata": {"name": "pay-podkill", "annotations": {"maturity.sre.dev/run-now": "1"}},
            "spec": {"schedule": "0 10 * * 1-5", "timeZone": "Asia/Shanghai", "jitter": "4h", "announce": false,
                     "target": {"name": "pay"}, "action": {"podKill": {"count": 1}},
                     "checkInterval": "1s", "recoveryDeadline": "60s"}
        }))
        .unwrap();
        Api::namespaced(ctx.client.clone(), &ns)
            .create(&PostParams::default(), &drill)
            .await
            .unwrap();
        Self {
            assessments: Api::namespaced(ctx.client.clone(), &ns),
            deployments,
            ctx,
            operator,
            _exporter: exporter,
            _target: target,
        }
    }

    /// The assessment: target level 2, the satisfaction signal, and an attestation for
    /// every level-2 practice the scenario does not measure.
    async fn create_assessment(&self) {
        let attest: Vec<serde_json::Value> = PRACTICES
            .iter()
            .filter(|p| p.level == 2 && !MEASURED_AT_2.contains(&p.id))
            .map(|p| json!({"practice": p.id, "by": "lead@example.com", "evidence": "https://wiki.example/review", "attestedAt": days_ago(10)}))
            .collect();
        let a: MaturityAssessment = serde_json::from_value(json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "MaturityAssessment",
            "metadata": {"name": "payments"},
            "spec": {
                "targetLevel": 2,
                "attestations": attest,
                "signals": {"satisfaction": {"query": format!("satisfaction_score{{namespace=\"{}\"}}", self.ctx.namespace), "min": 4.0}}
            }
        }))
        .unwrap();
        self.assessments
            .create(&PostParams::default(), &a)
            .await
            .unwrap();
    }

    async fn patch_spec(&self, spec: serde_json::Value) {
        self.assessments
            .patch(
                "payments",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .unwrap();
    }

    async fn cleanup(self) {
        let _ = std::fs::remove_file(
            self.ctx
                .env
                .rules_dir
                .join(format!("{}.yml", self.ctx.namespace)),
        );
        let _ = reqwest::Client::new()
            .post(format!("{}/-/reload", self.ctx.env.prometheus_url))
            .send()
            .await;
        support::operator::remove_webhook(&self.ctx.client, &self.ctx.namespace).await;
        self.ctx.cleanup().await;
    }
}

#[tokio::test]
async fn the_scenario_reaches_the_level_the_model_gives_and_each_piece_of_evidence_counts() {
    let s = Scenario::new("mascen", None).await;
    let ns = s.ctx.namespace.clone();
    // `kubectl wait` started before the assessment exists succeeds once the level is reached.
    let kubectl = s.ctx.env.tool("kubectl");
    let kubeconfig = s.ctx.env.kubeconfig.clone();
    let ns_wait = ns.clone();
    let wait = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        Command::new(kubectl)
            .args([
                "wait",
                "--for=condition=TargetLevelMet",
                "maturityassessment/payments",
                "-n",
                &ns_wait,
                "--timeout=90s",
            ])
            .env("KUBECONFIG", kubeconfig)
            .output()
            .expect("run kubectl wait")
    });
    s.create_assessment().await;

    // Everything at level 2 counts (six practices measured, the others attested), nothing
    // at level 3 does in any capability (ORG-3.1 contacts, ...): level 2 in every capability.
    let all2 = by_hand(2, [2, 2, 2, 2, 2]);
    let a = wait_levels(&s.assessments, all2.clone()).await;
    let st = a.status.clone().unwrap();
    for id in MEASURED_AT_2 {
        let p = st
            .capabilities
            .iter()
            .flat_map(|c| &c.practices)
            .find(|p| p.id == *id)
            .unwrap();
        assert_eq!(p.state, PracticeState::Met, "{id}: {:?}", p.detail);
        assert_eq!(
            p.evidence,
            maturity_operator::api::maturity_assessment::EvidenceKind::Measured,
            "{id}"
        );
    }
    // The rest of the evidence is there too, each with its own state. The drill passed,
    // but it ran because run-now asked for it: not an unannounced drill (ORG-5.4). The
    // operator's burn-rate alerts carry the target's runbook, but they are the operator's:
    // the team has one alerting rule of its own, without a runbook, so 0 of 1 (BIZ-3.1).
    let api = s.assessments.clone();
    let st = eventually("drill history and canary coverage measured", Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            let st = api.get("payments").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
            let state = |id: &str| {
                st.capabilities.iter().flat_map(|c| &c.practices).find(|p| p.id == id).map(|p| (p.state, p.detail.clone().unwrap_or_default()))
            };
            let (org54, d54) = state("ORG-5.4").unwrap();
            let (cx43, d43) = state("CX-4.3").unwrap();
            let (biz31, d31) = state("BIZ-3.1").unwrap();
            // The drill passed because the ReplicaSet recreated the killed pod: that is
            // Kubernetes, not a remediation (ORG-5.1), and no canary was rolled back.
            let (org51, d51) = state("ORG-5.1").unwrap();
            if d54.contains("only runs asked for with run-now") && cx43 == PracticeState::NotMet {
                assert_eq!(org51, PracticeState::NotMet, "{d51}");
                assert!(d51.contains("no canary rollout was rolled back by the operator"), "{d51}");
                assert_eq!(org54, PracticeState::NotMet, "{d54}");
                assert!(d43.contains("no rollout was analysed"), "{d43}");
                assert_eq!(biz31, PracticeState::NotMet, "{d31}");
                assert!(d31.starts_with("0 of 1 alerting rules (not the operator's) with a runbook_url"), "{d31}");
                Ok(st)
            } else {
                Err(format!("ORG-5.4 {org54:?} {d54:?}; CX-4.3 {cx43:?} {d43:?}; BIZ-3.1 {biz31:?} {d31:?}"))
            }
        }
    })
    .await;
    assert_eq!(
        levels(&s.assessments.get("payments").await.unwrap()),
        (Some(2), all2.1.clone()),
        "higher-level evidence alone does not lift a capability"
    );
    let next = st.next_level.clone().unwrap();
    assert_eq!(next.level, 3);
    assert!(
        next.missing
            .iter()
            .any(|m| m.practice == "ORG-3.1" && m.why.contains("contact")),
        "{next:?}"
    );
    let out = wait.join().unwrap();
    assert!(
        out.status.success(),
        "kubectl wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The same figures as metrics.
    let text = reqwest::get(&s.operator.metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        format!("maturity_level{{assessment=\"payments\",namespace=\"{ns}\"}} 2"),
        format!(
            "maturity_capability_level{{assessment=\"payments\",capability=\"ORG\",namespace=\"{ns}\"}} 2"
        ),
    ] {
        assert!(text.contains(&want), "{want} not in the operator's metrics");
    }
    assert!(
        text.contains("maturity_practices{"),
        "practice state counts exported"
    );

    // The CI gate.
    let (code, text) = run_check(&s.ctx.env, &ns, "payments", &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("level 2"), "{text}");
    assert_eq!(
        run_check(&s.ctx.env, &ns, "payments", &["--min-level", "3"]).0,
        1
    );
    assert_eq!(run_check(&s.ctx.env, &ns, "nope", &[]).0, 3);

    // Reports: enabling the weekly one produces it at once; report-now produces it again.
    s.patch_spec(json!({"reports": {"weekly": true}})).await;
    let api = s.assessments.clone();
    let first = eventually("weekly report", Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let a = api.get("payments").await.map_err(|e| e.to_string())?;
            a.status
                .and_then(|s| s.reports)
                .and_then(|r| r.last_weekly)
                .ok_or_else(|| "no weekly report yet".to_string())
        }
    })
    .await;
    let out = Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
        .args(["report", "payments", "-n", &ns])
        .env("KUBECONFIG", &s.ctx.env.kubeconfig)
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "Weekly operations report",
        "Level **2** (Managed)",
        "| pay-availability |",
        "Satisfaction: 4.60",
        "To reach level 3:",
        // The period, not a snapshot: the first report has no history before its period,
        // and the level went from nothing to 2 within it.
        "Level at the start not recorded, at the end 2, lowest",
    ] {
        assert!(md.contains(want), "{want} missing from\n{md}");
    }
    let json_out = Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
        .args(["report", "payments", "-n", &ns, "-o", "json"])
        .env("KUBECONFIG", &s.ctx.env.kubeconfig)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(report["level"], 2);
    assert_eq!(report["period"], "weekly");
    // The same report as YAML.
    let yaml_out = Command::new(env!("CARGO_BIN_EXE_maturity-operator"))
        .args(["report", "payments", "-n", &ns, "-o", "yaml"])
        .env("KUBECONFIG", &s.ctx.env.kubeconfig)
        .output()
        .unwrap();
    let as_yaml: serde_json::Value =
        serde_saphyr::from_slice(&yaml_out.stdout).expect("report -o yaml is YAML");
    assert_eq!(as_yaml, report);
    // The reported figures are the status's.
    let a = s.assessments.get("payments").await.unwrap();
    let caps: Vec<(String, i32)> = a
        .status
        .unwrap()
        .capabilities
        .iter()
        .map(|c| (c.id.clone(), c.level))
        .collect();
    assert_eq!(report["capabilities"], serde_json::to_value(&caps).unwrap());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.assessments
        .patch(
            "payments",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"maturity.sre.dev/report-now": "1"}}}),
            ),
        )
        .await
        .unwrap();
    let api = s.assessments.clone();
    eventually("report-now", Duration::from_secs(30), || {
        let (api, first) = (api.clone(), first.clone());
        async move {
            let r = api
                .get("payments")
                .await
                .map_err(|e| e.to_string())?
                .status
                .and_then(|s| s.reports)
                .unwrap_or_default();
            if r.last_report_now.as_deref() == Some("1") && r.last_weekly.as_ref() != Some(&first) {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        }
    })
    .await;
    // Produced on time, but delivered to nobody (no spec.reports.webhook): CX-3.4 does not
    // count it (tests/evidence.rs delivers one).
    let (_, detail) = wait_practice(&s.assessments, "CX-3.4", PracticeState::NotMet).await;
    assert!(detail.contains("delivered to nobody"), "{detail}");

    // Take away one measured piece: an owner label. Only ORG drops, and nextLevel names it.
    s.deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": null}}})),
        )
        .await
        .unwrap();
    // ORG-2.1 is a level-2 practice: ORG falls to 1, and with it the overall level.
    let a = wait_levels(&s.assessments, by_hand(1, [1, 2, 2, 2, 2])).await;
    let next = a.status.unwrap().next_level.unwrap();
    assert_eq!(next.level, 2);
    assert_eq!(
        next.missing
            .iter()
            .map(|m| m.practice.as_str())
            .collect::<Vec<_>>(),
        ["ORG-2.1"]
    );
    assert!(
        next.missing[0]
            .why
            .contains("1 of 2 workloads with an owner label"),
        "{:?}",
        next.missing[0]
    );
    let (code, text) = run_check(&s.ctx.env, &ns, "payments", &[]);
    assert_eq!(code, 1, "{text}");
    s.deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "payments"}}})),
        )
        .await
        .unwrap();
    wait_levels(&s.assessments, all2.clone()).await;

    // An attestation past its review period expires and lowers exactly its capability.
    let a = s.assessments.get("payments").await.unwrap();
    let mut attest = serde_json::to_value(&a.spec.attestations).unwrap();
    for x in attest.as_array_mut().unwrap() {
        if x["practice"] == "BIZ-2.1" {
            x["attestedAt"] = json!(days_ago(100));
        }
    }
    s.patch_spec(json!({"attestations": attest.clone()})).await;
    // Attested 100 days ago, reviewed every 90 days (the default): BIZ falls to 1.
    let without_biz = by_hand(1, [2, 2, 1, 2, 2]);
    let a = wait_levels(&s.assessments, without_biz.clone()).await;
    let biz = a
        .status
        .unwrap()
        .capabilities
        .into_iter()
        .find(|c| c.id == "BIZ")
        .unwrap();
    let p = biz.practices.iter().find(|p| p.id == "BIZ-2.1").unwrap();
    assert_eq!(p.state, PracticeState::Expired, "{:?}", p.detail);

    // An exemption instead: requested by the test's user, it does not count until another
    // user, who may approve exemptions, approves it; then it holds until its date.
    let kept: Vec<serde_json::Value> = attest
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["practice"] != "BIZ-2.1")
        .cloned()
        .collect();
    let approver = s.ctx.service_account("approver", approver_rules());
    s.patch_spec(json!({"attestations": kept, "exemptions": [{"practice": "BIZ-2.1", "reason": "no training budget this quarter", "until": days_ago(-30)}]})).await;
    let (state, detail) = wait_practice(&s.assessments, "BIZ-2.1", PracticeState::Unverified).await;
    assert!(detail.contains("is not approved yet"), "{state:?} {detail}");
    assert_eq!(
        levels(&s.assessments.get("payments").await.unwrap()),
        (Some(1), without_biz.1.clone())
    );
    approve(&s.ctx, &approver);
    wait_levels(&s.assessments, all2.clone()).await;
    let (_, detail) = wait_practice(&s.assessments, "BIZ-2.1", PracticeState::Exempt).await;
    assert!(
        detail.contains(&format!("approved by {approver}")),
        "{detail}"
    );
    // Moved to yesterday: a new request, approved again, lapsed.
    s.patch_spec(json!({"exemptions": [{"practice": "BIZ-2.1", "reason": "no training budget this quarter", "until": days_ago(1)}]})).await;
    wait_practice(&s.assessments, "BIZ-2.1", PracticeState::Unverified).await;
    approve(&s.ctx, &approver);
    let (_, detail) = wait_practice(&s.assessments, "BIZ-2.1", PracticeState::Expired).await;
    assert_eq!(detail, format!("the exemption lapsed on {}", days_ago(1)));
    wait_levels(&s.assessments, without_biz).await;
    s.cleanup().await;
}

/// What an approver holds: the chart's exemption-approver ClusterRole, as a Role.
fn approver_rules() -> serde_json::Value {
    json!([
        {"apiGroups": ["maturity.sre.dev"], "resources": ["maturityassessments/exemptions"], "verbs": ["approve"]},
        {"apiGroups": ["maturity.sre.dev"], "resources": ["maturityassessments"], "verbs": ["get", "patch"]}
    ])
}

/// `kubectl patch` as `user`: approves the first exemption of `payments`.
fn approve(ctx: &TestContext, user: &str) {
    let out = ctx.kubectl_as(
        user,
        &[
            "patch",
            "maturityassessment",
            "payments",
            "--type=json",
            "-p",
            r#"[{"op": "add", "path": "/spec/exemptions/0/approved", "value": true}]"#,
        ],
        "",
    );
    assert!(
        out.status.success(),
        "approve as {user}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until practice `id` of `payments` is in `state`; its (state, detail).
async fn wait_practice(
    api: &Api<MaturityAssessment>,
    id: &str,
    state: PracticeState,
) -> (PracticeState, String) {
    eventually(&format!("{id} {state:?}"), Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let a = api.get("payments").await.map_err(|e| e.to_string())?;
            let p = a
                .status
                .unwrap_or_default()
                .capabilities
                .into_iter()
                .flat_map(|c| c.practices)
                .find(|p| p.id == id)
                .ok_or("no such practice in status")?;
            let got = (p.state, p.detail.unwrap_or_default());
            if got.0 == state {
                Ok(got)
            } else {
                Err(format!("{got:?}"))
            }
        }
    })
    .await
}

#[tokio::test]
async fn an_unreachable_prometheus_makes_its_practices_unknown_and_the_level_does_not_rise() {
    let dead = format!("http://127.0.0.1:{}", support::prom::free_port());
    let s = Scenario::new("maprom", Some(&dead)).await;
    s.create_assessment().await;
    let api = s.assessments.clone();
    let a = eventually("Ready False", Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            let a = api.get("payments").await.map_err(|e| e.to_string())?;
            let ready = a.status.as_ref().and_then(|s| {
                s.common
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Ready")
                    .cloned()
            });
            match ready {
                Some(r) if r.status == "False" => Ok(a),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    let st = a.status.clone().unwrap();
    let ready = st
        .common
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "PrometheusUnreachable");
    assert!(ready.message.contains("unreachable"), "{}", ready.message);
    let all: Vec<&PracticeStatus> = st.capabilities.iter().flat_map(|c| &c.practices).collect();
    for id in ["CX-2.3", "CX-2.4", "COMM-2.2", "RESP-2.3"] {
        let p = all.iter().find(|p| p.id == id).unwrap();
        assert_eq!(p.state, PracticeState::Unknown, "{id}: {:?}", p.detail);
    }
    // Unknown never counts: CX (CX-2.3, CX-2.4), COMM (COMM-2.2, COMM-2.4) and RESP
    // (RESP-2.3) lose a level-2 practice each and are at 1; ORG (owner labels, from the
    // API server) and BIZ (attested) stay at 2; the overall level is 1.
    let (want, caps) = by_hand(1, [2, 1, 2, 1, 1]);
    assert_eq!(levels(&a), (Some(want as i32), caps));
    let (code, text) = run_check(
        &s.ctx.env,
        &s.ctx.namespace,
        "payments",
        &["--min-level", "1"],
    );
    assert_eq!(code, 3, "{text}");
    assert!(PRACTICES.iter().any(|p| p.evidence == Evidence::Measured));
    s.cleanup().await;
}

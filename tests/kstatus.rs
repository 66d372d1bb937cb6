//! What Flux's health checks see: the real kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status,
//! `Compute`, the library kustomize-controller's `healthChecks` use), built into the tool
//! `kstatus` from hack/kstatus by hack/build-tools.sh, run on the objects as the API server
//! serves them while the operator evaluates them.
//!
//! kstatus fails fast only on `Stalled=True` (Failed); `Ready=False` alone is InProgress,
//! which Flux waits out until its timeout. So an object that cannot heal without a change of
//! its spec must be Failed as soon as the operator has written its status, while a valid one
//! is Current (InProgress at most until it is evaluated). For a ResponseTimeTarget (a
//! selector that does not parse, let through by CEL: InvalidSpec) and a DrillSchedule (a
//! time zone of the right shape that does not exist: InvalidSpec), then the DrillSchedule
//! fixed: Current again.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube::Resource;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use maturity_operator::api::{DrillSchedule, ResponseTimeTarget};
use serde::Deserialize;
use serde_json::json;
use support::cluster::{ClusterEnv, TestContext, repo_dir};
use support::eventually;
use support::operator::Operator;

/// How soon after the operator's first status write kstatus must say Failed: the same
/// status write sets Ready=False and Stalled=True, so at once; a few seconds of slack for
/// the reads.
const FAIL_FAST: Duration = Duration::from_secs(5);

/// What hack/kstatus prints: kstatus's `Result`.
#[derive(Deserialize, Debug, Clone)]
struct Kstatus {
    status: String,
    message: String,
    conditions: Vec<KstatusCondition>,
}

#[derive(Deserialize, Debug, Clone)]
struct KstatusCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    #[serde(default)]
    reason: String,
}

/// The pinned kstatus tool (`hack/build-tools.sh kstatus`, linked into the tools folder
/// with the others). A cluster started before the tool existed has none in its folder:
/// built (cached per version) into that same folder then.
fn kstatus_tool(env: &ClusterEnv) -> PathBuf {
    let tool = env.tool("kstatus");
    if !tool.exists() {
        let cache = env
            .tools_bin
            .parent()
            .expect("the tools folder is in the cache folder");
        support::run_ok(
            Command::new(repo_dir().join("hack/build-tools.sh"))
                .arg("kstatus")
                .env("MATURITY_CACHE_DIR", cache),
            "hack/build-tools.sh kstatus",
        );
    }
    assert!(
        tool.exists(),
        "{} missing after hack/build-tools.sh kstatus",
        tool.display()
    );
    tool
}

/// kstatus's result for `obj`, given as the API server served it (JSON).
fn kstatus(tool: &Path, obj: &DynamicObject) -> Kstatus {
    let json = serde_json::to_vec(obj).expect("the object as JSON");
    let mut child = Command::new(tool)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()));
    child
        .stdin
        .take()
        .expect("kstatus's stdin")
        .write_all(&json)
        .expect("write kstatus's stdin");
    let out = child.wait_with_output().expect("wait for kstatus");
    assert!(
        out.status.success(),
        "kstatus failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kstatus printed {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The object's condition `type_`: (status, reason, message, observedGeneration).
fn condition(obj: &DynamicObject, type_: &str) -> Option<(String, String, String, Option<i64>)> {
    obj.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (
                s("status"),
                s("reason"),
                s("message"),
                c["observedGeneration"].as_i64(),
            )
        })
}

fn observed_generation(obj: &DynamicObject) -> Option<i64> {
    obj.data["status"]["observedGeneration"].as_i64()
}

/// The objects of kind `K` in the test's namespace, as JSON (what Flux reads).
fn dynamic<K: Resource<DynamicType = ()>>(ctx: &TestContext) -> Api<DynamicObject> {
    Api::namespaced_with(
        ctx.client.clone(),
        &ctx.namespace,
        &ApiResource::erase::<K>(&()),
    )
}

/// Waits for the operator's first status write on `name` (a Ready condition) and returns
/// the object then and when it was seen.
async fn first_status(api: &Api<DynamicObject>, name: &str) -> (DynamicObject, Instant) {
    let obj = eventually(
        &format!("{name}: the operator's first status write"),
        Duration::from_secs(60),
        || {
            let api = api.clone();
            let name = name.to_string();
            async move {
                let obj = api.get(&name).await.map_err(|e| e.to_string())?;
                match condition(&obj, "Ready") {
                    Some(_) => Ok(obj),
                    None => Err(format!("status {}", obj.data["status"])),
                }
            }
        },
    )
    .await;
    (obj, Instant::now())
}

/// `name` stalls: kstatus says Failed, with the Stalled condition's reason (`reason`, that
/// of Ready=False) and the operator's message, within [`FAIL_FAST`] of the first status
/// write; never Current on the way. Returns the last result.
async fn fails_fast(
    tool: &Path,
    api: &Api<DynamicObject>,
    name: &str,
    reason: &str,
    says: &str,
) -> Kstatus {
    let (first, seen) = first_status(api, name).await;
    let (ready, ready_reason, ready_message, _) = condition(&first, "Ready").expect("Ready");
    assert_eq!(
        (ready.as_str(), ready_reason.as_str()),
        ("False", reason),
        "{name}: Ready {ready_message}"
    );
    assert!(
        ready_message.contains(says),
        "{name}: Ready's message {ready_message:?} does not say {says:?}"
    );
    let mut seen_results = Vec::new();
    loop {
        let obj = api.get(name).await.expect("get the object");
        let got = kstatus(tool, &obj);
        assert_ne!(
            got.status, "Current",
            "{name}: kstatus passes an object whose spec is invalid: {got:?}; object status {}",
            obj.data["status"]
        );
        if got.status == "Failed" {
            let stalled = condition(&obj, "Stalled").expect("Failed comes from Stalled=True");
            assert_eq!(stalled.0, "True");
            assert_eq!(
                stalled.3, obj.metadata.generation,
                "{name}: Stalled carries observedGeneration"
            );
            assert_eq!(observed_generation(&obj), obj.metadata.generation);
            // kstatus's message is the Stalled condition's message (the reason is in its
            // Stalled condition): the operator's own sentence of Ready=False.
            assert_eq!(got.message, ready_message, "{name}: {got:?}");
            assert!(got.message.contains(says), "{name}: {got:?}");
            let c = got
                .conditions
                .iter()
                .find(|c| c.type_ == "Stalled")
                .unwrap_or_else(|| panic!("{name}: kstatus names no Stalled condition: {got:?}"));
            assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", reason));
            return got;
        }
        seen_results.push(got);
        assert!(
            seen.elapsed() < FAIL_FAST,
            "{name}: kstatus is not Failed {FAIL_FAST:?} after the operator's first status write \
             (Ready=False {reason}): without Stalled=True Flux waits for its timeout. \
             kstatus said {seen_results:?}; status {}",
            obj.data["status"]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `name` is valid: kstatus is Current once the operator has written its status
/// (InProgress or Current before that), never Failed.
async fn becomes_current(tool: &Path, api: &Api<DynamicObject>, name: &str) -> Kstatus {
    let tool = tool.to_path_buf();
    eventually(
        &format!("{name}: kstatus Current after the first status write"),
        Duration::from_secs(60),
        || {
            let api = api.clone();
            let name = name.to_string();
            let tool = tool.clone();
            async move {
                let obj = api.get(&name).await.map_err(|e| e.to_string())?;
                let got = kstatus(&tool, &obj);
                assert_ne!(got.status, "Failed", "{name}: {got:?}");
                assert!(
                    ["InProgress", "Current"].contains(&got.status.as_str()),
                    "{name}: {got:?}"
                );
                match condition(&obj, "Ready") {
                    Some((ready, ..))
                        if got.status == "Current"
                            && ready == "True"
                            && observed_generation(&obj) == obj.metadata.generation =>
                    {
                        assert!(condition(&obj, "Stalled").is_none_or(|c| c.0 != "True"));
                        Ok(got)
                    }
                    other => Err(format!("kstatus {got:?}, Ready {other:?}")),
                }
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_response_time_target_that_cannot_be_evaluated_fails_fast_in_kstatus() {
    let ctx = TestContext::new("kstatus-rtt").await;
    let tool = kstatus_tool(&ctx.env);
    let _operator = Operator::start(&ctx.env, &ctx.namespace, &ctx.env.prometheus_url, "2s");
    let typed: Api<ResponseTimeTarget> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    // The CRD checks only that a selector is in braces: this one (no comma between two
    // matchers) is no PromQL, which the operator finds when it plans the queries.
    for (name, selector) in [
        ("unparsable", r#"{service="checkout" route="/pay"}"#),
        ("valid", r#"{service="checkout"}"#),
    ] {
        let t: ResponseTimeTarget = serde_json::from_value(json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "ResponseTimeTarget",
            "metadata": {"name": name},
            "spec": {
                "service": "checkout", "requestClass": "interactive", "objective": 99.5, "window": "28d",
                "indicator": {"latency": {"histogram": "kstatus_test_duration_seconds", "selector": selector, "threshold": "300ms"}}
            }
        }))
        .unwrap();
        typed
            .create(&PostParams::default(), &t)
            .await
            .unwrap_or_else(|e| panic!("the CRD takes {name}: {e}"));
    }
    let api = dynamic::<ResponseTimeTarget>(&ctx);
    let failed = fails_fast(
        &tool,
        &api,
        "unparsable",
        "InvalidSpec",
        "kstatus_test_duration_seconds{service=",
    )
    .await;
    eprintln!("unparsable: {failed:?}");
    // No series of the histogram on the shared Prometheus: evaluated, NoData, Ready=True.
    let current = becomes_current(&tool, &api, "valid").await;
    assert_eq!(current.message, "Resource is Ready");
    ctx.cleanup().await;
}

#[tokio::test]
async fn a_drill_schedule_in_an_unknown_time_zone_fails_fast_in_kstatus_and_recovers_when_fixed() {
    let ctx = TestContext::new("kstatus-drill").await;
    let tool = kstatus_tool(&ctx.env);
    let _operator = Operator::start(&ctx.env, &ctx.namespace, &ctx.env.prometheus_url, "2s");
    let typed: Api<DrillSchedule> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    // The CRD checks the shape of a time zone name, not that it exists.
    for (name, zone) in [("mars", "Mars/Olympus_Mons"), ("berlin", "Europe/Berlin")] {
        let d: DrillSchedule = serde_json::from_value(json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "DrillSchedule",
            "metadata": {"name": name},
            "spec": {
                "schedule": "0 0 1 1 *", "timeZone": zone,
                "target": {"name": "web"},
                "action": {"podKill": {"count": 1}},
                "recoveryDeadline": "60s",
            }
        }))
        .unwrap();
        typed
            .create(&PostParams::default(), &d)
            .await
            .unwrap_or_else(|e| panic!("the CRD takes {name}: {e}"));
    }
    let api = dynamic::<DrillSchedule>(&ctx);
    let failed = fails_fast(&tool, &api, "mars", "InvalidSpec", "Mars/Olympus_Mons").await;
    eprintln!("mars: {failed:?}");
    let current = becomes_current(&tool, &api, "berlin").await;
    assert_eq!(current.message, "Resource is Ready");

    // The spec fixed: a new generation, and once the operator has evaluated it, Stalled is
    // gone and kstatus says Current.
    typed
        .patch(
            "mars",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"timeZone": "Asia/Shanghai"}})),
        )
        .await
        .expect("fix the time zone");
    let current = becomes_current(&tool, &api, "mars").await;
    assert_eq!(current.message, "Resource is Ready");
    ctx.cleanup().await;
}

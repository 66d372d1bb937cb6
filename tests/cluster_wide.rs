//! One operator for every namespace, as in a shared cluster (the other tests confine theirs
//! to the test's namespace): an object that makes its reconcile panic in one namespace, and
//! one whose status would change on every pass, do not keep an assessment in another
//! namespace from being evaluated. Only the assessments controller runs (it writes nothing
//! but assessments' status and reports), and it is this binary's only test, so it acts on
//! no other test's objects while they run.

mod support;

use std::time::Duration;

use kube::api::Api;
use maturity_operator::api::MaturityAssessment;
use support::cluster::{TestContext, apply_assessment, assessment_level};
use support::eventually;
use support::operator::Operator;

#[tokio::test]
async fn a_panicking_or_churning_object_in_one_namespace_does_not_stop_another_namespace() {
    let bad = TestContext::new("widebad").await;
    // The operator evaluates every assessment of the cluster, two at a time: those that
    // failed tests of earlier runs left behind (their namespaces stay for inspection) come
    // first, and a thousand of them take minutes.
    let all: Api<MaturityAssessment> = Api::all(bad.client.clone());
    let left = all.list(&Default::default()).await.unwrap().items.len();
    if left > 50 {
        eprintln!(
            "skipped: {left} assessments of earlier runs are on this cluster and would be evaluated first; `make cluster-down` (or delete their t-* namespaces) and run again"
        );
        bad.cleanup().await;
        return;
    }
    let good = TestContext::new("widegood").await;
    // Names no other namespace has: the failpoints act on objects of that name anywhere.
    let boom = format!("boom-{}", bad.namespace);
    let churn = format!("churn-{}", bad.namespace);
    let operator = Operator::start_cluster_wide(
        &bad.env,
        &[
            "--controllers=assessments".to_string(),
            "--assessment-interval=1s".to_string(),
        ],
        &[
            ("MATURITY_FAILPOINT_PANIC", boom.as_str()),
            ("MATURITY_FAILPOINT_CHURN", churn.as_str()),
        ],
    );
    let bad_api: Api<MaturityAssessment> = Api::namespaced(bad.client.clone(), &bad.namespace);
    let good_api: Api<MaturityAssessment> = Api::namespaced(good.client.clone(), &good.namespace);
    apply_assessment(&bad_api, &boom).await;
    apply_assessment(&bad_api, &churn).await;
    eventually(
        "the panicking one's InternalError",
        Duration::from_secs(60),
        || async {
            let a = bad_api.get(&boom).await.map_err(|e| e.to_string())?;
            let ready = a
                .status
                .and_then(|s| s.common.conditions.into_iter().find(|c| c.type_ == "Ready"))
                .ok_or("no Ready yet")?;
            if ready.status == "False" && ready.reason == "InternalError" {
                Ok(())
            } else {
                Err(format!("{ready:?}"))
            }
        },
    )
    .await;
    eventually(
        "the churning one deferred",
        Duration::from_secs(60),
        || async {
            match operator
                .metric(
                    r#"maturity_operator_status_writes_deferred_total{kind="MaturityAssessment"}"#,
                )
                .await
            {
                Some(n) if n > 0.0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    // While both exist, an assessment in another namespace is evaluated.
    apply_assessment(&good_api, "fine").await;
    let got = eventually(
        "the other namespace's assessment evaluated",
        Duration::from_secs(60),
        || assessment_level(&good_api, "fine"),
    )
    .await;
    assert!((0..=5).contains(&got), "{got}");
    assert!(
        bad_api.get(&boom).await.is_ok() && bad_api.get(&churn).await.is_ok(),
        "both still exist"
    );
    let (code, _) = operator.get("/readyz", None).await.unwrap();
    assert_eq!(code, 200);
    drop(operator);
    bad.cleanup().await;
    good.cleanup().await;
}

//! Fixtures for unit tests, built fluently: one builder per kind (one section each), for
//! the unit tests of the cores' `decide` functions. Plain values only: nothing here talks
//! to a cluster. Only compiled for tests.

use jiff::Timestamp;
use serde_json::{Value, json};

/// A timestamp `s` seconds after a fixed instant (2027-01-15T08:00:00Z).
pub fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).expect("in range")
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

// ----- CanaryPolicy, Deployments and ReplicaSets -----

/// A CanaryPolicy: `CanaryBuilder::new("p").selects("app", "web").step(25, "10s").build()`.
pub struct CanaryBuilder(Value);

impl CanaryBuilder {
    /// In namespace `shop`, generation 1, created at [`at`]`(0)`, analysis every 2s with
    /// one metric, no steps and no selector yet.
    pub fn new(name: &str) -> Self {
        Self(json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "CanaryPolicy",
            "metadata": {"name": name, "namespace": "shop", "generation": 1,
                         "uid": format!("uid-{name}"), "creationTimestamp": at(0).to_string()},
            "spec": {"selector": {}, "steps": [],
                     "analysis": {"interval": "2s", "metrics": [{"name": "errors", "query": "q", "max": 1.0}]}}
        }))
    }
    pub fn selects(mut self, key: &str, value: &str) -> Self {
        merge(
            &mut self.0,
            json!({"spec": {"selector": {"matchLabels": {key: value}}}}),
        );
        self
    }
    pub fn step(mut self, weight: i32, analyze: &str) -> Self {
        if let Some(steps) = self.0["spec"]["steps"].as_array_mut() {
            steps.push(json!({"weight": weight, "analyze": analyze}));
        }
        self
    }
    pub fn interval(mut self, interval: &str) -> Self {
        self.0["spec"]["analysis"]["interval"] = json!(interval);
        self
    }
    pub fn pause_on_failure(mut self) -> Self {
        self.0["spec"]["rollback"] = json!("Pause");
        self
    }
    pub fn history_limit(mut self, n: i32) -> Self {
        self.0["spec"]["historyLimit"] = json!(n);
        self
    }
    pub fn created(mut self, t: Timestamp) -> Self {
        self.0["metadata"]["creationTimestamp"] = json!(t.to_string());
        self
    }
    pub fn generation(mut self, g: i64) -> Self {
        self.0["metadata"]["generation"] = json!(g);
        self
    }
    pub fn status(mut self, s: &crate::api::canary_policy::CanaryPolicyStatus) -> Self {
        self.0["status"] = serde_json::to_value(s).expect("serializable");
        self
    }
    pub fn build(self) -> crate::api::CanaryPolicy {
        serde_json::from_value(self.0).expect("a valid CanaryPolicy")
    }
}

/// A Deployment of namespace `shop` whose pod template runs `image`, fully rolled out.
pub struct DeploymentBuilder(Value);

impl DeploymentBuilder {
    pub fn new(name: &str, image: &str) -> Self {
        Self(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop", "generation": 1, "uid": format!("uid-{name}"),
                         "labels": {"app": name}, "annotations": {"deployment.kubernetes.io/revision": "1"}},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": name}},
                     "template": pod_template(name, image)},
            "status": {"observedGeneration": 1, "replicas": 4, "updatedReplicas": 4, "availableReplicas": 4}
        }))
    }
    pub fn label(mut self, key: &str, value: &str) -> Self {
        merge(&mut self.0, json!({"metadata": {"labels": {key: value}}}));
        self
    }
    /// Paused by the admission webhook for policy `policy`.
    pub fn held_for(mut self, policy: &str) -> Self {
        merge(
            &mut self.0,
            json!({"metadata": {"annotations": {crate::api::names::HOLD_ANNOTATION: policy}},
                   "spec": {"paused": true}}),
        );
        self
    }
    pub fn unpaused(mut self) -> Self {
        self.0["spec"]["paused"] = json!(false);
        self
    }
    pub fn build(self) -> k8s_openapi::api::apps::v1::Deployment {
        serde_json::from_value(self.0).expect("a valid Deployment")
    }
}

fn pod_template(app: &str, image: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "c", "image": image}]}})
}

/// The ReplicaSet of `deployment`'s revision `revision` running `image`.
pub fn replica_set(
    deployment: &k8s_openapi::api::apps::v1::Deployment,
    hash: &str,
    image: &str,
    revision: &str,
    replicas: i32,
    ready: i32,
) -> k8s_openapi::api::apps::v1::ReplicaSet {
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let mut template = pod_template(&name, image);
    template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("{name}-{hash}"), "namespace": "shop",
                     "labels": {"app": name, "pod-template-hash": hash},
                     "annotations": {"deployment.kubernetes.io/revision": revision},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                          "uid": deployment.metadata.uid.clone().unwrap_or_default(),
                                          "controller": true}]},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name, "pod-template-hash": hash}},
                 "template": template},
        "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready}
    }))
    .expect("a valid ReplicaSet")
}

// ----- ResponseTimeTarget -----

/// A ResponseTimeTarget of namespace `shop`: objective 99 % over 28 days, a ratio indicator.
pub struct TargetBuilder(Value);

impl TargetBuilder {
    pub fn new(name: &str) -> Self {
        Self(json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "ResponseTimeTarget",
            "metadata": {"name": name, "namespace": "shop", "generation": 1, "uid": format!("uid-{name}")},
            "spec": {"service": "checkout", "requestClass": "api", "objective": 99.0, "window": "28d",
                     "indicator": {"ratio": {"good": "sum(ok)", "total": "sum(all)"}}}
        }))
    }
    pub fn objective(mut self, percent: f64) -> Self {
        self.0["spec"]["objective"] = json!(percent);
        self
    }
    pub fn min_request_rate(mut self, rate: f64) -> Self {
        self.0["spec"]["minRequestRate"] = json!(rate);
        self
    }
    pub fn generation(mut self, g: i64) -> Self {
        self.0["metadata"]["generation"] = json!(g);
        self
    }
    pub fn status(
        mut self,
        s: &crate::api::response_time_target::ResponseTimeTargetStatus,
    ) -> Self {
        self.0["status"] = serde_json::to_value(s).expect("serializable");
        self
    }
    pub fn build(self) -> crate::api::ResponseTimeTarget {
        serde_json::from_value(self.0).expect("a valid ResponseTimeTarget")
    }
}

/// A timestamp from RFC 3339 text (panics on a typo: tests only).
pub fn ts(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} is not a timestamp: {e}"))
}

// ---------------------------------------------------------------------------------------
// MaturityAssessment
// ---------------------------------------------------------------------------------------

pub use assessment::AssessmentBuilder;

pub mod assessment {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::ts;
    use crate::api::MaturityAssessment;
    use crate::api::common::DateString;
    use crate::api::maturity_assessment::{
        Attestation, Exemption, MaturityAssessmentSpec, MaturityAssessmentStatus, ModelName,
        ReportTimes, Reports, Scope,
    };
    use crate::api::names::REPORT_NOW_ANNOTATION;
    use crate::model::PRACTICES;

    /// Until when [`AssessmentBuilder::exempt`] exempts.
    pub const FAR_FUTURE: &str = "2099-12-31";

    /// `AssessmentBuilder::new("a").target_level(3).weekly().report_now("t1").build()`:
    /// namespace `shop`, generation 1, nothing declared, no status unless given.
    pub struct AssessmentBuilder {
        a: MaturityAssessment,
    }

    impl AssessmentBuilder {
        pub fn new(name: &str) -> Self {
            Self {
                a: MaturityAssessment {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        namespace: Some("shop".into()),
                        uid: Some(format!("uid-{name}")),
                        generation: Some(1),
                        ..Default::default()
                    },
                    spec: MaturityAssessmentSpec {
                        model: ModelName::CustomerService,
                        scope: Scope::default(),
                        target_level: None,
                        attestations: Vec::new(),
                        exemptions: Vec::new(),
                        signals: None,
                        reports: None,
                    },
                    status: None,
                },
            }
        }

        pub fn namespace(mut self, ns: &str) -> Self {
            self.a.metadata.namespace = Some(ns.into());
            self
        }

        pub fn generation(mut self, g: i64) -> Self {
            self.a.metadata.generation = Some(g);
            self
        }

        pub fn target_level(mut self, level: i32) -> Self {
            self.a.spec.target_level = Some(level);
            self
        }

        fn reports(&mut self) -> &mut Reports {
            self.a.spec.reports.get_or_insert_with(Reports::default)
        }

        /// Weekly reports enabled.
        pub fn weekly(mut self) -> Self {
            self.reports().weekly = true;
            self
        }

        /// Monthly reports enabled.
        pub fn monthly(mut self) -> Self {
            self.reports().monthly = true;
            self
        }

        /// The report-now annotation set to `token`.
        pub fn report_now(mut self, token: &str) -> Self {
            self.a
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(REPORT_NOW_ANNOTATION.into(), token.into());
            self
        }

        /// `practice` exempt until [`FAR_FUTURE`].
        pub fn exempt(mut self, practice: &str) -> Self {
            self.a.spec.exemptions.push(Exemption {
                practice: practice.into(),
                reason: "does not apply here".into(),
                until: DateString::new(FAR_FUTURE),
            });
            self
        }

        /// Every practice of the model at level `level` or below exempt, except `but`.
        pub fn exempt_up_to(mut self, level: u8, but: &[&str]) -> Self {
            for p in PRACTICES
                .iter()
                .filter(|p| p.level <= level && !but.contains(&p.id))
            {
                self = self.exempt(p.id);
            }
            self
        }

        /// `practice` attested on `date` (default review period).
        pub fn attest(mut self, practice: &str, date: &str) -> Self {
            self.a.spec.attestations.push(Attestation {
                practice: practice.into(),
                by: "lead@example.com".into(),
                evidence: "https://wiki/review".into(),
                attested_at: DateString::new(date),
                review_every: None,
            });
            self
        }

        /// The whole status (e.g. the outcome of an earlier pass).
        pub fn status(mut self, s: MaturityAssessmentStatus) -> Self {
            self.a.status = Some(s);
            self
        }

        fn times(&mut self) -> &mut ReportTimes {
            self.a
                .status
                .get_or_insert_with(Default::default)
                .reports
                .get_or_insert_with(Default::default)
        }

        /// The last weekly report was produced at `t` (RFC 3339).
        pub fn last_weekly(mut self, t: &str) -> Self {
            self.times().last_weekly = Some(Time(ts(t)));
            self
        }

        /// The last monthly report was produced at `t` (RFC 3339).
        pub fn last_monthly(mut self, t: &str) -> Self {
            self.times().last_monthly = Some(Time(ts(t)));
            self
        }

        /// The report-now token acted on last.
        pub fn last_report_now(mut self, token: &str) -> Self {
            self.times().last_report_now = Some(token.into());
            self
        }

        pub fn build(self) -> MaturityAssessment {
            self.a
        }
    }
}

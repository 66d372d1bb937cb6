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
    /// The query of the one metric.
    pub fn query(mut self, q: &str) -> Self {
        self.0["spec"]["analysis"]["metrics"][0]["query"] = json!(q);
        self
    }
    /// A person's order (`maturity.sre.dev/canary-control`).
    pub fn order(mut self, value: &str) -> Self {
        self.0["metadata"]["annotations"][crate::api::names::CANARY_CONTROL_ANNOTATION] =
            json!(value);
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
    /// Another object of the name: its uid and when it was made.
    pub fn remade(mut self, uid: &str, created: jiff::Timestamp) -> Self {
        self.0["metadata"]["uid"] = json!(uid);
        self.0["metadata"]["creationTimestamp"] = json!(created.to_string());
        self
    }
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        merge(
            &mut self.0,
            json!({"metadata": {"annotations": {key: value}}}),
        );
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

        /// Reports delivered to `url`.
        pub fn report_webhook(mut self, url: &str) -> Self {
            self.reports().webhook =
                Some(crate::api::maturity_assessment::ReportWebhook { url: url.into() });
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

        /// `practice` exempt until [`FAR_FUTURE`], requested on 2026-11-20 by `lead` and
        /// approved by `approver` (the longest exemption ends 180 days after its request).
        pub fn exempt(mut self, practice: &str) -> Self {
            self.a.spec.exemptions.push(Exemption {
                practice: practice.into(),
                reason: "does not apply here".into(),
                until: DateString::new(FAR_FUTURE),
                approved: Some(true),
                requested_by: Some("lead".into()),
                requested_on: Some(DateString::new("2026-11-20")),
                approved_by: Some("approver".into()),
                approved_on: Some(DateString::new("2026-11-20")),
                proof: None,
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
                by: Some("lead@example.com".into()),
                evidence: "https://wiki/review".into(),
                attested_at: DateString::new(date),
                review_every: None,
                proof: None,
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

// ---------------------------------------------------------------------------------------
// DrillSchedule
// ---------------------------------------------------------------------------------------

pub use drill_schedule::DrillBuilder;

mod drill_schedule {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    use crate::api::DrillSchedule;
    use crate::api::common::{CronString, DurationString, PromQl};
    use crate::api::drill_schedule::{
        ActiveRun, Blackout, Check, DrillAction, DrillScheduleSpec, DrillScheduleStatus,
        DrillTarget, Failover, PodKill, ScaleDown, Window, WorkloadKind,
    };
    use crate::api::names::{RUN_NOW_ANNOTATION, STOP_ANNOTATION, STOP_VALUE};

    /// A DrillSchedule: `DrillBuilder::new("d")` is `d` in namespace `n` (uid `uid-d`,
    /// generation 1), daily at 10:00 UTC, no jitter, killing one pod of `Deployment/web`,
    /// recovery deadline 60 s, no status.
    pub struct DrillBuilder {
        drill: DrillSchedule,
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn check(name: &str, query: &str, min: Option<f64>, max: Option<f64>) -> Check {
        Check {
            name: name.into(),
            query: PromQl::new(query),
            min,
            max,
        }
    }

    impl DrillBuilder {
        pub fn new(name: &str) -> Self {
            let spec = DrillScheduleSpec {
                schedule: CronString::new("0 10 * * *"),
                time_zone: None,
                jitter: None,
                announce: false,
                suspend: false,
                blackouts: Vec::new(),
                starting_deadline: None,
                target: DrillTarget {
                    kind: WorkloadKind::Deployment,
                    name: Some("web".into()),
                    selector: None,
                },
                action: DrillAction {
                    pod_kill: Some(PodKill {
                        count: Some(1),
                        percent: None,
                    }),
                    scale_down: None,
                    failover: None,
                    node_failure: None,
                    zone_failure: None,
                },
                steady_state: Vec::new(),
                abort_when: Vec::new(),
                check_interval: None,
                recovery_deadline: DurationString::new("60s"),
                history_limit: None,
            };
            let mut drill = DrillSchedule::new(name, spec);
            drill.metadata.namespace = Some("n".into());
            drill.metadata.uid = Some(format!("uid-{name}"));
            drill.metadata.generation = Some(1);
            Self { drill }
        }

        pub fn namespace(mut self, ns: &str) -> Self {
            self.drill.metadata.namespace = Some(ns.into());
            self
        }

        pub fn generation(mut self, g: i64) -> Self {
            self.drill.metadata.generation = Some(g);
            self
        }

        pub fn annotation(mut self, key: &str, value: &str) -> Self {
            self.drill
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(key.into(), value.into());
            self
        }

        /// The run-now annotation with `token`.
        pub fn run_now(self, token: &str) -> Self {
            self.annotation(RUN_NOW_ANNOTATION, token)
        }

        /// The stop annotation on the DrillSchedule.
        pub fn stop(self) -> Self {
            self.annotation(STOP_ANNOTATION, STOP_VALUE)
        }

        pub fn schedule(mut self, cron: &str) -> Self {
            self.drill.spec.schedule = CronString::new(cron);
            self
        }

        pub fn time_zone(mut self, tz: &str) -> Self {
            self.drill.spec.time_zone = Some(tz.into());
            self
        }

        pub fn jitter(mut self, d: &str) -> Self {
            self.drill.spec.jitter = Some(DurationString::new(d));
            self
        }

        pub fn announce(mut self) -> Self {
            self.drill.spec.announce = true;
            self
        }

        pub fn suspend(mut self) -> Self {
            self.drill.spec.suspend = true;
            self
        }

        pub fn blackout(mut self, cron: &str, duration: &str) -> Self {
            self.drill.spec.blackouts.push(Blackout {
                schedule: CronString::new(cron),
                duration: DurationString::new(duration),
            });
            self
        }

        pub fn starting_deadline(mut self, d: &str) -> Self {
            self.drill.spec.starting_deadline = Some(DurationString::new(d));
            self
        }

        /// The target's kind (Deployment unless set).
        pub fn kind(mut self, kind: WorkloadKind) -> Self {
            self.drill.spec.target.kind = kind;
            self
        }

        /// The target by name.
        pub fn target(mut self, name: &str) -> Self {
            self.drill.spec.target.name = Some(name.into());
            self.drill.spec.target.selector = None;
            self
        }

        /// The target by label selector.
        pub fn selector(mut self, match_labels: &[(&str, &str)]) -> Self {
            self.drill.spec.target.name = None;
            self.drill.spec.target.selector = Some(LabelSelector {
                match_labels: Some(labels(match_labels)),
                match_expressions: None,
            });
            self
        }

        fn action(mut self, a: DrillAction) -> Self {
            self.drill.spec.action = a;
            self
        }

        pub fn pod_kill(self, count: i32) -> Self {
            self.action(DrillAction {
                pod_kill: Some(PodKill {
                    count: Some(count),
                    percent: None,
                }),
                scale_down: None,
                failover: None,
                node_failure: None,
                zone_failure: None,
            })
        }

        pub fn pod_kill_percent(self, percent: i32) -> Self {
            self.action(DrillAction {
                pod_kill: Some(PodKill {
                    count: None,
                    percent: Some(percent),
                }),
                scale_down: None,
                failover: None,
                node_failure: None,
                zone_failure: None,
            })
        }

        pub fn scale_down(self, replicas: i32, hold: &str) -> Self {
            self.action(DrillAction {
                pod_kill: None,
                scale_down: Some(ScaleDown {
                    replicas,
                    hold: DurationString::new(hold),
                }),
                failover: None,
                node_failure: None,
                zone_failure: None,
            })
        }

        pub fn failover(self, service: &str, to: &[(&str, &str)], hold: &str) -> Self {
            self.action(DrillAction {
                pod_kill: None,
                scale_down: None,
                failover: Some(Failover {
                    service: service.into(),
                    to_selector: labels(to),
                    hold: DurationString::new(hold),
                }),
                node_failure: None,
                zone_failure: None,
            })
        }

        /// A steady-state check that holds while the value is at most `max`.
        pub fn steady_state(mut self, name: &str, query: &str, max: f64) -> Self {
            let c = check(name, query, None, Some(max));
            self.drill.spec.steady_state.push(c);
            self
        }

        /// An abort check that is breached above `max`.
        pub fn abort_when(mut self, name: &str, query: &str, max: f64) -> Self {
            let c = check(name, query, None, Some(max));
            self.drill.spec.abort_when.push(c);
            self
        }

        pub fn check_interval(mut self, d: &str) -> Self {
            self.drill.spec.check_interval = Some(DurationString::new(d));
            self
        }

        pub fn recovery_deadline(mut self, d: &str) -> Self {
            self.drill.spec.recovery_deadline = DurationString::new(d);
            self
        }

        pub fn history_limit(mut self, n: i32) -> Self {
            self.drill.spec.history_limit = Some(n);
            self
        }

        /// The whole status.
        pub fn status(mut self, s: DrillScheduleStatus) -> Self {
            self.drill.status = Some(s);
            self
        }

        fn status_mut(&mut self) -> &mut DrillScheduleStatus {
            self.drill.status.get_or_insert_with(Default::default)
        }

        /// `status.nextWindow` (no planned start).
        pub fn next_window(mut self, start: jiff::Timestamp, end: jiff::Timestamp) -> Self {
            use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
            self.status_mut().next_window = Some(Window {
                start: Time(start),
                end: Time(end),
                planned_start: None,
            });
            self
        }

        /// `status.lastRunNow`.
        pub fn last_run_now(mut self, token: &str) -> Self {
            self.status_mut().last_run_now = Some(token.into());
            self
        }

        /// `status.active`: the run under way.
        pub fn active(mut self, a: ActiveRun) -> Self {
            self.status_mut().active = Some(a);
            self
        }

        pub fn build(self) -> DrillSchedule {
            self.drill
        }
    }
}

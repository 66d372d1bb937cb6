//! Fixtures for unit tests, built fluently from plain values (no cluster): one builder per
//! kind, each in its own section below.

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

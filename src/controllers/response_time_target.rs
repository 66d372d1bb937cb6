//! The ResponseTimeTarget controller: a periodic, batched evaluation loop.
//!
//! Every tick it looks at the targets in its cache, groups them by indicator shape within
//! a namespace (`slo::batch`), and evaluates each group that is due: one bucket check for
//! latency groups and one query for the whole group. A group is due every evaluation
//! interval (the shortest of its members'), at a phase derived from its shape so that
//! groups do not all fire together; a target whose spec changed (or that has no status
//! yet) makes its group due at once. Status is written only when it changed.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use super::runtime::{self, Context};

use crate::api::ResponseTimeTarget;
use crate::api::common::CommonStatus;
use crate::api::response_time_target::{EventCounts, ResolutionFigures, ResponseTimeTargetStatus};
use crate::conditions;
use crate::prom::QueryError;
use crate::slo::batch::{self, GroupKey, Membership};
use crate::slo::queries::{
    EventQueries, LatencyQueries, RatioQueries, bucket_boundaries, matching_le,
};
use crate::slo::{self, Evaluation, Observations, Problem, Target, resolution};

/// A target and its values of its group's varying labels.
type Member = (Arc<ResponseTimeTarget>, Vec<String>);

/// The `controller` label of this loop's metrics.
pub const KIND: &str = "ResponseTimeTarget";

pub struct Controller {
    ctx: Arc<Context>,
    store: Store<ResponseTimeTarget>,
    next_due: HashMap<GroupKey, Instant>,
    /// Targets evaluated on their own (alertResolution), by uid.
    next_due_single: HashMap<String, Instant>,
    rules: super::prometheus_rule::RuleSync,
    /// Label sets exported per target, so a deleted target's series can be removed.
    exported: HashMap<String, [String; 4]>,
}

/// What one cycle did, for tests and logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CycleReport {
    pub groups_evaluated: usize,
    pub targets_evaluated: usize,
    pub writes: usize,
}

fn phase(key: &GroupKey, interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h.finish() % ms)
}

fn interval_of(t: &ResponseTimeTarget, default: Duration) -> Duration {
    t.spec
        .evaluation_interval
        .as_ref()
        .and_then(|i| i.parse().ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(default)
}

fn urgent(t: &ResponseTimeTarget) -> bool {
    t.status.as_ref().and_then(|s| s.common.observed_generation) != t.metadata.generation
}

use crate::clock::round;

impl Controller {
    pub fn new(ctx: Arc<Context>, store: Store<ResponseTimeTarget>) -> Self {
        Self {
            rules: super::prometheus_rule::RuleSync::new(ctx.kube.clone()),
            ctx,
            store,
            next_due: HashMap::new(),
            next_due_single: HashMap::new(),

            exported: HashMap::new(),
        }
    }

    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(self.ctx.settings.tick) => {}
            }
            let started = Instant::now();
            let report = self.cycle().await;
            if report.groups_evaluated > 0 {
                runtime::observe::<()>(&self.ctx.metrics, KIND, started, &Ok(()));
                tracing::debug!(?report, took = ?started.elapsed(), "ResponseTimeTarget cycle");
            }
        }
    }

    /// One pass: evaluates every due group and writes what changed.
    pub async fn cycle(&mut self) -> CycleReport {
        let now = Instant::now();
        let targets = self.store.state();
        self.forget_deleted(&targets);
        let rule_writes = self.rules.sync(&targets).await;

        let mut groups: BTreeMap<GroupKey, Vec<Member>> = BTreeMap::new();
        let mut invalid: Vec<(Arc<ResponseTimeTarget>, Problem)> = Vec::new();
        let mut single: Vec<Arc<ResponseTimeTarget>> = Vec::new();
        for t in targets {
            if t.spec.indicator.alert_resolution.is_some() {
                single.push(t);
                continue;
            }
            let ns = t.namespace().unwrap_or_default();
            match batch::membership(&ns, &t.spec) {
                Ok(Membership { key, values }) => groups.entry(key).or_default().push((t, values)),
                Err(p) => invalid.push((t, p)),
            }
        }
        self.next_due.retain(|k, _| groups.contains_key(k));

        let mut report = CycleReport {
            writes: rule_writes,
            ..CycleReport::default()
        };
        let live: std::collections::HashSet<String> =
            single.iter().filter_map(|t| t.uid()).collect();
        self.next_due_single.retain(|uid, _| live.contains(uid));
        for t in single {
            let uid = t.uid().unwrap_or_default();
            let interval = interval_of(&t, self.ctx.settings.default_interval);
            let due = *self.next_due_single.entry(uid.clone()).or_insert_with(|| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                uid.hash(&mut h);
                now + Duration::from_millis(h.finish() % interval.as_millis().max(1) as u64)
            });
            if now < due && !urgent(&t) {
                continue;
            }
            self.next_due_single.insert(uid, now + interval);
            report.groups_evaluated += 1;
            report.targets_evaluated += 1;
            report.writes += self.evaluate_resolution(&t).await as usize;
        }
        for (t, problem) in invalid {
            if urgent(&t) {
                let obs = Observations {
                    counts: Err(problem),
                    error_ratios: BTreeMap::new(),
                };
                report.targets_evaluated += 1;
                report.writes += self.apply(&t, &obs, BTreeMap::new(), None).await as usize;
            }
        }
        for (key, members) in groups {
            let interval = members
                .iter()
                .map(|(t, _)| interval_of(t, self.ctx.settings.default_interval))
                .min()
                .unwrap_or(self.ctx.settings.default_interval);
            let due = *self
                .next_due
                .entry(key.clone())
                .or_insert_with(|| now + phase(&key, interval));
            if now < due && !members.iter().any(|(t, _)| urgent(t)) {
                continue;
            }
            self.next_due.insert(key.clone(), now + interval);
            report.groups_evaluated += 1;
            report.targets_evaluated += members.len();
            report.writes += self.evaluate_group(&key, &members).await;
        }
        report
    }

    async fn evaluate_group(&self, key: &GroupKey, members: &[Member]) -> usize {
        // Latency groups: which members' threshold is a bucket boundary.
        let mut bucket_problems: Vec<Option<Problem>> = vec![None; members.len()];
        if let GroupKey::Latency { .. } = key {
            match self.bucket_check(key, members).await {
                Ok(problems) => bucket_problems = problems,
                Err(e) => bucket_problems = vec![Some(Problem::Query(e)); members.len()],
            }
        }
        let ok: Vec<usize> = (0..members.len())
            .filter(|i| bucket_problems[*i].is_none())
            .collect();
        let values: Vec<&[String]> = ok.iter().map(|i| members[*i].1.as_slice()).collect();
        let mut observations: Vec<Option<Observations>> = vec![None; members.len()];
        if !ok.is_empty() {
            let query = batch::group_query(key, &values);
            match self.ctx.prom.instant(&query, None).await {
                Ok(samples) => {
                    for (i, obs) in ok.iter().zip(batch::split_answer(key, &values, &samples)) {
                        observations[*i] = Some(obs);
                    }
                }
                Err(e) => {
                    for i in &ok {
                        observations[*i] = Some(Observations {
                            counts: Err(Problem::Query(e.clone())),
                            error_ratios: BTreeMap::new(),
                        });
                    }
                }
            }
        }
        let mut writes = 0;
        for (i, (t, _)) in members.iter().enumerate() {
            let obs = match (&bucket_problems[i], observations[i].take()) {
                (Some(p), _) => Observations {
                    counts: Err(p.clone()),
                    error_ratios: BTreeMap::new(),
                },
                (None, Some(o)) => o,
                (None, None) => continue,
            };
            writes += self.apply(t, &obs, resolved_queries(t), None).await as usize;
        }
        writes
    }

    /// An alertResolution target: incidents from the raw `ALERTS` samples of the window,
    /// then handling figures.
    async fn evaluate_resolution(&self, t: &ResponseTimeTarget) -> bool {
        let Some(ind) = &t.spec.indicator.alert_resolution else {
            return false;
        };
        let query = resolution::firing_query(&ind.selector, t.spec.window.as_str());
        let queries: BTreeMap<String, String> = [("firing".to_string(), query.clone())].into();
        let within = match ind.resolve_within.parse() {
            Ok(r) => r.as_secs_f64(),
            Err(e) => {
                let obs = Observations {
                    counts: Err(Problem::InvalidSpec(e.to_string())),
                    error_ratios: BTreeMap::new(),
                };
                return self.apply(t, &obs, queries, None).await;
            }
        };
        // Minute-aligned, so that evaluations within a minute agree.
        let now = self.ctx.clock.now().as_second() as f64;
        let end = (now / 60.0).floor() * 60.0;
        let series = match self.ctx.prom.instant_matrix(&query, Some(end)).await {
            Ok(s) => s,
            Err(e) => {
                let obs = Observations {
                    counts: Err(Problem::Query(e)),
                    error_ratios: BTreeMap::new(),
                };
                return self.apply(t, &obs, queries, None).await;
            }
        };
        let handling = resolution::handling(&resolution::incidents(&series, end), within);
        let counts = handling.counts();
        let obs = Observations {
            counts: if counts.total > 0.0 {
                Ok(counts)
            } else {
                Err(Problem::NoIncidents)
            },
            error_ratios: BTreeMap::new(),
        };
        let figures = ResolutionFigures {
            resolved: handling.resolved,
            within_target: handling.within,
            mean_seconds: handling.mean_seconds.map(|m| round(m, 1)),
            p90_seconds: handling.p90_seconds.map(|p| round(p, 1)),
        };
        self.apply(t, &obs, queries, Some(figures)).await
    }

    /// Per member: None when its threshold is a bucket boundary of its histogram.
    async fn bucket_check(
        &self,
        key: &GroupKey,
        members: &[Member],
    ) -> Result<Vec<Option<Problem>>, QueryError> {
        let GroupKey::Latency { shape, .. } = key else {
            return Ok(vec![None; members.len()]);
        };
        // One query for the group: bucket boundaries by the varying labels.
        let mut by = vec!["le".to_string()];
        by.extend(shape.eq_labels.iter().cloned());
        let values: Vec<&[String]> = members.iter().map(|(_, v)| v.as_slice()).collect();
        let query = batch::group_buckets_query(key, &values, &by);
        let samples = self.ctx.prom.instant(&query, None).await?;
        let mut les: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
        for s in samples {
            let tuple: Vec<String> = shape
                .eq_labels
                .iter()
                .map(|l| s.labels.get(l).cloned().unwrap_or_default())
                .collect();
            if let Some(le) = s.labels.get("le") {
                les.entry(tuple).or_default().push(le.clone());
            }
        }
        Ok(members
            .iter()
            .map(|(t, v)| {
                let latency = t.spec.indicator.latency.as_ref()?;
                let threshold = latency.threshold.parse().ok()?.as_secs_f64();
                let available = les.get(v).cloned().unwrap_or_default();
                if available.is_empty() {
                    return Some(Problem::NoHistogram {
                        histogram: latency.histogram.clone(),
                    });
                }
                if matching_le(&available, threshold).is_some() {
                    return None;
                }
                let mut numbers: Vec<f64> =
                    available.iter().filter_map(|l| l.parse().ok()).collect();
                numbers.sort_by(|a, b| a.total_cmp(b));
                Some(Problem::ThresholdNotABucket {
                    threshold: latency.threshold.to_string(),
                    histogram: latency.histogram.clone(),
                    available: numbers
                        .iter()
                        .map(|n| format!("{n}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            })
            .collect())
    }

    /// Evaluates, exports metrics, and writes status when it changed. Returns whether it wrote.
    async fn apply(
        &self,
        t: &ResponseTimeTarget,
        obs: &Observations,
        queries: BTreeMap<String, String>,
        figures: Option<ResolutionFigures>,
    ) -> bool {
        let target = Target {
            objective: t.spec.objective,
            window: t
                .spec
                .window
                .parse()
                .unwrap_or(Duration::from_secs(28 * 86400)),
            // Incidents are rare by nature: a request-rate floor does not apply to them.
            min_request_rate: if figures.is_some() {
                None
            } else {
                t.spec.min_request_rate
            },
        };
        let eval = slo::evaluate(&target, obs);
        self.export(t, &eval);
        let old = t.status.clone().unwrap_or_default();
        let now = Time(self.ctx.clock.now());
        let mut new = desired_status(t, &eval, queries, &old, &now);
        new.resolution = figures;
        new.common.last_evaluated = old.common.last_evaluated.clone();
        if new == old {
            return false;
        }
        new.common.last_evaluated = Some(now);
        match self.ctx.kube.write_status_if_changed(t, &old, &new).await {
            Ok(written) => {
                self.record_transitions(t, &old, &new).await;
                written
            }
            Err(e) => {
                tracing::warn!(target = %t.name_any(), error = %e, "status write failed");
                self.ctx
                    .metrics
                    .reconcile_errors
                    .with_label_values(&[KIND, e.category()])
                    .inc();
                false
            }
        }
    }

    /// An Event for each of `Ready` and `ObjectiveMet` whose status changed.
    async fn record_transitions(
        &self,
        t: &ResponseTimeTarget,
        old: &ResponseTimeTargetStatus,
        new: &ResponseTimeTargetStatus,
    ) {
        for type_ in [slo::READY, slo::OBJECTIVE_MET] {
            let before = conditions::status_of(&old.common.conditions, type_);
            let Some(after) = new.common.conditions.iter().find(|c| c.type_ == type_) else {
                continue;
            };
            if before == Some(after.status.as_str()) {
                continue;
            }
            let note = crate::conditions::Note {
                reason: after.reason.clone(),
                message: format!("{type_}={}: {}", after.status, after.message),
                warning: after.status == "False",
            };
            self.ctx.kube.publish(t, "Evaluate", &[note]).await;
        }
    }

    fn labels(t: &ResponseTimeTarget) -> [String; 4] {
        [
            t.namespace().unwrap_or_default(),
            t.name_any(),
            t.spec.service.clone(),
            t.spec.request_class.clone(),
        ]
    }

    fn export(&self, t: &ResponseTimeTarget, eval: &Evaluation) {
        let labels = Self::labels(t);
        let l: Vec<&str> = labels.iter().map(String::as_str).collect();
        let m = &self.ctx.metrics;
        m.rtt_objective.with_label_values(&l).set(t.spec.objective);
        match eval.attainment {
            Some(a) => m.rtt_attainment.with_label_values(&l).set(a),
            None => {
                let _ = m.rtt_attainment.remove_label_values(&l);
            }
        }
        match eval.error_budget_remaining {
            Some(b) => m.rtt_error_budget_remaining.with_label_values(&l).set(b),
            None => {
                let _ = m.rtt_error_budget_remaining.remove_label_values(&l);
            }
        }
        for w in slo::BURN_WINDOWS {
            let mut lw = l.clone();
            lw.push(w);
            match eval.burn_rates.get(*w) {
                Some(b) => m.rtt_burn_rate.with_label_values(&lw).set(*b),
                None => {
                    let _ = m.rtt_burn_rate.remove_label_values(&lw);
                }
            }
        }
        for s in [
            slo::State::Met,
            slo::State::Missed,
            slo::State::Unknown,
            slo::State::Error,
        ] {
            let mut ls = l.clone();
            ls.push(s.as_str());
            m.rtt_state
                .with_label_values(&ls)
                .set(if s == eval.state { 1.0 } else { 0.0 });
        }
    }

    fn forget_deleted(&mut self, targets: &[Arc<ResponseTimeTarget>]) {
        let live: std::collections::HashSet<String> =
            targets.iter().filter_map(|t| t.uid()).collect();
        for t in targets {
            if let Some(uid) = t.uid() {
                self.exported.insert(uid, Self::labels(t));
            }
        }
        let gone: Vec<String> = self
            .exported
            .keys()
            .filter(|u| !live.contains(*u))
            .cloned()
            .collect();
        for uid in gone {
            if let Some(labels) = self.exported.remove(&uid) {
                let l: Vec<&str> = labels.iter().map(String::as_str).collect();
                let m = &self.ctx.metrics;
                let _ = m.rtt_attainment.remove_label_values(&l);
                let _ = m.rtt_objective.remove_label_values(&l);
                let _ = m.rtt_error_budget_remaining.remove_label_values(&l);
                for w in slo::BURN_WINDOWS {
                    let _ = m
                        .rtt_burn_rate
                        .remove_label_values(&[l[0], l[1], l[2], l[3], w]);
                }
                for s in ["met", "missed", "unknown", "error"] {
                    let _ = m
                        .rtt_state
                        .remove_label_values(&[l[0], l[1], l[2], l[3], s]);
                }
            }
        }
    }
}

/// The resolved PromQL of a target's own queries, as shown in status.
pub fn resolved_queries(t: &ResponseTimeTarget) -> BTreeMap<String, String> {
    let window = t.spec.window.as_str();
    let mut out = BTreeMap::new();
    let eq: Option<Box<dyn EventQueries + '_>> = if let Some(l) = &t.spec.indicator.latency {
        out.insert("buckets".to_string(), bucket_boundaries(l));
        LatencyQueries::new(l)
            .ok()
            .map(|q| Box::new(q) as Box<dyn EventQueries>)
    } else {
        t.spec
            .indicator
            .ratio
            .as_ref()
            .map(|r| Box::new(RatioQueries { indicator: r }) as Box<dyn EventQueries>)
    };
    if let Some(q) = eq {
        out.insert("good".to_string(), q.good_increase(window));
        out.insert("total".to_string(), q.total_increase(window));
        out.insert("errorRatio1h".to_string(), q.error_ratio("1h"));
    }
    out
}

/// The status the target should have after `eval` (numbers rounded so that noise does not
/// cause writes). `lastEvaluated` is left to the caller.
pub fn desired_status(
    t: &ResponseTimeTarget,
    eval: &Evaluation,
    queries: BTreeMap<String, String>,
    old: &ResponseTimeTargetStatus,
    now: &Time,
) -> ResponseTimeTargetStatus {
    ResponseTimeTargetStatus {
        common: CommonStatus {
            observed_generation: t.metadata.generation,
            last_evaluated: None,
            conditions: conditions::merge(
                &old.common.conditions,
                &eval.conditions,
                t.metadata.generation,
                now,
            ),
        },
        attainment: eval.attainment.map(|a| round(a, 4)),
        error_budget_remaining: eval.error_budget_remaining.map(|b| round(b, 4)),
        burn_rates: eval
            .burn_rates
            .iter()
            .map(|(w, b)| (w.clone(), round(*b, 3)))
            .collect(),
        events: eval.counts.map(|c| EventCounts {
            good: c.good.round(),
            total: c.total.round(),
        }),
        resolution: None,
        queries,
    }
}

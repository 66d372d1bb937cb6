//! The ResponseTimeTarget controller: a periodic, batched evaluation loop.
//!
//! Every tick it looks at the targets in its cache, groups them by indicator shape within
//! a namespace (`slo::batch`), and evaluates each group that is due: `observe` makes one
//! bucket check for latency groups and one query for the whole group, `slo::decide` makes
//! each member's status, `act` writes what changed. A group is due every evaluation
//! interval (the shortest of its members'), at a phase derived from its shape so that
//! groups do not all fire together; a target whose spec changed (or that has no status
//! yet) makes its group due at once. Burn-rate alerts go to PrometheusRules (`rules`).

mod act;
pub mod metrics;
mod observe;
pub mod rules;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use super::Context;
use super::runtime;
use crate::api::ResponseTimeTarget;
use crate::slo::batch::{self, GroupKey, Membership};
use crate::slo::decide::{interval_of, phase, resolved_queries, urgent};
use crate::slo::{Observations, Problem};

/// The `controller` label of this loop's metrics.
pub const KIND: &str = "ResponseTimeTarget";

/// A target and its values of its group's varying labels.
type Member = (Arc<ResponseTimeTarget>, Vec<String>);

pub struct Controller {
    ctx: Arc<Context>,
    store: Store<ResponseTimeTarget>,
    next_due: HashMap<GroupKey, Instant>,
    /// Targets evaluated on their own (alertResolution), by uid.
    next_due_single: HashMap<String, Instant>,
    /// Each target's scoped queries, by uid, for the generation they were made from: the
    /// queries are parsed and scoped when a spec changes, not on every tick.
    scoped: HashMap<String, (Option<i64>, Scoped)>,
    rules: rules::RuleSync,
    metrics: metrics::RttMetrics,
}

/// What one cycle did, for tests and logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CycleReport {
    pub groups_evaluated: usize,
    pub targets_evaluated: usize,
    pub writes: usize,
}

/// The targets of one cycle, sorted by how they are evaluated.
#[derive(Default)]
struct Sorted {
    groups: BTreeMap<GroupKey, Vec<Member>>,
    invalid: Vec<(Arc<ResponseTimeTarget>, Problem)>,
    single: Vec<Arc<ResponseTimeTarget>>,
}

/// The target's own queries as they are sent: scoped to its namespace. A query that would
/// read another namespace makes the target invalid.
/// A target's scoped queries, or why it may not be evaluated.
type Scoped = Result<BTreeMap<String, String>, Problem>;

pub fn scoped_queries(
    ctx: &Context,
    t: &ResponseTimeTarget,
) -> Result<BTreeMap<String, String>, Problem> {
    let ns = t.namespace().unwrap_or_default();
    let mut queries = resolved_queries(t);
    if let Some(ind) = &t.spec.indicator.alert_resolution {
        let firing = crate::slo::resolution::firing_query(&ind.selector, t.spec.window.as_str());
        queries.insert("firing".into(), firing);
    }
    queries
        .into_iter()
        .map(|(k, q)| match ctx.scoped(&q, &ns) {
            Ok(q) => Ok((k, q)),
            Err(e) => Err(Problem::QueryNotAllowed(format!("{k} query: {e}"))),
        })
        .collect()
}

fn sort(
    targets: Vec<Arc<ResponseTimeTarget>>,
    scoped: &HashMap<String, (Option<i64>, Scoped)>,
) -> Sorted {
    let mut s = Sorted::default();
    for t in targets {
        if let Some((_, Err(p))) = t.uid().and_then(|u| scoped.get(&u)) {
            s.invalid.push((t.clone(), p.clone()));
            continue;
        }
        if t.spec.indicator.alert_resolution.is_some() {
            s.single.push(t);
            continue;
        }
        let ns = t.namespace().unwrap_or_default();
        match batch::membership(&ns, &t.spec) {
            Ok(Membership { key, values }) => s.groups.entry(key).or_default().push((t, values)),
            Err(p) => s.invalid.push((t, p)),
        }
    }
    s
}

impl Controller {
    pub fn new(ctx: Arc<Context>, store: Store<ResponseTimeTarget>) -> Self {
        Self {
            rules: rules::RuleSync::new(ctx.kube.clone(), ctx.settings.tenancy.clone()),
            metrics: metrics::RttMetrics::new(&ctx.metrics),
            ctx,
            store,
            next_due: HashMap::new(),
            next_due_single: HashMap::new(),
            scoped: HashMap::new(),
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
        self.metrics.forget_deleted(&targets);
        let mut report = CycleReport {
            writes: self.rules.sync(&targets).await,
            ..CycleReport::default()
        };
        self.rescope(&targets);
        let sorted = sort(targets, &self.scoped);
        self.next_due.retain(|k, _| sorted.groups.contains_key(k));
        let live: HashSet<String> = sorted.single.iter().filter_map(|t| t.uid()).collect();
        self.next_due_single.retain(|uid, _| live.contains(uid));
        for t in sorted.single {
            if !self.single_due(&t, now) {
                continue;
            }
            report.groups_evaluated += 1;
            report.targets_evaluated += 1;
            let (obs, queries, figures) = observe::resolution(&self.ctx, &t).await;
            report.writes +=
                act::evaluated(&self.ctx, &self.metrics, &t, &obs, queries, figures).await as usize;
        }
        for (t, problem) in sorted.invalid {
            // Evaluated when the spec changed, or when the status does not say this problem
            // yet (a target that became invalid without a spec change, e.g. on an upgrade).
            let said = t.status.as_ref().is_some_and(|s| {
                s.common
                    .conditions
                    .iter()
                    .any(|c| c.type_ == crate::slo::READY && c.reason == problem.reason())
            });
            if urgent(&t) || !said {
                let obs = Observations {
                    counts: Err(problem),
                    error_ratios: BTreeMap::new(),
                };
                report.targets_evaluated += 1;
                report.writes +=
                    act::evaluated(&self.ctx, &self.metrics, &t, &obs, BTreeMap::new(), None).await
                        as usize;
            }
        }
        for (key, members) in sorted.groups {
            if !self.group_due(&key, &members, now) {
                continue;
            }
            report.groups_evaluated += 1;
            report.targets_evaluated += members.len();
            let observations = observe::group(&self.ctx, &key, &members).await;
            for ((t, _), obs) in members.iter().zip(observations) {
                let Some(obs) = obs else { continue };
                let queries = self.queries(t);
                report.writes +=
                    act::evaluated(&self.ctx, &self.metrics, t, &obs, queries, None).await as usize;
            }
        }
        report
    }

    /// Scopes the queries of targets that are new or whose spec changed; forgets those gone.
    fn rescope(&mut self, targets: &[Arc<ResponseTimeTarget>]) {
        let live: HashSet<String> = targets.iter().filter_map(|t| t.uid()).collect();
        self.scoped.retain(|uid, _| live.contains(uid));
        for t in targets {
            let (Some(uid), generation) = (t.uid(), t.metadata.generation) else {
                continue;
            };
            if self.scoped.get(&uid).is_none_or(|(g, _)| *g != generation) {
                self.scoped
                    .insert(uid, (generation, scoped_queries(&self.ctx, t)));
            }
        }
    }

    /// The scoped queries of a target that may be evaluated (empty if unknown).
    fn queries(&self, t: &ResponseTimeTarget) -> BTreeMap<String, String> {
        t.uid()
            .and_then(|u| self.scoped.get(&u))
            .and_then(|(_, q)| q.as_ref().ok())
            .cloned()
            .unwrap_or_default()
    }

    /// An alertResolution target is due every interval (first at a phase of its uid), or now
    /// when its spec changed; being due moves its next time.
    fn single_due(&mut self, t: &ResponseTimeTarget, now: Instant) -> bool {
        let uid = t.uid().unwrap_or_default();
        let interval = interval_of(t, self.ctx.settings.default_interval);
        let due = *self
            .next_due_single
            .entry(uid.clone())
            .or_insert_with(|| now + phase(&uid, interval));
        if now < due && !urgent(t) {
            return false;
        }
        self.next_due_single.insert(uid, now + interval);
        true
    }

    /// A group is due every shortest interval of its members (first at a phase of its
    /// shape), or now when a member's spec changed; being due moves its next time.
    fn group_due(&mut self, key: &GroupKey, members: &[Member], now: Instant) -> bool {
        let default = self.ctx.settings.default_interval;
        let interval: Duration = members
            .iter()
            .map(|(t, _)| interval_of(t, default))
            .min()
            .unwrap_or(default);
        let due = *self
            .next_due
            .entry(key.clone())
            .or_insert_with(|| now + phase(key, interval));
        if now < due && !members.iter().any(|(t, _)| urgent(t)) {
            return false;
        }
        self.next_due.insert(key.clone(), now + interval);
        true
    }
}

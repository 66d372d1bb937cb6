//! The ResponseTimeTarget controller: a periodic, batched evaluation loop.
//!
//! The loop keeps an [`index`] of its targets, brought up to date only when the cache
//! changed: each target's group (targets of one indicator shape, across namespaces, see
//! `slo::batch`) and scoped queries are made when its spec changes. Every tick it takes
//! the groups that are due: `observe` asks Prometheus (a bucket check for latency groups,
//! cached for a while, and one query per batch of members), `slo::decide` makes each
//! member's status, `act` writes what a reader would see change, several writes in
//! flight. A group is due every evaluation interval (the shortest of its members'), at a
//! stable phase of the wall clock derived from its shape; a target whose spec changed (or
//! that has no status yet) is evaluated at once, alone of its group. Burn-rate alerts go to
//! PrometheusRules (`rules`).

mod act;
mod caches;
mod index;
pub mod metrics;
mod observe;
mod plan;
pub mod rules;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use super::Context;
use super::runtime;
use crate::api::ResponseTimeTarget;
use crate::slo::Observations;
use crate::slo::batch::GroupKey;
use index::{Due, Index, Unit};
pub use observe::MAX_BATCH;
use plan::Plan;

/// The `controller` label of this loop's metrics.
pub const KIND: &str = "ResponseTimeTarget";

/// Groups (or alertResolution targets) observed at once; Prometheus's own limit
/// (`--prometheus-max-in-flight`) applies below this.
const OBSERVING: usize = 8;

/// A target with its values of its group's varying labels and its scoped queries (None:
/// as its status shows them).
pub struct Member {
    pub target: Arc<ResponseTimeTarget>,
    pub values: Vec<String>,
    pub queries: Option<Arc<BTreeMap<String, String>>>,
}

/// One evaluation to act on.
pub struct Evaluated {
    pub member: Member,
    pub obs: Observations,
    pub figures: Option<crate::api::response_time_target::ResolutionFigures>,
}

pub struct Controller {
    ctx: Arc<Context>,
    store: Store<ResponseTimeTarget>,
    /// The cache's change count (moved by every watch event).
    changes: Arc<AtomicU64>,
    /// The change count the index was last brought up to date at, and when.
    seen: Option<(u64, Instant)>,
    index: Index,
    /// Per group: bucket boundaries and the recordings' coverage, as last checked.
    caches: HashMap<GroupKey, caches::Cached>,
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

impl Controller {
    pub fn new(
        ctx: Arc<Context>,
        store: Store<ResponseTimeTarget>,
        changes: Arc<AtomicU64>,
    ) -> Self {
        Self {
            rules: rules::RuleSync::new(
                ctx.settings.tenancy.clone(),
                ctx.settings.rule_labels.clone(),
            ),
            metrics: metrics::RttMetrics::new(&ctx.metrics),
            ctx,
            store,
            changes,
            seen: None,
            index: Index::default(),
            caches: HashMap::new(),
        }
    }

    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        // The first cycle as soon as the cache has listed every target, not a tick later
        // (this loop is the only one waiting on this store).
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = self.store.wait_until_ready() => {}
        }
        loop {
            let started = Instant::now();
            let report = self.cycle().await;
            if report.groups_evaluated > 0 {
                runtime::observe::<()>(&self.ctx.metrics, KIND, started, &Ok(()));
                tracing::debug!(?report, took = ?started.elapsed(), "ResponseTimeTarget cycle");
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(self.ctx.settings.tick) => {}
            }
        }
    }

    /// One pass: brings the index up to date if the cache changed, evaluates every due
    /// group and writes what changed.
    pub async fn cycle(&mut self) -> CycleReport {
        let now = Instant::now();
        let mut report = CycleReport {
            writes: self.refresh(now).await,
            ..CycleReport::default()
        };
        for uid in self.rules.check_loaded(&self.ctx).await {
            self.index.soon(&uid);
        }
        let invalid = self.invalid();
        let due = self.index.due(now, self.ctx.clock.now());
        let jobs = self.jobs(&due);
        report.groups_evaluated = jobs.len();
        // One pipeline: a batch's statuses are written as soon as its answer is in, while
        // other batches are still being asked.
        let (ctx, metrics, rules) = (&self.ctx, &self.metrics, &self.rules);
        let in_flight = usize::from(ctx.settings.status_writes_in_flight.max(1));
        let mut checked = Vec::new();
        let outcomes: Vec<(String, bool, Option<bool>)> = futures::stream::iter(jobs)
            .map(|job| observe::job(ctx, job))
            .buffer_unordered(OBSERVING)
            .flat_map(|(done, caches)| {
                checked.extend(caches);
                futures::stream::iter(done)
            })
            .chain(futures::stream::iter(invalid))
            .map(|e| async move {
                let uid = e.member.target.uid().unwrap_or_default();
                let invalid = e.obs.counts.as_ref().is_err_and(|p| p.is_spec_error());
                let alerts = rules.seen(&uid);
                let written = act::evaluated(ctx, metrics, &e, alerts).await;
                (uid, invalid, written)
            })
            .buffer_unordered(in_flight)
            .collect()
            .await;
        for (key, c) in checked {
            self.caches.entry(key).or_default().merge(c);
        }
        report.targets_evaluated = outcomes.len();
        for (uid, invalid, written) in outcomes {
            report.writes += usize::from(written.is_some_and(|w| w));
            if invalid && written.is_none() {
                self.index.soon(&uid);
            }
        }
        report
    }

    /// Brings the index, the rules and the exported series up to date when the cache
    /// changed (or the rules are due a check); returns the rule writes made.
    async fn refresh(&mut self, now: Instant) -> usize {
        let changes = self.changes.load(Ordering::SeqCst);
        let recheck = self
            .seen
            .is_none_or(|(_, at)| now.duration_since(at) >= rules::RECHECK);
        if self.seen.is_some_and(|(c, _)| c == changes) && !recheck {
            return 0;
        }
        let targets = self.store.state();
        let gone = self
            .index
            .refresh(&targets, &*self.ctx, self.ctx.settings.default_interval);
        self.metrics.forget(&gone);
        self.rules.forget(&gone);
        let (groups, alone, _) = self.index.sizes();
        self.metrics
            .groups
            .with_label_values(&["batched"])
            .set(groups as i64);
        self.metrics
            .groups
            .with_label_values(&["alone"])
            .set(alone as i64);
        let at = match self.seen {
            Some((_, at)) if !recheck => at,
            _ => now,
        };
        self.seen = Some((changes, at));
        let live: std::collections::HashSet<GroupKey> = self.index.group_keys().collect();
        self.caches.retain(|k, _| live.contains(k));
        let (mut writes, changed) = self.rules.sync(&self.ctx, &targets).await;
        for uid in changed {
            self.index.soon(&uid);
        }
        if self.index.take_regrouped() || recheck {
            let label = match &self.ctx.settings.tenancy {
                crate::prom::enforce::Tenancy::Enforced { label } => Some(label.as_str()),
                crate::prom::enforce::Tenancy::Single => None,
            };
            let groups = self.index.values_of(label);
            let ns = &self.ctx.settings.rules_namespace;
            writes += self
                .rules
                .sync_recordings(&self.ctx, &groups, ns, label)
                .await;
        }
        writes
    }

    /// Invalid targets whose status must say why.
    fn invalid(&mut self) -> Vec<Evaluated> {
        let store = &self.store;
        self.index
            .take_invalid()
            .into_iter()
            .filter_map(|(_, e)| {
                let Plan::Invalid(p) = &e.plan else {
                    return None;
                };
                Some(Evaluated {
                    member: Member {
                        target: store.get(&e.at)?,
                        values: Vec::new(),
                        queries: e.queries.held(),
                    },
                    obs: Observations {
                        counts: Err(p.clone()),
                        error_ratios: BTreeMap::new(),
                    },
                    figures: None,
                })
            })
            .collect()
    }

    /// What to observe for the due units: a latency or ratio group in batches of at most
    /// [`MAX_BATCH`] members, or one alertResolution target.
    fn jobs(&self, due: &[Due]) -> Vec<observe::Job> {
        let mut jobs = Vec::new();
        for d in due {
            let members: Vec<Member> = self
                .index
                .members(d)
                .into_iter()
                .filter_map(|e| {
                    Some(Member {
                        target: self.store.get(&e.at)?,
                        values: match &e.plan {
                            Plan::Group(m) => m.values.clone(),
                            _ => Vec::new(),
                        },
                        queries: e.queries.held(),
                    })
                })
                .collect();
            match &d.unit {
                Unit::Single(_) => jobs.extend(members.into_iter().map(observe::Job::Single)),
                Unit::Group(key) => {
                    let cached = self.caches.get(key).cloned().unwrap_or_default();
                    let recorded = self.rules.recording();
                    jobs.extend(observe::batches(key, members, cached, recorded));
                }
            }
        }
        jobs
    }
}

//! ResponseTimeTarget's metrics: attainment, objective, error budget, burn rates and
//! state per target; a deleted target's series go.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kube::ResourceExt;
use prometheus::GaugeVec;

use crate::api::ResponseTimeTarget;
use crate::metrics::Metrics;
use crate::slo::{self, Evaluation};

/// Labels of the per-target series.
pub const LABELS: &[&str] = &["namespace", "name", "service", "request_class"];

pub struct RttMetrics {
    attainment: GaugeVec,
    objective: GaugeVec,
    error_budget_remaining: GaugeVec,
    /// As above plus `window`.
    burn_rate: GaugeVec,
    /// As above plus `state` (met, missed, unknown, error): one series, the current
    /// state's, at 1.
    state: GaugeVec,
    /// Units of evaluation the loop holds: `batched` groups (one query per batch of
    /// members) and targets evaluated `alone` (alertResolution).
    pub groups: prometheus::IntGaugeVec,
    /// Label sets exported per target uid, so a deleted target's series can be removed.
    exported: HashMap<String, [String; 4]>,
}

fn labels(t: &ResponseTimeTarget) -> [String; 4] {
    [
        t.namespace().unwrap_or_default(),
        t.name_any(),
        t.spec.service.clone(),
        t.spec.request_class.clone(),
    ]
}

impl RttMetrics {
    pub fn new(m: &Metrics) -> Self {
        let gauge = |name: &str, help: &str, extra: &[&str]| {
            let l: Vec<&str> = LABELS.iter().chain(extra).copied().collect();
            m.gauges(name, help, &l)
        };
        Self {
            attainment: gauge(
                "maturity_rtt_attainment_percent",
                "Percent of good events over the target's window.",
                &[],
            ),
            objective: gauge(
                "maturity_rtt_objective_percent",
                "The target's objective.",
                &[],
            ),
            error_budget_remaining: gauge(
                "maturity_rtt_error_budget_remaining_ratio",
                "Fraction of the window's error budget left (negative when overspent).",
                &[],
            ),
            burn_rate: gauge(
                "maturity_rtt_burn_rate",
                "Error budget burn rate over a lookback window (1 spends the budget exactly over the target's window).",
                &["window"],
            ),
            state: gauge(
                "maturity_rtt_state",
                "1 for the target's current state (met, missed, unknown, error), 0 for the others.",
                &["state"],
            ),
            groups: m.int_gauges(
                "maturity_rtt_groups",
                "ResponseTimeTarget groups the loop evaluates: batched (one query per batch of members of one indicator shape, across namespaces) and alone (alertResolution targets).",
                &["kind"],
            ),
            exported: HashMap::new(),
        }
    }

    pub fn export(&self, t: &ResponseTimeTarget, eval: &Evaluation) {
        let labels = labels(t);
        let l: Vec<&str> = labels.iter().map(String::as_str).collect();
        self.objective.with_label_values(&l).set(t.spec.objective);
        set_or_remove(&self.attainment, &l, eval.attainment);
        set_or_remove(
            &self.error_budget_remaining,
            &l,
            eval.error_budget_remaining,
        );
        for w in slo::BURN_WINDOWS {
            let mut lw = l.clone();
            lw.push(w);
            set_or_remove(&self.burn_rate, &lw, eval.burn_rates.get(*w).copied());
        }
        // One series per target: its current state, 1 (the others' series are removed).
        for s in slo::State::ALL {
            let mut ls = l.clone();
            ls.push(s.as_str());
            if s == eval.state {
                self.state.with_label_values(&ls).set(1.0);
            } else {
                let _ = self.state.remove_label_values(&ls);
            }
        }
    }

    /// Remembers the label sets of `targets` and removes every series of a target that is gone.
    pub fn forget_deleted(&mut self, targets: &[Arc<ResponseTimeTarget>]) {
        let live: HashSet<String> = targets.iter().filter_map(|t| t.uid()).collect();
        for t in targets {
            if let Some(uid) = t.uid() {
                self.exported.insert(uid, labels(t));
            }
        }
        let gone: Vec<String> = self
            .exported
            .keys()
            .filter(|u| !live.contains(*u))
            .cloned()
            .collect();
        for uid in gone {
            let Some(labels) = self.exported.remove(&uid) else {
                continue;
            };
            let l: Vec<&str> = labels.iter().map(String::as_str).collect();
            for g in [
                &self.attainment,
                &self.objective,
                &self.error_budget_remaining,
            ] {
                let _ = g.remove_label_values(&l);
            }
            for w in slo::BURN_WINDOWS {
                let _ = self
                    .burn_rate
                    .remove_label_values(&[l[0], l[1], l[2], l[3], w]);
            }
            for s in slo::State::ALL {
                let _ = self
                    .state
                    .remove_label_values(&[l[0], l[1], l[2], l[3], s.as_str()]);
            }
        }
    }
}

fn set_or_remove(g: &GaugeVec, labels: &[&str], v: Option<f64>) {
    match v {
        Some(v) => g.with_label_values(labels).set(v),
        None => {
            let _ = g.remove_label_values(labels);
        }
    }
}

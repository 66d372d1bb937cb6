//! Acting on a ResponseTimeTarget evaluation: export its figures, write its status when it
//! changed, then publish the Events of the conditions that changed. Also removes the series
//! of targets that are gone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use kube::ResourceExt;

use super::super::runtime::Context;
use super::KIND;
use crate::api::ResponseTimeTarget;
use crate::api::response_time_target::ResolutionFigures;
use crate::metrics::Metrics;
use crate::slo::{self, Evaluation, Observations, decide};

/// The label set exported per target uid.
pub type Exported = HashMap<String, [String; 4]>;

/// Decides `t`'s status from `obs`, exports it, and writes it when it changed. Returns
/// whether it wrote.
pub async fn evaluated(
    ctx: &Context,
    t: &ResponseTimeTarget,
    obs: &Observations,
    queries: BTreeMap<String, String>,
    figures: Option<ResolutionFigures>,
) -> bool {
    let outcome = decide::decide(t, obs, queries, figures, ctx.clock.now());
    export(&ctx.metrics, t, &outcome.evaluation);
    let old = t.status.clone().unwrap_or_default();
    match ctx
        .kube
        .write_status_if_changed(t, &old, &outcome.status)
        .await
    {
        Ok(written) => {
            if written {
                ctx.kube.publish(t, "Evaluate", &outcome.notes).await;
            }
            written
        }
        Err(e) => {
            tracing::warn!(target = %t.name_any(), error = %e, "status write failed");
            ctx.metrics
                .reconcile_errors
                .with_label_values(&[KIND, e.category()])
                .inc();
            false
        }
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

fn export(m: &Metrics, t: &ResponseTimeTarget, eval: &Evaluation) {
    let labels = labels(t);
    let l: Vec<&str> = labels.iter().map(String::as_str).collect();
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
    for s in slo::State::ALL {
        let mut ls = l.clone();
        ls.push(s.as_str());
        m.rtt_state
            .with_label_values(&ls)
            .set(if s == eval.state { 1.0 } else { 0.0 });
    }
}

/// Remembers the label sets of `targets` and removes every series of a target that is gone.
pub fn forget_deleted(m: &Metrics, exported: &mut Exported, targets: &[Arc<ResponseTimeTarget>]) {
    let live: HashSet<String> = targets.iter().filter_map(|t| t.uid()).collect();
    for t in targets {
        if let Some(uid) = t.uid() {
            exported.insert(uid, labels(t));
        }
    }
    let gone: Vec<String> = exported
        .keys()
        .filter(|u| !live.contains(*u))
        .cloned()
        .collect();
    for uid in gone {
        let Some(labels) = exported.remove(&uid) else {
            continue;
        };
        let l: Vec<&str> = labels.iter().map(String::as_str).collect();
        let _ = m.rtt_attainment.remove_label_values(&l);
        let _ = m.rtt_objective.remove_label_values(&l);
        let _ = m.rtt_error_budget_remaining.remove_label_values(&l);
        for w in slo::BURN_WINDOWS {
            let _ = m
                .rtt_burn_rate
                .remove_label_values(&[l[0], l[1], l[2], l[3], w]);
        }
        for s in slo::State::ALL {
            let _ = m
                .rtt_state
                .remove_label_values(&[l[0], l[1], l[2], l[3], s.as_str()]);
        }
    }
}

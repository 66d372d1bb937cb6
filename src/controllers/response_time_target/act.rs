//! Acting on a ResponseTimeTarget evaluation: export its figures, write its status when it
//! changed, then publish the Events of the conditions that changed.

use kube::ResourceExt;

use super::super::{Context, Written};
use super::metrics::RttMetrics;
use super::{Evaluated, KIND};
use crate::slo::decide;
use crate::slo::rules::AlertsSeen;

/// Decides a target's status from its evaluation, exports the exact figures, and writes
/// the status when a reader would see it change. Returns whether it wrote (None: the write
/// failed).
pub async fn evaluated(
    ctx: &Context,
    metrics: &RttMetrics,
    e: &Evaluated,
    alerts: Option<&AlertsSeen>,
) -> Option<bool> {
    let t = &e.member.target;
    let outcome = decide::decide(
        t,
        &e.obs,
        super::plan::for_status(e.member.queries.as_deref(), t),
        e.figures.clone(),
        alerts.map(|a| (a, ctx.settings.rules_load_grace)),
        ctx.clock.now(),
        ctx.settings.status_period,
    );
    metrics.export(t, &outcome.evaluation);
    let none = Default::default();
    let old = t.status.as_ref().unwrap_or(&none);
    match ctx.write_status(&**t, old, &outcome.status, false).await {
        Ok(written) => {
            if written == Written::Written {
                ctx.kube.publish(&**t, "Evaluate", &outcome.notes).await;
            }
            Some(written == Written::Written)
        }
        Err(e) => {
            tracing::warn!(target = %t.name_any(), error = %e, "status write failed");
            ctx.metrics
                .reconcile_errors
                .with_label_values(&[KIND, e.category()])
                .inc();
            None
        }
    }
}

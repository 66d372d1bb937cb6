//! Acting on a ResponseTimeTarget evaluation: export its figures, write its status when it
//! changed, then publish the Events of the conditions that changed.

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::super::{Context, Written};
use super::KIND;
use super::metrics::RttMetrics;
use crate::api::ResponseTimeTarget;
use crate::api::response_time_target::ResolutionFigures;
use crate::slo::{Observations, decide};

/// Decides `t`'s status from `obs`, exports it, and writes it when it changed. Returns
/// whether it wrote.
pub async fn evaluated(
    ctx: &Context,
    metrics: &RttMetrics,
    t: &ResponseTimeTarget,
    obs: &Observations,
    queries: BTreeMap<String, String>,
    figures: Option<ResolutionFigures>,
) -> bool {
    let outcome = decide::decide(t, obs, queries, figures, ctx.clock.now());
    metrics.export(t, &outcome.evaluation);
    let old = t.status.clone().unwrap_or_default();
    match ctx.write_status(t, &old, &outcome.status, false).await {
        Ok(written) => {
            if written == Written::Written {
                ctx.kube.publish(t, "Evaluate", &outcome.notes).await;
            }
            written == Written::Written
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

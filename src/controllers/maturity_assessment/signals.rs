//! The declared business signals of an assessment, read from Prometheus as evidence: each
//! query scoped to the namespace, reading series, and answering only while they are live
//! (a forecast also needs history for its horizon).

use std::time::Duration;

use super::super::Context;
use crate::api::maturity_assessment::Signals;
use crate::model::evidence::{self, Signal};
use crate::prom::single_value;

type Readings = (
    Signal<(f64, f64)>,
    Signal<Vec<(String, f64)>>,
    Signal<(f64, f64)>,
);

/// The declared business signals: satisfaction, complaints per category, demand.
pub async fn read_signals(ctx: &Context, ns: &str, signals: &Signals) -> Readings {
    let satisfaction = match &signals.satisfaction {
        None => None,
        Some(s) => Some(
            one_value(ctx, ns, s.query.as_str(), None)
                .await
                .map(|v| (v, s.min)),
        ),
    };
    let complaints = match &signals.complaints {
        None => None,
        Some(s) => Some(complaints(ctx, ns, s.query.as_str()).await),
    };
    let demand = match &signals.demand {
        None => None,
        Some(d) => Some(demand(ctx, ns, d.query.as_str(), d.capacity.as_str(), &d.horizon).await),
    };
    (satisfaction, complaints, demand)
}

/// (category, value) of every series (`all` when it has no category).
async fn complaints(ctx: &Context, ns: &str, query: &str) -> Result<Vec<(String, f64)>, String> {
    let query = live(ctx, ns, query, None)?;
    let samples = ctx
        .prom
        .instant(&query, None)
        .await
        .map_err(|e| e.to_string())?;
    if samples.is_empty() {
        return Err(NO_LIVE_DATA.into());
    }
    Ok(samples
        .iter()
        .map(|x| {
            let category = x
                .labels
                .get("category")
                .cloned()
                .unwrap_or_else(|| "all".into());
            (category, x.value)
        })
        .collect())
}

/// (demand forecast at the horizon, capacity).
async fn demand(
    ctx: &Context,
    ns: &str,
    query: &str,
    capacity: &str,
    horizon: &crate::api::common::DurationString,
) -> Result<(f64, f64), String> {
    let h = horizon.parse().map_err(|e| format!("horizon: {e}"))?;
    let window = evidence::forecast_window(h);
    let forecast = format!(
        "predict_linear(({query})[{}s:1m], {})",
        window.as_secs(),
        h.as_secs()
    );
    let (f, cap) = (
        one_value(ctx, ns, &forecast, Some(window)).await,
        one_value(ctx, ns, capacity, None).await,
    );
    match (f, cap) {
        (Ok(f), Ok(cap)) => Ok((f, cap)),
        (Err(e), _) if e == NO_LIVE_DATA => Err(format!(
            "{e}; a forecast {horizon} ahead needs {}h of history of every series it reads",
            window.as_secs() / 3600
        )),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// Why a signal has no value: nothing live to read.
const NO_LIVE_DATA: &str = "no live data: the query returned nothing, or a series it reads has no sample in the last 5 minutes (an old value is no evidence)";

/// `query` as sent: scoped, reading series, answering only while they are live.
fn live(ctx: &Context, ns: &str, query: &str, history: Option<Duration>) -> Result<String, String> {
    crate::prom::enforce::fresh_only(&ctx.evidence(query, ns)?, history)
}

/// The single value of `query`, scoped to the assessment's namespace first.
async fn one_value(
    ctx: &Context,
    ns: &str,
    query: &str,
    history: Option<Duration>,
) -> Result<f64, String> {
    let query = live(ctx, ns, query, history)?;
    let samples = ctx
        .prom
        .instant(&query, None)
        .await
        .map_err(|e| e.to_string())?;
    single_value(&samples).map_err(|e| match e {
        crate::prom::ValueError::Empty => NO_LIVE_DATA.to_string(),
        e => e.to_string(),
    })
}

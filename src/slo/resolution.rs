//! Handling time of incidents, from Prometheus's `ALERTS` series (the `alertResolution`
//! indicator). The raw firing samples of the window are read in one instant query with a
//! range selector (`ALERTS{..., alertstate="firing"}[28d]`: raw samples, no look-back
//! smearing). An incident is a run of samples of one alert series with no gap longer than
//! Prometheus's staleness period (5 minutes); it lasts from its first sample to one sample
//! interval after its last. A run whose last sample is within that period of the end is
//! still open. Pure: the controller fetches the series.

use crate::prom::{Labels, Series};

/// Gaps longer than this split incidents (Prometheus's staleness period).
pub const MAX_GAP_SECONDS: f64 = 300.0;

/// One firing period of one alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub labels: Labels,
    pub start: f64,
    pub seconds: f64,
    /// Still firing at the end of the range.
    pub open: bool,
}

/// Splits firing series into incidents; `range_end` is the evaluation time.
pub fn incidents(series: &[Series], range_end: f64) -> Vec<Incident> {
    let mut out = Vec::new();
    for s in series {
        let mut times: Vec<f64> = s
            .points
            .iter()
            .filter(|(_, v)| *v > 0.0)
            .map(|(t, _)| *t)
            .collect();
        times.sort_by(|a, b| a.total_cmp(b));
        times.dedup();
        // The rule evaluation interval, as the median gap between samples of a run.
        let mut gaps: Vec<f64> = times
            .windows(2)
            .map(|w| w[1] - w[0])
            .filter(|g| *g <= MAX_GAP_SECONDS)
            .collect();
        gaps.sort_by(|a, b| a.total_cmp(b));
        let interval = gaps.get(gaps.len() / 2).copied().unwrap_or(60.0);
        let mut run: Option<(f64, f64)> = None;
        for t in times {
            run = match run {
                Some((first, last)) if t - last <= MAX_GAP_SECONDS => Some((first, t)),
                Some((first, last)) => {
                    out.push(incident(&s.labels, first, last, interval, range_end));
                    Some((t, t))
                }
                None => Some((t, t)),
            };
        }
        if let Some((first, last)) = run {
            out.push(incident(&s.labels, first, last, interval, range_end));
        }
    }
    out
}

fn incident(labels: &Labels, first: f64, last: f64, interval: f64, range_end: f64) -> Incident {
    Incident {
        labels: labels.clone(),
        start: first,
        seconds: last - first + interval,
        open: range_end - last <= MAX_GAP_SECONDS,
    }
}

/// Handling figures over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Handling {
    /// Incidents resolved in the window.
    pub resolved: u32,
    /// Of those, resolved within the target time.
    pub within: u32,
    /// Still open and already longer than the target time: they count as missed.
    pub open_over: u32,
    pub mean_seconds: Option<f64>,
    /// 90th percentile (nearest rank) of the resolved incidents' durations.
    pub p90_seconds: Option<f64>,
}

impl Handling {
    /// Good and total events for the common evaluation.
    pub fn counts(&self) -> super::Counts {
        super::Counts {
            good: f64::from(self.within),
            total: f64::from(self.resolved + self.open_over),
        }
    }
}

pub fn handling(incidents: &[Incident], resolve_within_seconds: f64) -> Handling {
    let mut durations: Vec<f64> = incidents
        .iter()
        .filter(|i| !i.open)
        .map(|i| i.seconds)
        .collect();
    durations.sort_by(|a, b| a.total_cmp(b));
    let n = durations.len();
    Handling {
        resolved: n as u32,
        within: durations
            .iter()
            .filter(|d| **d <= resolve_within_seconds)
            .count() as u32,
        open_over: incidents
            .iter()
            .filter(|i| i.open && i.seconds > resolve_within_seconds)
            .count() as u32,
        mean_seconds: (n > 0).then(|| durations.iter().sum::<f64>() / n as f64),
        p90_seconds: (n > 0).then(|| durations[((0.9 * n as f64).ceil() as usize).max(1) - 1]),
    }
}

/// The query of an `alertResolution` indicator: raw firing samples over `window`.
pub fn firing_query(selector: &str, window: &str) -> String {
    format!(
        "ALERTS{}[{window}]",
        super::queries::with_matchers(Some(selector), &["alertstate=\"firing\"".to_string()])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, times: &[f64]) -> Series {
        let mut labels = Labels::new();
        labels.insert("alertname".into(), name.into());
        Series {
            labels,
            points: times.iter().map(|t| (*t, 1.0)).collect(),
        }
    }

    #[test]
    fn runs_of_samples_are_incidents() {
        // A: 0..=120 (3 samples: 180 s), then 1000..=1060 (120 s); B: open at the end.
        let s = [
            series("A", &[0.0, 60.0, 120.0, 1000.0, 1060.0]),
            series("B", &[1900.0, 1960.0]),
        ];
        let found = incidents(&s, 2000.0);
        let secs: Vec<(f64, bool)> = found.iter().map(|i| (i.seconds, i.open)).collect();
        assert_eq!(secs, [(180.0, false), (120.0, false), (120.0, true)]);
    }

    #[test]
    fn the_sample_interval_comes_from_the_series() {
        let s = [series("A", &[0.0, 15.0, 30.0])];
        assert_eq!(incidents(&s, 1000.0)[0].seconds, 45.0);
    }

    #[test]
    fn handling_counts_within_target_mean_and_p90() {
        let mk = |seconds: f64, open: bool| Incident {
            labels: Labels::new(),
            start: 0.0,
            seconds,
            open,
        };
        let list: Vec<Incident> = [
            60.0, 120.0, 600.0, 1200.0, 1800.0, 1860.0, 300.0, 240.0, 180.0, 3600.0,
        ]
        .iter()
        .map(|s| mk(*s, false))
        .chain([mk(4000.0, true), mk(60.0, true)])
        .collect();
        let h = handling(&list, 1800.0);
        assert_eq!((h.resolved, h.within, h.open_over), (10, 8, 1));
        assert!((h.mean_seconds.unwrap() - 996.0).abs() < 1e-9);
        assert_eq!(h.p90_seconds, Some(1860.0));
        assert_eq!(
            h.counts(),
            crate::slo::Counts {
                good: 8.0,
                total: 11.0
            }
        );
        assert_eq!(handling(&[], 60.0).mean_seconds, None);
    }

    #[test]
    fn the_query_reads_raw_firing_samples() {
        assert_eq!(
            firing_query(r#"{severity="critical"}"#, "28d"),
            r#"ALERTS{severity="critical", alertstate="firing"}[28d]"#
        );
    }
}

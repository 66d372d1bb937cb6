//! DrillSchedule's metrics: its runs by result and the latest recovery time, from status.

use prometheus::{GaugeVec, IntGaugeVec};

use crate::api::drill_schedule::DrillScheduleStatus;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct DrillMetrics {
    runs: IntGaugeVec,
    last_recovery_seconds: GaugeVec,
}

impl DrillMetrics {
    pub fn new(m: &Metrics) -> Self {
        Self {
            runs: m.int_gauges(
                "maturity_drill_runs",
                "Drill runs kept in the DrillSchedule's summary, by result (passed, failed, aborted, skipped).",
                &["namespace", "drill", "result"],
            ),
            last_recovery_seconds: m.gauges(
                "maturity_drill_last_recovery_seconds",
                "Seconds from injection to recovery (target Available, steady state holding) of the latest run that recovered.",
                &["namespace", "drill"],
            ),
        }
    }

    /// The status figures as metrics (removed when the DrillSchedule goes away).
    pub fn export(&self, ns: &str, name: &str, s: &DrillScheduleStatus, deleting: bool) {
        let sum = s.summary.clone().unwrap_or_default();
        let results = [
            ("passed", sum.passed),
            ("failed", sum.failed),
            ("aborted", sum.aborted),
            ("skipped", sum.skipped),
        ];
        if deleting {
            for (r, _) in results {
                let _ = self.runs.remove_label_values(&[ns, name, r]);
            }
            let _ = self.last_recovery_seconds.remove_label_values(&[ns, name]);
            return;
        }
        for (r, v) in results {
            self.runs.with_label_values(&[ns, name, r]).set(v as i64);
        }
        if let Some(secs) = s.runs.iter().find_map(|r| r.recovery_seconds) {
            self.last_recovery_seconds
                .with_label_values(&[ns, name])
                .set(secs);
        }
    }
}

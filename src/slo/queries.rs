//! PromQL for an indicator, built in one place: the window's good and total events,
//! error ratios over the burn-rate windows, and the bucket boundaries of a histogram.

use crate::api::response_time_target::{LatencyIndicator, RatioIndicator};

/// `selector` (label matchers in braces, or none) with `extra` matchers added.
pub fn with_matchers(selector: Option<&str>, extra: &[String]) -> String {
    let inner = selector
        .map(|s| {
            s.trim()
                .trim_start_matches('{')
                .trim_end_matches('}')
                .trim()
        })
        .unwrap_or("")
        .trim_end_matches(',')
        .trim();
    let mut parts: Vec<String> = Vec::new();
    if !inner.is_empty() {
        parts.push(inner.to_string());
    }
    parts.extend(extra.iter().cloned());
    format!("{{{}}}", parts.join(", "))
}

/// The `le` matcher of a bucket boundary. Prometheus 3 stores `le="1"` as `"1.0"` while
/// 2.x kept the exposed text, so a whole number matches both forms (a history spanning an
/// upgrade then sums the old and the new series, each over its own time range).
pub fn le_matcher(threshold_seconds: f64) -> String {
    if threshold_seconds.fract() == 0.0 {
        format!("le=~\"{}(\\\\.0)?\"", threshold_seconds as u64)
    } else {
        format!("le=\"{threshold_seconds}\"")
    }
}

/// Queries of a latency indicator.
pub struct LatencyQueries<'a> {
    pub indicator: &'a LatencyIndicator,
    /// From [`le_matcher`].
    pub le_matcher: String,
}

impl<'a> LatencyQueries<'a> {
    pub fn new(indicator: &'a LatencyIndicator) -> Result<Self, crate::duration::DurationError> {
        Ok(Self {
            indicator,
            le_matcher: le_matcher(indicator.threshold.parse()?.as_secs_f64()),
        })
    }

    fn bucket(&self) -> String {
        format!(
            "{}_bucket{}",
            self.indicator.histogram,
            with_matchers(
                self.indicator.selector.as_deref(),
                std::slice::from_ref(&self.le_matcher)
            )
        )
    }
    fn count(&self) -> String {
        format!(
            "{}_count{}",
            self.indicator.histogram,
            with_matchers(self.indicator.selector.as_deref(), &[])
        )
    }
}

/// Queries of a ratio indicator.
pub struct RatioQueries<'a> {
    pub indicator: &'a RatioIndicator,
}

/// What every request-based indicator offers.
pub trait EventQueries {
    /// Series selector of good events (a counter).
    fn good_series(&self) -> String;
    /// Series selector of all events (a counter).
    fn total_series(&self) -> String;

    /// Good events over `window`, e.g. `28d`.
    fn good_increase(&self, window: &str) -> String {
        format!("sum(increase({}[{window}]))", self.good_series())
    }
    fn total_increase(&self, window: &str) -> String {
        format!("sum(increase({}[{window}]))", self.total_series())
    }
    /// Share of bad events over `window` (NaN when there were none).
    fn error_ratio(&self, window: &str) -> String {
        format!(
            "1 - (sum(rate({}[{window}])) / sum(rate({}[{window}])))",
            self.good_series(),
            self.total_series()
        )
    }
}

impl EventQueries for LatencyQueries<'_> {
    fn good_series(&self) -> String {
        self.bucket()
    }
    fn total_series(&self) -> String {
        self.count()
    }
}

impl EventQueries for RatioQueries<'_> {
    fn good_series(&self) -> String {
        self.indicator.good.as_str().trim().to_string()
    }
    fn total_series(&self) -> String {
        self.indicator.total.as_str().trim().to_string()
    }
}

/// The `le` values of a histogram's buckets, one sample each.
pub fn bucket_boundaries(indicator: &LatencyIndicator) -> String {
    format!(
        "count by (le) (last_over_time({}_bucket{}[1h]))",
        indicator.histogram,
        with_matchers(indicator.selector.as_deref(), &[])
    )
}

/// The `le` label value among `available` equal to `threshold_seconds` (compared as
/// numbers: Prometheus 3 stores `le="1"` as `"1.0"`), or None.
pub fn matching_le(available: &[String], threshold_seconds: f64) -> Option<&str> {
    available
        .iter()
        .find(|le| {
            le.parse::<f64>()
                .is_ok_and(|v| (v - threshold_seconds).abs() <= 1e-9 * threshold_seconds.max(1.0))
        })
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::{DurationString, PromQl};

    fn latency(selector: Option<&str>) -> LatencyIndicator {
        LatencyIndicator {
            histogram: "http_request_duration_seconds".into(),
            selector: selector.map(String::from),
            threshold: DurationString::new("300ms"),
        }
    }

    #[test]
    fn matchers_are_added_inside_the_braces() {
        assert_eq!(with_matchers(None, &["le=\"0.3\"".into()]), "{le=\"0.3\"}");
        assert_eq!(with_matchers(Some("{}"), &[]), "{}");
        assert_eq!(
            with_matchers(Some(r#"{job="a", route!="/h",}"#), &["le=\"0.3\"".into()]),
            r#"{job="a", route!="/h", le="0.3"}"#
        );
    }

    #[test]
    fn latency_queries_use_bucket_and_count() {
        let ind = latency(Some(r#"{service="checkout"}"#));
        let q = LatencyQueries::new(&ind).unwrap();
        assert_eq!(
            q.good_increase("28d"),
            r#"sum(increase(http_request_duration_seconds_bucket{service="checkout", le="0.3"}[28d]))"#
        );
        assert_eq!(
            q.total_increase("28d"),
            r#"sum(increase(http_request_duration_seconds_count{service="checkout"}[28d]))"#
        );
        assert_eq!(
            q.error_ratio("5m"),
            r#"1 - (sum(rate(http_request_duration_seconds_bucket{service="checkout", le="0.3"}[5m])) / sum(rate(http_request_duration_seconds_count{service="checkout"}[5m])))"#
        );
        assert_eq!(
            bucket_boundaries(&ind),
            r#"count by (le) (last_over_time(http_request_duration_seconds_bucket{service="checkout"}[1h]))"#
        );
    }

    #[test]
    fn ratio_queries_use_the_counters_as_given() {
        let ind = RatioIndicator {
            good: PromQl::new(r#"http_requests_total{code!~"5.."}"#),
            total: PromQl::new("http_requests_total"),
        };
        let q = RatioQueries { indicator: &ind };
        assert_eq!(
            q.good_increase("7d"),
            r#"sum(increase(http_requests_total{code!~"5.."}[7d]))"#
        );
    }

    #[test]
    fn whole_second_thresholds_match_both_le_forms() {
        assert_eq!(le_matcher(0.3), r#"le="0.3""#);
        assert_eq!(le_matcher(1.0), r#"le=~"1(\\.0)?""#);
        assert_eq!(le_matcher(10.0), r#"le=~"10(\\.0)?""#);
    }

    #[test]
    fn bucket_boundaries_compare_as_numbers() {
        let available: Vec<String> = ["0.1", "0.25", "0.3", "1.0", "+Inf"]
            .map(String::from)
            .into();
        assert_eq!(matching_le(&available, 0.3), Some("0.3"));
        assert_eq!(matching_le(&available, 1.0), Some("1.0"));
        assert_eq!(matching_le(&available, 0.2), None);
    }
}

//! Long windows from recorded series: one pair of recording rules per indicator shape
//! (not per target), recording every 5 minutes the good and total events of the last 5
//! minutes, summed by the shape's varying labels (the namespace among them). One pair
//! serves every target of the shape, whatever its window: the window's events are the sum
//! of its recorded samples (`sum_over_time(...[28d])`, 8,064 samples a series instead of
//! 40,320 raw ones at a 1-minute scrape, 80,640 at 30 s), and so are the 1d and 3d burn
//! windows'. The 5m, 1h and 6h burn windows stay raw (they are short and must be fresh).
//!
//! A rule reads only the namespaces of the shape's members (the tenancy label restricted
//! to them), so no tenant makes the operator record another namespace's series. A member
//! is read from the recordings only once they cover its window (or 3 days, the longest
//! recorded burn window): until then, from the raw series. Pure: rules, queries and the
//! coverage check are plain text, unit-tested here and run against a real Prometheus in
//! `tests/slo_recordings.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use super::batch::{GroupKey, Membership, SelectorShape, raw_selectors, render};

/// The recorded good events of the last [`STEP`], per shape and varying labels.
pub const GOOD: &str = "maturity:rtt_good:increase5m";
/// The recorded total events of the last [`STEP`].
pub const TOTAL: &str = "maturity:rtt_total:increase5m";
/// The label naming the shape a recorded series belongs to.
pub const SHAPE_LABEL: &str = "mo_shape";
/// How often the recordings are evaluated, and what each sample covers.
pub const STEP: Duration = Duration::from_secs(300);
/// The burn windows read from the recordings; shorter ones stay raw.
pub const RECORDED_WINDOWS: &[&str] = &["1d", "3d"];
/// The longest recorded burn window: recordings must cover at least this.
const LONGEST_BURN: Duration = Duration::from_secs(3 * 86400);

/// One recording rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Recording {
    pub record: String,
    pub expr: String,
    pub labels: BTreeMap<String, String>,
}

/// The shape of a group without its window (16 hex digits): targets of one shape and any
/// window share a recording.
pub fn shape_id(key: &GroupKey) -> String {
    let mut key = key.clone();
    match &mut key {
        GroupKey::Latency { window, .. } | GroupKey::Ratio { window, .. } => window.clear(),
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The selector shape of a recorded series of `record` for shape `id`, with the group's
/// varying labels.
pub fn recorded_shape(record: &str, id: &str, eq_labels: &[String]) -> SelectorShape {
    SelectorShape {
        metric: Some(record.to_string()),
        fixed: vec![format!("{SHAPE_LABEL}=\"{id}\"")],
        eq_labels: eq_labels.to_vec(),
    }
}

/// The two recording rules of a group's shape, reading only the `tenants` (values of
/// `tenant_label`, a varying label of the group) when given; every other varying label is
/// left open, so one rule serves every member.
pub fn rules(
    key: &GroupKey,
    tenant_label: Option<&str>,
    tenants: &BTreeSet<&str>,
) -> [Recording; 2] {
    let labels = key.eq_labels();
    let only: Vec<BTreeSet<&str>> = labels
        .iter()
        .map(|l| {
            if Some(l.as_str()) == tenant_label {
                tenants.clone()
            } else {
                BTreeSet::new()
            }
        })
        .collect();
    let (good, total, _) = raw_selectors(key, &only);
    let by = if labels.is_empty() {
        String::new()
    } else {
        format!(" by ({})", labels.join(", "))
    };
    let step = crate::duration::format_duration(STEP);
    let id = shape_id(key);
    let rule = |record: &str, series: &str| Recording {
        record: record.to_string(),
        expr: format!("sum{by} (increase({series}[{step}]))"),
        labels: BTreeMap::from([(SHAPE_LABEL.to_string(), id.clone())]),
    };
    [rule(GOOD, &good), rule(TOTAL, &total)]
}

/// The series of `record` of one member of a group (its own values of the varying labels).
fn member_series(record: &str, m: &Membership) -> String {
    let values: Vec<BTreeSet<&str>> = m
        .values
        .iter()
        .map(|v| BTreeSet::from([v.as_str()]))
        .collect();
    render(
        &recorded_shape(record, &shape_id(&m.key), m.key.eq_labels()),
        &[],
        &values,
    )
}

/// A member's share of bad events over a recorded burn window ([`RECORDED_WINDOWS`]), from
/// the recordings: what a burn-rate alert reads for its long window instead of a raw rate
/// over days. Until the recordings reach back the whole window, it is the share over the
/// time they cover.
pub fn error_ratio(m: &Membership, window: &str) -> String {
    format!(
        "1 - (sum(sum_over_time({}[{window}])) / sum(sum_over_time({}[{window}])))",
        member_series(GOOD, m),
        member_series(TOTAL, m)
    )
}

/// A member's events per second over a recorded burn window, from the recordings.
pub fn total_rate(m: &Membership, window: &str) -> String {
    let seconds = crate::duration::parse_duration(window)
        .map(|d| d.as_secs().max(1))
        .unwrap_or(1);
    format!(
        "sum(sum_over_time({}[{window}])) / {seconds}",
        member_series(TOTAL, m)
    )
}

/// How long the recordings must reach back for a member of `window` to be read from them.
pub fn needed(window: Duration) -> Duration {
    window.max(LONGEST_BURN)
}

/// The query telling which members the recordings cover for `needed`: the varying-label
/// values of every recorded total series that had a sample `needed` ago.
pub fn coverage_query(key: &GroupKey, members: &[&[String]], needed: Duration) -> String {
    let labels = key.eq_labels();
    let values: Vec<BTreeSet<&str>> = (0..labels.len())
        .map(|i| members.iter().map(|m| m[i].as_str()).collect())
        .collect();
    let shape = recorded_shape(TOTAL, &shape_id(key), labels);
    let by = labels.join(", ");
    format!(
        "count by ({by}) (last_over_time({}[{}s] offset {}s))",
        render(&shape, &[], &values),
        STEP.as_secs() * 3,
        needed.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::response_time_target::ResponseTimeTargetSpec;
    use crate::prom::enforce::Tenancy;
    use crate::slo::batch::{Source, group_query, membership};

    fn latency(service: &str, window: &str) -> ResponseTimeTargetSpec {
        serde_saphyr::from_str(&format!(
            r#"{{service: {service}, requestClass: c, objective: 99, window: {window},
               indicator: {{latency: {{histogram: h, selector: '{{service="{service}", route!="/healthz"}}', threshold: 300ms}}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn one_pair_of_rules_per_shape_reads_only_the_members_namespaces() {
        let t = Tenancy::default();
        let a = membership("shop", &latency("a", "28d"), &t).unwrap();
        let b = membership("web", &latency("b", "7d"), &t).unwrap();
        assert_ne!(a.key, b.key, "two windows: two groups");
        assert_eq!(
            shape_id(&a.key),
            shape_id(&b.key),
            "one shape: one recording"
        );
        let [good, total] = rules(&a.key, Some("namespace"), &BTreeSet::from(["shop", "web"]));
        assert_eq!(good.record, GOOD);
        assert_eq!(
            good.expr,
            r#"sum by (namespace, service) (increase(h_bucket{route!="/healthz", namespace=~"shop|web", le="0.3"}[5m]))"#
        );
        assert_eq!(
            total.expr,
            r#"sum by (namespace, service) (increase(h_count{route!="/healthz", namespace=~"shop|web"}[5m]))"#
        );
        assert_eq!(total.labels[SHAPE_LABEL], shape_id(&a.key));
        for r in [&good, &total] {
            assert!(promql_parser::parser::parse(&r.expr).is_ok(), "{}", r.expr);
        }
    }

    #[test]
    fn a_recorded_query_reads_the_window_and_long_burn_windows_from_the_recordings() {
        let t = Tenancy::default();
        let a = membership("shop", &latency("a", "28d"), &t).unwrap();
        let id = shape_id(&a.key);
        let q = group_query(&a.key, &[&a.values], Source::Recorded(&id));
        let rec = format!(
            r#"maturity:rtt_good:increase5m{{mo_shape="{id}", namespace="shop", service="a"}}"#
        );
        assert!(
            q.contains(&format!(
                r#"label_replace(sum by (namespace, service) (sum_over_time({rec}[28d])), "mo_q", "good", "", "")"#
            )),
            "{q}"
        );
        // 3d as a rate: the recorded events over 259,200 s.
        assert!(
            q.contains(&format!(
                r#"label_replace(sum by (namespace, service) (sum_over_time({rec}[3d])) / 259200, "mo_q", "good_3d", "", "")"#
            )),
            "{q}"
        );
        // 5m, 1h and 6h stay raw.
        assert!(
            q.contains(
                r#"rate(h_bucket{route!="/healthz", namespace="shop", service="a", le="0.3"}[6h])"#
            ),
            "{q}"
        );
        assert!(!q.contains("increase(h_"), "no raw window: {q}");
        assert!(promql_parser::parser::parse(&q).is_ok(), "{q}");

        let c = coverage_query(
            &a.key,
            &[&a.values],
            needed(Duration::from_secs(28 * 86400)),
        );
        assert_eq!(
            c,
            format!(
                r#"count by (namespace, service) (last_over_time(maturity:rtt_total:increase5m{{mo_shape="{id}", namespace="shop", service="a"}}[900s] offset 2419200s))"#
            )
        );
        assert_eq!(needed(Duration::from_secs(86400)), LONGEST_BURN);
    }
}

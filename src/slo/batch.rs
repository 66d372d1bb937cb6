//! Batching: targets whose indicators have the same shape (same metric, threshold, window
//! and matchers, differing only in the values of equality matchers, e.g. `{service="a"}`
//! and `{service="b"}`) are answered by one query per cycle, across namespaces. Each
//! target's selector is scoped to its namespace first (the tenancy label becomes one of
//! its equality matchers, `namespace="shop"`), so the one query reads only the members'
//! namespaces (`namespace=~"shop|web"`) and its answer, summed `by` the varying labels
//! (the namespace among them), splits back per member. The query asks for the window's
//! good and total events and every burn window's rates at once, each part tagged with a
//! `mo_q` label. Pure: planning and splitting the answer are unit-tested without
//! Prometheus.

use std::collections::{BTreeMap, BTreeSet};

use promql_parser::parser::{Expr, parse};

use super::queries::le_matcher;
use super::{BURN_WINDOWS, Counts, Observations, Problem};
use crate::api::common::PromQl;
use crate::api::response_time_target::{Indicator, ResponseTimeTargetSpec};
use crate::prom::enforce::Tenancy;
use crate::prom::{Sample, ValueError};

/// Label that tags each part of a batched answer.
pub const PART_LABEL: &str = "mo_q";

/// A series selector split into the part shared by a group and the values that vary.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SelectorShape {
    pub metric: Option<String>,
    /// Matchers other than `=`, rendered (`route!="/healthz"`), sorted.
    pub fixed: Vec<String>,
    /// Labels matched with `=`, sorted.
    pub eq_labels: Vec<String>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Splits `metric{a="1", b!="2"}` (or `{...}` with `metric` given) into its shape and the
/// values of its equality matchers, in `eq_labels` order.
pub fn split_selector(
    metric: Option<&str>,
    selector: &str,
) -> Result<(SelectorShape, Vec<String>), String> {
    let text = match metric {
        Some(m) => format!(
            "{m}{}",
            if selector.trim().is_empty() {
                "{}"
            } else {
                selector.trim()
            }
        ),
        None => selector.trim().to_string(),
    };
    split_expr(&text, parse(&text))
}

/// [`split_selector`] of `text` parsed (`expr`).
fn split_expr(
    text: &str,
    expr: Result<Expr, String>,
) -> Result<(SelectorShape, Vec<String>), String> {
    let vs = match expr {
        Ok(Expr::VectorSelector(vs)) if vs.offset.is_none() && vs.at.is_none() => vs,
        Ok(_) => return Err(format!("{text:?} is not a plain series selector")),
        Err(e) => return Err(format!("{text:?}: {e}")),
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err(format!("{text:?} uses 'or' matchers"));
    }
    let mut fixed = Vec::new();
    let mut eq: BTreeMap<String, String> = BTreeMap::new();
    for m in &vs.matchers.matchers {
        let op = m.op.to_string();
        // `__name__` never varies within a group: aggregations drop it.
        if op == "=" && m.name != "__name__" && !eq.contains_key(&m.name) {
            eq.insert(m.name.clone(), m.value.clone());
        } else {
            fixed.push(format!("{}{}\"{}\"", m.name, op, escape(&m.value)));
        }
    }
    fixed.sort();
    Ok((
        SelectorShape {
            metric: vs.name.clone(),
            fixed,
            eq_labels: eq.keys().cloned().collect(),
        },
        eq.into_values().collect(),
    ))
}

/// What makes targets answerable by one query.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKey {
    Latency {
        window: String,
        le: String,
        shape: SelectorShape,
    },
    Ratio {
        window: String,
        good: SelectorShape,
        total: SelectorShape,
    },
}

impl GroupKey {
    /// The labels matched with `=` (values vary per member), sorted.
    pub fn eq_labels(&self) -> &[String] {
        match self {
            GroupKey::Latency { shape, .. } => &shape.eq_labels,
            GroupKey::Ratio { good, .. } => &good.eq_labels,
        }
    }
}

/// Where one target belongs: its group and its values of the group's varying labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub key: GroupKey,
    pub values: Vec<String>,
}

/// The group of a target of `namespace`, or why it cannot be evaluated (an invalid
/// selector is a spec error; one that reads another namespace is not allowed).
pub fn membership(
    namespace: &str,
    spec: &ResponseTimeTargetSpec,
    tenancy: &Tenancy,
) -> Result<Membership, Problem> {
    planned(namespace, spec, tenancy).map(|(m, _)| m)
}

/// A selector as it may be sent for `namespace` (`namespace="..."` is then one of its
/// equality matchers, so a group query reads only its members' namespaces), split. Each
/// selector is parsed and scoped once on the way that succeeds (a parse compiles its
/// regexes, the most expensive part of planning a target); an error names what the user
/// wrote.
fn scoped_split(
    field: &str,
    text: &str,
    namespace: &str,
    tenancy: &Tenancy,
) -> Result<(String, SelectorShape, Vec<String>), Problem> {
    let invalid = |e: String| Problem::InvalidSpec(e);
    let as_written = || split_selector(None, text).map_err(invalid).err();
    let scoped = match tenancy.scope_expr(text.trim(), namespace) {
        Ok(s) => s,
        Err(e) => {
            return Err(
                as_written().unwrap_or_else(|| Problem::QueryNotAllowed(format!("{field}: {e}")))
            );
        }
    };
    let scoped_text = scoped.to_string();
    match split_expr(&scoped_text, Ok(scoped)) {
        Ok((shape, values)) => Ok((scoped_text, shape, values)),
        Err(e) => Err(as_written().unwrap_or(Problem::InvalidSpec(e))),
    }
}

/// The target's group, and its indicator with its selectors scoped to `namespace` (what
/// its own queries are made of).
pub fn planned(
    namespace: &str,
    spec: &ResponseTimeTargetSpec,
    tenancy: &Tenancy,
) -> Result<(Membership, Indicator), Problem> {
    let invalid = |e: String| Problem::InvalidSpec(e);
    if let Some(l) = &spec.indicator.latency {
        let threshold = l.threshold.parse().map_err(|e| invalid(e.to_string()))?;
        let selector = l.selector.as_deref().map(str::trim).unwrap_or("");
        let text = format!(
            "{}{}",
            l.histogram,
            if selector.is_empty() { "{}" } else { selector }
        );
        let (scoped, shape, values) = scoped_split("latency selector", &text, namespace, tenancy)?;
        let mut indicator = spec.indicator.clone();
        if let (Some(l), Some(matchers)) =
            (&mut indicator.latency, scoped.strip_prefix(&l.histogram))
        {
            l.selector = Some(matchers.to_string());
        }
        let membership = Membership {
            key: GroupKey::Latency {
                window: spec.window.to_string(),
                le: le_matcher(threshold.as_secs_f64()),
                shape,
            },
            values,
        };
        return Ok((membership, indicator));
    }
    if let Some(r) = &spec.indicator.ratio {
        let (good_text, good, good_values) =
            scoped_split("ratio.good", r.good.as_str(), namespace, tenancy)?;
        let (total_text, total, total_values) =
            scoped_split("ratio.total", r.total.as_str(), namespace, tenancy)?;
        if good.eq_labels != total.eq_labels || good_values != total_values {
            return Err(invalid(
                "ratio.good and ratio.total must match the same labels with '=' and the same values (e.g. both {service=\"checkout\"})".into(),
            ));
        }
        let mut indicator = spec.indicator.clone();
        if let Some(r) = &mut indicator.ratio {
            r.good = PromQl::new(good_text);
            r.total = PromQl::new(total_text);
        }
        let membership = Membership {
            key: GroupKey::Ratio {
                window: spec.window.to_string(),
                good,
                total,
            },
            values: good_values,
        };
        return Ok((membership, indicator));
    }
    Err(Problem::InvalidSpec(
        "alertResolution indicators are not evaluated by this version of the operator yet".into(),
    ))
}

/// Renders a selector of `shape` matching any of `values` (per varying label; an empty set
/// leaves that label unmatched).
pub fn render(shape: &SelectorShape, extra: &[&str], values: &[BTreeSet<&str>]) -> String {
    let mut matchers: Vec<String> = shape.fixed.clone();
    for (label, vals) in shape.eq_labels.iter().zip(values) {
        if vals.is_empty() {
            continue;
        }
        if vals.len() == 1 {
            matchers.push(format!(
                "{label}=\"{}\"",
                escape(vals.iter().next().copied().unwrap_or(""))
            ));
        } else {
            let alternatives: Vec<String> = vals.iter().map(|v| escape(&regex_escape(v))).collect();
            matchers.push(format!("{label}=~\"{}\"", alternatives.join("|")));
        }
    }
    matchers.extend(extra.iter().map(|s| s.to_string()));
    format!(
        "{}{{{}}}",
        shape.metric.as_deref().unwrap_or(""),
        matchers.join(", ")
    )
}

fn regex_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Where a group query reads the window and the long burn windows from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// The raw series, over the whole window.
    Raw,
    /// The shape's recorded series ([`super::recordings`]), whose id this is.
    Recorded(&'a str),
}

/// The one query answering every member of a group (or of a batch of it).
pub fn group_query(key: &GroupKey, members: &[&[String]], source: Source<'_>) -> String {
    let labels = key.eq_labels();
    let values: Vec<BTreeSet<&str>> = (0..labels.len())
        .map(|i| members.iter().map(|m| m[i].as_str()).collect())
        .collect();
    let by = if labels.is_empty() {
        String::new()
    } else {
        format!(" by ({})", labels.join(", "))
    };
    let part = |name: &str, f: &str, series: &str, w: &str| {
        format!(
            "label_replace(sum{by} ({f}({series}[{w}])), \"{PART_LABEL}\", \"{name}\", \"\", \"\")"
        )
    };
    let (good, total, window) = raw_selectors(key, &values);
    let mut parts = Vec::new();
    let recorded = |record: &str, id: &str| {
        let shape = super::recordings::recorded_shape(record, id, labels);
        render(&shape, &[], &values)
    };
    match source {
        Source::Raw => {
            parts.push(part("good", "increase", &good, window));
            parts.push(part("total", "increase", &total, window));
        }
        Source::Recorded(id) => {
            let (rg, rt) = (
                recorded(super::recordings::GOOD, id),
                recorded(super::recordings::TOTAL, id),
            );
            parts.push(part("good", "sum_over_time", &rg, window));
            parts.push(part("total", "sum_over_time", &rt, window));
        }
    }
    for w in BURN_WINDOWS {
        match source {
            Source::Recorded(id) if super::recordings::RECORDED_WINDOWS.contains(w) => {
                let seconds = crate::duration::parse_duration(w)
                    .map(|d| d.as_secs().max(1))
                    .unwrap_or(1);
                for (name, record) in [
                    ("good", super::recordings::GOOD),
                    ("total", super::recordings::TOTAL),
                ] {
                    let series = recorded(record, id);
                    parts.push(format!(
                        "label_replace(sum{by} (sum_over_time({series}[{w}])) / {seconds}, \"{PART_LABEL}\", \"{name}_{w}\", \"\", \"\")"
                    ));
                }
            }
            _ => {
                parts.push(part(&format!("good_{w}"), "rate", &good, w));
                parts.push(part(&format!("total_{w}"), "rate", &total, w));
            }
        }
    }
    parts.join("\nor ")
}

/// The good and total selectors of a group's raw series (for `values`), and its window.
pub fn raw_selectors<'k>(
    key: &'k GroupKey,
    values: &[BTreeSet<&str>],
) -> (String, String, &'k str) {
    match key {
        GroupKey::Latency {
            window, le, shape, ..
        } => {
            let bucket = SelectorShape {
                metric: shape.metric.as_ref().map(|m| format!("{m}_bucket")),
                ..shape.clone()
            };
            let count = SelectorShape {
                metric: shape.metric.as_ref().map(|m| format!("{m}_count")),
                ..shape.clone()
            };
            (
                render(&bucket, &[le.as_str()], values),
                render(&count, &[], values),
                window,
            )
        }
        GroupKey::Ratio {
            window,
            good,
            total,
            ..
        } => (
            render(good, &[], values),
            render(total, &[], values),
            window,
        ),
    }
}

/// The bucket boundaries of a latency group's histogram, `count by (le, <varying labels>)`
/// over the series present in the last hour (a scraped histogram keeps its series even
/// without traffic, so none in an hour means the histogram is not there).
pub fn group_buckets_query(key: &GroupKey, members: &[&[String]], by: &[String]) -> String {
    let GroupKey::Latency { shape, .. } = key else {
        return String::new();
    };
    let values: Vec<BTreeSet<&str>> = (0..shape.eq_labels.len())
        .map(|i| members.iter().map(|m| m[i].as_str()).collect())
        .collect();
    let bucket = SelectorShape {
        metric: shape.metric.as_ref().map(|m| format!("{m}_bucket")),
        ..shape.clone()
    };
    format!(
        "count by ({}) (last_over_time({}[1h]))",
        by.join(", "),
        render(&bucket, &[], &values)
    )
}

/// Splits a group's answer into each member's observations (`members` in the order given
/// to [`group_query`]). A member absent from the answer has no data.
pub fn split_answer(
    key: &GroupKey,
    members: &[&[String]],
    samples: &[Sample],
) -> Vec<Observations> {
    let labels = key.eq_labels();
    let mut by_values: BTreeMap<Vec<String>, BTreeMap<String, f64>> = BTreeMap::new();
    for s in samples {
        let Some(part) = s.labels.get(PART_LABEL) else {
            continue;
        };
        let values: Vec<String> = labels
            .iter()
            .map(|l| s.labels.get(l).cloned().unwrap_or_default())
            .collect();
        by_values
            .entry(values)
            .or_default()
            .insert(part.clone(), s.value);
    }
    members
        .iter()
        .map(|m| {
            let parts = by_values.get(*m);
            let get = |p: &str| parts.and_then(|parts| parts.get(p)).copied();
            let counts = match (get("good"), get("total")) {
                (Some(good), Some(total)) if good.is_finite() && total.is_finite() => {
                    Ok(Counts { good, total })
                }
                (Some(_), Some(_)) => Err(Problem::Value(ValueError::NaN)),
                // No good series but some total: no request was good (e.g. no bucket sample yet).
                (None, Some(total)) if total.is_finite() => Ok(Counts { good: 0.0, total }),
                _ => Err(Problem::Value(ValueError::Empty)),
            };
            let error_ratios = BURN_WINDOWS
                .iter()
                .map(|w| {
                    let ratio = match (get(&format!("good_{w}")), get(&format!("total_{w}"))) {
                        (g, Some(t)) if t > 0.0 && t.is_finite() => {
                            Ok((1.0 - g.unwrap_or(0.0) / t).clamp(0.0, 1.0))
                        }
                        (_, Some(_)) => Err(Problem::Value(ValueError::NaN)),
                        _ => Err(Problem::Value(ValueError::Empty)),
                    };
                    (w.to_string(), ratio)
                })
                .collect();
            Observations {
                counts,
                error_ratios,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom::Labels;

    fn spec(yaml: &str) -> ResponseTimeTargetSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn latency(service: &str) -> ResponseTimeTargetSpec {
        spec(&format!(
            r#"{{service: {service}, requestClass: c, objective: 99, window: 28d,
               indicator: {{latency: {{histogram: h, selector: '{{service="{service}", route!="/healthz"}}', threshold: 300ms}}}}}}"#
        ))
    }

    #[test]
    fn a_plan_scopes_each_selector_and_its_queries_are_made_of_the_scoped_selectors() {
        let tenancy = Tenancy::default();
        let (m, indicator) = planned("shop", &latency("a"), &tenancy).unwrap();
        assert_eq!(m, membership("shop", &latency("a"), &tenancy).unwrap());
        assert_eq!(
            indicator.latency.as_ref().unwrap().selector.as_deref(),
            // As the parser prints a selector: matchers sorted, no spaces.
            Some(r#"{namespace="shop",route!="/healthz",service="a"}"#)
        );
        let q = crate::slo::decide::queries_of(&latency("a").window, &indicator);
        assert_eq!(
            q["good"],
            r#"sum(increase(h_bucket{namespace="shop",route!="/healthz",service="a", le="0.3"}[28d]))"#
        );
        let ratio = spec(
            r#"{service: a, requestClass: c, objective: 99, window: 7d,
               indicator: {ratio: {good: 'r{service="a", code!~"5.."}', total: 'r{service="a"}'}}}"#,
        );
        let (_, indicator) = planned("web", &ratio, &tenancy).unwrap();
        let r = indicator.ratio.unwrap();
        assert_eq!(
            r.good.as_str(),
            r#"r{code!~"5..",namespace="web",service="a"}"#
        );
        assert_eq!(r.total.as_str(), r#"r{namespace="web",service="a"}"#);
        // An error names the selector as written, not as scoped.
        let mut bad = latency("a");
        bad.indicator.latency.as_mut().unwrap().selector = Some(r#"{service="a""#.into());
        assert!(matches!(
            planned("shop", &bad, &tenancy),
            Err(Problem::InvalidSpec(m)) if m.starts_with(r#""h{service=\"a\"""#) && !m.contains("shop")
        ));
    }

    #[test]
    fn selectors_split_into_shape_and_values() {
        let (shape, values) =
            split_selector(Some("h"), r#"{b="2", a="1", route!="/x", c=~"y.*"}"#).unwrap();
        assert_eq!(shape.metric.as_deref(), Some("h"));
        assert_eq!(shape.eq_labels, ["a", "b"]);
        assert_eq!(values, ["1", "2"]);
        assert_eq!(shape.fixed, [r#"c=~"y.*""#, r#"route!="/x""#]);
        assert!(
            split_selector(None, "sum(x)")
                .unwrap_err()
                .contains("not a plain series selector")
        );
        assert!(split_selector(None, "x{").is_err());
        let (shape, values) = split_selector(None, r#"{__name__="x_total", job="a"}"#).unwrap();
        assert_eq!(shape.eq_labels, ["job"]);
        assert_eq!(values, ["a"]);
        assert_eq!(shape.fixed, [r#"__name__="x_total""#]);
    }

    #[test]
    fn targets_differing_only_in_equality_values_share_a_group() {
        let a = membership("shop", &latency("a"), &Tenancy::Single).unwrap();
        let b = membership("shop", &latency("b"), &Tenancy::Single).unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!(
            (a.values.clone(), b.values.clone()),
            (vec!["a".to_string()], vec!["b".to_string()])
        );
        assert_eq!(
            a.key,
            membership("other", &latency("a"), &Tenancy::Single)
                .unwrap()
                .key,
            "one tenant: namespaces do not matter"
        );
        let mut slower = latency("a");
        slower.indicator.latency.as_mut().unwrap().threshold =
            crate::api::common::DurationString::new("1s");
        assert_ne!(
            a.key,
            membership("shop", &slower, &Tenancy::Single).unwrap().key
        );
    }

    #[test]
    fn groups_span_namespaces_and_their_query_reads_only_the_members_namespaces() {
        let tenancy = Tenancy::default();
        let shop = membership("shop", &latency("a"), &tenancy).unwrap();
        let web = membership("web", &latency("a"), &tenancy).unwrap();
        assert_eq!(shop.key, web.key, "one group across namespaces");
        // The namespace is a varying label, before `service` (labels sorted).
        assert_eq!(shop.values, ["shop", "a"]);
        assert_eq!(web.values, ["web", "a"]);
        let q = group_query(&shop.key, &[&shop.values, &web.values], Source::Raw);
        assert!(
            q.contains(r#"sum by (namespace, service) (increase(h_bucket{route!="/healthz", namespace=~"shop|web", service="a", le="0.3"}[28d]))"#),
            "{q}"
        );
        // Every selector of the query carries the namespace matcher.
        assert_eq!(
            q.matches("h_").count(),
            q.matches(r#"namespace=~"shop|web""#).count()
        );
        // A selector naming another namespace is not allowed, whatever the group.
        let mut other = latency("a");
        other.indicator.latency.as_mut().unwrap().selector =
            Some(r#"{service="a", route!="/healthz", namespace="web"}"#.into());
        assert!(matches!(
            membership("shop", &other, &tenancy),
            Err(Problem::QueryNotAllowed(m)) if m.starts_with("latency selector:")
        ));
        // A regex of the namespace label is one the enforcement replaces by the namespace.
        other.indicator.latency.as_mut().unwrap().selector =
            Some(r#"{service="a", route!="/healthz", namespace=~"sh.*"}"#.into());
        assert_eq!(membership("shop", &other, &tenancy).unwrap(), shop);
        // Answers split by namespace too: the same service in two namespaces stays apart.
        let sample = |ns: &str, part: &str, v: f64| {
            let mut labels = Labels::new();
            labels.insert("namespace".into(), ns.into());
            labels.insert("service".into(), "a".into());
            labels.insert(PART_LABEL.into(), part.into());
            Sample { labels, value: v }
        };
        let answer = vec![
            sample("shop", "good", 99.0),
            sample("shop", "total", 100.0),
            sample("web", "good", 50.0),
            sample("web", "total", 100.0),
        ];
        let obs = split_answer(&shop.key, &[&shop.values, &web.values], &answer);
        assert_eq!(
            obs[0].counts,
            Ok(Counts {
                good: 99.0,
                total: 100.0
            })
        );
        assert_eq!(
            obs[1].counts,
            Ok(Counts {
                good: 50.0,
                total: 100.0
            })
        );
    }

    #[test]
    fn one_query_covers_the_group_and_splits_back() {
        let a = membership("shop", &latency("a"), &Tenancy::Single).unwrap();
        let b = membership("shop", &latency("b.x"), &Tenancy::Single).unwrap();
        let members: Vec<&[String]> = vec![&a.values, &b.values];
        let q = group_query(&a.key, &members, Source::Raw);
        assert!(q.contains(r#"label_replace(sum by (service) (increase(h_bucket{route!="/healthz", service=~"a|b\\.x", le="0.3"}[28d])), "mo_q", "good", "", "")"#), "{q}");
        assert!(
            q.contains(
                r#"sum by (service) (rate(h_count{route!="/healthz", service=~"a|b\\.x"}[5m]))"#
            ),
            "{q}"
        );
        assert_eq!(q.matches("\nor ").count(), 11);
        assert!(
            promql_parser::parser::parse(&q).is_ok(),
            "the batched query parses"
        );

        let sample = |service: &str, part: &str, v: f64| {
            let mut labels = Labels::new();
            labels.insert("service".into(), service.into());
            labels.insert(PART_LABEL.into(), part.into());
            Sample { labels, value: v }
        };
        let answer = vec![
            sample("a", "good", 990.0),
            sample("a", "total", 1000.0),
            sample("a", "good_1h", 9.0),
            sample("a", "total_1h", 10.0),
            sample("a", "total_5m", 0.0),
        ];
        let obs = split_answer(&a.key, &members, &answer);
        assert_eq!(
            obs[0].counts,
            Ok(Counts {
                good: 990.0,
                total: 1000.0
            })
        );
        assert!((obs[0].error_ratios["1h"].clone().unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(
            obs[0].error_ratios["5m"],
            Err(Problem::Value(ValueError::NaN))
        );
        assert_eq!(
            obs[0].error_ratios["6h"],
            Err(Problem::Value(ValueError::Empty))
        );
        assert_eq!(
            obs[1].counts,
            Err(Problem::Value(ValueError::Empty)),
            "b.x had no series"
        );
    }

    #[test]
    fn ratio_targets_group_when_good_and_total_vary_alike() {
        let r = |svc: &str| {
            spec(&format!(
                r#"{{service: {svc}, requestClass: c, objective: 99, window: 7d,
                   indicator: {{ratio: {{good: 'http_requests_total{{service="{svc}", code!~"5.."}}', total: 'http_requests_total{{service="{svc}"}}'}}}}}}"#
            ))
        };
        let a = membership("shop", &r("a"), &Tenancy::Single).unwrap();
        let b = membership("shop", &r("b"), &Tenancy::Single).unwrap();
        assert_eq!(a.key, b.key);
        let q = group_query(&a.key, &[&a.values, &b.values], Source::Raw);
        assert!(
            q.contains(r#"increase(http_requests_total{code!~"5..", service=~"a|b"}[7d])"#),
            "{q}"
        );

        let mismatched = spec(
            r#"{service: s, requestClass: c, objective: 99, window: 7d,
               indicator: {ratio: {good: 'x_total{service="a"}', total: 'y_total{job="b"}'}}}"#,
        );
        assert!(matches!(
            membership("shop", &mismatched, &Tenancy::Single),
            Err(Problem::InvalidSpec(_))
        ));
    }
}

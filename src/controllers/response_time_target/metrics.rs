//! ResponseTimeTarget's metrics: attainment, objective, error budget, burn rates and
//! state per target; a deleted target's series go.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::ResourceExt;

use crate::api::ResponseTimeTarget;
use crate::metrics::Metrics;
use crate::slo::{self, Evaluation};

/// Labels of the per-target series.
pub const LABELS: &[&str] = &["namespace", "name", "service", "request_class"];

/// The per-target families: name, help, and the row's value (with the `state` or `window`
/// label for the two that have one).
const FAMILIES: [(&str, &str); 5] = [
    (
        "maturity_rtt_attainment_percent",
        "Percent of good events over the target's window.",
    ),
    ("maturity_rtt_objective_percent", "The target's objective."),
    (
        "maturity_rtt_error_budget_remaining_ratio",
        "Fraction of the window's error budget left (negative when overspent).",
    ),
    (
        "maturity_rtt_burn_rate",
        "Error budget burn rate over a lookback window (1 spends the budget exactly over the target's window).",
    ),
    (
        "maturity_rtt_state",
        "1 for the target's current state (met, missed, unknown, error), 0 for the others.",
    ),
];

/// What is exported of one target: its labels (escaped) and its last figures.
struct Row {
    labels: String,
    /// The generation the labels were made for (they change with the spec only).
    generation: Option<i64>,
    objective: f64,
    attainment: Option<f64>,
    budget: Option<f64>,
    burn: Vec<Option<f64>>,
    state: slo::State,
}

/// The per-target figures, exact at every evaluation, kept as one plain row per target
/// and rendered straight to text on `/metrics` (a row is a few hundred bytes; nine
/// registry series per target cost about 10 KB, and as much again at every scrape), and
/// the loop's own gauges.
pub struct RttMetrics {
    rows: Arc<Mutex<HashMap<String, Row>>>,
    /// Units of evaluation the loop holds: `batched` groups (one query per batch of
    /// members) and targets evaluated `alone` (alertResolution).
    pub groups: prometheus::IntGaugeVec,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(t: &ResponseTimeTarget) -> String {
    let values = [
        t.namespace().unwrap_or_default(),
        t.name_any(),
        t.spec.service.clone(),
        t.spec.request_class.clone(),
    ];
    LABELS
        .iter()
        .zip(values)
        .map(|(l, v)| format!("{l}=\"{}\"", escape(&v)))
        .collect::<Vec<_>>()
        .join(",")
}

impl RttMetrics {
    pub fn new(m: &Metrics) -> Self {
        let rows: Arc<Mutex<HashMap<String, Row>>> = Arc::default();
        let shared = rows.clone();
        m.add_renderer(Arc::new(move |out: &mut String| {
            render(&shared.lock().unwrap_or_else(|e| e.into_inner()), out)
        }));
        Self {
            rows,
            groups: m.int_gauges(
                "maturity_rtt_groups",
                "ResponseTimeTarget groups the loop evaluates: batched (one query per batch of members of one indicator shape, across namespaces) and alone (alertResolution targets).",
                &["kind"],
            ),
        }
    }

    pub fn export(&self, t: &ResponseTimeTarget, eval: &Evaluation) {
        let uid = t.metadata.uid.as_deref().unwrap_or_default();
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up by reference first: no uid copy per evaluation of a known target.
        let row = match rows.get_mut(uid) {
            Some(row) => row,
            None => rows.entry(uid.to_string()).or_insert(Row {
                labels: labels(t),
                generation: t.metadata.generation,
                objective: 0.0,
                attainment: None,
                budget: None,
                burn: Vec::new(),
                state: eval.state,
            }),
        };
        if row.generation != t.metadata.generation {
            row.labels = labels(t);
            row.generation = t.metadata.generation;
        }
        row.objective = t.spec.objective;
        row.attainment = eval.attainment;
        row.budget = eval.error_budget_remaining;
        row.burn.clear();
        row.burn.extend(
            slo::BURN_WINDOWS
                .iter()
                .map(|w| eval.burn_rates.get(*w).copied()),
        );
        row.state = eval.state;
    }

    /// Removes the rows of targets that are gone.
    pub fn forget(&mut self, gone: &[String]) {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        for uid in gone {
            rows.remove(uid);
        }
    }
}

/// The per-target families in the Prometheus text format.
fn render(rows: &HashMap<String, Row>, out: &mut String) {
    use std::fmt::Write;
    // About a kilobyte a target (nine lines of its labels and a figure): grown once.
    out.reserve(rows.len() * 1024);
    for (i, (name, help)) in FAMILIES.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for r in rows.values() {
            let l = &r.labels;
            let _ = match i {
                0 => r.attainment.map(|v| writeln!(out, "{name}{{{l}}} {v}")),
                1 => Some(writeln!(out, "{name}{{{l}}} {}", r.objective)),
                2 => r.budget.map(|v| writeln!(out, "{name}{{{l}}} {v}")),
                3 => {
                    for (w, v) in slo::BURN_WINDOWS.iter().zip(&r.burn) {
                        if let Some(v) = v {
                            let _ = writeln!(out, "{name}{{{l},window=\"{w}\"}} {v}");
                        }
                    }
                    None
                }
                _ => {
                    for state in slo::State::ALL {
                        let v = u8::from(state == r.state);
                        let _ = writeln!(out, "{name}{{{l},state=\"{}\"}} {v}", state.as_str());
                    }
                    None
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TargetBuilder;

    #[test]
    fn each_target_is_one_row_rendered_as_text_and_goes_with_its_target() {
        let m = Metrics::new();
        let mut rtt = RttMetrics::new(&m);
        let t = Arc::new(TargetBuilder::new("a\"b").build());
        let eval = Evaluation {
            attainment: Some(99.5),
            error_budget_remaining: Some(0.5),
            burn_rates: [("1h".to_string(), 0.25)].into(),
            counts: None,
            state: slo::State::Met,
            conditions: Vec::new(),
        };
        rtt.export(&t, &eval);
        let text = m.render();
        let l = r#"namespace="shop",name="a\"b""#;
        for line in [
            format!("maturity_rtt_attainment_percent{{{l},"),
            format!("maturity_rtt_error_budget_remaining_ratio{{{l},"),
        ] {
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(
            text.contains(&format!(
                r#"maturity_rtt_attainment_percent{{{l},service="checkout",request_class="api"}} 99.5"#
            )),
            "{text}"
        );
        assert!(text.contains(r#",window="1h"} 0.25"#), "{text}");
        assert!(
            !text.contains(r#"window="5m""#),
            "a window without a figure has no series"
        );
        assert_eq!(text.matches("maturity_rtt_state{").count(), 4, "{text}");
        assert!(text.contains(r#",state="met"} 1"#), "{text}");
        assert!(text.contains(r#",state="missed"} 0"#), "{text}");
        rtt.forget(&[t.uid().unwrap_or_default()]);
        assert!(
            !m.render().contains("maturity_rtt_state{"),
            "gone with its target"
        );
    }
}

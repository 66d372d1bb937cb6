//! Measured evidence: from facts gathered in the assessment's scope (workloads, the
//! operator's own ResponseTimeTargets, CanaryPolicies and DrillSchedules, Prometheus's
//! alerting rules, declared business signals, reports) to a [`Measurement`] per practice.
//! Pure; the thresholds are the documented defaults.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::evaluate::Measurement;
use crate::api::drill_schedule::RunResult;
use crate::api::{DrillSchedule, ResponseTimeTarget};
use crate::prom::AlertRule;
use crate::prom::enforce::Tenancy;

/// Share of workloads that must carry an owner label (ORG-2.1).
pub const OWNER_SHARE: f64 = 0.9;
/// Share of workloads that must declare a contact (ORG-3.1).
pub const CONTACT_SHARE: f64 = 0.9;
/// Share of Deployments managed by GitOps (RESP-3.2, ORG-3.4).
pub const GITOPS_SHARE: f64 = 0.8;
/// Share of alerting rules with a `runbook_url` annotation (BIZ-3.1).
pub const RUNBOOK_SHARE: f64 = 0.8;
/// Share of alerting rules with a `severity` label (BIZ-4.2, CX-2.4).
pub const SEVERITY_SHARE: f64 = 0.9;
/// Share of Deployments governed by a CanaryPolicy (CX-4.3).
pub const CANARY_SHARE: f64 = 0.8;
/// How recent a passed drill must be (ORG-5.4, RESP-5.1), in days.
pub const DRILL_PERIOD_DAYS: i64 = 35;
/// Over how many days Alertmanager's notifications are counted (RESP-2.2).
pub const NOTIFY_DAYS: u32 = 7;
/// The largest share of failed notifications that still counts as succeeding (RESP-2.2).
pub const NOTIFY_FAILED_SHARE: f64 = 0.05;

/// Notifications Alertmanager attempted over [`NOTIFY_DAYS`] by one integration (and one
/// receiver, where Alertmanager runs with `--enable-feature=receiver-name-in-metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationCount {
    pub integration: String,
    pub receiver: Option<String>,
    pub attempted: f64,
    pub failed: f64,
}

/// What Alertmanager shows of the scope's alerts (ORG-2.3, ORG-5.2, RESP-2.2).
#[derive(Debug, Clone, PartialEq)]
pub enum AlertingFacts {
    /// No Alertmanager to read (`--alertmanager-url` not given).
    NotConfigured,
    /// Its configuration could not be read: why.
    Unreadable(String),
    Read {
        /// Where the scope's page alerts go, and its other (ticket) alerts.
        page: Vec<crate::model::routing::Destination>,
        ticket: Vec<crate::model::routing::Destination>,
        /// Its notifications by integration (Err: why Prometheus could not tell).
        notifications: Result<Vec<NotificationCount>, String>,
    },
}

/// The labels of the scope's page and ticket alerts: those the operator generates for the
/// first of `targets` with burn-rate alerts (its first alert, and its first ticket), or
/// else `severity` critical and warning; the namespace always.
pub fn scope_alert_labels(
    targets: &[ResponseTimeTarget],
    namespace: &str,
    tenancy: &Tenancy,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let plain = |severity: &str| {
        BTreeMap::from([
            ("namespace".to_string(), namespace.to_string()),
            ("severity".to_string(), severity.to_string()),
        ])
    };
    let group = targets.iter().find_map(|t| {
        crate::slo::rules::burn_rate_group(t, tenancy)
            .ok()
            .flatten()
    });
    match group {
        Some(g) if !g.rules.is_empty() => {
            let page = g.rules[0].labels.clone();
            let ticket = g
                .rules
                .iter()
                .map(|r| &r.labels)
                .find(|l| l.get("severity") != page.get("severity"))
                .cloned()
                .unwrap_or_else(|| plain("warning"));
            (page, ticket)
        }
        _ => (plain("critical"), plain("warning")),
    }
}

/// ORG-2.3, ORG-5.2 and RESP-2.2 from what Alertmanager shows.
fn alerting(a: &AlertingFacts) -> [(&'static str, Measurement); 3] {
    use crate::model::routing::Destination;
    let (page, ticket, notifications) = match a {
        AlertingFacts::NotConfigured => {
            let why = "no Alertmanager to read (the operator's --alertmanager-url)";
            return [
                ("ORG-2.3", Measurement::Absent(why.into())),
                ("ORG-5.2", Measurement::Absent(why.into())),
                ("RESP-2.2", Measurement::Absent(why.into())),
            ];
        }
        AlertingFacts::Unreadable(why) => {
            let why = format!("Alertmanager's configuration cannot be read: {why}");
            return [
                ("ORG-2.3", Measurement::Unknown(why.clone())),
                ("ORG-5.2", Measurement::Unknown(why.clone())),
                ("RESP-2.2", Measurement::Unknown(why)),
            ];
        }
        AlertingFacts::Read {
            page,
            ticket,
            notifications,
        } => (page, ticket, notifications),
    };
    let names = |d: &[&Destination]| {
        d.iter()
            .map(|d| d.receiver.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let notifying: Vec<&Destination> = page.iter().filter(|d| !d.integrations.is_empty()).collect();
    let own: Vec<&Destination> = notifying
        .iter()
        .copied()
        .filter(|d| !d.path.is_empty())
        .collect();
    let all: Vec<&Destination> = page.iter().collect();
    let org23 = if let Some(d) = own.first() {
        Measurement::Met(format!(
            "the namespace's page alerts reach receiver {} ({}) by a route of their own ({})",
            d.receiver,
            d.integrations.join(", "),
            d.path.join(", ")
        ))
    } else if notifying.is_empty() {
        Measurement::NotMet(format!(
            "the namespace's page alerts reach receiver {}, which notifies nobody (no integration)",
            names(&all)
        ))
    } else {
        Measurement::NotMet(format!(
            "the namespace's page alerts fall through to the default route (receiver {}): no route of their own",
            names(&all)
        ))
    };
    let tickets: Vec<&str> = ticket.iter().map(|d| d.receiver.as_str()).collect();
    let org52 = match notifying
        .iter()
        .find(|d| !tickets.contains(&d.receiver.as_str()))
    {
        Some(d) => Measurement::Met(format!(
            "critical alerts escalate to receiver {} ({}); the others go to {}",
            d.receiver,
            d.integrations.join(", "),
            tickets.join(", ")
        )),
        None if notifying.is_empty() => Measurement::NotMet(format!(
            "the namespace's page alerts reach receiver {}, which notifies nobody",
            names(&all)
        )),
        None => Measurement::NotMet(format!(
            "page and ticket alerts of the namespace go to the same receiver ({}): no escalation for critical alerts",
            names(&notifying)
        )),
    };
    let resp22 = if notifying.is_empty() {
        Measurement::NotMet(format!(
            "nobody is notified of the namespace's page alerts (receiver {} has no integration)",
            names(&all)
        ))
    } else {
        match notifications {
            Err(why) => Measurement::Unknown(format!(
                "Alertmanager's notifications cannot be read: {why}"
            )),
            Ok(rows) => {
                let by_receiver = rows.iter().any(|r| r.receiver.is_some());
                let counted: Vec<&NotificationCount> = rows
                    .iter()
                    .filter(|r| {
                        if by_receiver {
                            notifying
                                .iter()
                                .any(|d| r.receiver.as_deref() == Some(d.receiver.as_str()))
                        } else {
                            notifying
                                .iter()
                                .any(|d| d.integrations.contains(&r.integration))
                        }
                    })
                    .collect();
                let attempted: f64 = counted.iter().map(|r| r.attempted).sum();
                let failed: f64 = counted.iter().map(|r| r.failed).sum();
                let mut kinds: Vec<&str> = notifying
                    .iter()
                    .flat_map(|d| d.integrations.iter().map(String::as_str))
                    .collect();
                kinds.sort();
                kinds.dedup();
                let of = if by_receiver {
                    format!("receiver {}", names(&notifying))
                } else {
                    format!("{} integrations", kinds.join(", "))
                };
                let (a, f) = (attempted.round(), failed.round());
                if a < 1.0 {
                    Measurement::Absent(format!(
                        "no notification by {of} in the last {NOTIFY_DAYS} days"
                    ))
                } else if f / a > NOTIFY_FAILED_SHARE {
                    Measurement::NotMet(format!(
                        "{f} of {a} notifications by {of} failed in the last {NOTIFY_DAYS} days (at most {:.0}% may)",
                        NOTIFY_FAILED_SHARE * 100.0
                    ))
                } else {
                    Measurement::Met(format!(
                        "{a} notifications by {of} in the last {NOTIFY_DAYS} days, {f} failed"
                    ))
                }
            }
        }
    };
    [("ORG-2.3", org23), ("ORG-5.2", org52), ("RESP-2.2", resp22)]
}

/// A workload in scope and what it declares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workload {
    pub name: String,
    pub owner: bool,
    pub contact: bool,
    pub gitops: bool,
    pub canary_governed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetFact {
    pub name: String,
    /// `ObjectiveMet`: Some(true/false), None while unknown.
    pub objective_met: Option<bool>,
    /// The burn-rate alert expressions the operator generates for it, in canonical form
    /// ([`crate::prom::enforce::canonical`]); empty when it asks for none.
    pub burn_alerts: Vec<String>,
    /// An SLO of another tool: how its own burn-rate alerts are recognised
    /// ([`is_tool_alert`]).
    pub tool_alerts: Option<ToolAlerts>,
}

/// The burn-rate alerts another SLO tool writes for one of its SLOs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolAlerts {
    /// Sloth's, over its SLI error-ratio recordings (`slo:sli_error:ratio_rate<window>`) of
    /// the SLO whose `sloth_id` this is.
    Sloth { id: String },
    /// Pyrra's, over its burn-rate recordings (`<metric>:burnrate<window>`) of the SLO whose
    /// `slo` label (the ServiceLevelObjective's name) this is.
    Pyrra { slo: String },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CanaryFacts {
    pub policies: usize,
    pub analyzed: u32,
    pub rolled_back: u32,
    /// Governed Deployments whose current revision rolled out without analysis (the policy
    /// did not hold it), as `<deployment> revision <n>`.
    pub unguarded: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DrillFact {
    pub name: String,
    /// `announce: false` with a jitter: nobody knows when the schedule starts a run.
    pub unannounced: bool,
    pub last_passed: Option<Timestamp>,
    /// The last passed run the schedule started (not the run-now annotation).
    pub last_scheduled_pass: Option<Timestamp>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportFacts {
    pub weekly: bool,
    pub monthly: bool,
    pub last_weekly: Option<Timestamp>,
    pub last_monthly: Option<Timestamp>,
    /// `spec.reports.webhook` is set.
    pub receiver: bool,
    /// When a report was last delivered (the receiver answered 2xx).
    pub weekly_delivered: Option<Timestamp>,
    pub monthly_delivered: Option<Timestamp>,
    /// The last attempt and its answer, as a sentence.
    pub last_delivery: Option<String>,
}

/// A declared business signal: None when not declared; Err when it could not be read.
pub type Signal<T> = Option<Result<T, String>>;

#[derive(Debug, Clone)]
pub struct Facts {
    pub now: Timestamp,
    pub workloads: Vec<Workload>,
    pub targets: Vec<TargetFact>,
    pub canary: CanaryFacts,
    pub drills: Vec<DrillFact>,
    /// Prometheus's alerting rules (Err: why they could not be read).
    pub rules: Result<Vec<AlertRule>, String>,
    pub namespace: String,
    /// (value, minimum)
    pub satisfaction: Signal<(f64, f64)>,
    /// Categories with data in the last day.
    pub complaints: Signal<usize>,
    /// (forecast at the horizon, capacity)
    pub demand: Signal<(f64, f64)>,
    pub reports: ReportFacts,
    pub alerting: AlertingFacts,
}

/// The facts of a DrillSchedule: unannounced (`announce: false` with a jitter), its last
/// pass, and its last pass of a run its schedule started.
pub fn drill_fact(d: &DrillSchedule) -> DrillFact {
    let status = d.status.clone().unwrap_or_default();
    DrillFact {
        name: d.metadata.name.clone().unwrap_or_default(),
        unannounced: !d.spec.announce
            && d.spec
                .jitter
                .as_ref()
                .and_then(|j| j.parse().ok())
                .is_some_and(|j: std::time::Duration| !j.is_zero()),
        last_passed: status
            .summary
            .as_ref()
            .and_then(|s| s.last_passed.as_ref())
            .map(|t| t.0),
        last_scheduled_pass: status
            .runs
            .iter()
            .filter(|r| r.result == RunResult::Passed && !r.run_now)
            .map(|r| r.finished_at.as_ref().unwrap_or(&r.started_at).0)
            .max(),
    }
}

/// Whether an alerting rule's query is one of the tool's own alerts of the SLO, as the
/// tool writes them: every series it reads is one of the tool's recordings of that SLO
/// (named as the tool names them, with an equality matcher on the SLO's label), and it
/// calls no function (so no branch of constants, `vector(1)`, can make it fire whatever the
/// SLI says).
pub fn is_tool_alert(query: &str, tool: &ToolAlerts) -> bool {
    use promql_parser::label::MatchOp;
    use promql_parser::parser::{self, Expr};
    fn walk(e: &Expr, seen: &mut bool, leaf: &dyn Fn(&Expr) -> bool) -> bool {
        match e {
            Expr::Aggregate(a) => {
                walk(&a.expr, seen, leaf) && a.param.as_deref().is_none_or(|p| walk(p, seen, leaf))
            }
            Expr::Unary(u) => walk(&u.expr, seen, leaf),
            Expr::Binary(b) => walk(&b.lhs, seen, leaf) && walk(&b.rhs, seen, leaf),
            Expr::Paren(p) => walk(&p.expr, seen, leaf),
            Expr::NumberLiteral(_) => true,
            Expr::VectorSelector(_) => {
                *seen = true;
                leaf(e)
            }
            _ => false,
        }
    }
    let (label, value) = match tool {
        ToolAlerts::Sloth { id } => ("sloth_id", id),
        ToolAlerts::Pyrra { slo } => ("slo", slo),
    };
    let recorded = |name: &str| match tool {
        ToolAlerts::Sloth { .. } => name.starts_with("slo:sli_error:ratio_rate"),
        ToolAlerts::Pyrra { .. } => name
            .rsplit_once(":burnrate")
            .is_some_and(|(metric, window)| !metric.is_empty() && !window.is_empty()),
    };
    let leaf = |e: &Expr| {
        let Expr::VectorSelector(v) = e else {
            return false;
        };
        v.name.as_deref().is_some_and(recorded)
            && v.matchers.or_matchers.is_empty()
            && v.matchers
                .matchers
                .iter()
                .any(|m| m.name == label && matches!(m.op, MatchOp::Equal) && &m.value == value)
    };
    let mut seen = false;
    parser::parse(query).is_ok_and(|e| walk(&e, &mut seen, &leaf)) && seen
}

/// The burn-rate alert expressions the operator generates for `target` (as the
/// ResponseTimeTarget controller does, scoped by `tenancy`), in canonical form.
pub fn burn_alerts(target: &ResponseTimeTarget, tenancy: &Tenancy) -> Vec<String> {
    match crate::slo::rules::burn_rate_group(target, tenancy) {
        Ok(Some(group)) => group
            .rules
            .iter()
            .filter_map(|r| crate::prom::enforce::canonical(&r.expr))
            .collect(),
        _ => Vec::new(),
    }
}

/// How much history a demand forecast `horizon` ahead is fitted on (and needs): a quarter
/// of the horizon, at least an hour, at most a week.
pub fn forecast_window(horizon: std::time::Duration) -> std::time::Duration {
    (horizon / 4).clamp(
        std::time::Duration::from_secs(3600),
        std::time::Duration::from_secs(7 * 86_400),
    )
}

fn share(n: usize, of: usize) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

fn share_check(what: &str, n: usize, of: usize, min: f64) -> Measurement {
    if of == 0 {
        return Measurement::Absent(format!("no {what} in scope"));
    }
    let s = share(n, of);
    let text = format!(
        "{n} of {of} {what} ({:.0}%, at least {:.0}% needed)",
        s * 100.0,
        min * 100.0
    );
    if s >= min {
        Measurement::Met(text)
    } else {
        Measurement::NotMet(text)
    }
}

fn days_since(now: Timestamp, t: Timestamp) -> i64 {
    (now.as_second() - t.as_second()) / 86_400
}

/// Decides every measured practice it has a signal for.
pub fn measure(f: &Facts) -> BTreeMap<&'static str, Measurement> {
    let mut m: BTreeMap<&'static str, Measurement> = BTreeMap::new();
    let w = &f.workloads;
    let count = |p: fn(&Workload) -> bool| w.iter().filter(|x| p(x)).count();

    m.insert(
        "ORG-2.1",
        share_check(
            "workloads with an owner label",
            count(|x| x.owner),
            w.len(),
            OWNER_SHARE,
        ),
    );
    m.insert(
        "ORG-3.1",
        share_check(
            "workloads with a contact",
            count(|x| x.contact),
            w.len(),
            CONTACT_SHARE,
        ),
    );
    let gitops = share_check(
        "workloads managed by GitOps",
        count(|x| x.gitops),
        w.len(),
        GITOPS_SHARE,
    );
    m.insert("RESP-3.2", gitops.clone());
    m.insert("ORG-3.4", gitops);

    // RESP-4.1: response times defined per request class and met.
    let t = &f.targets;
    m.insert(
        "RESP-4.1",
        if t.is_empty() {
            Measurement::Absent(
                "no SLO in scope (ResponseTimeTarget, Sloth PrometheusServiceLevel, Pyrra ServiceLevelObjective)".into(),
            )
        } else if let Some(x) = t.iter().find(|x| x.objective_met == Some(false)) {
            Measurement::NotMet(format!(
                "{} of {} SLOs miss their objective (e.g. {})",
                t.iter().filter(|x| x.objective_met == Some(false)).count(),
                t.len(),
                x.name
            ))
        } else if let Some(x) = t.iter().find(|x| x.objective_met.is_none()) {
            Measurement::Unknown(format!("SLO {} is not measured yet", x.name))
        } else {
            Measurement::Met(format!(
                "all {} SLOs meet their objective ({})",
                t.len(),
                t.iter()
                    .map(|x| x.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        },
    );

    // Alerting rules: burn-rate alerts per target, runbooks, severities.
    match &f.rules {
        Err(why) => {
            for id in ["RESP-2.3", "COMM-2.2", "BIZ-3.1", "BIZ-4.2", "CX-2.4"] {
                m.insert(
                    id,
                    Measurement::Unknown(format!("alerting rules cannot be read: {why}")),
                );
            }
        }
        Ok(rules) => {
            let canonical: Vec<Option<String>> = rules
                .iter()
                .map(|r| crate::prom::enforce::canonical(&r.query))
                .collect();
            let loaded = |expr: &String| {
                rules
                    .iter()
                    .zip(&canonical)
                    .any(|(r, c)| c.as_ref() == Some(expr) && r.health != "err")
            };
            let burn = if t.is_empty() {
                Measurement::Absent("no ResponseTimeTarget, so no burn-rate alerts".into())
            } else {
                // The operator's own rule for the target, matched by its expression (two
                // labels anyone can type are not enough), loaded and evaluating.
                let missing: Vec<&str> = t
                    .iter()
                    .filter(|x| match &x.tool_alerts {
                        // The tool's own alerts over its recordings of this SLO.
                        Some(tool) => !rules
                            .iter()
                            .any(|r| r.health != "err" && is_tool_alert(&r.query, tool)),
                        None => x.burn_alerts.is_empty() || !x.burn_alerts.iter().all(loaded),
                    })
                    .map(|x| x.name.as_str())
                    .collect();
                if missing.is_empty() {
                    Measurement::Met(format!(
                        "burn-rate alerts are loaded for all {} SLOs (the operator's for ResponseTimeTargets, Sloth's and Pyrra's for theirs)",
                        t.len()
                    ))
                } else {
                    Measurement::NotMet(format!(
                        "no burn-rate alert of the operator loaded for {} (a rule counts only with the expression the operator generates for the target, see `maturity-operator rules`; for a Sloth or Pyrra SLO, only an alert over that tool's recordings of it)",
                        missing.join(", ")
                    ))
                }
            };
            m.insert("RESP-2.3", burn.clone());
            m.insert("COMM-2.2", burn);
            // The team's own rules: the operator's generated ones always carry a severity
            // and the target's runbook, so they would make the shares by themselves.
            let own: std::collections::BTreeSet<&String> =
                t.iter().flat_map(|x| &x.burn_alerts).collect();
            let team: Vec<&AlertRule> = rules
                .iter()
                .zip(&canonical)
                .filter(|(_, c)| !c.as_ref().is_some_and(|c| own.contains(c)))
                .map(|(r, _)| r)
                .collect();
            let what = |w: &str| format!("alerting rules (not the operator's) with {w}");
            let runbooks = team
                .iter()
                .filter(|r| {
                    r.annotations
                        .get("runbook_url")
                        .is_some_and(|u| !u.is_empty())
                })
                .count();
            m.insert(
                "BIZ-3.1",
                share_check(&what("a runbook_url"), runbooks, team.len(), RUNBOOK_SHARE),
            );
            let severity = team
                .iter()
                .filter(|r| r.labels.contains_key("severity"))
                .count();
            let sev = share_check(&what("a severity"), severity, team.len(), SEVERITY_SHARE);
            m.insert("BIZ-4.2", sev.clone());
            m.insert("CX-2.4", sev);
        }
    }

    // Alertmanager: a route of the scope's own, an escalation, notifications succeeding.
    m.extend(alerting(&f.alerting));

    // Canaries.
    let governed = count(|x| x.canary_governed);
    let c = &f.canary;
    m.insert(
        "CX-4.3",
        if c.policies == 0 {
            Measurement::Absent("no canary policy in scope (CanaryPolicy, Flagger Canary, Argo Rollout with analysis)".into())
        } else if share(governed, w.len()) < CANARY_SHARE {
            share_check(
                "workloads governed by a CanaryPolicy",
                governed,
                w.len(),
                CANARY_SHARE,
            )
        } else if !c.unguarded.is_empty() {
            Measurement::NotMet(format!(
                "{governed} of {} workloads governed, but {} run a revision that rolled out without analysis (the policy did not hold it): {}",
                w.len(),
                c.unguarded.len(),
                c.unguarded.join(", ")
            ))
        } else if c.analyzed == 0 {
            Measurement::NotMet(format!(
                "{governed} of {} workloads governed, but no rollout was analysed yet",
                w.len()
            ))
        } else {
            Measurement::Met(format!(
                "{governed} of {} workloads governed; {} rollouts analysed, {} rolled back",
                w.len(),
                c.analyzed,
                c.rolled_back
            ))
        },
    );
    m.insert(
        "CX-4.4",
        if c.policies == 0 {
            Measurement::Absent("no canary policy in scope (CanaryPolicy, Flagger Canary, Argo Rollout with analysis)".into())
        } else if c.analyzed > 0 && !t.is_empty() {
            Measurement::Met(format!("{} rollouts gated by canary analysis; {} ResponseTimeTargets link SLOs to workloads", c.analyzed, t.len()))
        } else if c.analyzed == 0 {
            Measurement::NotMet("no rollout was gated by canary analysis".into())
        } else {
            Measurement::NotMet("rollouts are gated, but no ResponseTimeTarget links SLOs to the workloads".into())
        },
    );

    // Drills.
    let recent = |d: &DrillFact| {
        d.last_passed
            .is_some_and(|p| days_since(f.now, p) <= DRILL_PERIOD_DAYS)
    };
    let scheduled = |d: &DrillFact| {
        d.last_scheduled_pass
            .is_some_and(|p| days_since(f.now, p) <= DRILL_PERIOD_DAYS)
    };
    let drill = if f.drills.is_empty() {
        Measurement::Absent(
            "no drill in scope (DrillSchedule, Chaos Mesh Schedule or Workflow, Litmus ChaosSchedule or ChaosEngine)".into(),
        )
    } else if let Some(d) = f.drills.iter().find(|d| d.unannounced && scheduled(d)) {
        Measurement::Met(format!(
            "unannounced drill {} passed within the last {DRILL_PERIOD_DAYS} days, started by its schedule",
            d.name
        ))
    } else if f.drills.iter().any(|d| d.unannounced && recent(d)) {
        Measurement::NotMet(
            "unannounced drills passed recently, but only runs asked for with run-now, which someone announced by asking; the schedule must start one".into(),
        )
    } else if f.drills.iter().any(recent) {
        Measurement::NotMet(
            "drills passed recently, but none is unannounced (announce: false with a jitter)"
                .into(),
        )
    } else {
        Measurement::NotMet(format!(
            "no drill passed within the last {DRILL_PERIOD_DAYS} days"
        ))
    };
    m.insert("ORG-5.4", drill.clone());
    m.insert("RESP-5.1", drill);
    // A remediation the operator made: a canary rolled back. A drill's recovery is the
    // ReplicaSet recreating pods, which Kubernetes does for everyone: not a remediation.
    m.insert(
        "ORG-5.1",
        if c.rolled_back > 0 {
            Measurement::Met(format!(
                "automatic remediation: {} canary rollouts rolled back",
                c.rolled_back
            ))
        } else if c.policies == 0 {
            Measurement::Absent(
                "no canary policy in scope (CanaryPolicy, Flagger Canary, Argo Rollout with analysis), so no remediation to observe".into(),
            )
        } else {
            Measurement::NotMet("no automatic remediation observed: no canary rollout was rolled back by the operator (pods Kubernetes recreated, after a drill or a crash, are not a remediation)".into())
        },
    );

    // Business signals.
    let satisfaction = match &f.satisfaction {
        None => Measurement::Absent(
            "no satisfaction signal declared (spec.signals.satisfaction)".into(),
        ),
        Some(Err(why)) => Measurement::Unknown(format!("satisfaction signal: {why}")),
        Some(Ok((v, min))) if v >= min => {
            Measurement::Met(format!("satisfaction {v} (target at least {min})"))
        }
        Some(Ok((v, min))) => {
            Measurement::NotMet(format!("satisfaction {v} below its target {min}"))
        }
    };
    for id in ["CX-2.3", "ORG-3.5", "COMM-2.4"] {
        m.insert(id, satisfaction.clone());
    }
    let complaints = match &f.complaints {
        None => {
            Measurement::Absent("no complaints signal declared (spec.signals.complaints)".into())
        }
        Some(Err(why)) => Measurement::Unknown(format!("complaints signal: {why}")),
        Some(Ok(0)) => Measurement::NotMet(
            "the complaints signal has no category with data in the last day".into(),
        ),
        Some(Ok(n)) => Measurement::Met(format!("complaints followed daily in {n} categories")),
    };
    m.insert("CX-3.3", complaints.clone());
    m.insert("CX-4.2", complaints);
    let demand = match &f.demand {
        None => Measurement::Absent("no demand signal declared (spec.signals.demand)".into()),
        Some(Err(why)) => Measurement::Unknown(format!("demand signal: {why}")),
        Some(Ok((forecast, capacity))) if forecast <= capacity => Measurement::Met(format!(
            "forecast demand {forecast:.2} within capacity {capacity:.2}"
        )),
        Some(Ok((forecast, capacity))) => Measurement::NotMet(format!(
            "forecast demand {forecast:.2} exceeds capacity {capacity:.2}"
        )),
    };
    m.insert("RESP-4.4", demand.clone());
    m.insert("CX-4.5", demand);

    // Reports delivered on time: produced is not enough, a receiver must have taken it.
    let r = &f.reports;
    let attempt = r
        .last_delivery
        .as_ref()
        .map(|d| format!(" (last attempt: {d})"))
        .unwrap_or_default();
    let on_time = |enabled: bool, delivered: Option<Timestamp>, days: i64, what: &str| match (
        enabled, r.receiver, delivered,
    ) {
        (false, ..) => {
            Measurement::NotMet(format!("{what} reports are not enabled (spec.reports)"))
        }
        (true, false, _) => Measurement::NotMet(format!(
            "{what} reports are produced but delivered to nobody: a report counts once spec.reports.webhook answered 2xx"
        )),
        (true, true, None) => {
            Measurement::NotMet(format!("no {what} report delivered yet{attempt}"))
        }
        (true, true, Some(t)) if days_since(f.now, t) <= days => {
            Measurement::Met(format!("{what} report delivered at {t}"))
        }
        (true, true, Some(t)) => Measurement::NotMet(format!(
            "the last {what} report delivered ({t}) is overdue{attempt}"
        )),
    };
    let weekly = on_time(r.weekly, r.weekly_delivered, 8, "weekly");
    let monthly = on_time(r.monthly, r.monthly_delivered, 32, "monthly");
    // CX-3.4: either report; when neither counts, why the enabled one does not.
    let met = |x: &Measurement| matches!(x, Measurement::Met(_));
    m.insert(
        "CX-3.4",
        if met(&weekly) || (!met(&monthly) && r.weekly) {
            weekly
        } else {
            monthly.clone()
        },
    );
    m.insert("COMM-3.2", monthly);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::routing::Destination;

    /// The canonical form of the operator's alert for target `t` in [`facts`].
    const BURN: &str = "(x) > 0.0144 and (y) > 0.0144";

    fn dest(receiver: &str, integrations: &[&str], path: &[&str]) -> Destination {
        Destination {
            receiver: receiver.into(),
            integrations: integrations.iter().map(|s| s.to_string()).collect(),
            path: path.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn notified(
        integration: &str,
        receiver: Option<&str>,
        attempted: f64,
        failed: f64,
    ) -> NotificationCount {
        NotificationCount {
            integration: integration.into(),
            receiver: receiver.map(str::to_string),
            attempted,
            failed,
        }
    }

    #[test]
    fn alertmanager_routes_and_notifications_decide_org_2_3_org_5_2_resp_2_2() {
        let with = |page: Vec<Destination>,
                    ticket: Vec<Destination>,
                    notifications: Result<Vec<NotificationCount>, String>| {
            let mut f = facts();
            f.alerting = AlertingFacts::Read {
                page,
                ticket,
                notifications,
            };
            measure(&f)
        };
        let state = |m: &Measurement| match m {
            Measurement::Met(w) => ("Met", w.clone()),
            Measurement::NotMet(w) => ("NotMet", w.clone()),
            Measurement::Unknown(w) => ("Unknown", w.clone()),
            Measurement::Absent(w) => ("Absent", w.clone()),
        };
        let pager = dest(
            "pay-pager",
            &["pagerduty", "webhook"],
            &[r#"namespace="shop""#],
        );
        let team = dest("pay", &["email"], &[r#"namespace="shop""#]);
        let default = dest("ops", &["email"], &[]);
        let ok = Ok(vec![
            notified("webhook", None, 40.0, 1.0),
            notified("email", None, 100.0, 50.0),
        ]);
        let m = with(vec![pager.clone()], vec![team.clone()], ok.clone());
        assert_eq!(state(&m["ORG-2.3"]).0, "Met", "{:?}", m["ORG-2.3"]);
        assert_eq!(
            state(&m["ORG-5.2"]),
            ("Met", "critical alerts escalate to receiver pay-pager (pagerduty, webhook); the others go to pay".into())
        );
        // By integration: the webhook's 40 (1 failed), not the email's.
        assert_eq!(
            state(&m["RESP-2.2"]),
            (
                "Met",
                "40 notifications by pagerduty, webhook integrations in the last 7 days, 1 failed"
                    .into()
            )
        );
        // Only the default route takes the page: no route of the namespace's own.
        let m = with(vec![default.clone()], vec![default.clone()], ok.clone());
        assert!(
            state(&m["ORG-2.3"])
                .1
                .contains("fall through to the default route (receiver ops)")
        );
        assert!(state(&m["ORG-5.2"]).1.contains("same receiver (ops)"));
        // A receiver without integrations notifies nobody: nothing is Met.
        let silent = dest("null", &[], &[r#"namespace="shop""#]);
        let m = with(vec![silent.clone()], vec![team.clone()], ok.clone());
        for id in ["ORG-2.3", "ORG-5.2", "RESP-2.2"] {
            assert_eq!(state(&m[id]).0, "NotMet", "{id}: {:?}", m[id]);
        }
        // Too many failures; no notification at all; counters unreadable.
        let m = with(
            vec![pager.clone()],
            vec![team.clone()],
            Ok(vec![notified("webhook", None, 20.0, 2.0)]),
        );
        assert_eq!(
            state(&m["RESP-2.2"]),
            ("NotMet", "2 of 20 notifications by pagerduty, webhook integrations failed in the last 7 days (at most 5% may)".into())
        );
        let m = with(vec![pager.clone()], vec![team.clone()], Ok(vec![]));
        assert_eq!(state(&m["RESP-2.2"]).0, "Absent");
        let m = with(
            vec![pager.clone()],
            vec![team.clone()],
            Err("Prometheus unreachable".into()),
        );
        assert_eq!(state(&m["RESP-2.2"]).0, "Unknown");
        // With receiver names in Alertmanager's metrics, only the page receiver's count.
        let m = with(
            vec![pager.clone()],
            vec![team.clone()],
            Ok(vec![
                notified("webhook", Some("pay-pager"), 3.0, 0.0),
                notified("webhook", Some("other-team"), 500.0, 500.0),
            ]),
        );
        assert_eq!(
            state(&m["RESP-2.2"]),
            (
                "Met",
                "3 notifications by receiver pay-pager in the last 7 days, 0 failed".into()
            )
        );
        // No Alertmanager: nothing to measure (an attestation may count); unreadable: Unknown.
        let mut f = facts();
        f.alerting = AlertingFacts::NotConfigured;
        assert_eq!(state(&measure(&f)["ORG-2.3"]).0, "Absent");
        f.alerting = AlertingFacts::Unreadable("HTTP 503".into());
        assert_eq!(state(&measure(&f)["RESP-2.2"]).0, "Unknown");
    }

    fn facts() -> Facts {
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let wl = |n: &str| Workload {
            name: n.into(),
            owner: true,
            contact: true,
            gitops: true,
            canary_governed: true,
        };
        let rule = |name: &str, query: &str| AlertRule {
            name: name.into(),
            query: query.into(),
            labels: BTreeMap::from([
                ("namespace".into(), "shop".into()),
                ("response_time_target".into(), "t".into()),
                ("severity".into(), "page".into()),
            ]),
            annotations: BTreeMap::from([("runbook_url".into(), "https://wiki".into())]),
            health: "ok".into(),
            file: String::new(),
        };
        Facts {
            now,
            workloads: vec![wl("a"), wl("b")],
            targets: vec![TargetFact {
                name: "t".into(),
                objective_met: Some(true),
                burn_alerts: vec![BURN.into()],
                tool_alerts: None,
            }],
            canary: CanaryFacts {
                policies: 1,
                analyzed: 3,
                rolled_back: 1,
                unguarded: Vec::new(),
            },
            drills: vec![DrillFact {
                name: "d".into(),
                unannounced: true,
                last_passed: Some(now),
                last_scheduled_pass: Some(now),
            }],
            // The operator's burn-rate alert (printed as Prometheus would) and the team's own.
            rules: Ok(vec![
                rule("ErrorBudgetBurn", "(x) > 0.0144 and (y) > 0.0144"),
                rule("HighLatency", "histogram_quantile(0.99, rate(h[5m])) > 1"),
            ]),
            namespace: "shop".into(),
            satisfaction: Some(Ok((4.5, 4.0))),
            complaints: Some(Ok(3)),
            demand: Some(Ok((80.0, 100.0))),
            alerting: AlertingFacts::Read {
                page: vec![dest("pay-pager", &["webhook"], &[r#"namespace="shop""#])],
                ticket: vec![dest("pay", &["email"], &[r#"namespace="shop""#])],
                notifications: Ok(vec![notified("webhook", None, 10.0, 0.0)]),
            },
            reports: ReportFacts {
                weekly: true,
                monthly: true,
                last_weekly: Some(now),
                last_monthly: Some(now),
                receiver: true,
                weekly_delivered: Some(now),
                monthly_delivered: Some(now),
                last_delivery: None,
            },
        }
    }

    #[test]
    fn everything_in_place_meets_every_measured_practice_it_knows() {
        let m = measure(&facts());
        for (id, v) in &m {
            assert!(matches!(v, Measurement::Met(_)), "{id}: {v:?}");
            let p = super::super::practice(id)
                .unwrap_or_else(|| panic!("{id} is not a practice of the model"));
            assert_ne!(
                p.evidence,
                super::super::Evidence::Attested,
                "{id} is attested-only in the model"
            );
        }
        assert_eq!(m.len(), 27);
    }

    /// The model's Measured and Both practices are exactly the ones measured here: none
    /// silently falls back to attestation (docs/model.md says which signal each uses).
    #[test]
    fn every_practice_the_model_says_is_measured_is_measured() {
        let measured: std::collections::BTreeSet<&str> = measure(&facts()).into_keys().collect();
        let claimed: std::collections::BTreeSet<&str> = super::super::PRACTICES
            .iter()
            .filter(|p| p.evidence != super::super::Evidence::Attested)
            .map(|p| p.id)
            .collect();
        assert_eq!(
            claimed.difference(&measured).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "the model says measured, nothing measures them"
        );
        assert_eq!(claimed, measured);
    }

    #[test]
    fn a_forecast_needs_a_quarter_of_its_horizon_of_history() {
        let h = |s| forecast_window(std::time::Duration::from_secs(s)).as_secs();
        assert_eq!(h(3600), 3600, "at least an hour");
        assert_eq!(h(14 * 86_400), 302_400, "3.5 days for 14 days");
        assert_eq!(h(90 * 86_400), 7 * 86_400, "at most a week");
    }

    #[test]
    fn a_revision_that_rolled_out_unguarded_counts_against_canary_coverage() {
        let mut f = facts();
        assert!(matches!(measure(&f)["CX-4.3"], Measurement::Met(_)));
        f.canary.unguarded = vec!["web revision 7".into()];
        let m = measure(&f);
        let Measurement::NotMet(why) = &m["CX-4.3"] else {
            panic!("{:?}", m["CX-4.3"]);
        };
        assert!(
            why.ends_with("but 1 run a revision that rolled out without analysis (the policy did not hold it): web revision 7"),
            "{why}"
        );
    }

    #[test]
    fn each_missing_piece_says_what_is_missing() {
        let mut f = facts();
        f.workloads[1].owner = false;
        f.workloads[1].canary_governed = false;
        f.targets[0].objective_met = Some(false);
        f.drills[0].unannounced = false;
        f.rules = Ok(vec![]);
        f.satisfaction = None;
        f.reports.monthly_delivered = Some("2026-09-01T00:00:00Z".parse().unwrap());
        let m = measure(&f);
        // NotMet from data, or Absent: nothing of the kind to measure (an attestation may
        // fill that in).
        let not = |id: &str| match &m[id] {
            Measurement::NotMet(why) => why.clone(),
            other => panic!("{id}: {other:?}"),
        };
        let absent = |id: &str| match &m[id] {
            Measurement::Absent(why) => why.clone(),
            other => panic!("{id}: {other:?}"),
        };
        assert!(not("ORG-2.1").contains("1 of 2"));
        assert!(not("CX-4.3").contains("governed by a CanaryPolicy"));
        assert!(not("RESP-4.1").contains("miss their objective"));
        assert!(not("ORG-5.4").contains("unannounced"));
        assert!(not("RESP-2.3").contains("no burn-rate alert of the operator loaded for t"));
        assert!(
            absent("BIZ-3.1").contains("no alerting rules (not the operator's) with a runbook_url")
        );
        assert!(absent("CX-2.3").contains("no satisfaction signal"));
        assert!(not("COMM-3.2").contains("overdue"));
        assert!(
            matches!(m["CX-3.4"], Measurement::Met(_)),
            "the weekly report is on time"
        );
    }

    #[test]
    fn nothing_the_operator_made_itself_or_anyone_could_type_counts() {
        let team_rule = |f: &Facts| f.rules.as_ref().unwrap()[1].clone();
        // Two labels on a constant rule are not the operator's burn-rate alert.
        let mut f = facts();
        let mut fake = team_rule(&f);
        fake.query = "vector(0) > 1".into();
        f.rules = Ok(vec![fake.clone(), team_rule(&f)]);
        let m = measure(&f);
        assert!(
            matches!(&m["RESP-2.3"], Measurement::NotMet(w) if w.contains("no burn-rate alert of the operator loaded for t")),
            "{:?}",
            m["RESP-2.3"]
        );
        // The operator's alert failing to evaluate is not loaded either.
        let mut f = facts();
        if let Ok(r) = f.rules.as_mut() {
            r[0].health = "err".into();
        }
        assert!(matches!(measure(&f)["RESP-2.3"], Measurement::NotMet(_)));
        // Only the operator's alerts: no rule of the team's, so no share (it would be 100%).
        let mut f = facts();
        if let Ok(r) = f.rules.as_mut() {
            r.truncate(1);
        }
        let m = measure(&f);
        assert!(matches!(m["RESP-2.3"], Measurement::Met(_)));
        for id in ["BIZ-3.1", "BIZ-4.2", "CX-2.4"] {
            assert!(
                matches!(&m[id], Measurement::Absent(w) if w.starts_with("no alerting rules (not the operator's)")),
                "{id}: {:?}",
                m[id]
            );
        }
        // The team's rule without a runbook: 0 of 1, whatever the operator's alerts carry.
        let mut f = facts();
        if let Ok(r) = f.rules.as_mut() {
            r[1].annotations.clear();
        }
        assert!(
            matches!(&measure(&f)["BIZ-3.1"], Measurement::NotMet(w) if w.starts_with("0 of 1 "))
        );
        // A drill that passed only when asked for with run-now is no unannounced drill.
        let mut f = facts();
        f.drills[0].last_scheduled_pass = None;
        let m = measure(&f);
        assert!(
            matches!(&m["ORG-5.4"], Measurement::NotMet(w) if w.contains("run-now")),
            "{:?}",
            m["ORG-5.4"]
        );
        assert!(matches!(m["RESP-5.1"], Measurement::NotMet(_)));
        // Reports produced but delivered to nobody, or never taken by the receiver.
        let mut f = facts();
        f.reports.receiver = false;
        let m = measure(&f);
        for id in ["CX-3.4", "COMM-3.2"] {
            assert!(
                matches!(&m[id], Measurement::NotMet(w) if w.contains("delivered to nobody")),
                "{id}: {:?}",
                m[id]
            );
        }
        let mut f = facts();
        (f.reports.weekly_delivered, f.reports.monthly_delivered) = (None, None);
        f.reports.last_delivery = Some("weekly at 2026-11-25T12:00:00Z: HTTP 500".into());
        assert!(
            matches!(&measure(&f)["CX-3.4"], Measurement::NotMet(w) if w == "no weekly report delivered yet (last attempt: weekly at 2026-11-25T12:00:00Z: HTTP 500)")
        );
        // A passed drill (Kubernetes recreated the pods) is no remediation; a rollback is.
        let mut f = facts();
        f.canary.rolled_back = 0;
        assert!(matches!(measure(&f)["ORG-5.1"], Measurement::NotMet(_)));
    }

    #[test]
    fn an_unreachable_prometheus_makes_its_practices_unknown() {
        let mut f = facts();
        f.rules = Err("Prometheus at http://x is unreachable".into());
        f.satisfaction = Some(Err("unreachable".into()));
        let m = measure(&f);
        for id in [
            "RESP-2.3", "COMM-2.2", "BIZ-3.1", "BIZ-4.2", "CX-2.4", "CX-2.3",
        ] {
            assert!(
                matches!(m[id], Measurement::Unknown(_)),
                "{id}: {:?}",
                m[id]
            );
        }
    }
}

//! Judging one check: each metric's value against its bounds or the stable revision,
//! then the check as a whole under `onNoData` and `dryRun`.

use std::collections::BTreeMap;

use crate::api::canary_policy::{
    AnalysisMetric, CheckResult, Direction, Hook, HookType, MetricResult, MinRequests, OnNoData,
    RolloutRecord,
};
use crate::prom::template::{self, TemplateError};

/// What a query gave: a number, nothing (empty or NaN), or an error (with its sentence).
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    Value(f64),
    NoData(String),
    Error(String),
}

/// The outcome of a whole check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

/// The values of a query's placeholders for one rollout.
#[derive(Debug, Clone)]
pub struct QueryVars {
    pub namespace: String,
    pub deployment: String,
    pub canary_hash: String,
    pub stable_hash: String,
    pub interval: String,
}

impl QueryVars {
    fn values(&self, hash: Option<&str>) -> BTreeMap<&'static str, String> {
        let mut v = BTreeMap::from([
            ("namespace", self.namespace.clone()),
            ("deployment", self.deployment.clone()),
            ("canary_hash", self.canary_hash.clone()),
            ("stable_hash", self.stable_hash.clone()),
            ("interval", self.interval.clone()),
        ]);
        if let Some(h) = hash {
            v.insert("hash", h.to_string());
        }
        v
    }

    /// The query for the canary; `compare` metrics get `{{hash}}` = the canary's hash.
    pub fn canary_query(&self, m: &AnalysisMetric) -> Result<String, TemplateError> {
        let hash = m.compare.as_ref().map(|_| self.canary_hash.as_str());
        template::render(m.query.as_str(), &self.values(hash))
    }

    /// The query of the canary's requests over the interval (`analysis.minRequests`).
    pub fn traffic_query(&self, m: &MinRequests) -> Result<String, TemplateError> {
        template::render(m.query.as_str(), &self.values(None))
    }

    /// `compare` metrics only: the same query for the stable revision.
    pub fn stable_query(&self, m: &AnalysisMetric) -> Option<Result<String, TemplateError>> {
        m.compare
            .as_ref()
            .map(|_| template::render(m.query.as_str(), &self.values(Some(&self.stable_hash))))
    }
}

/// Judges one metric from its canary reading (and the stable one for `compare`).
pub fn judge(
    m: &AnalysisMetric,
    query: String,
    canary: Reading,
    stable: Option<(String, Reading)>,
) -> MetricResult {
    let mut r = MetricResult {
        name: m.name.clone(),
        query,
        value: None,
        stable_value: None,
        stable_query: None,
        result: CheckResult::Pass,
        dry_run: m.dry_run,
        message: None,
    };
    let value = match canary {
        Reading::Value(v) => v,
        Reading::NoData(why) => return no_data(r, format!("canary: {why}")),
        Reading::Error(why) => return error(r, format!("canary: {why}")),
    };
    r.value = Some(value);
    if let Some(c) = &m.compare {
        let Some((stable_query, stable)) = stable else {
            return error(r, "no stable query was run".into());
        };
        r.stable_query = Some(stable_query);
        let base = match stable {
            Reading::Value(v) => v,
            Reading::NoData(why) => return no_data(r, format!("stable revision: {why}")),
            Reading::Error(why) => return error(r, format!("stable revision: {why}")),
        };
        r.stable_value = Some(base);
        let (worse_by, way) = match c.direction {
            Direction::HigherIsWorse => (value - base, "higher"),
            Direction::LowerIsWorse => (base - value, "lower"),
        };
        let relative = base.abs() * c.max_worse_percent.unwrap_or(0.0) / 100.0;
        let allowed = relative.max(c.max_worse_by.unwrap_or(0.0));
        if worse_by > allowed {
            let margins: Vec<String> = [
                c.max_worse_percent.map(|p| format!("{p}% of it")),
                c.max_worse_by.map(|b| format!("{b}")),
            ]
            .into_iter()
            .flatten()
            .collect();
            r.result = CheckResult::Fail;
            r.message = Some(format!(
                "{value} is {worse_by} {way} than the stable revision's {base} ({way} is worse; allowed: {})",
                margins.join(" or ")
            ));
        }
        return r;
    }
    if let Some(min) = m.min
        && value < min
    {
        r.result = CheckResult::Fail;
        r.message = Some(format!("{value} is below the minimum {min}"));
    }
    if let Some(max) = m.max
        && value > max
    {
        r.result = CheckResult::Fail;
        r.message = Some(format!("{value} is above the maximum {max}"));
    }
    r
}

/// The hooks to call for rollout `r`: once it ended, the `PostRollout` ones; at a check,
/// `PreRollout` ones until they all answered 2xx at one, and `Rollout` ones always.
pub fn due_hooks<'a>(hooks: &'a [Hook], r: &RolloutRecord) -> Vec<&'a Hook> {
    let ended = r.phase.is_terminal();
    hooks
        .iter()
        .filter(|h| match h.kind {
            HookType::PostRollout => ended,
            HookType::PreRollout => !ended && !r.pre_rollout_done,
            HookType::Rollout => !ended,
        })
        .collect()
}

/// The `PreRollout` hooks among `due` (called in that order, answers in `results`) were
/// called and all passed.
pub fn pre_rollout_passed(due: &[&Hook], results: &[MetricResult]) -> bool {
    let pre: Vec<&MetricResult> = due
        .iter()
        .zip(results)
        .filter(|(h, _)| h.kind == HookType::PreRollout)
        .map(|(_, r)| r)
        .collect();
    !pre.is_empty() && pre.iter().all(|r| r.result == CheckResult::Pass)
}

/// What a hook is sent: Flagger's webhook payload, with the Deployment and the step.
pub fn hook_payload(policy: &str, namespace: &str, r: &RolloutRecord, hook: &Hook) -> String {
    serde_json::json!({
        "name": policy,
        "namespace": namespace,
        "deployment": r.deployment,
        "phase": r.phase,
        "step": r.step + 1,
        "revision": r.revision,
        "checksum": r.canary_hash,
        "hook": hook.name,
        "type": hook.kind,
        "metadata": hook.metadata,
    })
    .to_string()
}

/// A hook's answer as a result of the check: anything but 2xx (or no answer) fails it.
pub fn judge_hook(hook: &Hook, answer: Result<u16, String>) -> MetricResult {
    let (result, message) = match answer {
        Ok(code) if (200..300).contains(&code) => (CheckResult::Pass, None),
        Ok(code) => (CheckResult::Fail, Some(format!("answered {code}"))),
        Err(why) => (CheckResult::Fail, Some(why)),
    };
    MetricResult {
        name: format!("hook {} ({:?})", hook.name, hook.kind),
        query: hook.url.clone(),
        value: None,
        stable_value: None,
        stable_query: None,
        result,
        dry_run: false,
        message,
    }
}

/// The longest a hook may take, and the default.
pub const HOOK_TIMEOUT_MAX: std::time::Duration = std::time::Duration::from_secs(60);
pub const HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A hook's timeout, or why it is not one.
pub fn hook_timeout(hook: &Hook) -> Result<std::time::Duration, String> {
    let Some(t) = &hook.timeout else {
        return Ok(HOOK_TIMEOUT);
    };
    let d: std::time::Duration = t
        .parse()
        .map_err(|e| format!("hook {}: timeout: {e}", hook.name))?;
    if d.is_zero() || d > HOOK_TIMEOUT_MAX {
        return Err(format!(
            "hook {}: timeout must be longer than zero and at most 60s",
            hook.name
        ));
    }
    Ok(d)
}

/// The check's verdict once the canary's traffic is known (`analysis.minRequests`): with
/// fewer requests than `needed` in the interval (none at all when the query has no data),
/// no verdict is drawn from the metrics: the check is inconclusive.
pub fn with_traffic(
    (verdict, message): (Verdict, String),
    needed: f64,
    interval: &str,
    traffic: &Reading,
) -> (Verdict, String) {
    let served = match traffic {
        Reading::Value(v) => *v,
        Reading::NoData(_) => 0.0,
        Reading::Error(why) => {
            return (
                Verdict::Inconclusive,
                format!("could not measure the canary's requests: {why}"),
            );
        }
    };
    if served < needed {
        return (
            Verdict::Inconclusive,
            format!(
                "too few requests to judge: the canary served {served} in {interval}, at least {needed} needed"
            ),
        );
    }
    (verdict, message)
}

fn no_data(mut r: MetricResult, why: String) -> MetricResult {
    r.result = CheckResult::NoData;
    r.message = Some(why);
    r
}

fn error(mut r: MetricResult, why: String) -> MetricResult {
    r.result = CheckResult::Error;
    r.message = Some(why);
    r
}

/// The check as a whole: dry-run metrics are ignored; a failure fails it; no data is
/// decided by `on_no_data`; an error (Prometheus unreachable, several series) holds it.
pub fn verdict(results: &[MetricResult], on_no_data: OnNoData) -> (Verdict, String) {
    let acting: Vec<&MetricResult> = results.iter().filter(|r| !r.dry_run).collect();
    let names = |want: CheckResult| -> Vec<String> {
        acting
            .iter()
            .filter(|r| r.result == want)
            .map(|r| match &r.message {
                Some(m) => format!("{}: {m}", r.name),
                None => r.name.clone(),
            })
            .collect()
    };
    let failed = names(CheckResult::Fail);
    if !failed.is_empty() {
        return (Verdict::Fail, failed.join("; "));
    }
    let no_data = names(CheckResult::NoData);
    if !no_data.is_empty() && on_no_data == OnNoData::Fail {
        return (
            Verdict::Fail,
            format!("no data (onNoData: Fail): {}", no_data.join("; ")),
        );
    }
    let errors = names(CheckResult::Error);
    if !errors.is_empty() {
        return (
            Verdict::Inconclusive,
            format!("could not measure: {}", errors.join("; ")),
        );
    }
    if !no_data.is_empty() && on_no_data == OnNoData::Inconclusive {
        return (
            Verdict::Inconclusive,
            format!(
                "no data (onNoData: Inconclusive), holding: {}",
                no_data.join("; ")
            ),
        );
    }
    (
        Verdict::Pass,
        format!("{} metric(s) within bounds", acting.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::canary_policy::{Compare, Direction};
    use crate::api::common::DurationString;
    use crate::api::common::PromQl;

    fn metric(min: Option<f64>, max: Option<f64>, compare: Option<f64>) -> AnalysisMetric {
        AnalysisMetric {
            name: "m".into(),
            query: PromQl::new(if compare.is_some() {
                "x{h=\"{{hash}}\"}"
            } else {
                "x{h=\"{{canary_hash}}\",i=\"{{interval}}\"}"
            }),
            min,
            max,
            compare: compare.map(|p| Compare {
                direction: Direction::HigherIsWorse,
                max_worse_percent: Some(p),
                max_worse_by: None,
            }),
            dry_run: false,
        }
    }

    fn vars() -> QueryVars {
        QueryVars {
            namespace: "ns".into(),
            deployment: "web".into(),
            canary_hash: "new".into(),
            stable_hash: "old".into(),
            interval: "30s".into(),
        }
    }

    #[test]
    fn queries_are_resolved_per_revision() {
        let v = vars();
        assert_eq!(
            v.canary_query(&metric(None, Some(1.0), None)).unwrap(),
            "x{h=\"new\",i=\"30s\"}"
        );
        let c = metric(None, None, Some(10.0));
        assert_eq!(v.canary_query(&c).unwrap(), "x{h=\"new\"}");
        assert_eq!(v.stable_query(&c).unwrap().unwrap(), "x{h=\"old\"}");
        assert!(v.stable_query(&metric(None, Some(1.0), None)).is_none());
        // {{hash}} outside compare is an error, never sent half-resolved.
        let mut bad = metric(None, Some(1.0), None);
        bad.query = PromQl::new("x{h=\"{{hash}}\"}");
        assert!(v.canary_query(&bad).is_err());
    }

    #[test]
    fn bounds() {
        let m = metric(Some(0.5), Some(2.0), None);
        let j = |v| judge(&m, "q".into(), Reading::Value(v), None).result;
        assert_eq!(j(1.0), CheckResult::Pass);
        assert_eq!(j(0.5), CheckResult::Pass);
        assert_eq!(j(2.0), CheckResult::Pass);
        assert_eq!(j(0.4), CheckResult::Fail);
        assert_eq!(j(2.1), CheckResult::Fail);
        let r = judge(&m, "q".into(), Reading::Value(3.0), None);
        assert_eq!(r.message.as_deref(), Some("3 is above the maximum 2"));
        assert_eq!(r.value, Some(3.0));
    }

    #[test]
    fn compare_with_stable() {
        let m = metric(None, None, Some(20.0));
        let j = |c, s| {
            judge(
                &m,
                "q".into(),
                Reading::Value(c),
                Some(("s".into(), Reading::Value(s))),
            )
        };
        assert_eq!(j(1.2, 1.0).result, CheckResult::Pass);
        assert_eq!(j(1.21, 1.0).result, CheckResult::Fail);
        assert_eq!(j(0.0, 0.0).result, CheckResult::Pass);
        assert_eq!(j(0.01, 0.0).result, CheckResult::Fail);
        let r = j(1.5, 1.0);
        assert_eq!(r.stable_value, Some(1.0));
        assert_eq!(r.stable_query.as_deref(), Some("s"));
        let r = judge(
            &m,
            "q".into(),
            Reading::Value(1.0),
            Some(("s".into(), Reading::NoData("empty".into()))),
        );
        assert_eq!(r.result, CheckResult::NoData);
        assert!(r.message.unwrap().contains("stable revision"));
    }

    #[test]
    fn hooks_are_called_as_their_type_says_and_judged_by_their_answer() {
        use crate::api::canary_policy::{Hook, HookType, RolloutRecord};
        let hook = |name: &str, kind| Hook {
            name: name.into(),
            kind,
            url: format!("http://hooks.test/{name}"),
            timeout: None,
            metadata: [("cmd".to_string(), "hey -z 1m".to_string())].into(),
        };
        let hooks = [
            hook("smoke", HookType::PreRollout),
            hook("load", HookType::Rollout),
        ];
        let mut r: RolloutRecord = serde_json::from_value(serde_json::json!({
            "deployment": "web", "revision": "2", "phase": "Analyzing", "step": 0, "canaryHash": "b"}))
        .unwrap();
        let names = |r: &RolloutRecord| -> Vec<String> {
            due_hooks(&hooks, r)
                .iter()
                .map(|h| h.name.clone())
                .collect()
        };
        assert_eq!(
            names(&r),
            ["smoke", "load"],
            "before the pre-rollout hook passed"
        );
        let due = due_hooks(&hooks, &r);
        let passed = [
            judge_hook(&hooks[0], Ok(200)),
            judge_hook(&hooks[1], Ok(500)),
        ];
        assert!(
            pre_rollout_passed(&due, &passed),
            "the load hook's answer is not its"
        );
        let failed = [
            judge_hook(&hooks[0], Ok(503)),
            judge_hook(&hooks[1], Ok(200)),
        ];
        assert!(!pre_rollout_passed(&due, &failed));
        assert!(
            !pre_rollout_passed(&due[1..], &passed[1..]),
            "none was called"
        );
        r.pre_rollout_done = true;
        assert_eq!(
            names(&r),
            ["load"],
            "the pre-rollout hook passed once: not called again"
        );
        let post = [
            hooks[0].clone(),
            hooks[1].clone(),
            hook("notify", HookType::PostRollout),
        ];
        let only = |r: &RolloutRecord| -> Vec<String> {
            due_hooks(&post, r).iter().map(|h| h.name.clone()).collect()
        };
        assert_eq!(only(&r), ["load"], "under way: not the post-rollout one");
        let mut ended = r.clone();
        ended.phase = crate::api::canary_policy::RolloutPhase::Promoted;
        assert_eq!(only(&ended), ["notify"], "ended: only the post-rollout one");
        let body: serde_json::Value =
            serde_json::from_str(&hook_payload("p", "shop", &r, &hooks[1])).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"name": "p", "namespace": "shop", "deployment": "web", "phase": "Analyzing",
                               "step": 1, "revision": "2", "checksum": "b", "hook": "load", "type": "Rollout",
                               "metadata": {"cmd": "hey -z 1m"}})
        );
        assert_eq!(judge_hook(&hooks[0], Ok(204)).result, CheckResult::Pass);
        let failed = judge_hook(&hooks[0], Ok(500));
        assert_eq!(
            (
                failed.result,
                failed.name.as_str(),
                failed.message.as_deref()
            ),
            (
                CheckResult::Fail,
                "hook smoke (PreRollout)",
                Some("answered 500")
            )
        );
        assert_eq!(
            judge_hook(&hooks[1], Err("no answer".into())).result,
            CheckResult::Fail
        );
        // As a check: a failing hook fails it, like a metric.
        let (v, m) = verdict(&[failed], OnNoData::Inconclusive);
        assert_eq!(
            (v, m.as_str()),
            (Verdict::Fail, "hook smoke (PreRollout): answered 500")
        );
        // Timeouts: 10s by default, at most 60s.
        assert_eq!(hook_timeout(&hooks[0]), Ok(HOOK_TIMEOUT));
        let mut slow = hook("slow", HookType::Rollout);
        slow.timeout = Some(DurationString::new("2m"));
        assert!(hook_timeout(&slow).unwrap_err().contains("at most 60s"));
    }

    #[test]
    fn too_few_requests_hold_any_verdict() {
        let fail = (
            Verdict::Fail,
            "errors: 0.5 is above the maximum 0.1".to_string(),
        );
        let (v, m) = with_traffic(fail.clone(), 100.0, "30s", &Reading::Value(12.0));
        assert_eq!(v, Verdict::Inconclusive);
        assert_eq!(
            m,
            "too few requests to judge: the canary served 12 in 30s, at least 100 needed"
        );
        let none = with_traffic(fail.clone(), 100.0, "30s", &Reading::NoData("empty".into()));
        assert_eq!(none.0, Verdict::Inconclusive, "no series: no requests");
        let error = with_traffic(fail.clone(), 100.0, "30s", &Reading::Error("down".into()));
        assert_eq!(error.0, Verdict::Inconclusive);
        assert_eq!(
            with_traffic(fail.clone(), 100.0, "30s", &Reading::Value(100.0)),
            fail,
            "enough: the metrics' verdict stands"
        );
        let q = vars()
            .traffic_query(&MinRequests {
                query: PromQl::new("sum(increase(r{h=\"{{canary_hash}}\"}[{{interval}}]))"),
                count: 100.0,
            })
            .unwrap();
        assert_eq!(q, "sum(increase(r{h=\"new\"}[30s]))");
    }

    #[test]
    fn compare_lower_is_worse_and_an_absolute_margin() {
        let with = |direction, percent, by| AnalysisMetric {
            compare: Some(Compare {
                direction,
                max_worse_percent: percent,
                max_worse_by: by,
            }),
            ..metric(None, None, Some(0.0))
        };
        let j = |m: &AnalysisMetric, c, s| {
            judge(
                m,
                "q".into(),
                Reading::Value(c),
                Some(("s".into(), Reading::Value(s))),
            )
            .result
        };
        use CheckResult::{Fail, Pass};
        // A success rate: lower is worse; 1 % of the stable 0.99 is 0.0099.
        let success = with(Direction::LowerIsWorse, Some(1.0), None);
        assert_eq!(j(&success, 0.9802, 0.99), Pass, "0.0098 lower");
        assert_eq!(j(&success, 0.98, 0.99), Fail, "0.01 lower");
        assert_eq!(j(&success, 1.0, 0.99), Pass, "higher is better here");
        // Errors a second against a stable 0: no relative margin, the absolute one holds.
        let errors = with(Direction::HigherIsWorse, Some(20.0), Some(0.05));
        assert_eq!(j(&errors, 0.05, 0.0), Pass);
        assert_eq!(j(&errors, 0.06, 0.0), Fail);
        // Against a stable 1.0 the relative margin (0.2) is the larger: it applies.
        assert_eq!(j(&errors, 1.2, 1.0), Pass);
        assert_eq!(j(&errors, 1.25, 1.0), Fail);
        let r = judge(
            &errors,
            "q".into(),
            Reading::Value(0.5),
            Some(("s".into(), Reading::Value(0.0))),
        );
        assert_eq!(
            r.message.as_deref(),
            Some(
                "0.5 is 0.5 higher than the stable revision's 0 (higher is worse; allowed: 20% of it or 0.05)"
            )
        );
    }

    fn result(result: CheckResult, dry_run: bool) -> MetricResult {
        MetricResult {
            name: format!("{result:?}"),
            query: "q".into(),
            value: None,
            stable_value: None,
            stable_query: None,
            result,
            dry_run,
            message: None,
        }
    }

    #[test]
    fn verdicts() {
        use CheckResult::*;
        let v = |rs: &[MetricResult], n| verdict(rs, n).0;
        assert_eq!(
            v(&[result(Pass, false)], OnNoData::Inconclusive),
            Verdict::Pass
        );
        assert_eq!(
            v(&[result(Pass, false), result(Fail, false)], OnNoData::Pass),
            Verdict::Fail
        );
        // dry-run metrics never change the outcome
        assert_eq!(
            v(&[result(Pass, false), result(Fail, true)], OnNoData::Fail),
            Verdict::Pass
        );
        assert_eq!(
            v(&[result(Pass, false), result(NoData, true)], OnNoData::Fail),
            Verdict::Pass
        );
        assert_eq!(
            v(&[result(NoData, false)], OnNoData::Inconclusive),
            Verdict::Inconclusive
        );
        assert_eq!(v(&[result(NoData, false)], OnNoData::Fail), Verdict::Fail);
        assert_eq!(v(&[result(NoData, false)], OnNoData::Pass), Verdict::Pass);
        // an unmeasurable metric holds, whatever onNoData says
        assert_eq!(
            v(&[result(Error, false)], OnNoData::Pass),
            Verdict::Inconclusive
        );
        assert_eq!(
            v(&[result(Error, false), result(Fail, false)], OnNoData::Pass),
            Verdict::Fail
        );
        let (_, why) = verdict(&[result(NoData, false)], OnNoData::Inconclusive);
        assert!(why.contains("holding"), "{why}");
    }
}

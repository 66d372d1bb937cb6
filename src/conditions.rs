//! The one condition helper: builds metav1 Conditions and merges them into a status so
//! that `lastTransitionTime` moves only when the status changes (kstatus and
//! `kubectl wait` rely on that), and every condition carries `observedGeneration`; and the
//! [`Note`] a core returns for an Event.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// An Event to publish: CamelCase reason, a sentence, Warning or Normal. Cores return
/// these; the Kubernetes edge publishes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub reason: String,
    pub message: String,
    pub warning: bool,
}

impl Note {
    pub fn normal(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            message: message.into(),
            warning: false,
        }
    }

    pub fn warning(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            message: message.into(),
            warning: true,
        }
    }
}

/// Condition status: the three values Kubernetes allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

/// A condition before it is merged: type, status, reason (CamelCase) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub status: Status,
    pub reason: String,
    pub message: String,
}

impl Cond {
    pub fn new(
        type_: &'static str,
        status: Status,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The condition every kind has: whether the operator can do what the spec asks.
pub const READY: &str = "Ready";
/// kstatus's `Stalled` (Flux's `healthChecks` fail at once on it, `kstatus` says `Failed`):
/// True, with Ready's reason and message, while Ready is False for a reason in
/// [`STALLED_REASONS`]; absent otherwise. Derived by [`merge`], never set by a core.
pub const STALLED: &str = "Stalled";
/// Reasons of `Ready=False` that waiting does not heal: the spec (or its author's rights,
/// or the schedule) must change. Others (Prometheus unreachable, no data yet, a failed
/// pass retried with backoff) are `Ready=False` without `Stalled`.
pub const STALLED_REASONS: &[&str] = &[
    "InvalidSpec",
    "QueryRejected",
    "ThresholdNotABucket",
    "AmbiguousQuery",
    "QueryNotAllowed",
    "AuthorNotAllowed",
    "NoNextWindow",
];

/// Whether `reason` of `Ready=False` needs a change to heal (see [`STALLED_REASONS`]).
pub fn is_stalled_reason(reason: &str) -> bool {
    STALLED_REASONS.contains(&reason)
}

/// Merges `updates` into `existing`: a condition whose status is unchanged keeps its
/// `lastTransitionTime`; reason, message and `observedGeneration` are always the new ones.
/// Conditions of other types are kept; `Stalled` follows Ready ([`STALLED`]); the result
/// is ordered by type.
pub fn merge(
    existing: &[Condition],
    updates: &[Cond],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| !updates.iter().any(|u| u.type_ == c.type_))
        .cloned()
        .collect();
    for u in updates {
        let previous = existing.iter().find(|c| c.type_ == u.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == u.status.as_str() => p.last_transition_time.clone(),
            _ => now.clone(),
        };
        out.push(Condition {
            type_: u.type_.to_string(),
            status: u.status.as_str().to_string(),
            reason: u.reason.clone(),
            message: u.message.clone(),
            last_transition_time,
            observed_generation: generation,
        });
    }
    stalled(existing, &mut out, now);
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// Sets [`STALLED`] from Ready in `out`: True with Ready's reason and message (since when it
/// first became so), or absent.
fn stalled(existing: &[Condition], out: &mut Vec<Condition>, now: &Time) {
    out.retain(|c| c.type_ != STALLED);
    let Some(ready) = out
        .iter()
        .find(|c| c.type_ == READY && c.status == "False" && is_stalled_reason(&c.reason))
    else {
        return;
    };
    let since = existing
        .iter()
        .find(|c| c.type_ == STALLED && c.status == "True")
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    let stalled = Condition {
        type_: STALLED.to_string(),
        status: "True".to_string(),
        reason: ready.reason.clone(),
        message: ready.message.clone(),
        last_transition_time: since,
        observed_generation: ready.observed_generation,
    };
    out.push(stalled);
}

/// The status of condition `type_`, if present.
pub fn status_of<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let t1 = time("2026-11-01T00:00:00Z");
        let t2 = time("2026-11-02T00:00:00Z");
        let first = merge(
            &[],
            &[Cond::new("Ready", Status::True, "Evaluated", "ok")],
            Some(1),
            &t1,
        );
        assert_eq!(first[0].last_transition_time, t1);

        let same = merge(
            &first,
            &[Cond::new("Ready", Status::True, "Evaluated", "still ok")],
            Some(2),
            &t2,
        );
        assert_eq!(same[0].last_transition_time, t1);
        assert_eq!(same[0].message, "still ok");
        assert_eq!(same[0].observed_generation, Some(2));

        let changed = merge(
            &same,
            &[Cond::new("Ready", Status::False, "QueryRejected", "bad")],
            Some(2),
            &t2,
        );
        assert_eq!(changed[0].last_transition_time, t2);
        assert_eq!(status_of(&changed, "Ready"), Some("False"));
    }

    #[test]
    fn stalled_follows_a_ready_that_only_a_change_heals() {
        let (t1, t2, t3) = (
            time("2026-11-01T00:00:00Z"),
            time("2026-11-02T00:00:00Z"),
            time("2026-11-03T00:00:00Z"),
        );
        let invalid = Cond::new("Ready", Status::False, "InvalidSpec", "spec.x: bad");
        let a = merge(&[], std::slice::from_ref(&invalid), Some(3), &t1);
        let stalled = a
            .iter()
            .find(|c| c.type_ == "Stalled")
            .expect("Stalled set");
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "InvalidSpec")
        );
        assert_eq!(stalled.message, "spec.x: bad");
        assert_eq!(stalled.observed_generation, Some(3));
        assert_eq!(stalled.last_transition_time, t1);
        // Still invalid a day later: the transition time stays.
        let b = merge(&a, &[invalid], Some(3), &t2);
        assert_eq!(b, a);
        // Another condition merged alone keeps Stalled as Ready says.
        let c = merge(
            &b,
            &[Cond::new(
                "TargetLevelMet",
                Status::True,
                "LevelReached",
                "",
            )],
            Some(3),
            &t2,
        );
        assert_eq!(status_of(&c, "Stalled"), Some("True"));
        // Waiting heals a Prometheus outage: Ready False, not Stalled.
        let d = merge(
            &c,
            &[Cond::new(
                "Ready",
                Status::False,
                "PrometheusUnreachable",
                "",
            )],
            Some(4),
            &t3,
        );
        assert_eq!(status_of(&d, "Stalled"), None);
        assert_eq!(status_of(&d, "Ready"), Some("False"));
        let e = merge(
            &d,
            &[Cond::new("Ready", Status::True, "Evaluated", "")],
            Some(4),
            &t3,
        );
        assert_eq!(status_of(&e, "Stalled"), None);
    }

    #[test]
    fn other_conditions_are_kept_and_order_is_stable() {
        let t = time("2026-11-01T00:00:00Z");
        let a = merge(
            &[],
            &[
                Cond::new("ObjectiveMet", Status::True, "Met", ""),
                Cond::new("DataAvailable", Status::True, "Measured", ""),
            ],
            Some(1),
            &t,
        );
        let b = merge(
            &a,
            &[Cond::new("Ready", Status::True, "Evaluated", "")],
            Some(1),
            &t,
        );
        let types: Vec<&str> = b.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["DataAvailable", "ObjectiveMet", "Ready"]);
    }
}

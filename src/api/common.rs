//! Types shared by the four kinds: checked string types (durations, PromQL, dates, cron),
//! the status fields every kind carries, and the condition helper.
//!
//! Each checked string type carries its own CEL rule, so every field of that type is
//! validated the same way at admission and parses the same way in the operator.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::duration::{DURATION_PATTERN, DurationError, parse_duration};

/// API group of every kind.
pub const GROUP: &str = "maturity.sre.dev";
/// API version of every kind.
pub const VERSION: &str = "v1alpha1";

/// A duration such as `30s`, `5m`, `1h30m` or `28d` (see [`crate::duration`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct DurationString(pub String);

impl DurationString {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// Parses the duration; admission already checked the format, so an error here means
    /// the object was stored before the rule existed.
    pub fn parse(&self) -> Result<std::time::Duration, DurationError> {
        parse_duration(&self.0)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DurationString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for DurationString {
    fn schema_name() -> Cow<'static, str> {
        "DurationString".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 32,
            "x-kubernetes-validations": [{
                "rule": format!("self.matches('{DURATION_PATTERN}')"),
                "message": "must be a duration: a number and a unit (ms, s, m, h, d, w), e.g. 300ms, 30s, 5m, 1h30m, 28d"
            }, {
                "rule": duration_at_most(LONGEST_DURATION),
                "message": format!("must be at most {LONGEST_DURATION} (two years): no duration of the API needs more")
            }]
        })
    }
}

/// The longest duration any field takes (an attestation's `reviewEvery`); tighter bounds
/// are on the fields: holds and check intervals at most 1d, windows at most 400d.
pub const LONGEST_DURATION: &str = "730d";
/// The longest a drill holds its fault, checks, or waits for recovery: a day.
pub const LONGEST_HOLD: &str = "1d";
/// The longest window (a rolling SLO window, a jitter, a blackout, a starting deadline).
pub const LONGEST_WINDOW: &str = "400d";

/// A CEL rule: the duration `self` (already in the duration language) is at most `max`.
/// The parts are summed in milliseconds. A number of more than 9 digits makes the rule
/// false before anything is computed, so no value can overflow CEL's integers: an
/// evaluation error would not be ratcheted, and an object stored before the rule could
/// then not even lose its finalizer.
pub fn duration_at_most(max: &str) -> String {
    let ms = crate::duration::parse_duration(max)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "self.findAll('[0-9]+').all(n, size(n) <= 9) && \
         self.findAll('[0-9]+(ms|s|m|h|d|w)').map(p, int(p.find('^[0-9]+')) * \
         (p.endsWith('ms') ? 1 : p.endsWith('s') ? 1000 : p.endsWith('m') ? 60000 : \
         p.endsWith('h') ? 3600000 : p.endsWith('d') ? 86400000 : 604800000)).sum() <= {ms}"
    )
}

/// A PromQL expression (or, where documented, a template with `{{placeholders}}`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct PromQl(pub String);

impl PromQl {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl JsonSchema for PromQl {
    fn schema_name() -> Cow<'static, str> {
        "PromQl".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 4096,
            "x-kubernetes-validations": [{
                "rule": "self.trim() != ''",
                "message": "must be a PromQL expression, not empty"
            }]
        })
    }
}

/// A calendar date `YYYY-MM-DD` (UTC).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(transparent)]
pub struct DateString(pub String);

impl DateString {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl JsonSchema for DateString {
    fn schema_name() -> Cow<'static, str> {
        "DateString".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 10,
            "x-kubernetes-validations": [{
                "rule": "self.matches('^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$')",
                "message": "must be a date written YYYY-MM-DD, e.g. 2026-11-01"
            }, {
                // The day exists in its month (30 April, 29 February only in leap years).
                "rule": "!self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}$') || int(self.substring(8, 10)) <= (self.substring(5, 7) in ['04', '06', '09', '11'] ? 30 : self.substring(5, 7) == '02' ? (((int(self.substring(0, 4)) % 4 == 0 && int(self.substring(0, 4)) % 100 != 0) || int(self.substring(0, 4)) % 400 == 0) ? 29 : 28) : 31)",
                "messageExpression": "self + ' is not a day of the calendar'"
            }]
        })
    }
}

/// A cron expression of five fields (minute hour day-of-month month day-of-week).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct CronString(pub String);

impl CronString {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl JsonSchema for CronString {
    fn schema_name() -> Cow<'static, str> {
        "CronString".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 128,
            "x-kubernetes-validations": [{
                "rule": "self.matches('^\\\\s*[0-9*,/?LW#A-Za-z-]+(\\\\s+[0-9*,/?LW#A-Za-z-]+){4}\\\\s*$')",
                "message": "must be a cron schedule of five fields (minute hour day-of-month month day-of-week), e.g. \"0 10 * * 1-5\""
            }]
        })
    }
}

/// Status fields every kind carries.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the operator last evaluated this resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluated: Option<Time>,
    /// Standard conditions; `Ready` follows kstatus so `kubectl wait --for=condition=Ready` works.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

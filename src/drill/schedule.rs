//! Schedule arithmetic of a DrillSchedule: cron slots in the schedule's time zone (DST
//! gaps and overlaps handled by `croner` on `jiff` zoned times), the jitter window after
//! each slot, blackouts and the starting deadline. Pure: the caller passes "now" and the
//! random number.

use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::api::DrillSchedule;
use crate::clock::add;

/// Starting deadline when the spec sets none.
pub const DEFAULT_STARTING_DEADLINE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
    pub jitter: Duration,
    blackouts: Vec<(Cron, Duration, String)>,
    pub starting_deadline: Duration,
}

/// When the next drill may start: `[start, end]`; the real start is drawn inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

fn parse_cron(pattern: &str, what: &str) -> Result<Cron, String> {
    if pattern.split_whitespace().count() != 5 {
        return Err(format!(
            "{what} {pattern:?}: expected five fields (minute hour day-of-month month day-of-week)"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .build()
        .parse(pattern)
        .map_err(|e| format!("{what} {pattern:?}: {e}"))
}

fn dur(s: &crate::api::common::DurationString, what: &str) -> Result<Duration, String> {
    s.parse().map_err(|e| format!("{what}: {e}"))
}

impl Schedule {
    pub fn parse(d: &DrillSchedule) -> Result<Self, String> {
        let spec = &d.spec;
        let cron = parse_cron(spec.schedule.as_str(), "schedule")?;
        let tz_name = spec.time_zone.as_deref().unwrap_or("UTC");
        let tz = TimeZone::get(tz_name)
            .map_err(|e| format!("timeZone {tz_name:?} is not a known IANA time zone: {e}"))?;
        let jitter = match &spec.jitter {
            Some(j) => dur(j, "jitter")?,
            None => Duration::ZERO,
        };
        let mut blackouts = Vec::new();
        for (i, b) in spec.blackouts.iter().enumerate() {
            blackouts.push((
                parse_cron(b.schedule.as_str(), &format!("blackouts[{i}].schedule"))?,
                dur(&b.duration, &format!("blackouts[{i}].duration"))?,
                format!("{} for {}", b.schedule.as_str(), b.duration.as_str()),
            ));
        }
        let starting_deadline = match &spec.starting_deadline {
            Some(s) => dur(s, "startingDeadline")?,
            None => DEFAULT_STARTING_DEADLINE,
        };
        Ok(Self {
            cron,
            tz,
            jitter,
            blackouts,
            starting_deadline,
        })
    }

    /// The first slot strictly after `after`.
    pub fn next_slot(&self, after: Timestamp) -> Result<Timestamp, String> {
        let zoned = after.to_zoned(self.tz.clone());
        self.cron
            .find_next_occurrence(&zoned, false)
            .map(|z| z.timestamp())
            .map_err(|e| format!("no next slot: {e}"))
    }

    /// The window of `slot`.
    pub fn window(&self, slot: Timestamp) -> Window {
        Window {
            start: slot,
            end: add(slot, self.jitter),
        }
    }

    /// The real start inside `w`, from a random number.
    pub fn pick_start(&self, w: Window, random: u64) -> Timestamp {
        let span = (w.end.as_millisecond() - w.start.as_millisecond()).max(0) as u64;
        let offset = if span == 0 { 0 } else { random % (span + 1) };
        Timestamp::from_millisecond(w.start.as_millisecond() + offset as i64).unwrap_or(w.start)
    }

    /// The blackout `t` falls in, if any.
    pub fn blackout_at(&self, t: Timestamp) -> Option<&str> {
        self.blackout_until(t).map(|(name, _)| name)
    }

    /// The blackout `t` falls in and when it ends (the latest end when several overlap).
    pub fn blackout_until(&self, t: Timestamp) -> Option<(&str, Timestamp)> {
        let zoned = t.to_zoned(self.tz.clone());
        self.blackouts
            .iter()
            .filter_map(|(cron, length, name)| {
                let began = cron.find_previous_occurrence(&zoned, true).ok()?;
                let end = add(began.timestamp(), *length);
                (t < end).then_some((name.as_str(), end))
            })
            .max_by_key(|(_, end)| *end)
    }

    /// The next window after `after` whose slot is not in a blackout (at most 1000 slots ahead).
    pub fn next_window(&self, after: Timestamp) -> Result<Window, String> {
        let mut t = after;
        for _ in 0..1000 {
            let slot = self.next_slot(t)?;
            if self.blackout_at(slot).is_none() {
                return Ok(self.window(slot));
            }
            t = slot;
        }
        Err("the blackouts cover the next 1000 slots".into())
    }
}

/// The window as status shows it: the exact start only when the drill is announced.
pub fn window_status(
    w: Window,
    planned: Option<Timestamp>,
    announce: bool,
) -> crate::api::drill_schedule::Window {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    crate::api::drill_schedule::Window {
        start: Time(w.start),
        end: Time(w.end),
        planned_start: planned.filter(|_| announce).map(Time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drill(
        schedule: &str,
        tz: &str,
        jitter: Option<&str>,
        blackouts: &[(&str, &str)],
    ) -> DrillSchedule {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "maturity.sre.dev/v1alpha1", "kind": "DrillSchedule",
            "metadata": {"name": "d", "namespace": "n"},
            "spec": {
                "schedule": schedule, "timeZone": tz, "jitter": jitter,
                "blackouts": blackouts.iter().map(|(s, d)| serde_json::json!({"schedule": s, "duration": d})).collect::<Vec<_>>(),
                "target": {"name": "web"}, "action": {"podKill": {"count": 1}},
                "recoveryDeadline": "5m"
            }
        }))
        .unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn slots_follow_the_time_zone() {
        let s = Schedule::parse(&drill("0 10 * * 1-5", "Asia/Shanghai", None, &[])).unwrap();
        // Wednesday 2026-11-25 03:00 UTC is 11:00 in Shanghai: next is Thursday 10:00 (02:00 UTC).
        assert_eq!(
            s.next_slot(ts("2026-11-25T03:00:00Z")).unwrap(),
            ts("2026-11-26T02:00:00Z")
        );
        // Friday 10:00 Shanghai -> next is Monday.
        assert_eq!(
            s.next_slot(ts("2026-11-27T02:00:00Z")).unwrap(),
            ts("2026-11-30T02:00:00Z")
        );
    }

    #[test]
    fn dst_gap_and_overlap() {
        // New York springs forward on 2026-03-08: 02:30 does not exist that day; the drill
        // runs at the first real instant after the gap (03:00 EDT = 07:00 UTC).
        let s = Schedule::parse(&drill("30 2 * * *", "America/New_York", None, &[])).unwrap();
        let gap = s.next_slot(ts("2026-03-08T05:00:00Z")).unwrap();
        assert_eq!(gap, ts("2026-03-08T07:00:00Z"));
        // The day before and after: 02:30 EST (07:30 UTC) and 02:30 EDT (06:30 UTC).
        assert_eq!(
            s.next_slot(ts("2026-03-07T00:00:00Z")).unwrap(),
            ts("2026-03-07T07:30:00Z")
        );
        assert_eq!(
            s.next_slot(ts("2026-03-09T00:00:00Z")).unwrap(),
            ts("2026-03-09T06:30:00Z")
        );
        // It falls back on 2026-11-01: 01:30 happens twice; the drill runs once.
        let s = Schedule::parse(&drill("30 1 * * *", "America/New_York", None, &[])).unwrap();
        let first = s.next_slot(ts("2026-11-01T04:00:00Z")).unwrap();
        assert_eq!(first, ts("2026-11-01T05:30:00Z"), "01:30 EDT");
        let next = s.next_slot(first).unwrap();
        assert_eq!(
            next,
            ts("2026-11-02T06:30:00Z"),
            "not again at 01:30 EST the same night"
        );
    }

    #[test]
    fn jitter_stays_in_its_window_and_differs_between_runs() {
        let s = Schedule::parse(&drill("0 10 * * *", "UTC", Some("4h"), &[])).unwrap();
        let w = s.next_window(ts("2026-11-25T00:00:00Z")).unwrap();
        assert_eq!(w.start, ts("2026-11-25T10:00:00Z"));
        assert_eq!(w.end, ts("2026-11-25T14:00:00Z"));
        let rng = crate::clock::Clock::from_source(crate::clock::ManualClock::new(w.start, 1));
        let starts: std::collections::BTreeSet<Timestamp> =
            (0..50).map(|_| s.pick_start(w, rng.random())).collect();
        assert!(starts.iter().all(|t| *t >= w.start && *t <= w.end));
        assert!(starts.len() > 40, "starts should differ: {}", starts.len());
        assert_eq!(s.pick_start(w, 0), w.start);
        assert_eq!(s.pick_start(w, 4 * 3_600_000), w.end);
    }

    #[test]
    fn unannounced_windows_never_show_the_start() {
        let s = Schedule::parse(&drill("0 10 * * *", "UTC", Some("4h"), &[])).unwrap();
        let w = s.next_window(ts("2026-11-25T00:00:00Z")).unwrap();
        let rng = crate::clock::Clock::from_source(crate::clock::ManualClock::new(w.start, 2));
        for _ in 0..20 {
            let start = s.pick_start(w, rng.random());
            let hidden = serde_json::to_string(&window_status(w, Some(start), false)).unwrap();
            assert!(!hidden.contains("plannedStart"), "{hidden}");
            let shown = serde_json::to_string(&window_status(w, Some(start), true)).unwrap();
            assert!(shown.contains("plannedStart"), "{shown}");
            // Time has whole seconds in JSON: the drawn start is not recoverable from the window.
            if start != w.start && start != w.end {
                let secs = start.as_second().to_string();
                assert!(!hidden.contains(&secs));
            }
        }
    }

    #[test]
    fn blackouts_skip_slots() {
        // Daily at 10:00, but no drills from Dec 24 00:00 for 48 h.
        let s = Schedule::parse(&drill(
            "0 10 * * *",
            "Europe/Berlin",
            None,
            &[("0 0 24 12 *", "48h")],
        ))
        .unwrap();
        let w = s.next_window(ts("2026-12-23T12:00:00Z")).unwrap();
        // 24th and 25th 10:00 Berlin are blacked out; the 26th 10:00 CET is 09:00 UTC.
        assert_eq!(w.start, ts("2026-12-26T09:00:00Z"));
        assert!(s.blackout_at(ts("2026-12-24T09:00:00Z")).is_some());
        assert!(s.blackout_at(ts("2026-12-25T22:59:00Z")).is_some());
        assert!(
            s.blackout_at(ts("2026-12-25T23:00:00Z")).is_none(),
            "ends 48 h after Dec 24 00:00 CET"
        );
        assert!(s.blackout_at(ts("2026-12-23T09:00:00Z")).is_none());
    }

    #[test]
    fn bad_input_is_a_sentence() {
        let e = Schedule::parse(&drill("0 10 * *", "UTC", None, &[])).unwrap_err();
        assert!(e.contains("five fields"), "{e}");
        let e = Schedule::parse(&drill("0 25 * * *", "UTC", None, &[])).unwrap_err();
        assert!(e.starts_with("schedule"), "{e}");
        let e = Schedule::parse(&drill("0 10 * * *", "Mars/Olympus", None, &[])).unwrap_err();
        assert!(e.contains("IANA"), "{e}");
    }
}

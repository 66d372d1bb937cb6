//! The pure core of DrillSchedule: schedule arithmetic, the run state machine, and the
//! decision of a pass. Nothing here talks to a cluster or to Prometheus;
//! `controllers::drill_schedule` does.

pub mod decide;
pub mod run;
pub mod schedule;

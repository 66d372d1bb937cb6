//! The pure core of DrillSchedule: schedule arithmetic and the run state machine.
//! Nothing here talks to a cluster or to Prometheus; `controllers::drill_schedule` does.

pub mod run;
pub mod schedule;

//! Controllers: thin loops that gather observations (Kubernetes API, Prometheus), call the
//! pure cores (`crate::slo`, ...), and write status only when it changed.

pub mod canary_policy;
pub mod drill_schedule;
pub mod prometheus_rule;
pub mod response_time_target;

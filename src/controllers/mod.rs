//! Controllers: one folder per kind, each read the same way. `observe` makes every read
//! (Kubernetes API through `crate::k8s`, Prometheus) into a plain `Observed` value; the
//! kind's pure core decides (`<core>::decide`: new status with every condition, effects,
//! when to look again); `act` writes status first where an effect must survive a crash,
//! then applies the effects, Events and metrics. [`runtime`] runs them all the same way.

pub mod canary_policy;
pub mod drill_schedule;
pub mod maturity_assessment;
pub mod response_time_target;
pub mod runtime;

pub use runtime::{Context, Error, Settings};

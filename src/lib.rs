//! Maturity Operator: measures how mature a team's operations are, from policies declared
//! as custom resources and what Prometheus and the Kubernetes API show.
//!
//! - [`api`]: the custom resources (one file per kind).
//! - [`authz`]: who wrote a spec (recorded by the webhook, proven) and what the operator may
//!   do for them.
//! - [`check`]: the CI gate on an assessment's level (`maturity-operator check`).
//! - [`clock`]: the only place that reads the clock or draws randomness.
//! - [`conditions`]: the one condition helper.
//! - [`duration`]: the one duration format of the API.
//! - [`prom`]: the one Prometheus client and query templates.
//! - [`canary`]: the pure core of CanaryPolicy: admission hold, analysis, rollout state machine.
//! - [`drill`]: the pure core of DrillSchedule: schedule arithmetic, run state machine.
//! - [`slo`]: the pure core of ResponseTimeTarget: figures, conditions, burn-rate rules.
//! - [`controllers`]: one folder per kind (observe → the core's decide → act) and the one runtime.
//! - [`k8s`]: the only code that calls the Kubernetes API: typed errors, timeouts, the fence,
//!   status written only when it changed, Events, workloads.
//! - [`selector`]: label selectors as plain values, for the cores.
//! - [`model`]: the maturity model as data (every practice), the pure level evaluation, the
//!   assessment's decision and its weekly and monthly reports (Markdown and JSON).
//! - [`leader`]: leader election on a Lease, and the fence that stops a deposed leader's writes.
//! - [`operator`]: the `run` command: client, health and metrics server (`/metrics` behind a
//!   TokenReview and SubjectAccessReview), shutdown.
//! - [`webhook`]: the HTTPS admission webhook that holds new templates of governed Deployments.
//! - [`tls`]: certificates (made at start or mounted) and the TLS listener of both servers.
//! - [`synthetic`]: a metrics exporter with settable traffic, for tests and the demo.
//! - [`validate`]: manifests checked offline as the API server and the webhook would check
//!   them (`maturity-operator validate`): the CRDs' schemas and CEL rules, in its words.
//! - `testing` (unit tests only): fluent builders of the custom resources.

pub mod api;
pub mod attest;
pub mod authz;
pub mod canary;
pub mod check;
pub mod clock;
pub mod conditions;
pub mod controllers;
pub mod delivery;
pub mod drill;
pub mod duration;
pub mod k8s;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod operator;
pub mod prom;
pub mod selector;
pub mod slo;
pub mod synthetic;
#[cfg(test)]
pub mod testing;
pub mod tls;
pub mod validate;
pub mod webhook;

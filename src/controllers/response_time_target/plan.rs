//! How a target is evaluated (its plan: in a group of its indicator shape, alone, or not
//! at all) and its own queries, scoped to its namespace, as status shows them. Both are
//! made when its spec changes. The queries are held only until the target's status shows
//! them; from then on the status is their memory, and a hash of them tells when it no
//! longer is (the status lost, or written by someone else).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use kube::ResourceExt;

use super::super::Context;
use crate::api::ResponseTimeTarget;
use crate::slo::Problem;
use crate::slo::batch::{self, Membership};

/// How a target is evaluated.
#[derive(Debug, Clone)]
pub enum Plan {
    /// In a group, with its values of the group's varying labels.
    Group(Membership),
    Single,
    Invalid(Problem),
}

/// How the index makes a target's plan and queries (parsing and scoping its selectors).
pub trait Planner {
    fn plan(&self, t: &ResponseTimeTarget) -> (Plan, BTreeMap<String, String>);
}

/// A target's scoped queries, or why it may not be evaluated.
type Scoped = Result<BTreeMap<String, String>, Problem>;

/// The target's own queries as they are sent: scoped to its namespace. A query that would
/// read another namespace makes the target invalid.
pub fn scoped_queries(ctx: &Context, t: &ResponseTimeTarget) -> Scoped {
    let ns = t.namespace().unwrap_or_default();
    let mut queries = crate::slo::decide::resolved_queries(t);
    if let Some(ind) = &t.spec.indicator.alert_resolution {
        let firing = crate::slo::resolution::firing_query(&ind.selector, t.spec.window.as_str());
        queries.insert("firing".into(), firing);
    }
    queries
        .into_iter()
        .map(|(k, q)| match ctx.scoped(&q, &ns) {
            Ok(q) => Ok((k, q)),
            Err(e) => Err(Problem::QueryNotAllowed(format!("{k} query: {e}"))),
        })
        .collect()
}

impl Planner for Context {
    /// A group member's queries are made from its selectors as the group scoped them (each
    /// parsed once, by `batch::planned`), an alertResolution target's by scoping each.
    fn plan(&self, t: &ResponseTimeTarget) -> (Plan, BTreeMap<String, String>) {
        if t.spec.indicator.alert_resolution.is_some() {
            return match scoped_queries(self, t) {
                Ok(q) => (Plan::Single, q),
                Err(p) => (Plan::Invalid(p), BTreeMap::new()),
            };
        }
        let ns = t.namespace().unwrap_or_default();
        match batch::planned(&ns, &t.spec, &self.settings.tenancy) {
            Ok((m, indicator)) => {
                let queries = crate::slo::decide::queries_of(&t.spec.window, &indicator);
                (Plan::Group(m), queries)
            }
            Err(p) => (Plan::Invalid(p), BTreeMap::new()),
        }
    }
}

fn hash(queries: &BTreeMap<String, String>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    queries.hash(&mut h);
    h.finish()
}

/// A target's scoped queries: held until its status shows them.
#[derive(Debug)]
pub struct Queries {
    held: Option<Arc<BTreeMap<String, String>>>,
    hash: u64,
}

impl Queries {
    pub fn new(queries: BTreeMap<String, String>) -> Self {
        Self {
            hash: hash(&queries),
            held: Some(Arc::new(queries)),
        }
    }

    /// Lets go of the queries once `t`'s status shows them. False when they are neither
    /// held nor shown (they must be made again).
    pub fn settle(&mut self, t: &ResponseTimeTarget) -> bool {
        if t.status.as_ref().map(|s| hash(&s.queries)) == Some(self.hash) {
            self.held = None;
            return true;
        }
        self.held.is_some()
    }

    /// The held queries; None when the status shows them.
    pub fn held(&self) -> Option<Arc<BTreeMap<String, String>>> {
        self.held.clone()
    }
}

/// The queries for a target's next status: `held`, or those its status shows.
pub fn for_status(
    held: Option<&BTreeMap<String, String>>,
    t: &ResponseTimeTarget,
) -> BTreeMap<String, String> {
    match held {
        Some(q) => q.clone(),
        None => t
            .status
            .as_ref()
            .map(|s| s.queries.clone())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::response_time_target::ResponseTimeTargetStatus;
    use crate::testing::TargetBuilder;

    fn showing(queries: &[(&str, &str)]) -> ResponseTimeTarget {
        let status = ResponseTimeTargetStatus {
            queries: queries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        TargetBuilder::new("a").status(&status).build()
    }

    #[test]
    fn queries_are_held_until_the_status_shows_them_and_made_again_when_it_no_longer_does() {
        let made = BTreeMap::from([("good".to_string(), "sum(up{a=\"1\"})".to_string())]);
        let mut q = Queries::new(made.clone());
        let none = TargetBuilder::new("a").build();
        assert!(q.settle(&none), "no status yet: still held");
        assert_eq!(q.held().as_deref(), Some(&made));
        let other = showing(&[("good", "sum(up)")]);
        assert!(
            q.settle(&other),
            "a status that shows other queries: still held"
        );
        assert_eq!(for_status(q.held().as_deref(), &other), made);

        let ours = showing(&[("good", "sum(up{a=\"1\"})")]);
        assert!(q.settle(&ours));
        assert!(q.held().is_none(), "let go once the status shows them");
        assert_eq!(for_status(q.held().as_deref(), &ours), made);
        // The status then written by someone else: not what was made, so make them again.
        assert!(!q.settle(&other));
        assert!(!q.settle(&none));
    }
}

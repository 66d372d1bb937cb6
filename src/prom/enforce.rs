//! Namespace enforcement of PromQL written by users, as prom-label-proxy enforces a label
//! with `-error-on-replace`: every vector selector (inside matrix selectors, subqueries,
//! function arguments and binary operands too) gets the matcher `<label>="<value>"`. A
//! selector's own matcher on that label is dropped when it could match the value (e.g.
//! `namespace=~"tenant-.*"`) and the query is refused when it could not (e.g.
//! `namespace="tenant-b"`): a query can read only its own namespace's series.
//!
//! Stricter than prom-label-proxy in two places, both on purpose: the parameter of an
//! aggregation (`topk(scalar(x), y)`, `quantile(...)`) is enforced too (prom-label-proxy
//! leaves it, so `x` could come from any namespace), and a selector with `or` inside its
//! braces is refused (Prometheus does not accept it either).

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr, VectorSelector, parse};

/// Why a query cannot be enforced: a sentence for a condition or an admission answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnforceError {
    #[error("the query does not parse: {0}")]
    Parse(String),
    #[error(
        "the query may only read namespace {namespace}: its matcher {matcher} would read other namespaces' series"
    )]
    Conflict { matcher: String, namespace: String },
    #[error("a selector with `or` inside its braces is not supported: write two selectors")]
    OrSelector,
}

/// Where enforcement applies: the label to enforce (`namespace` by default), or off for a
/// single-tenant cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenancy {
    /// Every user-written query is scoped to its object's namespace by this label.
    Enforced { label: String },
    /// Queries are sent as written (one team per cluster).
    Single,
}

impl Default for Tenancy {
    fn default() -> Self {
        Tenancy::Enforced {
            label: "namespace".into(),
        }
    }
}

impl Tenancy {
    /// `query` as it may be sent for an object of `namespace`.
    pub fn scope(&self, query: &str, namespace: &str) -> Result<String, EnforceError> {
        match self {
            Tenancy::Enforced { label } => enforce(query, label, namespace),
            Tenancy::Single => Ok(query.to_string()),
        }
    }

    /// [`Tenancy::scope`], parsed: the one parse of `query`.
    pub fn scope_expr(&self, query: &str, namespace: &str) -> Result<Expr, EnforceError> {
        let mut expr = parse(query).map_err(EnforceError::Parse)?;
        if let Tenancy::Enforced { label } = self {
            walk(&mut expr, &Matcher::new(MatchOp::Equal, label, namespace))?;
        }
        Ok(expr)
    }
}

/// `query` with `label="value"` on every vector selector, printed back as PromQL.
pub fn enforce(query: &str, label: &str, value: &str) -> Result<String, EnforceError> {
    let mut expr = parse(query).map_err(EnforceError::Parse)?;
    let injected = Matcher::new(MatchOp::Equal, label, value);
    walk(&mut expr, &injected)?;
    Ok(expr.to_string())
}

fn walk(e: &mut Expr, m: &Matcher) -> Result<(), EnforceError> {
    match e {
        Expr::Aggregate(a) => {
            walk(&mut a.expr, m)?;
            match a.param.as_mut() {
                Some(p) => walk(p, m),
                None => Ok(()),
            }
        }
        Expr::Unary(u) => walk(&mut u.expr, m),
        Expr::Binary(b) => {
            walk(&mut b.lhs, m)?;
            walk(&mut b.rhs, m)
        }
        Expr::Paren(p) => walk(&mut p.expr, m),
        Expr::Subquery(s) => walk(&mut s.expr, m),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(vs) => selector(vs, m),
        Expr::MatrixSelector(ms) => selector(&mut ms.vs, m),
        Expr::Call(c) => c.args.args.iter_mut().try_for_each(|a| walk(a, m)),
        // The parser never makes one; nothing user-written can hide in it.
        Expr::Extension(_) => Ok(()),
    }
}

impl Tenancy {
    /// `query` as evidence of a practice for an object of `namespace`: scoped (as
    /// [`Tenancy::scope`]) and reading at least one series, or why not (a sentence). The
    /// controller sends only such a query, made [`fresh_only`]; the webhook refuses any
    /// other at admission.
    pub fn evidence(&self, query: &str, namespace: &str) -> Result<String, String> {
        if !reads_series(query) {
            return Err(format!(
                "the query {query:?} reads no series, only literals: its answer is the same whatever happens, so it is no evidence"
            ));
        }
        self.scope(query, namespace).map_err(|e| e.to_string())
    }
}

/// `query` answering only while every series it reads is live: each selector has a sample
/// now (within Prometheus's 5-minute lookback), and, with `history`, had one `history` ago
/// too. Without it `max_over_time(x[10y])` would keep an old value forever. The guard is
/// folded into the query (`and on()`), so it costs no extra request. Err: it does not parse.
pub fn fresh_only(query: &str, history: Option<std::time::Duration>) -> Result<String, String> {
    let expr = parse(query).map_err(|e| format!("the query {query:?} does not parse: {e}"))?;
    let mut selectors = Vec::new();
    collect(&expr, &mut selectors);
    if selectors.is_empty() {
        return Ok(query.to_string());
    }
    let mut guard = Vec::new();
    for s in &selectors {
        guard.push(format!("count({s}) * 0"));
        if let Some(h) = history {
            guard.push(format!("count({s} offset {}s) * 0", h.as_secs().max(1)));
        }
    }
    Ok(format!("({query}) and on() ({})", guard.join(" + ")))
}

/// Every distinct selector of `e`, as an instant selector now (without range, offset, @).
fn collect(e: &Expr, out: &mut Vec<String>) {
    let mut add = |vs: &VectorSelector| {
        let mut now = vs.clone();
        now.offset = None;
        now.at = None;
        let text = Expr::VectorSelector(now).to_string();
        if !out.contains(&text) {
            out.push(text);
        }
    };
    match e {
        Expr::VectorSelector(vs) => add(vs),
        Expr::MatrixSelector(ms) => add(&ms.vs),
        Expr::Aggregate(a) => {
            collect(&a.expr, out);
            if let Some(p) = &a.param {
                collect(p, out);
            }
        }
        Expr::Unary(u) => collect(&u.expr, out),
        Expr::Binary(b) => {
            collect(&b.lhs, out);
            collect(&b.rhs, out);
        }
        Expr::Paren(p) => collect(&p.expr, out),
        Expr::Subquery(s) => collect(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| collect(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// `query` in one canonical form (parsed and printed again), so two spellings of one
/// expression compare equal (Prometheus's rules API prints a rule's expression its own way);
/// None when it does not parse.
pub fn canonical(query: &str) -> Option<String> {
    parse(query).ok().map(|e| e.to_string())
}

/// Whether `query` reads any series: a vector or matrix selector anywhere in it. A query of
/// literals only (`vector(5)`, `1 > 0`, `scalar(vector(1))`) reads none, so its answer is
/// the same whatever happens: no evidence of anything. A query that does not parse reads
/// none either.
pub fn reads_series(query: &str) -> bool {
    parse(query).is_ok_and(|e| has_selector(&e))
}

fn has_selector(e: &Expr) -> bool {
    match e {
        Expr::Aggregate(a) => has_selector(&a.expr) || a.param.as_deref().is_some_and(has_selector),
        Expr::Unary(u) => has_selector(&u.expr),
        Expr::Binary(b) => has_selector(&b.lhs) || has_selector(&b.rhs),
        Expr::Paren(p) => has_selector(&p.expr),
        Expr::Subquery(s) => has_selector(&s.expr),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => false,
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => true,
        Expr::Call(c) => c.args.args.iter().any(|a| has_selector(a)),
    }
}

/// Could `target` (a matcher on the enforced label) select `value`? prom-label-proxy's
/// rule for an enforced `=` matcher.
fn compatible(target: &Matcher, value: &str) -> bool {
    match &target.op {
        MatchOp::Equal => target.value == value,
        MatchOp::NotEqual => target.value != value,
        MatchOp::Re(_) | MatchOp::NotRe(_) => target.is_match(value),
    }
}

fn selector(vs: &mut VectorSelector, m: &Matcher) -> Result<(), EnforceError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(EnforceError::OrSelector);
    }
    let mut kept = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    for target in vs.matchers.matchers.drain(..) {
        if target.name != m.name {
            kept.push(target);
        } else if !compatible(&target, &m.value) {
            return Err(EnforceError::Conflict {
                matcher: target.to_string(),
                namespace: m.value.clone(),
            });
        }
    }
    kept.push(m.clone());
    vs.matchers.matchers = kept;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(q: &str) -> Result<String, EnforceError> {
        enforce(q, "namespace", "tenant-a")
    }

    #[test]
    fn a_query_of_literals_reads_no_series() {
        for q in [
            "vector(5)",
            "1",
            "1 > 0",
            "scalar(vector(1)) * 3",
            "sum(vector(2))",
            "predict_linear((vector(5))[1h:1m], 3600)",
            "-(vector(1))",
            "not valid promql (",
        ] {
            assert!(!reads_series(q), "{q}");
        }
        for q in [
            "up",
            "vector(5) + up",
            "avg(satisfaction_score)",
            "predict_linear((sum(rate(x[5m])))[1h:1m], 3600)",
            "topk(scalar(k), y)",
            "quantile(0.9, rate(h[5m]))",
            "absent(nothing_here)",
        ] {
            assert!(reads_series(q), "{q}");
        }
    }

    #[test]
    fn every_selector_gets_the_namespace() {
        assert_eq!(
            ns(r#"sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))"#).unwrap(),
            r#"sum(rate(http_requests_total{code=~"5..",namespace="tenant-a"}[5m])) / sum(rate(http_requests_total{namespace="tenant-a"}[5m]))"#
        );
        assert_eq!(ns("up").unwrap(), r#"up{namespace="tenant-a"}"#);
        // A literal has no selector: nothing to scope (it reads no series).
        assert_eq!(ns("vector(1)").unwrap(), "vector(1)");
        assert_eq!(
            ns("max_over_time(x[1h:1m])").unwrap(),
            r#"max_over_time(x{namespace="tenant-a"}[1h:1m])"#
        );
        // Stricter than prom-label-proxy: the aggregation parameter too.
        assert_eq!(
            ns("topk(scalar(k), y)").unwrap(),
            r#"topk(scalar(k{namespace="tenant-a"}), y{namespace="tenant-a"})"#
        );
    }

    #[test]
    fn a_matcher_that_could_match_the_namespace_is_replaced_and_one_that_could_not_is_refused() {
        for ok in [
            r#"x{namespace="tenant-a"}"#,
            r#"x{namespace=~"tenant-.*"}"#,
            r#"x{namespace!="tenant-b"}"#,
            r#"x{namespace!~"tenant-b|tenant-c"}"#,
        ] {
            assert_eq!(ns(ok).unwrap(), r#"x{namespace="tenant-a"}"#, "{ok}");
        }
        for bad in [
            r#"x{namespace="tenant-b"}"#,
            r#"x{namespace=~"tenant-b.*"}"#,
            r#"x{namespace!="tenant-a"}"#,
            r#"x{namespace!~"tenant-a"}"#,
            // The regex is anchored, as in Prometheus: `tenant` alone does not match.
            r#"x{namespace=~"tenant"}"#,
        ] {
            let e = ns(bad).unwrap_err();
            assert!(matches!(e, EnforceError::Conflict { .. }), "{bad}: {e}");
            assert!(
                e.to_string().contains("may only read namespace tenant-a"),
                "{e}"
            );
        }
        assert!(matches!(ns("sum(").unwrap_err(), EnforceError::Parse(_)));
    }

    #[test]
    fn only_live_series_answer() {
        assert_eq!(
            fresh_only(r#"max_over_time(csat{namespace="a"}[3650d])"#, None).unwrap(),
            r#"(max_over_time(csat{namespace="a"}[3650d])) and on() (count(csat{namespace="a"}) * 0)"#
        );
        assert_eq!(
            fresh_only(
                "sum(rate(x[5m] offset 1w)) / sum(y)",
                Some(std::time::Duration::from_secs(86_400))
            )
            .unwrap(),
            "(sum(rate(x[5m] offset 1w)) / sum(y)) and on() (count(x) * 0 + count(x offset 86400s) * 0 + count(y) * 0 + count(y offset 86400s) * 0)"
        );
        assert_eq!(fresh_only("vector(1)", None).unwrap(), "vector(1)");
        assert!(fresh_only("sum(", None).is_err());
    }

    #[test]
    fn two_spellings_of_one_expression_are_one_canonical_form() {
        let a =
            canonical("(sum(rate(x{a=\"1\"}[5m])) / sum(rate(x[5m]))) > 0.0144\nand\n(y) > 0.0144");
        let b = canonical(
            "(sum(rate(x{a=\"1\"}[300s])) / sum(rate(x[5m]))) > 1.44e-2 and (y) > 0.0144",
        );
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(canonical("vector(0) > 1"), a);
        assert_eq!(canonical("sum("), None);
    }

    #[test]
    fn single_tenancy_sends_the_query_as_written() {
        let q = r#"x{namespace="tenant-b"}"#;
        assert_eq!(Tenancy::Single.scope(q, "tenant-a").unwrap(), q);
        assert!(Tenancy::default().scope(q, "tenant-a").is_err());
    }
}

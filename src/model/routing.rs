//! Alertmanager's routing tree, read from its configuration (`/api/v2/status`,
//! `config.original`), and where an alert with given labels goes: the rules of
//! Alertmanager's dispatcher (`dispatch/route.go`). A route matches when all its matchers
//! do (`matchers`, and the older `match` / `match_re`); of its children the first that
//! matches takes the alert, and the ones after it too while the matching child says
//! `continue: true`; a route none of whose children match is where the alert goes. A child
//! without a receiver inherits its parent's. A label the alert lacks is the empty string;
//! a regular expression must match the whole value. Pure: from text to destinations.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Where an alert goes: the receiver, its integrations (`webhook`, `email`, `pagerduty`,
/// ...; empty: it notifies nobody), and the matchers of the routes it took below the root
/// (empty: only the root route, the default, took it).
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    pub receiver: String,
    pub integrations: Vec<String>,
    pub path: Vec<String>,
}

/// The routing tree and the receivers of one Alertmanager configuration.
#[derive(Debug, Clone)]
pub struct Routing {
    root: Route,
    /// Receiver name to its integrations.
    receivers: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone)]
struct Route {
    receiver: Option<String>,
    matchers: Vec<Matcher>,
    /// The matchers as written, for the destination's path.
    written: Vec<String>,
    continues: bool,
    routes: Vec<Route>,
}

#[derive(Debug, Clone)]
enum Op {
    Eq(String),
    Ne(String),
    Re(regex::Regex),
    NotRe(regex::Regex),
}

#[derive(Debug, Clone)]
struct Matcher {
    label: String,
    op: Op,
}

impl Matcher {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.label).map(String::as_str).unwrap_or("");
        match &self.op {
            Op::Eq(x) => v == x,
            Op::Ne(x) => v != x,
            Op::Re(r) => r.is_match(v),
            Op::NotRe(r) => !r.is_match(v),
        }
    }
}

#[derive(Deserialize, Default)]
struct RawConfig {
    route: Option<RawRoute>,
    #[serde(default)]
    receivers: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize, Default)]
struct RawRoute {
    receiver: Option<String>,
    #[serde(default)]
    matchers: Vec<String>,
    #[serde(default, rename = "match")]
    match_eq: BTreeMap<String, String>,
    #[serde(default)]
    match_re: BTreeMap<String, String>,
    #[serde(default, rename = "continue")]
    continues: bool,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

fn anchored(re: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| format!("regex {re:?}: {e}"))
}

/// One matcher as Alertmanager writes it: `label="value"`, `label!="value"`,
/// `label=~"re"`, `label!~"re"` (the value quoted or not).
fn parse_matcher(text: &str) -> Result<Matcher, String> {
    let t = text.trim();
    let at = t
        .find(['=', '!'])
        .ok_or_else(|| format!("matcher {text:?} has no operator"))?;
    let label = t[..at].trim().trim_matches('"').to_string();
    let rest = &t[at..];
    let (op, value) = ["=~", "!~", "!=", "="]
        .iter()
        .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v.trim())))
        .ok_or_else(|| format!("matcher {text:?} has no operator"))?;
    let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => value.to_string(),
    };
    if label.is_empty() {
        return Err(format!("matcher {text:?} has no label"));
    }
    let op = match op {
        "=" => Op::Eq(value),
        "!=" => Op::Ne(value),
        "=~" => Op::Re(anchored(&value)?),
        _ => Op::NotRe(anchored(&value)?),
    };
    Ok(Matcher { label, op })
}

fn route(raw: RawRoute) -> Result<Route, String> {
    let mut matchers = Vec::new();
    let mut written = Vec::new();
    for m in &raw.matchers {
        matchers.extend(
            // A `matchers` entry may hold several, comma-separated, in braces or not.
            split_matchers(m)
                .into_iter()
                .map(|one| parse_matcher(&one))
                .collect::<Result<Vec<_>, _>>()?,
        );
        written.push(m.clone());
    }
    for (label, value) in raw.match_eq {
        written.push(format!("{label}=\"{value}\""));
        matchers.push(Matcher {
            label,
            op: Op::Eq(value),
        });
    }
    for (label, re) in raw.match_re {
        written.push(format!("{label}=~\"{re}\""));
        matchers.push(Matcher {
            label,
            op: Op::Re(anchored(&re)?),
        });
    }
    Ok(Route {
        receiver: raw.receiver,
        matchers,
        written,
        continues: raw.continues,
        routes: raw
            .routes
            .into_iter()
            .map(route)
            .collect::<Result<_, _>>()?,
    })
}

/// `{a="x", b=~"y,z"}` or `a="x", b="y"` into its matchers (commas inside quotes kept).
fn split_matchers(text: &str) -> Vec<String> {
    let t = text.trim();
    let t = t
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(t);
    let mut out = Vec::new();
    let (mut cur, mut quoted, mut escaped) = (String::new(), false, false);
    for c in t.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter().filter(|m| !m.trim().is_empty()).collect()
}

/// Reads an Alertmanager configuration (YAML).
pub fn parse(yaml: &str) -> Result<Routing, String> {
    let raw: RawConfig = serde_saphyr::from_str(yaml)
        .map_err(|e| format!("not an Alertmanager configuration: {e}"))?;
    let root = route(
        raw.route
            .ok_or("the Alertmanager configuration has no route")?,
    )?;
    let receivers = raw
        .receivers
        .iter()
        .filter_map(|r| {
            let name = r.get("name")?.as_str()?.to_string();
            let integrations = r
                .iter()
                .filter_map(|(k, v)| {
                    let kind = k.strip_suffix("_configs")?;
                    v.as_array()
                        .is_some_and(|s| !s.is_empty())
                        .then(|| kind.to_string())
                })
                .collect();
            Some((name, integrations))
        })
        .collect();
    Ok(Routing { root, receivers })
}

impl Routing {
    /// Where an alert with `labels` goes (more than one destination when a matching
    /// route says `continue: true`).
    pub fn route(&self, labels: &BTreeMap<String, String>) -> Vec<Destination> {
        let mut out = Vec::new();
        let root_receiver = self.root.receiver.clone().unwrap_or_default();
        walk(
            &self.root,
            labels,
            &root_receiver,
            &mut Vec::new(),
            &mut out,
        );
        out.into_iter()
            .map(|(receiver, path)| Destination {
                integrations: self.receivers.get(&receiver).cloned().unwrap_or_default(),
                receiver,
                path,
            })
            .collect()
    }
}

/// Alertmanager's `Route.Match`: the routes that take the alert below `r` (or `r` itself).
/// Returns whether `r` matched.
fn walk(
    r: &Route,
    labels: &BTreeMap<String, String>,
    inherited: &str,
    path: &mut Vec<String>,
    out: &mut Vec<(String, Vec<String>)>,
) -> bool {
    if !r.matchers.iter().all(|m| m.matches(labels)) {
        return false;
    }
    let receiver = r.receiver.as_deref().unwrap_or(inherited);
    let before = out.len();
    for child in &r.routes {
        path.extend(child.written.iter().cloned());
        let matched = walk(child, labels, receiver, path, out);
        path.truncate(path.len() - child.written.len());
        if matched && !child.continues {
            break;
        }
    }
    if out.len() == before {
        out.push((receiver.to_string(), path.clone()));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// kube-prometheus-stack's default tree with a team route and an escalation below it.
    const CONFIG: &str = r#"
global: {resolve_timeout: 5m}
route:
  receiver: "null"
  group_by: [namespace]
  routes:
    - receiver: "null"
      matchers: ['alertname = "Watchdog"']
    - matchers: ['namespace=~"shop|shop-.*"']
      receiver: payments
      routes:
        - matchers: ['severity="critical"']
          receiver: payments-pager
          continue: true
        - match: {severity: critical}
          receiver: payments-audit
    - match_re: {namespace: bank}
      receiver: bank
receivers:
  - name: "null"
  - name: payments
    email_configs: [{to: pay@example.com}]
  - name: payments-pager
    pagerduty_configs: [{routing_key: <secret>}]
    webhook_configs: [{url: "http://127.0.0.1:9/hook"}]
  - name: payments-audit
    webhook_configs: [{url: "http://127.0.0.1:9/audit"}]
  - name: bank
    slack_configs: []
"#;

    fn receivers(d: &[Destination]) -> Vec<&str> {
        d.iter().map(|d| d.receiver.as_str()).collect()
    }

    #[test]
    fn alerts_go_where_alertmanager_sends_them() {
        let r = parse(CONFIG).unwrap();
        // A page of namespace shop: the pager, and (continue) the audit route after it.
        let page = r.route(&labels(&[("namespace", "shop"), ("severity", "critical")]));
        assert_eq!(receivers(&page), ["payments-pager", "payments-audit"]);
        assert_eq!(page[0].integrations, ["pagerduty", "webhook"]);
        assert_eq!(
            page[0].path,
            [r#"namespace=~"shop|shop-.*""#, r#"severity="critical""#]
        );
        // A ticket stays with the team's route.
        let ticket = r.route(&labels(&[
            ("namespace", "shop-eu"),
            ("severity", "warning"),
        ]));
        assert_eq!(receivers(&ticket), ["payments"]);
        assert_eq!(ticket[0].integrations, ["email"]);
        // Regular expressions match the whole value: "shopping" is not "shop".
        let other = r.route(&labels(&[("namespace", "shopping")]));
        assert_eq!(receivers(&other), ["null"]);
        assert!(other[0].path.is_empty() && other[0].integrations.is_empty());
        // The first matching child without continue stops the search.
        let watchdog = r.route(&labels(&[("alertname", "Watchdog"), ("namespace", "shop")]));
        assert_eq!(receivers(&watchdog), ["null"]);
        // A receiver with an empty list of configs notifies nobody.
        let bank = r.route(&labels(&[("namespace", "bank")]));
        assert_eq!(receivers(&bank), ["bank"]);
        assert!(bank[0].integrations.is_empty());
    }

    #[test]
    fn matchers_in_every_written_form_and_a_child_inherits_its_receiver() {
        let r = parse(
            r#"
route:
  receiver: default
  routes:
    - matchers: ['{team="pay", tier!~"dev|test"}']
      routes:
        - matchers: [severity!=info, 'alertname=~"Error.*"']
receivers: [{name: default, webhook_configs: [{url: "http://x"}]}]
"#,
        )
        .unwrap();
        let d = r.route(&labels(&[
            ("team", "pay"),
            ("severity", "critical"),
            ("alertname", "ErrorBudgetBurn"),
        ]));
        assert_eq!(receivers(&d), ["default"]);
        assert_eq!(d[0].path.len(), 3, "{:?}", d[0].path);
        // tier=dev fails the first route: the root takes it.
        let d = r.route(&labels(&[("team", "pay"), ("tier", "dev")]));
        assert!(d[0].path.is_empty());
    }

    #[test]
    fn a_bad_configuration_says_why() {
        assert!(parse("receivers: []").unwrap_err().contains("no route"));
        assert!(
            parse("route: {receiver: x, matchers: ['a=~\"(\"']}")
                .unwrap_err()
                .contains("regex")
        );
        assert!(
            parse("route: {receiver: x, matchers: ['nothing']}")
                .unwrap_err()
                .contains("no operator")
        );
    }
}

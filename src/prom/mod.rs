//! The one Prometheus client: instant and range queries over the HTTP API (always POST,
//! so long queries fit), a timeout per query, a small bound on queries in flight, optional
//! bearer or basic auth, and typed outcomes: an unreachable server, a timeout, a rejected
//! query, an HTTP error and an undecodable answer are distinct errors, and NaN, +-Inf, no
//! data and several series where one was expected are distinct [`ValueError`]s. Nothing
//! here panics on what Prometheus returns.

pub mod alertmanager;
pub mod enforce;
pub mod template;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use crate::metrics::Metrics;

/// Labels of one series.
pub type Labels = BTreeMap<String, String>;

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
}

/// An alerting rule as Prometheus has loaded it.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    pub name: String,
    /// The rule's expression, as Prometheus prints it.
    pub query: String,
    pub labels: Labels,
    pub annotations: Labels,
    /// `ok`, `err` (its evaluation fails) or `unknown` (not evaluated yet).
    pub health: String,
    /// The rule file of its group (the Prometheus Operator names it
    /// `<namespace>-<PrometheusRule name>-<uid>.yaml`).
    pub file: String,
}

/// One series of a range query: (unix seconds, value) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<(f64, f64)>,
}

/// Why a query produced no answer at all.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("Prometheus at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Prometheus did not answer within {timeout:?}")]
    Timeout { timeout: Duration },
    #[error("Prometheus rejected the query ({error_type}): {message}")]
    Rejected { error_type: String, message: String },
    #[error("Prometheus answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("cannot read Prometheus's answer: {0}")]
    Decode(String),
    #[error(
        "Prometheus answered for a time {off_seconds:.0} s away from the one asked: its clock is off, or something in front of it answers from a cache"
    )]
    Stale { off_seconds: f64 },
}

impl QueryError {
    /// Fixed category for metrics labels and condition reasons.
    pub fn metric_label(&self) -> &'static str {
        match self {
            QueryError::Unreachable { .. } => "unreachable",
            QueryError::Timeout { .. } => "timeout",
            QueryError::Rejected { .. } => "rejected",
            QueryError::Http { .. } => "http_error",
            QueryError::Decode(_) => "decode_error",
            QueryError::Stale { .. } => "stale",
        }
    }
}

/// Why a query's answer is not the one number that was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("the query returned no data")]
    Empty,
    #[error("the query returned NaN (e.g. 0/0: no events in the range)")]
    NaN,
    #[error("the query returned {}Inf (a division by zero)", if *.positive { "+" } else { "-" })]
    Infinite { positive: bool },
    #[error(
        "the query returned {count} series where one was expected; aggregate it (e.g. sum(...))"
    )]
    Several { count: usize },
}

/// The single finite value of `samples`.
pub fn single_value(samples: &[Sample]) -> Result<f64, ValueError> {
    match samples {
        [] => Err(ValueError::Empty),
        [s] => finite(s.value),
        _ => Err(ValueError::Several {
            count: samples.len(),
        }),
    }
}

/// `v` when it is a finite number.
pub fn finite(v: f64) -> Result<f64, ValueError> {
    if v.is_nan() {
        Err(ValueError::NaN)
    } else if v.is_infinite() {
        Err(ValueError::Infinite { positive: v > 0.0 })
    } else {
        Ok(v)
    }
}

/// How the client authenticates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    #[default]
    None,
    Bearer(String),
    Basic {
        username: String,
        password: String,
    },
}

/// Installs ring as the process's TLS crypto provider (idempotent). HTTP clients built
/// with reqwest need one; kube brings ring already.
pub fn init_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Settings of the Prometheus client.
#[derive(Debug, Clone)]
pub struct PromConfig {
    /// Base URL, e.g. `http://prometheus:9090` (a path prefix is kept).
    pub url: String,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub auth: Auth,
    /// PEM file of the CA that signed Prometheus's certificate (added to the system roots).
    pub ca_file: Option<std::path::PathBuf>,
}

impl PromConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: Duration::from_secs(10),
            max_in_flight: 4,
            auth: Auth::None,
            ca_file: None,
        }
    }
}

#[derive(Clone)]
pub struct PromClient {
    base: String,
    http: reqwest::Client,
    timeout: Duration,
    auth: Auth,
    permits: Arc<Semaphore>,
    metrics: Metrics,
    clock: crate::clock::Clock,
}

/// An instant answer timestamped further than this from the time asked is not for it.
const MAX_SKEW_SECONDS: f64 = 300.0;

#[derive(Deserialize)]
struct Envelope {
    status: String,
    /// Kept raw and decoded once into what the caller expects (no `Value` tree).
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Box<RawValue>,
}

#[derive(Deserialize)]
struct RawSample {
    #[serde(default)]
    metric: Labels,
    value: (f64, String),
}

#[derive(Deserialize)]
struct RawSeries {
    #[serde(default)]
    metric: Labels,
    values: Vec<(f64, String)>,
}

fn instant_form(query: &str, time: Option<f64>) -> Vec<(&'static str, String)> {
    let mut form = vec![("query", query.to_string())];
    if let Some(t) = time {
        form.push(("time", format!("{t:.3}")));
    }
    form
}

fn decode_matrix(result: &RawValue) -> Result<Vec<Series>, QueryError> {
    let raw: Vec<RawSeries> =
        serde_json::from_str(result.get()).map_err(|e| QueryError::Decode(e.to_string()))?;
    raw.into_iter()
        .map(|s| {
            Ok(Series {
                labels: s.metric,
                points: s
                    .values
                    .iter()
                    .map(|(t, v)| Ok((*t, parse_number(v)?)))
                    .collect::<Result<_, QueryError>>()?,
            })
        })
        .collect()
}

/// Prometheus writes values as strings: numbers, `NaN`, `+Inf`, `-Inf`.
fn parse_number(s: &str) -> Result<f64, QueryError> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s
            .parse()
            .map_err(|_| QueryError::Decode(format!("{s:?} is not a number"))),
    }
}

/// Ok when an answer timestamped `at` is for the time `asked` (within the skew allowed).
fn fresh(at: f64, asked: f64) -> Result<(), QueryError> {
    let off = (at - asked).abs();
    if off > MAX_SKEW_SECONDS {
        return Err(QueryError::Stale { off_seconds: off });
    }
    Ok(())
}

impl PromClient {
    pub fn new(config: PromConfig, metrics: Metrics) -> Result<Self, QueryError> {
        init_tls();
        let mut builder =
            reqwest::Client::builder().connect_timeout(config.timeout.min(Duration::from_secs(5)));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| QueryError::Unreachable {
                url: config.url.clone(),
                reason: format!("cannot read the CA file {}: {e}", path.display()),
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                QueryError::Unreachable {
                    url: config.url.clone(),
                    reason: format!("{} holds no PEM certificate: {e}", path.display()),
                }
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| QueryError::Decode(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            base: config.url.trim_end_matches('/').to_string(),
            http,
            timeout: config.timeout,
            auth: config.auth,
            permits: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            metrics,
            clock: crate::clock::Clock::system(),
        })
    }

    /// The time an instant query at `time` (None: now) is for, in unix seconds.
    fn asked(&self, time: Option<f64>) -> f64 {
        time.unwrap_or_else(|| self.clock.now().as_millisecond() as f64 / 1000.0)
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// Instant query at `time` (unix seconds) or now.
    pub async fn instant(&self, query: &str, time: Option<f64>) -> Result<Vec<Sample>, QueryError> {
        let form = instant_form(query, time);
        let asked = self.asked(time);
        let data = self.call("query", "instant", form).await?;
        match data.result_type.as_str() {
            "vector" => {
                let raw: Vec<RawSample> = serde_json::from_str(data.result.get())
                    .map_err(|e| QueryError::Decode(e.to_string()))?;
                raw.into_iter()
                    .map(|s| {
                        fresh(s.value.0, asked)?;
                        Ok(Sample {
                            labels: s.metric,
                            value: parse_number(&s.value.1)?,
                        })
                    })
                    .collect()
            }
            "scalar" => {
                let (at, v): (f64, String) = serde_json::from_str(data.result.get())
                    .map_err(|e| QueryError::Decode(e.to_string()))?;
                fresh(at, asked)?;
                Ok(vec![Sample {
                    labels: Labels::new(),
                    value: parse_number(&v)?,
                }])
            }
            other => Err(QueryError::Decode(format!(
                "expected an instant vector or scalar, got {other}"
            ))),
        }
    }

    /// Instant query of a range selector (`x[1d]`): the raw samples of each series.
    pub async fn instant_matrix(
        &self,
        query: &str,
        time: Option<f64>,
    ) -> Result<Vec<Series>, QueryError> {
        let form = instant_form(query, time);
        let data = self.call("query", "instant", form).await?;
        if data.result_type != "matrix" {
            return Err(QueryError::Decode(format!(
                "expected a range vector, got {}",
                data.result_type
            )));
        }
        decode_matrix(&data.result)
    }

    /// Range query from `start` to `end` (unix seconds) every `step`.
    pub async fn range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<Series>, QueryError> {
        let form = vec![
            ("query", query.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{}", step.as_secs_f64())),
        ];
        let data = self.call("query_range", "range", form).await?;
        if data.result_type != "matrix" {
            return Err(QueryError::Decode(format!(
                "expected a range vector, got {}",
                data.result_type
            )));
        }
        decode_matrix(&data.result)
    }

    /// A configured URL and one of the in-flight permits.
    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, QueryError> {
        self.configured()?;
        self.permits
            .acquire()
            .await
            .map_err(|_| QueryError::Unreachable {
                url: self.base.clone(),
                reason: "client closed".into(),
            })
    }

    fn configured(&self) -> Result<(), QueryError> {
        if self.base.is_empty() {
            return Err(QueryError::Unreachable {
                url: "(none)".into(),
                reason: "no Prometheus URL is configured: start the operator with --prometheus-url or MATURITY_PROMETHEUS_URL".into(),
            });
        }
        Ok(())
    }

    #[tracing::instrument(
        name = "prometheus",
        skip_all,
        fields(endpoint, query = form.first().map(|f| f.1.as_str()).unwrap_or(""))
    )]
    async fn call(
        &self,
        endpoint: &str,
        kind: &'static str,
        form: Vec<(&str, String)>,
    ) -> Result<Data, QueryError> {
        let _permit = self.permit().await?;
        let request = self
            .authorize(self.http.post(format!("{}/api/v1/{endpoint}", self.base)))
            .form(&form);
        let envelope = self.send(request, kind).await;
        tracing::debug!(query = %form.first().map(|f| f.1.as_str()).unwrap_or(""), ok = envelope.is_ok(), "prometheus query");
        let data = envelope?
            .data
            .ok_or_else(|| QueryError::Decode("answer without data".into()))?;
        serde_json::from_str(data.get()).map_err(|e| QueryError::Decode(e.to_string()))
    }

    /// An answer of the rules API (`/api/v1/rules`) with `query` parameters, decoded.
    #[tracing::instrument(name = "prometheus", skip_all, fields(endpoint = "rules"))]
    async fn rules_api<T: serde::de::DeserializeOwned>(
        &self,
        query: &[(&str, &str)],
    ) -> Result<T, QueryError> {
        let _permit = self.permit().await?;
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/rules", self.base), query)
            .map_err(|e| QueryError::Decode(format!("rules URL: {e}")))?;
        let data = self
            .send(self.authorize(self.http.get(url)), "rules")
            .await?
            .data
            .ok_or_else(|| QueryError::Decode("answer without data".into()))?;
        serde_json::from_str(data.get()).map_err(|e| QueryError::Decode(e.to_string()))
    }

    /// Every alerting rule Prometheus has loaded (`/api/v1/rules?type=alert`).
    pub async fn alerting_rules(&self) -> Result<Vec<AlertRule>, QueryError> {
        #[derive(Deserialize)]
        struct Groups {
            groups: Vec<Group>,
        }
        #[derive(Deserialize)]
        struct Group {
            #[serde(default)]
            file: String,
            #[serde(default)]
            rules: Vec<RawRule>,
        }
        #[derive(Deserialize)]
        struct RawRule {
            name: String,
            #[serde(default)]
            query: String,
            #[serde(default)]
            health: String,
            #[serde(default)]
            labels: Labels,
            #[serde(default)]
            annotations: Labels,
            #[serde(default, rename = "type")]
            kind: String,
        }
        let groups: Groups = self.rules_api(&[("type", "alert")]).await?;
        Ok(groups
            .groups
            .into_iter()
            .flat_map(|g| g.rules.into_iter().map(move |r| (g.file.clone(), r)))
            .filter(|(_, r)| r.kind.is_empty() || r.kind == "alerting")
            .map(|(file, r)| AlertRule {
                name: r.name,
                query: r.query,
                labels: r.labels,
                annotations: r.annotations,
                health: r.health,
                file,
            })
            .collect())
    }

    /// Which of the rule groups `names` Prometheus has loaded (`/api/v1/rules?type=alert`
    /// filtered by `rule_group[]`, without the alerts).
    pub async fn rule_groups(
        &self,
        names: &[&str],
    ) -> Result<std::collections::BTreeSet<String>, QueryError> {
        #[derive(Deserialize)]
        struct Groups {
            groups: Vec<Group>,
        }
        #[derive(Deserialize)]
        struct Group {
            name: String,
        }
        let mut query: Vec<(&str, &str)> = vec![("type", "alert"), ("exclude_alerts", "true")];
        query.extend(names.iter().map(|n| ("rule_group[]", *n)));
        let groups: Groups = self.rules_api(&query).await?;
        Ok(groups.groups.into_iter().map(|g| g.name).collect())
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
        }
    }

    /// Sends under the timeout, records the outcome, and maps every failure to a QueryError.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        kind: &'static str,
    ) -> Result<Envelope, QueryError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, async {
            let response = request.send().await.map_err(|e| self.transport_error(e))?;
            let status = response.status();
            let body = response
                .bytes()
                .await
                .map_err(|e| self.transport_error(e))?;
            match serde_json::from_slice::<Envelope>(&body) {
                Ok(env) if env.status == "success" => Ok(env),
                Ok(env) => Err(QueryError::Rejected {
                    error_type: env.error_type.unwrap_or_else(|| "unknown".into()),
                    message: env.error.unwrap_or_default(),
                }),
                Err(_) if !status.is_success() => Err(QueryError::Http {
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&body).chars().take(300).collect(),
                }),
                Err(e) => Err(QueryError::Decode(e.to_string())),
            }
        })
        .await
        .unwrap_or(Err(QueryError::Timeout {
            timeout: self.timeout,
        }));
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.metric_label(),
        };
        self.metrics.record_query(kind, outcome, started.elapsed());
        result
    }

    fn transport_error(&self, e: reqwest::Error) -> QueryError {
        if e.is_timeout() {
            QueryError::Timeout {
                timeout: self.timeout,
            }
        } else {
            // Show the root cause (connection refused, DNS), not only "error sending request".
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason = s.to_string();
                source = s.source();
            }
            QueryError::Unreachable {
                url: self.base.clone(),
                reason,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_for_another_time_is_stale() {
        assert_eq!(fresh(1_000.0, 1_000.0), Ok(()));
        assert_eq!(fresh(1_300.0, 1_000.0), Ok(()));
        assert_eq!(fresh(700.0, 1_000.0), Ok(()));
        assert_eq!(
            fresh(1_000.0 - 3_600.0, 1_000.0),
            Err(QueryError::Stale {
                off_seconds: 3_600.0
            })
        );
        assert_eq!(
            QueryError::Stale {
                off_seconds: 3_600.4
            }
            .to_string(),
            "Prometheus answered for a time 3600 s away from the one asked: its clock is off, or something in front of it answers from a cache"
        );
    }

    fn sample(v: f64) -> Sample {
        Sample {
            labels: Labels::new(),
            value: v,
        }
    }

    #[test]
    fn single_value_tells_every_shape_apart() {
        assert_eq!(single_value(&[sample(0.5)]), Ok(0.5));
        assert_eq!(single_value(&[]), Err(ValueError::Empty));
        assert_eq!(single_value(&[sample(f64::NAN)]), Err(ValueError::NaN));
        assert_eq!(
            single_value(&[sample(f64::INFINITY)]),
            Err(ValueError::Infinite { positive: true })
        );
        assert_eq!(
            single_value(&[sample(f64::NEG_INFINITY)]),
            Err(ValueError::Infinite { positive: false })
        );
        assert_eq!(
            single_value(&[sample(1.0), sample(2.0)]),
            Err(ValueError::Several { count: 2 })
        );
    }

    #[test]
    fn prometheus_number_strings_parse() {
        assert_eq!(parse_number("1.5").unwrap(), 1.5);
        assert!(parse_number("NaN").unwrap().is_nan());
        assert_eq!(parse_number("+Inf").unwrap(), f64::INFINITY);
        assert_eq!(parse_number("-Inf").unwrap(), f64::NEG_INFINITY);
        assert!(matches!(parse_number("abc"), Err(QueryError::Decode(_))));
    }
}

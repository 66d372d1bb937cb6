//! A metrics exporter with settable traffic, scraped by a real Prometheus in tests and
//! in the demo. Each series (a label set such as `{service="checkout",
//! pod_template_hash="abc"}`) has a request rate, an error ratio and a latency profile;
//! counters grow with wall-clock time at those rates, so `rate()` in Prometheus returns
//! what the test set. Gauges can be set directly.
//!
//! Exposes `http_requests_total{...,code}` and the classic histogram
//! `http_request_duration_seconds{...}`.

pub mod follow;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use tokio::sync::oneshot;

/// Bucket boundaries (seconds) of the exported latency histogram.
pub const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub type Labels = BTreeMap<String, String>;

/// Builds a label set from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Traffic of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    pub requests_per_second: f64,
    /// Share of requests answered with code 500, in [0, 1].
    pub error_ratio: f64,
    /// Latency distribution: (seconds, share of requests) pairs; shares sum to 1.
    pub latency: Vec<(f64, f64)>,
}

impl Traffic {
    /// `rps` requests a second, `error_ratio` of them failing, all answered in `latency_seconds`.
    pub fn steady(rps: f64, error_ratio: f64, latency_seconds: f64) -> Self {
        Self {
            requests_per_second: rps,
            error_ratio,
            latency: vec![(latency_seconds, 1.0)],
        }
    }
}

#[derive(Debug, Default)]
struct Series {
    traffic: Option<Traffic>,
    ok: f64,
    errors: f64,
    /// Cumulative counts per bucket of BUCKETS, then +Inf.
    buckets: Vec<f64>,
    sum: f64,
}

#[derive(Debug)]
struct Inner {
    last: Instant,
    series: BTreeMap<Labels, Series>,
    gauges: BTreeMap<(String, Labels), f64>,
}

impl Inner {
    /// Adds the requests of the time since the last advance to every series.
    fn advance(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        for s in self.series.values_mut() {
            let Some(t) = &s.traffic else { continue };
            let n = t.requests_per_second * dt;
            let err = t.error_ratio.clamp(0.0, 1.0);
            s.errors += n * err;
            s.ok += n * (1.0 - err);
            if s.buckets.is_empty() {
                s.buckets = vec![0.0; BUCKETS.len() + 1];
            }
            for &(latency, share) in &t.latency {
                let k = n * share;
                s.sum += k * latency;
                for (i, le) in BUCKETS.iter().enumerate() {
                    if latency <= *le {
                        s.buckets[i] += k;
                    }
                }
                s.buckets[BUCKETS.len()] += k;
            }
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP http_requests_total Requests served, by code.\n# TYPE http_requests_total counter\n");
        for (l, s) in &self.series {
            out.push_str(&format!(
                "http_requests_total{} {}\n",
                fmt_labels(l, &[("code", "200")]),
                s.ok
            ));
            out.push_str(&format!(
                "http_requests_total{} {}\n",
                fmt_labels(l, &[("code", "500")]),
                s.errors
            ));
        }
        out.push_str("# HELP http_request_duration_seconds Request latency.\n# TYPE http_request_duration_seconds histogram\n");
        for (l, s) in &self.series {
            let buckets = if s.buckets.is_empty() {
                vec![0.0; BUCKETS.len() + 1]
            } else {
                s.buckets.clone()
            };
            for (i, le) in BUCKETS.iter().enumerate() {
                out.push_str(&format!(
                    "http_request_duration_seconds_bucket{} {}\n",
                    fmt_labels(l, &[("le", &le.to_string())]),
                    buckets[i]
                ));
            }
            out.push_str(&format!(
                "http_request_duration_seconds_bucket{} {}\n",
                fmt_labels(l, &[("le", "+Inf")]),
                buckets[BUCKETS.len()]
            ));
            out.push_str(&format!(
                "http_request_duration_seconds_sum{} {}\n",
                fmt_labels(l, &[]),
                s.sum
            ));
            out.push_str(&format!(
                "http_request_duration_seconds_count{} {}\n",
                fmt_labels(l, &[]),
                buckets[BUCKETS.len()]
            ));
        }
        let mut last_name = "";
        for ((name, l), v) in &self.gauges {
            if name != last_name {
                out.push_str(&format!("# TYPE {name} gauge\n"));
                last_name = name;
            }
            out.push_str(&format!("{name}{} {v}\n", fmt_labels(l, &[])));
        }
        out
    }
}

fn fmt_labels(l: &Labels, extra: &[(&str, &str)]) -> String {
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    parts.extend(extra.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))));
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A running exporter; stops when dropped.
pub struct SyntheticExporter {
    inner: Arc<Mutex<Inner>>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl SyntheticExporter {
    /// Starts serving `/metrics` on `addr` (use port 0 for a free port).
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner {
            last: Instant::now(),
            series: BTreeMap::new(),
            gauges: BTreeMap::new(),
        }));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/metrics", get(render))
            .with_state(inner.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            inner,
            addr,
            stop: Some(tx),
        })
    }

    /// The address Prometheus scrapes (`host:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets (or replaces) the traffic of a series; counters keep what they counted so far.
    pub fn set_traffic(&self, labels: Labels, traffic: Traffic) {
        let mut inner = lock(&self.inner);
        inner.advance(Instant::now());
        inner.series.entry(labels).or_default().traffic = Some(traffic);
    }

    /// Stops a series' traffic; its counters stay as they are.
    pub fn stop_traffic(&self, labels: &Labels) {
        let mut inner = lock(&self.inner);
        inner.advance(Instant::now());
        if let Some(s) = inner.series.get_mut(labels) {
            s.traffic = None;
        }
    }

    /// Sets a gauge `name{labels}` to `value`.
    pub fn set_gauge(&self, name: &str, labels: Labels, value: f64) {
        lock(&self.inner)
            .gauges
            .insert((name.to_string(), labels), value);
    }

    /// What a scrape would return now.
    pub fn render(&self) -> String {
        let mut inner = lock(&self.inner);
        inner.advance(Instant::now());
        inner.render()
    }
}

impl Drop for SyntheticExporter {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    // A panic while holding the lock leaves plain numbers behind: still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn render(State(inner): State<Arc<Mutex<Inner>>>) -> String {
    let mut inner = lock(&inner);
    inner.advance(Instant::now());
    inner.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counters_grow_at_the_set_rate_and_split_by_code_and_bucket() {
        let t0 = Instant::now();
        let mut inner = Inner {
            last: t0,
            series: BTreeMap::new(),
            gauges: BTreeMap::new(),
        };
        let l = labels(&[("pod_template_hash", "abc")]);
        inner.series.entry(l.clone()).or_default().traffic = Some(Traffic {
            requests_per_second: 10.0,
            error_ratio: 0.1,
            latency: vec![(0.05, 0.9), (0.8, 0.1)],
        });
        inner.advance(t0 + Duration::from_secs(10));
        let s = &inner.series[&l];
        assert!((s.ok - 90.0).abs() < 1e-9);
        assert!((s.errors - 10.0).abs() < 1e-9);
        let le_0_3 = BUCKETS.iter().position(|b| *b == 0.3).unwrap();
        assert!((s.buckets[le_0_3] - 90.0).abs() < 1e-9);
        assert!((s.buckets[BUCKETS.len()] - 100.0).abs() < 1e-9);
        let text = inner.render();
        assert!(text.contains(r#"http_requests_total{pod_template_hash="abc",code="500"} 10"#));
        assert!(text.contains(
            r#"http_request_duration_seconds_bucket{pod_template_hash="abc",le="0.3"} 90"#
        ));
        assert!(
            text.contains(r#"http_request_duration_seconds_count{pod_template_hash="abc"} 100"#)
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let l = labels(&[("route", "a\"b\\c")]);
        assert_eq!(fmt_labels(&l, &[]), r#"{route="a\"b\\c"}"#);
    }
}

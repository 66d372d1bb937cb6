//! Namespace enforcement of user-written PromQL, tested differentially against the real
//! prom-label-proxy (built from its Go module by `hack/build-tools.sh`, pinned in
//! `hack/versions.env`): for every query of the corpus, prom-label-proxy started with
//! `-label namespace -label-value tenant-a -error-on-replace` in front of a recording
//! upstream (loopback) and `maturity_operator::prom::enforce::enforce` must give the same
//! enforced query, or both refuse it. Both outputs are parsed and printed again by the
//! same PromQL printer, so only meaning is compared, not spacing or number formats.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use maturity_operator::prom::enforce::enforce;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::cluster::ensure_cluster;
use support::prom::free_port;

/// The queries. Each is either enforced the same way by both or refused by both.
const CORPUS: &[&str] = &[
    "up",
    "http_requests_total",
    r#"http_requests_total{code="500"}"#,
    r#"http_requests_total{code=~"5..", method!="GET"}"#,
    r#"rate(http_requests_total[5m])"#,
    r#"sum(rate(http_requests_total[5m]))"#,
    r#"sum by (code) (rate(http_requests_total[5m]))"#,
    r#"sum without (instance) (rate(http_requests_total[5m]))"#,
    r#"sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))"#,
    r#"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"#,
    r#"sum(increase(http_request_duration_seconds_bucket{le="0.3"}[28d])) / sum(increase(http_request_duration_seconds_count[28d]))"#,
    "vector(1)",
    "vector(0)",
    "1 + 1",
    r#"http_requests_total or vector(1)"#,
    r#"(sum(rate(http_requests_total{code=~"5.."}[1m])) or vector(0)) / sum(rate(http_requests_total[1m]))"#,
    r#"{__name__=~".+"}"#,
    r#"{__name__="up"}"#,
    r#"{__name__=~"http_.*", job="api"}"#,
    r#"max_over_time(up[1h:1m])"#,
    r#"max_over_time(rate(http_requests_total[5m])[1h:5m])"#,
    r#"avg_over_time((sum(rate(http_requests_total[5m])))[30m:1m])"#,
    r#"a / on(instance) b"#,
    r#"a / ignoring(code) group_left b"#,
    r#"a * on(pod) group_right(node) b"#,
    r#"a and on() b"#,
    r#"a unless ignoring(job) b"#,
    r#"sum(max by (pod) (rate(x[5m])))"#,
    r#"max(sum by (namespace, pod) (rate(container_cpu_usage_seconds_total[5m])))"#,
    r#"count(count by (version) (build_info))"#,
    r#"absent(up{job="api"})"#,
    r#"absent_over_time(up[10m])"#,
    r#"label_replace(up, "host", "$1", "instance", "(.*):.*")"#,
    r#"label_join(up, "both", "/", "job", "instance")"#,
    r#"predict_linear((sum(rate(http_requests_total[5m])))[1h:1m], 3600)"#,
    r#"-up"#,
    r#"up offset 5m"#,
    r#"rate(http_requests_total[5m] offset 1h)"#,
    r#"up @ 1700000000"#,
    r#"time() - process_start_time_seconds"#,
    r#"scalar(sum(up))"#,
    r#"clamp_min(sum(rate(x[5m])), 0)"#,
    r#"round(avg(csat_score{team="payments"}), 0.01)"#,
    r#"sum by (category) (increase(complaints_total{team="payments"}[1d]))"#,
    r#"ALERTS{alertstate="firing", severity="page"}"#,
    r#"count_over_time(ALERTS{alertname="HighErrorRate"}[28d])"#,
    r#"sort_desc(sum by (service) (rate(http_requests_total[5m])))"#,
    r#"up > 0"#,
    r#"up == bool 1"#,
    r#"sum(up) > bool 0"#,
    // The namespace matcher itself: kept when it could match tenant-a, refused when not.
    r#"up{namespace="tenant-a"}"#,
    r#"up{namespace=~"tenant-.*"}"#,
    r#"up{namespace=~"tenant-a|tenant-b"}"#,
    r#"up{namespace!="tenant-b"}"#,
    r#"up{namespace!~"kube-.*"}"#,
    r#"up{namespace="tenant-b"}"#,
    r#"up{namespace=~"tenant-b|tenant-c"}"#,
    r#"up{namespace!="tenant-a"}"#,
    r#"up{namespace!~"tenant-.*"}"#,
    r#"sum(rate(x{namespace="tenant-b"}[5m])) or vector(0)"#,
    r#"a / on(namespace) b{namespace="kube-system"}"#,
    r#"max_over_time(x{namespace="other"}[1h:1m])"#,
    // Not PromQL: both refuse.
    "sum(",
    "rate(x[5m]",
    r#"x{a="b""#,
];

/// Queries where our enforcement is stricter, by design: an aggregation's parameter is
/// enforced too (prom-label-proxy leaves it). The expected output is written here.
const STRICTER: &[(&str, &str)] = &[
    (
        "topk(scalar(k), y)",
        r#"topk(scalar(k{namespace="tenant-a"}), y{namespace="tenant-a"})"#,
    ),
    (r#"quantile(scalar(q{namespace="tenant-b"}), y)"#, "refused"),
];

/// A loopback HTTP server that answers every request with an empty Prometheus vector and
/// records the `query` parameter it was sent.
async fn upstream() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // The head, then a form body if the proxy sent one.
                let mut body_needed = None;
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = body_needed.get_or_insert_with(|| {
                            text[..end]
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse().ok())?
                                })
                                .unwrap_or(0usize)
                        });
                        if buf.len() >= end + 4 + *len {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&buf).to_string();
                let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let url = reqwest::Url::parse(&format!("http://upstream{path}")).unwrap();
                let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
                let form = reqwest::Url::parse(&format!("http://upstream/?{body}")).unwrap();
                pairs.extend(form.query_pairs().into_owned());
                if let Some((_, q)) = pairs.into_iter().find(|(k, _)| k == "query") {
                    record.lock().unwrap().push(q);
                }
                let answer = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    (port, seen)
}

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The meaning of a query: parsed and printed by one printer.
fn normal(q: &str) -> String {
    promql_parser::parser::parse(q)
        .unwrap_or_else(|e| panic!("{q:?} does not parse: {e}"))
        .to_string()
}

#[tokio::test]
async fn enforcement_matches_prom_label_proxy_on_the_corpus() {
    let env = ensure_cluster();
    let binary = env.tool("prom-label-proxy");
    assert!(
        binary.exists(),
        "{} missing: run hack/build-tools.sh prom-label-proxy",
        binary.display()
    );
    let (up_port, seen) = upstream().await;
    let port = free_port();
    let _proxy = Proxy(
        Command::new(&binary)
            .args([
                "-label",
                "namespace",
                "-label-value",
                "tenant-a",
                "-error-on-replace",
                "-upstream",
                &format!("http://127.0.0.1:{up_port}"),
                "-insecure-listen-address",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prom-label-proxy"),
    );
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/api/v1/query");
    let url = move |q: &str| {
        let mut u = reqwest::Url::parse(&base).unwrap();
        u.query_pairs_mut().append_pair("query", q);
        u
    };
    let started = Instant::now();
    while http.get(url("up")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "prom-label-proxy did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What prom-label-proxy does with `q`: Some(enforced query) or None (refused).
    let proxied = |q: &'static str| {
        let http = http.clone();
        let target = url(q);
        let seen = seen.clone();
        async move {
            let before = seen.lock().unwrap().len();
            let status = http.get(target).send().await.unwrap().status();
            let after = seen.lock().unwrap().clone();
            match status.as_u16() {
                200 => Some(
                    after
                        .get(before)
                        .cloned()
                        .expect("the proxy forwarded the query"),
                ),
                400..=499 => {
                    assert_eq!(
                        after.len(),
                        before,
                        "a refused query must not reach Prometheus: {q}"
                    );
                    None
                }
                other => panic!("{q}: prom-label-proxy answered {other}"),
            }
        }
    };
    let mut compared = 0;
    let mut refused = 0;
    for q in CORPUS {
        let theirs = proxied(q).await;
        let ours = enforce(q, "namespace", "tenant-a");
        match (&theirs, &ours) {
            (Some(t), Ok(o)) => assert_eq!(normal(o), normal(t), "query {q}"),
            (None, Err(_)) => refused += 1,
            _ => panic!("query {q}: prom-label-proxy gave {theirs:?}, we gave {ours:?}"),
        }
        compared += 1;
    }
    assert!(compared >= 50, "only {compared} queries compared");
    assert!(
        refused >= 8,
        "the corpus should refuse conflicting and broken queries: {refused}"
    );
    // Where we are stricter, prom-label-proxy passes the parameter through unscoped.
    for (q, expected) in STRICTER {
        let ours = enforce(q, "namespace", "tenant-a");
        match *expected {
            "refused" => assert!(ours.is_err(), "{q}: {ours:?}"),
            e => assert_eq!(normal(&ours.unwrap()), normal(e), "{q}"),
        }
        let theirs = proxied(q).await.expect("prom-label-proxy passes it");
        assert!(
            !normal(&theirs).contains(r#"scalar(k{namespace="tenant-a"})"#),
            "{q}: prom-label-proxy now enforces the parameter too: {theirs}; move it to the corpus"
        );
    }
}

//! The operator's Prometheus client against the real Prometheus (and, for transport
//! failures, loopback servers that misbehave on purpose): every way a query can go wrong
//! ends in its own typed outcome, and the query metrics count them.

mod support;

use std::time::Duration;

use maturity_operator::metrics::Metrics;
use maturity_operator::prom::{Auth, PromClient, PromConfig, QueryError, ValueError, single_value};
use support::cluster::ensure_cluster;
use support::prom::free_port;

fn client(url: &str, timeout: Duration, metrics: &Metrics) -> PromClient {
    let mut config = PromConfig::new(url);
    config.timeout = timeout;
    PromClient::new(config, metrics.clone()).unwrap()
}

#[tokio::test]
async fn values_nan_infinities_empty_and_several_series_are_told_apart() {
    let env = tokio::task::spawn_blocking(ensure_cluster).await.unwrap();
    let metrics = Metrics::new();
    let prom = client(&env.prometheus_url, Duration::from_secs(10), &metrics);
    let one = |q: &'static str| {
        let prom = prom.clone();
        async move { single_value(&prom.instant(q, None).await.unwrap()) }
    };
    assert_eq!(one("vector(0.25)").await, Ok(0.25));
    assert_eq!(one("scalar(vector(3))").await, Ok(3.0));
    assert_eq!(one("vector(0) / 0").await, Err(ValueError::NaN));
    assert_eq!(
        one("vector(1) / 0").await,
        Err(ValueError::Infinite { positive: true })
    );
    assert_eq!(
        one("vector(-1) / 0").await,
        Err(ValueError::Infinite { positive: false })
    );
    assert_eq!(one("no_such_metric_anywhere").await, Err(ValueError::Empty));
    assert_eq!(
        one(r#"vector(1) or label_replace(vector(2), "a", "b", "", "")"#).await,
        Err(ValueError::Several { count: 2 })
    );
    // A long query goes by POST: 20 kB of PromQL is fine.
    let long = format!("vector(1){}", " + vector(0)".repeat(1800));
    assert!(long.len() > 20_000);
    assert_eq!(
        single_value(&prom.instant(&long, None).await.unwrap()),
        Ok(1.0)
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let series = prom
        .range("vector(7)", now - 600.0, now, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].points.len(), 11);
    assert!(series[0].points.iter().all(|(_, v)| *v == 7.0));

    let ok = metrics
        .prometheus_queries
        .with_label_values(&["instant", "ok"])
        .get();
    assert_eq!(ok, 8, "eight instant queries answered");
}

#[tokio::test]
async fn a_rejected_query_carries_prometheus_message() {
    let env = tokio::task::spawn_blocking(ensure_cluster).await.unwrap();
    let metrics = Metrics::new();
    let prom = client(&env.prometheus_url, Duration::from_secs(10), &metrics);
    let err = prom.instant("sum(rate(x[5m])", None).await.unwrap_err();
    match &err {
        QueryError::Rejected {
            error_type,
            message,
        } => {
            assert_eq!(error_type, "bad_data");
            assert!(message.contains("parse error"), "{message}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(
        metrics
            .prometheus_queries
            .with_label_values(&["instant", "rejected"])
            .get(),
        1
    );
}

#[tokio::test]
async fn unreachable_timeout_and_http_errors_are_distinct() {
    let metrics = Metrics::new();

    // Nothing listens on this port.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let err = client(&closed, Duration::from_secs(5), &metrics)
        .instant("vector(1)", None)
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("unreachable"), "{err}");

    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let started = std::time::Instant::now();
    let err = client(&silent_url, Duration::from_millis(500), &metrics)
        .instant("vector(1)", None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        QueryError::Timeout {
            timeout: Duration::from_millis(500)
        }
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    hold.abort();

    // A proxy in front of Prometheus answering 503 with a text body.
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "upstream overloaded",
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let err = client(&proxy_url, Duration::from_secs(5), &metrics)
        .instant("vector(1)", None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        QueryError::Http {
            status: 503,
            body: "upstream overloaded".into()
        }
    );

    for outcome in ["unreachable", "timeout", "http_error"] {
        assert_eq!(
            metrics
                .prometheus_queries
                .with_label_values(&["instant", outcome])
                .get(),
            1,
            "{outcome}"
        );
    }
}

#[tokio::test]
async fn bearer_and_basic_auth_are_sent() {
    // A loopback server that echoes the Authorization header inside a valid answer.
    let app = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        axum::Json(serde_json::json!({
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {"auth": auth}, "value": [now, "1"]}]}
        }))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    for (auth, expected) in [
        (Auth::Bearer("s3cret".into()), "Bearer s3cret"),
        (
            Auth::Basic {
                username: "u".into(),
                password: "p".into(),
            },
            "Basic dTpw",
        ),
    ] {
        let mut config = PromConfig::new(&url);
        config.auth = auth;
        let prom = PromClient::new(config, Metrics::new()).unwrap();
        let samples = prom.instant("up", None).await.unwrap();
        assert_eq!(samples[0].labels["auth"], expected);
    }
}

#[tokio::test]
async fn a_custom_ca_reaches_prometheus_over_tls() {
    let env = tokio::task::spawn_blocking(ensure_cluster).await.unwrap();
    // The cluster's CA signed a serving certificate for 127.0.0.1: Prometheus serves with it.
    let pki = env.dir.join("pki");
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            pki.join("apiserver.crt").display(),
            pki.join("apiserver.key").display()
        ),
    )
    .unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global: {}\n").unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(env.tool("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.config.file={}", web.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}");

    let mut trusted = PromConfig::new(&url);
    trusted.ca_file = Some(pki.join("ca.crt"));
    let trusted = PromClient::new(trusted, Metrics::new()).unwrap();
    let value = support::eventually("TLS query answered", Duration::from_secs(30), || {
        let prom = trusted.clone();
        async move {
            let s = prom
                .instant("vector(42)", None)
                .await
                .map_err(|e| e.to_string())?;
            single_value(&s).map_err(|e| e.to_string())
        }
    })
    .await;
    assert_eq!(value, 42.0);

    // Without the CA the certificate is not trusted: a transport failure, said as such.
    let err = client(&url, Duration::from_secs(5), &Metrics::new())
        .instant("vector(1)", None)
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // A CA file that is not there is a sentence, not a panic.
    let mut missing = PromConfig::new(&url);
    missing.ca_file = Some(dir.path().join("no-such-ca.pem"));
    let err = PromClient::new(missing, Metrics::new())
        .err()
        .expect("missing CA file");
    assert!(err.to_string().contains("cannot read the CA file"), "{err}");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn queries_in_flight_stay_under_the_bound() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A slow Prometheus stand-in that records how many requests it serves at once.
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (n, p) = (now.clone(), peak.clone());
    let app = axum::Router::new().fallback(move || {
        let (n, p) = (n.clone(), p.clone());
        async move {
            let c = n.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(c, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(150)).await;
            n.fetch_sub(1, Ordering::SeqCst);
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            axum::Json(serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": [at, "1"]}}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut config = PromConfig::new(&url);
    config.max_in_flight = 2;
    let prom = PromClient::new(config, Metrics::new()).unwrap();
    let queries = (0..8).map(|_| {
        let prom = prom.clone();
        tokio::spawn(async move { prom.instant("vector(1)", None).await })
    });
    for q in queries.collect::<Vec<_>>() {
        assert!(q.await.unwrap().is_ok());
    }
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "at most two queries at once, and the bound is used"
    );
}

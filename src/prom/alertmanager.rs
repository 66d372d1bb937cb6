//! Alertmanager's HTTP API: its configuration (`/api/v2/status`, `config.original`), read
//! at most once a [`CONFIG_TTL`] whatever the number of assessments (the model's
//! `routing` reads it). Its notification counters are read from Prometheus, which scrapes
//! it.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a read configuration is used before it is read again.
pub const CONFIG_TTL: Duration = Duration::from_secs(60);

/// A read of the configuration: when, and its text or why it could not be read.
type Read = (Instant, Result<Arc<String>, String>);

pub struct Alertmanager {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    cached: tokio::sync::Mutex<Option<Read>>,
}

impl Alertmanager {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        super::init_tls();
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            base: url.trim_end_matches('/').to_string(),
            timeout,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// The configuration (YAML), as last read (within [`CONFIG_TTL`]), or why it cannot
    /// be read.
    pub async fn config(&self) -> Result<Arc<String>, String> {
        let mut cached = self.cached.lock().await;
        if let Some((at, r)) = cached.as_ref()
            && at.elapsed() < CONFIG_TTL
        {
            return r.clone();
        }
        let r = self.read().await.map(Arc::new);
        if let Err(e) = &r {
            tracing::debug!(error = %e, "reading Alertmanager's configuration failed");
        }
        *cached = Some((Instant::now(), r.clone()));
        r
    }

    async fn read(&self) -> Result<String, String> {
        let url = format!("{}/api/v2/status", self.base);
        let answer =
            tokio::time::timeout(self.timeout, async {
                let response =
                    self.http.get(&url).send().await.map_err(|e| {
                        format!("Alertmanager at {} is unreachable: {e}", self.base)
                    })?;
                let status = response.status();
                let body = response
                    .text()
                    .await
                    .map_err(|e| format!("Alertmanager at {}: {e}", self.base))?;
                if !status.is_success() {
                    return Err(format!(
                        "Alertmanager answered HTTP {status}: {}",
                        body.chars().take(200).collect::<String>()
                    ));
                }
                Ok(body)
            })
            .await
            .map_err(|_| format!("Alertmanager did not answer within {:?}", self.timeout))??;
        let status: serde_json::Value = serde_json::from_str(&answer)
            .map_err(|e| format!("Alertmanager's status is not JSON: {e}"))?;
        status["config"]["original"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "Alertmanager's status has no config.original".to_string())
    }
}

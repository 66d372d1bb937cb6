//! Delivering reports to the receiver an assessment names (`spec.reports.webhook`): an HTTP
//! POST of the report's JSON, bounded by a timeout, following no redirect, and only to a
//! host the operator's `--report-webhook-hosts` allows. A tenant names the URL, so without
//! that list the operator would send requests wherever a tenant points it (inside the
//! cluster's network too); with it, only to receivers the platform team chose.

use std::time::Duration;

/// How long a receiver has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends reports.
#[derive(Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    /// `host` (any port) or `host:port` entries.
    hosts: Vec<String>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("hosts", &self.hosts)
            .finish()
    }
}

/// Why `url` may not be sent to, with `hosts` allowed, or None.
pub fn refused(url: &str, hosts: &[String]) -> Option<String> {
    refused_by(url, hosts, "--report-webhook-hosts", "delivers reports to")
}

/// [`refused`], for the hosts of `flag`, to which the operator `does` (a sentence part).
pub fn refused_by(url: &str, hosts: &[String], flag: &str, does: &str) -> Option<String> {
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return Some(format!("{url:?} is not a URL: {e}")),
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        return Some(format!("{url:?} is not an http:// or https:// URL"));
    }
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    let port = parsed.port_or_known_default().unwrap_or_default();
    let allowed = hosts.iter().any(|h| {
        let h = h.trim().to_ascii_lowercase();
        h == host || h == format!("{host}:{port}")
    });
    if allowed {
        return None;
    }
    Some(match hosts.is_empty() {
        true => format!(
            "the operator {does} no host ({flag} is empty); ask the platform team to allow the receiver's host"
        ),
        false => format!(
            "host {host} is not one the operator {does} ({flag}: {})",
            hosts.join(", ")
        ),
    })
}

impl Deliverer {
    pub fn new(hosts: Vec<String>) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .build()
            .unwrap_or_default();
        Self { client, hosts }
    }

    /// POSTs `body` (JSON) to `url`: the receiver's status code, or why there is none.
    pub async fn post(&self, url: &str, body: String) -> Result<u16, String> {
        if let Some(why) = refused(url, &self.hosts) {
            return Err(why);
        }
        self.send(url, body, TIMEOUT).await
    }

    /// POSTs `body` to a canary hook at `url` (a host of `--canary-hook-hosts`), waiting
    /// at most `timeout`.
    pub async fn call_hook(
        &self,
        url: &str,
        body: String,
        timeout: Duration,
    ) -> Result<u16, String> {
        if let Some(why) = refused_by(url, &self.hosts, "--canary-hook-hosts", "calls hooks on") {
            return Err(why);
        }
        self.send(url, body, timeout).await
    }

    async fn send(&self, url: &str, body: String, timeout: Duration) -> Result<u16, String> {
        let answer = self
            .client
            .post(url)
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("no answer from the receiver: {e}"))?;
        Ok(answer.status().as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_hosts_are_sent_to() {
        let hosts = vec![
            "reports.example.com".to_string(),
            "127.0.0.1:8080".to_string(),
        ];
        assert_eq!(refused("https://reports.example.com/in", &hosts), None);
        assert_eq!(refused("http://REPORTS.example.com:9000/in", &hosts), None);
        assert_eq!(refused("http://127.0.0.1:8080/x", &hosts), None);
        let other_port = refused("http://127.0.0.1:8081/x", &hosts).unwrap();
        assert!(
            other_port.contains("host 127.0.0.1 is not one"),
            "{other_port}"
        );
        assert!(refused("http://kubernetes.default.svc/api", &hosts).is_some());
        assert!(refused("http://reports.example.com.evil.io/", &hosts).is_some());
        assert!(
            refused("file:///etc/passwd", &hosts)
                .unwrap()
                .contains("not an http")
        );
        assert!(
            refused("https://reports.example.com/", &[])
                .unwrap()
                .contains("--report-webhook-hosts is empty")
        );
    }
}

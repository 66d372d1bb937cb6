//! A loopback HTTP proxy between the operator and the real API server (issue 14's fault
//! suite): the operator speaks plain HTTP to it, without credentials, and it forwards each
//! request over TLS with the admin's client certificate (the impersonation headers the
//! operator sends pass through, so the operator is still its own user), streaming the
//! answer back, watches included. Rules make chosen requests misbehave: an error status
//! (429 with `Retry-After`, 5xx), a delay, a reset, a watch that ends with 410 Gone, or a
//! request held and never forwarded, so a test can kill the operator in the middle of an
//! action, at a point it chooses.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::cluster::ClusterEnv;

/// What a rule does with a request it matches.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiFault {
    /// Answer this status with a Kubernetes `Status` body, and `Retry-After: n` if given.
    Status { code: u16, retry_after: Option<u32> },
    /// Forward after a delay.
    Delay(Duration),
    /// Reset the connection without answering.
    Reset,
    /// Never forward it; keep the connection open until the client goes away.
    Hold,
    /// Answer a watch with one `ERROR` event, code 410 (its resourceVersion is too old):
    /// the client must list again.
    Gone,
}

/// Which requests a fault applies to, and how many times.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `GET`, `PATCH`, ...; empty for any.
    method: String,
    /// A part of the path (query included).
    path: String,
    /// A part of the body; empty for any.
    body: String,
    fault: ApiFault,
    /// How many more requests it applies to (`None`: every one).
    left: Option<usize>,
}

impl Rule {
    pub fn new(method: &str, path: &str, fault: ApiFault) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            body: String::new(),
            fault,
            left: None,
        }
    }

    /// Only requests whose body contains `part`.
    pub fn body(mut self, part: &str) -> Self {
        self.body = part.into();
        self
    }

    /// Only the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Self {
        self.left = Some(n);
        self
    }

    fn matches(&self, method: &str, path: &str, body: &[u8]) -> bool {
        (self.method.is_empty() || self.method == method)
            && path.contains(&self.path)
            && (self.body.is_empty() || String::from_utf8_lossy(body).contains(&self.body))
            && self.left != Some(0)
    }
}

/// A request the proxy saw: what it was and what was done with it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub fault: Option<ApiFault>,
}

/// A running proxy with a kubeconfig that goes through it.
pub struct ApiProxy {
    pub kubeconfig: PathBuf,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl ApiProxy {
    pub async fn start(env: &ClusterEnv) -> Self {
        let text = std::fs::read_to_string(&env.kubeconfig).expect("read the kubeconfig");
        let server = super::cluster::kubeconfig_server(&text)
            .trim_end_matches('/')
            .to_string();
        let pki = env.dir.join("pki");
        let read = |f: &str| std::fs::read(pki.join(f)).expect("read the admin's certificates");
        let mut identity = read("admin.crt");
        identity.extend(read("admin.key"));
        let upstream = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&read("ca.crt")).unwrap())
            .identity(reqwest::Identity::from_pem(&identity).expect("the admin's identity"))
            .build()
            .expect("an HTTPS client for the API server");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let local = listener.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: proxy\n  cluster:\n    server: http://{local}\n\
                 users:\n- name: anonymous\n  user: {{}}\ncontexts:\n- name: proxy\n  context:\n    cluster: proxy\n    user: anonymous\n\
                 current-context: proxy\n"
            ),
        )
        .unwrap();
        let (rules, seen) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Mutex::new(Vec::new())),
        );
        let shared = Shared {
            upstream,
            server,
            rules: rules.clone(),
            seen: seen.clone(),
        };
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let open = conns.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let h = tokio::spawn(shared.clone().answer(stream));
                let mut open = open.lock().unwrap();
                open.retain(|h| !h.is_finished());
                open.push(h.abort_handle());
            }
        });
        Self {
            kubeconfig,
            rules,
            seen,
            conns,
            task,
            _dir: dir,
        }
    }

    /// The kubeconfig's path as a string, for `KUBECONFIG`.
    pub fn kubeconfig_var(&self) -> String {
        self.kubeconfig.to_str().unwrap().to_string()
    }

    /// Adds a rule (the first matching rule applies).
    pub fn add(&self, rule: Rule) {
        self.rules.lock().unwrap().push(rule);
    }

    /// Removes every rule: everything is forwarded again.
    pub fn clear(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// Ends every open connection (watches included), as a restarting API server does.
    pub fn cut(&self) {
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests were answered with `fault`.
    pub fn count(&self, fault: &ApiFault) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.fault.as_ref() == Some(fault))
            .count()
    }

    /// Waits until a request is held, and returns it.
    pub async fn wait_held(&self, timeout: Duration) -> Seen {
        let start = std::time::Instant::now();
        loop {
            if let Some(s) = self
                .seen()
                .into_iter()
                .find(|s| s.fault == Some(ApiFault::Hold))
            {
                return s;
            }
            assert!(
                start.elapsed() < timeout,
                "no request held within {timeout:?}; seen: {:?}",
                self.seen()
                    .iter()
                    .rev()
                    .take(10)
                    .map(|s| format!("{} {}", s.method, s.path))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ApiProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Shared {
    upstream: reqwest::Client,
    server: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A request as read off the connection.
pub(super) struct Request {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

/// Reads one request (bodies with a Content-Length only: the Kubernetes client and the
/// Prometheus one send no other kind).
pub(super) async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

/// Headers that belong to one connection, not to the request.
const HOP: [&str; 6] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "accept-encoding",
];

impl Shared {
    fn rule_for(&self, r: &Request) -> Option<ApiFault> {
        let mut rules = self.rules.lock().unwrap();
        let rule = rules
            .iter_mut()
            .find(|rule| rule.matches(&r.method, &r.path, &r.body))?;
        if let Some(n) = rule.left.as_mut() {
            *n -= 1;
        }
        Some(rule.fault.clone())
    }

    async fn answer(self, mut stream: TcpStream) {
        let Some(r) = read_request(&mut stream).await else {
            return;
        };
        let fault = self.rule_for(&r);
        self.seen.lock().unwrap().push(Seen {
            method: r.method.clone(),
            path: r.path.clone(),
            fault: fault.clone(),
        });
        match fault {
            Some(ApiFault::Status { code, retry_after }) => {
                let body = format!(
                    r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"fault proxy: HTTP {code}","reason":"{}","code":{code}}}"#,
                    if code == 429 {
                        "TooManyRequests"
                    } else {
                        "InternalError"
                    }
                );
                let extra = retry_after
                    .map(|s| format!("Retry-After: {s}\r\n"))
                    .unwrap_or_default();
                let text = format!(
                    "HTTP/1.1 {code} Fault\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(text.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
            Some(ApiFault::Reset) => {
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                drop(stream);
            }
            Some(ApiFault::Hold) => {
                // Until the client goes away (killed): the request never reaches the server.
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            }
            Some(ApiFault::Gone) => {
                let event = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"fault proxy: too old resource version","reason":"Expired","code":410}}"#;
                let text = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{event}\n\r\n0\r\n\r\n",
                    event.len() + 1
                );
                let _ = stream.write_all(text.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
            Some(ApiFault::Delay(d)) => {
                tokio::time::sleep(d).await;
                self.forward(stream, r).await;
            }
            None => self.forward(stream, r).await,
        }
    }

    /// Sends the request to the API server and streams its answer back (chunked).
    async fn forward(&self, mut stream: TcpStream, r: Request) {
        let method =
            reqwest::Method::from_bytes(r.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut request = self
            .upstream
            .request(method, format!("{}{}", self.server, r.path))
            .body(r.body);
        for (k, v) in &r.headers {
            if !HOP.contains(&k.to_ascii_lowercase().as_str()) {
                request = request.header(k, v);
            }
        }
        let Ok(mut answer) = request.send().await else {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        };
        let mut head = format!(
            "HTTP/1.1 {} {}\r\n",
            answer.status().as_u16(),
            answer.status().canonical_reason().unwrap_or("")
        );
        for (k, v) in answer.headers() {
            let k = k.as_str();
            if !HOP.contains(&k) && k != "content-encoding" {
                head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or_default()));
            }
        }
        head.push_str("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        while let Ok(Some(bytes)) = answer.chunk().await {
            let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
            out.extend_from_slice(&bytes);
            out.extend_from_slice(b"\r\n");
            if bytes.is_empty() || stream.write_all(&out).await.is_err() {
                return;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
        let _ = stream.shutdown().await;
    }
}

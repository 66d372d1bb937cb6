//! A loopback fault proxy between the operator and Prometheus: it forwards each request to
//! the real Prometheus, or misbehaves the way a test sets (issue 14's fault suite).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// How the proxy answers.
#[derive(Debug, Clone, PartialEq)]
#[allow(dead_code)] // not every test binary uses every fault
pub enum Fault {
    /// Forward to Prometheus.
    Pass,
    /// Forward after a delay.
    Delay(Duration),
    /// Reset the connection (RST) without answering.
    Reset,
    /// Accept and never answer.
    Hang,
    /// An HTTP error with a Prometheus error body.
    Status(u16),
    /// 200 with a body that is not JSON.
    Garbage,
    /// A one-series vector whose value is this string (`NaN`, `+Inf`, ...).
    Value(&'static str),
    /// An empty vector.
    Empty,
    /// Two series.
    Several,
    /// A one-series vector timestamped an hour before now (an answer not for the time
    /// asked: a cache in front of Prometheus, or its clock off).
    Stale,
    /// Forward, adding a warning to the answer.
    Warnings,
}

/// A running proxy; set its fault at any time.
pub struct FaultProxy {
    pub url: String,
    fault: Arc<Mutex<Fault>>,
    /// Requests being answered now, and the most there ever were at once.
    load: Arc<Mutex<(usize, usize)>>,
    /// Requests answered in all.
    answered: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fault = Arc::new(Mutex::new(Fault::Pass));
        let (upstream, shared) = (upstream.trim_end_matches('/').to_string(), fault.clone());
        let load: Arc<Mutex<(usize, usize)>> = Arc::default();
        let answered: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let (in_flight, count) = (load.clone(), answered.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let fault = shared.lock().unwrap().clone();
                let (in_flight, count, upstream) =
                    (in_flight.clone(), count.clone(), upstream.clone());
                tokio::spawn(async move {
                    {
                        let mut l = in_flight.lock().unwrap();
                        l.0 += 1;
                        l.1 = l.1.max(l.0);
                    }
                    answer(stream, fault, upstream).await;
                    in_flight.lock().unwrap().0 -= 1;
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        Self {
            url,
            fault,
            load,
            answered,
            task,
        }
    }

    /// The most requests that were being answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.load.lock().unwrap().1
    }

    /// How many requests were answered.
    pub fn answered(&self) -> usize {
        self.answered.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn set(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The request's method, path with query, and body.
async fn read_request(stream: &mut TcpStream) -> Option<(String, String, Vec<u8>)> {
    let r = super::api_proxy::read_request(stream).await?;
    Some((r.method, r.path, r.body))
}

async fn respond(stream: &mut TcpStream, code: u16, body: &str) {
    let text = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(text.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn vector(values: &[&str]) -> String {
    vector_at(values, 0.0)
}

/// A vector timestamped `ago` seconds before now.
fn vector_at(values: &[&str], ago: f64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - ago;
    let series: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!(r#"{{"metric":{{"series":"{i}"}},"value":[{now},"{v}"]}}"#))
        .collect();
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
        series.join(",")
    )
}

async fn answer(mut stream: TcpStream, fault: Fault, upstream: String) {
    let Some((method, path, body)) = read_request(&mut stream).await else {
        return;
    };
    match fault {
        Fault::Reset => {
            // A zero linger sends RST on close at once (it is a non-zero linger that blocks).
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            drop(stream);
        }
        Fault::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
        Fault::Status(code) => {
            let body = format!(
                r#"{{"status":"error","errorType":"fault","error":"fault proxy: HTTP {code}"}}"#
            );
            respond(&mut stream, code, &body).await;
        }
        Fault::Garbage => respond(&mut stream, 200, "<html>not json").await,
        Fault::Value(v) => respond(&mut stream, 200, &vector(&[v])).await,
        Fault::Empty => respond(&mut stream, 200, &vector(&[])).await,
        Fault::Several => respond(&mut stream, 200, &vector(&["1", "2"])).await,
        Fault::Stale => respond(&mut stream, 200, &vector_at(&["5"], 3600.0)).await,
        Fault::Pass | Fault::Delay(_) | Fault::Warnings => {
            if let Fault::Delay(d) = fault {
                tokio::time::sleep(d).await;
            }
            let client = reqwest::Client::new();
            let url = format!("{upstream}{path}");
            let request = match method.as_str() {
                "POST" => client
                    .post(&url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body),
                _ => client.get(&url),
            };
            let Ok(r) = request.send().await else {
                return respond(&mut stream, 502, r#"{"status":"error","error":"upstream"}"#).await;
            };
            let code = r.status().as_u16();
            let mut text = r.text().await.unwrap_or_default();
            if fault == Fault::Warnings && text.ends_with('}') {
                text.pop();
                text.push_str(r#","warnings":["fault proxy: results may be incomplete"]}"#);
            }
            respond(&mut stream, code, &text).await;
        }
    }
}

/// What the TCP proxy in front of the API server does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Bytes flow both ways.
    Up,
    /// Every connection is cut, and new ones are reset at once (the API server restarting).
    Cut,
    /// Connections are accepted and nothing flows (a network partition).
    Blackhole,
}

/// A TCP proxy in front of the API server (TLS passes through it untouched: the API
/// server's certificate is for 127.0.0.1), with a kubeconfig that goes through it.
pub struct LinkProxy {
    pub kubeconfig: std::path::PathBuf,
    link: tokio::sync::watch::Sender<Link>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl LinkProxy {
    pub async fn start(kubeconfig: &std::path::Path) -> Self {
        let text = std::fs::read_to_string(kubeconfig).expect("read the kubeconfig");
        let server = super::cluster::kubeconfig_server(&text);
        let upstream = server.trim_start_matches("https://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let local = listener.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, text.replace(&server, &format!("https://{local}"))).unwrap();
        let (link, rx) = tokio::sync::watch::channel(Link::Up);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (upstream, mut rx) = (upstream.clone(), rx.clone());
                tokio::spawn(async move {
                    if *rx.borrow() == Link::Cut {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let pump = async {
                        tokio::select! {
                            _ = tokio::io::copy(&mut cr, &mut sw) => {}
                            _ = tokio::io::copy(&mut sr, &mut cw) => {}
                        }
                    };
                    // A link that is not up ends the connection (Cut) or freezes it (Blackhole).
                    let down = async {
                        let _ = rx.wait_for(|l| *l != Link::Up).await;
                    };
                    tokio::select! {
                        _ = pump => {}
                        _ = down => {
                            if *rx.borrow() == Link::Blackhole {
                                let _ = rx.wait_for(|l| *l != Link::Blackhole).await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            kubeconfig: path,
            link,
            task,
            _dir: dir,
        }
    }

    pub fn set(&self, l: Link) {
        let _ = self.link.send(l);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every flag of the cluster's kube-apiserver but its port (`apiserver.args`, written by
/// `hack/cluster-up.sh`).
pub fn apiserver_args(env: &super::cluster::ClusterEnv) -> Vec<String> {
    let args_file = env.dir.join("apiserver.args");
    std::fs::read_to_string(&args_file)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (an older cluster? make cluster-down)",
                args_file.display()
            )
        })
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// A second real kube-apiserver on the cluster's etcd, with exactly the flags of the first
/// (`apiserver.args`, written by `hack/cluster-up.sh`), on a port of its own, and a
/// kubeconfig that goes to it: a test can stop it and start it again without disturbing
/// the other tests, which use the first.
pub struct SecondApiServer {
    pub kubeconfig: std::path::PathBuf,
    port: u16,
    args: Vec<String>,
    binary: std::path::PathBuf,
    log: std::path::PathBuf,
    child: Option<std::process::Child>,
    _dir: tempfile::TempDir,
}

impl SecondApiServer {
    pub fn start(env: &super::cluster::ClusterEnv) -> Self {
        let args = apiserver_args(env);
        let port = super::prom::free_port();
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(&env.kubeconfig).expect("read the kubeconfig");
        let server = super::cluster::kubeconfig_server(&text);
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            text.replace(&server, &format!("https://127.0.0.1:{port}")),
        )
        .unwrap();
        let mut s = Self {
            kubeconfig,
            port,
            args,
            binary: env.tool("kube-apiserver"),
            log: dir.path().join("kube-apiserver.log"),
            child: None,
            _dir: dir,
        };
        s.resume();
        s
    }

    /// Starts it (again) and waits until it is ready.
    pub fn resume(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = std::process::Command::new(&self.binary)
            .args(&self.args)
            .arg(format!("--secure-port={}", self.port))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the second kube-apiserver");
        self.child = Some(child);
        let until = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let ready = std::process::Command::new("curl")
                .args(["-fsSk", "--max-time", "2"])
                .arg(format!("https://127.0.0.1:{}/readyz", self.port))
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ready {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "the second kube-apiserver exited ({status}); log: {}",
                    self.log.display()
                );
            }
            assert!(
                std::time::Instant::now() < until,
                "the second kube-apiserver not ready after 90 s; log: {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Stops it as a restart would: SIGTERM, and SIGKILL if it has not exited within 5 s
    /// (it waits for open watches to end).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let until = std::time::Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SecondApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

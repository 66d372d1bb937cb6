//! A real Alertmanager (built by `hack/build-tools.sh alertmanager`) on a free loopback
//! port, with a configuration of the test's; killed when dropped.

use std::process::{Child, Command, Stdio};

use super::cluster::ClusterEnv;
use super::prom::free_port;

pub struct Alertmanager {
    /// `127.0.0.1:PORT`
    pub addr: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts Alertmanager with `config` (YAML), without clustering, and waits until ready.
    pub async fn start(env: &ClusterEnv, config: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("alertmanager.yml");
        std::fs::write(&file, config).expect("write the Alertmanager configuration");
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).expect("log");
        let child = Command::new(env.tool("alertmanager"))
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            // No gossip: a single instance, and no port other than its own.
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start alertmanager (hack/build-tools.sh alertmanager)");
        let me = Self { addr, child, dir };
        super::wait_ready("Alertmanager ready", &format!("http://{}/-/ready", me.addr)).await;
        me
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

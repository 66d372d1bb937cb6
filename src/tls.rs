//! TLS for the operator's two servers, the admission webhook and the metrics endpoint:
//! a certificate made at start (a CA of its own and a serving certificate it signs) or read
//! from a mounted Secret (and read again when its files change: cert-manager renews them,
//! the kubelet rewrites the volume), and a listener that runs each handshake in its own task.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot make the {what} certificate: {reason}")]
    Cert { what: &'static str, reason: String },
    #[error("cannot read the {what} certificate files in {dir}: {reason}")]
    CertFiles {
        what: &'static str,
        dir: String,
        reason: String,
    },
}

/// PEM certificate chain, key, and the CA a client must trust ("" when a mounted Secret
/// carries none).
#[derive(Clone)]
pub struct Certs {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
    /// What the certificate is for, in error messages (`webhook`, `metrics`).
    pub what: &'static str,
    /// When set, a client must present a certificate this CA (PEM) signed: the API server's
    /// client certificate for admission webhooks, where its AdmissionConfiguration gives one.
    pub client_ca_pem: Option<String>,
    /// Where they were read from: the directory (and whether it must hold `ca.crt`) and the
    /// client CA's file, read again by [`Certs::follow`]. None: made at start.
    source: Option<Source>,
}

#[derive(Clone)]
struct Source {
    dir: PathBuf,
    need_ca: bool,
    client_ca_file: Option<PathBuf>,
}

/// How often mounted certificate files are compared with the ones served. The kubelet
/// updates a Secret's volume within about a minute of a change; cert-manager renews well
/// ahead of expiry.
pub const RELOAD_EVERY: Duration = Duration::from_secs(10);

/// The acceptor a listener uses for its next handshake: fixed, or following its files.
#[derive(Clone)]
pub(crate) struct Acceptor(watch::Receiver<TlsAcceptor>);

impl Acceptor {
    fn current(&self) -> TlsAcceptor {
        self.0.borrow().clone()
    }
}

impl Certs {
    /// A fresh CA and a serving certificate for `hosts` (DNS names or IP addresses).
    pub fn generate(what: &'static str, hosts: &[String]) -> Result<Self, Error> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let err = |e: rcgen::Error| Error::Cert {
            what,
            reason: e.to_string(),
        };
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("maturity-operator {what} CA"));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(err)?;
        let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(hosts.to_vec()).map_err(err)?;
        leaf.distinguished_name
            .push(DnType::CommonName, format!("maturity-operator {what}"));
        leaf.use_authority_key_identifier_extension = true;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().map_err(err)?;
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(err)?;
        Ok(Self {
            cert_pem: leaf_cert.pem(),
            key_pem: leaf_key.serialize_pem(),
            ca_pem: ca_cert.pem(),
            what,
            client_ca_pem: None,
            source: None,
        })
    }

    /// `tls.crt`, `tls.key` and `ca.crt` of a mounted Secret (cert-manager's layout);
    /// `ca.crt` may be missing unless `need_ca`.
    pub fn from_dir(what: &'static str, dir: &Path, need_ca: bool) -> Result<Self, Error> {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f)).map_err(|e| Error::CertFiles {
                what,
                dir: dir.display().to_string(),
                reason: format!("{f}: {e}"),
            })
        };
        let cert_pem = read("tls.crt")?;
        let key_pem = read("tls.key")?;
        let ca_pem = match read("ca.crt") {
            Ok(ca) => ca,
            Err(e) if need_ca => return Err(e),
            Err(_) => String::new(),
        };
        Ok(Self {
            cert_pem,
            key_pem,
            ca_pem,
            what,
            client_ca_pem: None,
            source: Some(Source {
                dir: dir.to_path_buf(),
                need_ca,
                client_ca_file: None,
            }),
        })
    }

    /// Requires clients to present a certificate signed by the CA in `file` (PEM).
    pub fn require_clients_of(mut self, file: &Path) -> Result<Self, Error> {
        let pem = std::fs::read_to_string(file).map_err(|e| Error::CertFiles {
            what: self.what,
            dir: file.display().to_string(),
            reason: format!("the client CA: {e}"),
        })?;
        self.client_ca_pem = Some(pem);
        if let Some(source) = &mut self.source {
            source.client_ca_file = Some(file.to_path_buf());
        }
        Ok(self)
    }

    /// The acceptor of these certificates. Read from a directory, they are compared with
    /// its files every `every` while a listener uses the acceptor; a changed set serves
    /// from the next handshake on (connections already open keep theirs), a set that does
    /// not load is logged and the one served kept.
    pub(crate) fn follow(self, every: Duration) -> Result<Acceptor, Error> {
        let (tx, rx) = watch::channel(self.acceptor()?);
        let Some(source) = self.source.clone() else {
            // Made at start: nothing to follow; the sender lives as long as the acceptor.
            tokio::spawn(async move { tx.closed().await });
            return Ok(Acceptor(rx));
        };
        tokio::spawn(async move {
            let mut served = self;
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                let read =
                    Certs::from_dir(served.what, &source.dir, source.need_ca).and_then(|c| {
                        match &source.client_ca_file {
                            Some(f) => c.require_clients_of(f),
                            None => Ok(c),
                        }
                    });
                let read = match read {
                    Ok(r) if r.same_files(&served) => continue,
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the changed certificate files; serving the current ones");
                        continue;
                    }
                };
                match read.acceptor() {
                    Ok(acceptor) => {
                        tracing::info!(what = served.what, dir = %source.dir.display(), "serving the renewed certificate");
                        served = read;
                        let _ = tx.send(acceptor);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the changed certificate files do not load; serving the current ones");
                        // Compared again next time: a half-written set completes.
                    }
                }
            }
        });
        Ok(Acceptor(rx))
    }

    fn same_files(&self, other: &Certs) -> bool {
        (
            &self.cert_pem,
            &self.key_pem,
            &self.ca_pem,
            &self.client_ca_pem,
        ) == (
            &other.cert_pem,
            &other.key_pem,
            &other.ca_pem,
            &other.client_ca_pem,
        )
    }

    pub(crate) fn acceptor(&self) -> Result<TlsAcceptor, Error> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let err = |reason: String| Error::Cert {
            what: self.what,
            reason,
        };
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| err(format!("certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| err(format!("key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| err(e.to_string()))?;
        let builder = match &self.client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                    let c = c.map_err(|e| err(format!("client CA: {e}")))?;
                    roots.add(c).map_err(|e| err(format!("client CA: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(err("client CA: the file holds no certificate".into()));
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| err(format!("client CA: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| err(e.to_string()))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// TLS on top of a TCP listener; handshakes run in their own tasks so a slow client
/// never holds up the others.
pub(crate) struct TlsListener {
    local: SocketAddr,
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub(crate) fn new(tcp: TcpListener, acceptor: Acceptor) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(%local, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let acceptor = acceptor.current();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { local, rx })
    }

    pub(crate) fn local(&self) -> SocketAddr {
        self.local
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop ended: nothing will ever come again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_ca_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let c = Certs::generate("webhook", &["127.0.0.1".into()]).unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, &c.ca_pem).unwrap();
        assert!(
            c.clone()
                .require_clients_of(&ca)
                .unwrap()
                .acceptor()
                .is_ok()
        );
        std::fs::write(&ca, "not a certificate").unwrap();
        let err = c
            .clone()
            .require_clients_of(&ca)
            .unwrap()
            .acceptor()
            .err()
            .unwrap();
        assert!(err.to_string().contains("client CA"), "{err}");
        let missing = c
            .require_clients_of(&dir.path().join("none.crt"))
            .err()
            .unwrap();
        assert!(missing.to_string().contains("the client CA"), "{missing}");
    }

    #[test]
    fn generated_certs_load_into_a_tls_acceptor() {
        let c = Certs::generate("webhook", &["127.0.0.1".into(), "svc.ns.svc".into()]).unwrap();
        assert!(c.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_ne!(c.ca_pem, c.cert_pem);
        assert!(c.acceptor().is_ok());
    }

    #[test]
    fn missing_cert_files_name_the_file_and_the_use() {
        let dir = tempfile::tempdir().unwrap();
        let err = Certs::from_dir("webhook", dir.path(), true)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("tls.crt") && err.contains("webhook"), "{err}");
        let err = Certs::from_dir("metrics", dir.path(), false)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("tls.crt") && err.contains("metrics"), "{err}");
    }

    #[test]
    fn a_secret_without_a_ca_serves_when_no_ca_is_needed() {
        let made = Certs::generate("metrics", &["localhost".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.crt"), &made.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &made.key_pem).unwrap();
        let read = Certs::from_dir("metrics", dir.path(), false).unwrap();
        assert_eq!(read.ca_pem, "");
        assert!(read.acceptor().is_ok());
        // The webhook registers its CA with the API server: it needs one.
        let err = Certs::from_dir("webhook", dir.path(), true)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("ca.crt"), "{err}");
    }

    /// The certificate a TLS client is served by `addr` (the client trusts `cas`).
    async fn served(addr: SocketAddr, cas: &[&str]) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, ServerName};
        let mut roots = rustls::RootCertStore::empty();
        for ca in cas {
            roots
                .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
                .unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }

    fn der(pem: &str) -> Vec<u8> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    /// Writes a Secret's three files the way the kubelet does: into a new directory, then
    /// one rename of the link the files point through.
    fn write_secret(dir: &Path, generation: u32, c: &Certs) {
        let data = dir.join(format!("..data_{generation}"));
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("tls.crt"), &c.cert_pem).unwrap();
        std::fs::write(data.join("tls.key"), &c.key_pem).unwrap();
        std::fs::write(data.join("ca.crt"), &c.ca_pem).unwrap();
        let tmp = dir.join("..data_tmp");
        std::os::unix::fs::symlink(&data, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
        for f in ["tls.crt", "tls.key", "ca.crt"] {
            let link = dir.join(f);
            if !link.exists() {
                std::os::unix::fs::symlink(dir.join("..data").join(f), &link).unwrap();
            }
        }
    }

    #[tokio::test]
    async fn a_rotated_secret_is_served_from_the_next_handshake_on() {
        let dir = tempfile::tempdir().unwrap();
        let first = Certs::generate("webhook", &["localhost".into()]).unwrap();
        let second = Certs::generate("webhook", &["localhost".into()]).unwrap();
        write_secret(dir.path(), 1, &first);
        let acceptor = Certs::from_dir("webhook", dir.path(), true)
            .unwrap()
            .follow(Duration::from_millis(50))
            .unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut listener = TlsListener::new(tcp, acceptor).unwrap();
        let addr = listener.local();
        // Keep accepting, so handshakes complete.
        tokio::spawn(async move {
            loop {
                let _ = Listener::accept(&mut listener).await;
            }
        });
        let cas = [first.ca_pem.as_str(), second.ca_pem.as_str()];
        assert_eq!(served(addr, &cas).await, der(&first.cert_pem));

        write_secret(dir.path(), 2, &second);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while served(addr, &cas).await != der(&second.cert_pem) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the renewed certificate was not served within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // A set that does not load (a key of another certificate) is not served: the
        // renewed one stays.
        let data = dir.path().join("..data_3");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("tls.crt"), &first.cert_pem).unwrap();
        std::fs::write(data.join("tls.key"), "not a key").unwrap();
        std::fs::write(data.join("ca.crt"), &first.ca_pem).unwrap();
        let tmp = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&data, &tmp).unwrap();
        std::fs::rename(&tmp, dir.path().join("..data")).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(served(addr, &cas).await, der(&second.cert_pem));
    }
}

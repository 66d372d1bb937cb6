//! TLS for the operator's two servers, the admission webhook and the metrics endpoint:
//! a certificate made at start (a CA of its own and a serving certificate it signs) or read
//! from a mounted Secret, and a listener that runs each handshake in its own task.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
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
        Ok(self)
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
    pub(crate) fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
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
                let acceptor = acceptor.clone();
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
}

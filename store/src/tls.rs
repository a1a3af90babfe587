//! TLS with etcd's flags, on rustls.
//!
//! - [`Reloading`]: a server's certificate, key and client CA, read again
//!   whenever one of the files changes on disk (checked at each handshake),
//!   so rotated certificates take effect without a restart. A file caught
//!   half-written keeps the previous configuration.
//! - [`auto`]: `--auto-tls`: a self-signed certificate made at first start.
//! - [`client_config`]: how a member dials TLS peers (and other members'
//!   client ports), presenting its certificate.
//! - [`common_name`]: the subject CN of a client certificate, which is the
//!   user with `--client-cert-auth`, as in etcd.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use shoal_proto::tls::AnyCertificate;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error("tls: {0}")]
    Config(String),
}

/// The files of one side (client or peer), from the command line.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients' certificates are checked against it when set.
    pub trusted_ca: Option<PathBuf>,
    /// Refuse clients without a certificate signed by `trusted_ca`.
    pub client_cert_auth: bool,
    /// The certificate is self-signed (--auto-tls): peers do not verify it.
    pub auto: bool,
}

fn file_error(path: &Path, detail: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.to_path_buf(), detail: detail.to_string() }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate in the file"));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, e))
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path)? {
        roots.add(cert).map_err(|e| file_error(path, e))?;
    }
    Ok(roots)
}

/// gRPC (h2) and HTTP/1.1 for the gateway and /metrics.
fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.trusted_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider);
            let verifier = if files.client_cert_auth { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Config(e.to_string()))?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_single_cert(certs(&files.cert)?, key(&files.key)?).map_err(|e| file_error(&files.cert, e))?;
    config.alpn_protocols = alpn();
    Ok(config)
}

type Stamps = Vec<Option<SystemTime>>;

/// A server configuration that follows its files.
pub struct Reloading {
    files: TlsFiles,
    current: Mutex<(Stamps, Arc<ServerConfig>)>,
}

impl Reloading {
    pub fn new(files: TlsFiles) -> Result<Reloading, TlsError> {
        let config = Arc::new(server_config(&files)?);
        let stamps = stamps(&files);
        Ok(Reloading { files, current: Mutex::new((stamps, config)) })
    }

    /// Whether clients must present a certificate (whose CN is then a user).
    pub fn client_cert_auth(&self) -> bool {
        self.files.client_cert_auth
    }

    /// The configuration for a new connection, re-read if a file changed.
    pub fn config(&self) -> Arc<ServerConfig> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let now = stamps(&self.files);
        if now != current.0 {
            match server_config(&self.files) {
                Ok(config) => {
                    tracing::info!(cert = %self.files.cert.display(), "reloaded TLS certificates");
                    *current = (now, Arc::new(config));
                }
                Err(e) => tracing::warn!(error = %e, "changed TLS files are not usable yet; keeping the previous ones"),
            }
        }
        current.1.clone()
    }
}

fn stamps(files: &TlsFiles) -> Stamps {
    [Some(&files.cert), Some(&files.key), files.trusted_ca.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// `--auto-tls`: a self-signed certificate for `hosts` in `dir`, made once
/// and kept (etcd keeps its own under the data dir too).
pub fn auto(dir: &Path, hosts: &[String]) -> Result<TlsFiles, TlsError> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !cert.exists() || !key.exists() {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
        let mut names: Vec<String> = hosts.to_vec();
        names.push("localhost".into());
        names.dedup();
        let made = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Config(e.to_string()))?;
        std::fs::write(&key, made.signing_key.serialize_pem()).map_err(|e| file_error(&key, e))?;
        std::fs::write(&cert, made.cert.pem()).map_err(|e| file_error(&cert, e))?;
    }
    Ok(TlsFiles { cert, key, trusted_ca: None, client_cert_auth: false, auto: true })
}

/// How this member dials a TLS server of its cluster: it trusts `files`'
/// CA (or, with auto TLS, any certificate) and presents its own.
pub fn client_config(files: &TlsFiles) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match (&files.trusted_ca, files.auto) {
        (Some(ca), _) => builder.with_root_certificates(roots(ca)?),
        (None, _) => builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate::new(provider))),
    };
    let mut config =
        builder.with_client_auth_cert(certs(&files.cert)?, key(&files.key)?).map_err(|e| file_error(&files.cert, e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Dials TLS for tonic channels: TCP to the URI's host and port, then a
/// handshake with `config`, naming the host.
#[derive(Clone)]
pub struct Connector {
    config: Arc<ClientConfig>,
}

impl Connector {
    pub fn new(config: Arc<ClientConfig>) -> Connector {
        Connector { config }
    }
}

type Dialed = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = Dialed;
    type Error = std::io::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Dialed>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.config.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or("localhost").trim_start_matches('[').trim_end_matches(']').to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host).map_err(std::io::Error::other)?;
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

/// One DER element: (tag, contents, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The subject's common name of a DER certificate.
pub fn common_name(cert: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let (_, certificate, _) = der(cert)?;
    let (_, mut tbs, _) = der(certificate)?;
    // version [0] (optional), serial, signature, issuer, validity, subject
    let mut fields = Vec::new();
    while let Some((tag, body, rest)) = der(tbs) {
        fields.push((tag, body));
        tbs = rest;
    }
    let skip = usize::from(fields.first()?.0 == 0xa0);
    let mut subject = fields.get(skip + 4)?.1;
    while let Some((_, set, rest)) = der(subject) {
        let (_, pair, _) = der(set)?;
        let (_, oid, value) = der(pair)?;
        if oid == CN {
            let (_, name, _) = der(value)?;
            return String::from_utf8(name.to_vec()).ok();
        }
        subject = rest;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_common_name_is_read_from_a_certificate() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "shoal");
        params.distinguished_name.push(rcgen::DnType::CommonName, "alice");
        let cert = params.self_signed(&key).expect("cert");
        assert_eq!(common_name(cert.der()).as_deref(), Some("alice"));
        assert_eq!(common_name(b"\x30\x03\x02\x01"), None, "garbage is no name");
    }

    #[test]
    fn auto_tls_makes_a_certificate_once_and_servers_load_it() {
        let dir = tempfile::tempdir().expect("dir");
        let files = auto(dir.path(), &["127.0.0.1".into()]).expect("auto tls");
        let first = std::fs::read(&files.cert).expect("cert");
        assert_eq!(std::fs::read(&auto(dir.path(), &[]).expect("again").cert).expect("cert"), first);
        let reloading = Reloading::new(files.clone()).expect("a server config");
        assert_eq!(reloading.config().alpn_protocols[0], b"h2");
        client_config(&files).expect("a client config");
    }
}

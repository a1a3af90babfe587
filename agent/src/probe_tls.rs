//! HTTPS for probes, as kubelet does it: TLS to the container's port,
//! without verifying the server's certificate (a pod's certificate is for
//! its clients, not for the node), so that a probe tells whether the
//! server answers, not whether the node trusts it. rustls on ring, the
//! provider the rest of Shoal's TLS uses.

use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use shoal_proto::tls::AnyCertificate;

/// `tcp` wrapped in TLS to `host` (a name or an address, for SNI).
pub fn wrap(tcp: TcpStream, host: &str) -> Result<StreamOwned<ClientConnection, TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate::new(provider)))
        .with_no_client_auth();
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
        .map_err(|e| format!("bad TLS server name {host:?}: {e}"))?;
    let connection = ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    Ok(StreamOwned::new(connection, tcp))
}

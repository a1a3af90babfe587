//! TLS to the store, with etcdctl's flags: `--cacert` to verify the
//! members' certificates on https endpoints, `--cert` and `--key` to present
//! a client certificate (whose CN is the user under --client-cert-auth).
//! Their ids differ from their names: shoalctl has a positional `key`.

use std::path::PathBuf;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::error::{Error, Result};

#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// CA bundle that signs the store's certificates (for https endpoints).
    #[arg(long = "cacert", id = "tls_cacert", global = true, env = "SHOAL_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Client certificate to present to the store.
    #[arg(long = "cert", id = "tls_cert", global = true, env = "SHOAL_CERT", requires = "tls_key")]
    pub cert: Option<PathBuf>,
    /// Key of the client certificate.
    #[arg(long = "key", id = "tls_key", global = true, env = "SHOAL_KEY", requires = "tls_cert")]
    pub key: Option<PathBuf>,
}

fn read(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Connect(format!("{}: {e}", path.display())))
}

impl TlsArgs {
    /// The TLS settings for https endpoints; None when no flag is given.
    pub fn config(&self) -> Result<Option<ClientTlsConfig>> {
        if self.cacert.is_none() && self.cert.is_none() {
            return Ok(None);
        }
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &self.cacert {
            config = config.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(Some(config))
    }
}

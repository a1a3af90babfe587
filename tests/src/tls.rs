//! Certificates for the TLS tests, made with rcgen: a CA, a server
//! certificate for 127.0.0.1, client certificates named by their CN, an
//! expired one, and a foreign CA. Plus members (Shoal or etcd 3.4) started
//! on https URLs with etcd's TLS flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

use crate::cluster::{member_flags, shoal_binary};
use crate::ports::free_port;
use crate::process::Process;
use crate::{wait, Etcdctl};

pub struct Pki {
    dir: tempfile::TempDir,
    ca: (CertificateParams, KeyPair),
    pub ca_file: PathBuf,
}

/// A certificate and key on disk.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params
}

impl Pki {
    /// A fresh CA named `name`.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = KeyPair::generate().expect("key");
        let params = ca_params(name);
        let cert = params.self_signed(&key).expect("self-signed CA");
        let ca_file = dir.path().join(format!("{name}.pem"));
        std::fs::write(&ca_file, cert.pem()).expect("write CA");
        Pki { dir, ca: (params, key), ca_file }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A certificate signed by this CA, for server and client use, valid
    /// for 127.0.0.1 and localhost, named `cn`; `expired` makes it a day old
    /// at most and already past.
    pub fn issue(&self, file: &str, cn: &str, expired: bool) -> Pair {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2000, 1, 2);
        }
        let issuer = Issuer::from_params(&self.ca.0, &self.ca.1);
        let cert = params.signed_by(&key, &issuer).expect("signed");
        let pair =
            Pair { cert: self.dir().join(format!("{file}.pem")), key: self.dir().join(format!("{file}-key.pem")) };
        std::fs::write(&pair.cert, cert.pem()).expect("write cert");
        std::fs::write(&pair.key, key.serialize_pem()).expect("write key");
        pair
    }
}

/// etcdctl with TLS flags: `--cacert`, and `--cert`/`--key` when given.
pub fn etcdctl(url: &str, ca: &Path, client: Option<&Pair>) -> (Etcdctl, Vec<String>) {
    let mut flags = vec![format!("--cacert={}", ca.display())];
    if let Some(pair) = client {
        flags.push(format!("--cert={}", pair.cert.display()));
        flags.push(format!("--key={}", pair.key.display()));
    }
    (Etcdctl::new(url.to_string()), flags)
}

/// Which server to start.
#[derive(Clone, Copy, Debug)]
pub enum Server {
    Shoal,
    Etcd,
}

/// One member on an https client URL with `flags`, its process and URL;
/// started when etcdctl (with `probe` as client cert) can reach it.
pub async fn start(server: Server, dir: &Path, flags: &[String], ca: &Path, probe: Option<&Pair>) -> (Process, String) {
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("https://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let data = dir.join(format!("{server:?}-{client}"));
    let mut args = member_flags("m", &data, &client_url, &peer_url, &format!("m={peer_url}"));
    args.extend(flags.iter().cloned());
    let binary = match server {
        Server::Shoal => shoal_binary(),
        Server::Etcd => PathBuf::from(std::env::var("ETCD_BIN").unwrap_or_else(|_| "/usr/bin/etcd".into())),
    };
    let process = Process::spawn(&binary, &args, dir.join(format!("{server:?}-{client}.log")));
    let (ctl, tls) = etcdctl(&client_url, ca, probe);
    wait::until(Duration::from_secs(30), "the TLS member to serve", || {
        let args: Vec<&str> = tls.iter().map(String::as_str).chain(["endpoint", "health"]).collect();
        let ok = ctl.run(&args).success;
        async move { ok.then_some(()) }
    })
    .await;
    (process, client_url)
}

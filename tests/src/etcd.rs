//! A single-member etcd 3.4 (Debian's `etcd-server`), the reference whose
//! output Shoal's must match.

use std::path::PathBuf;
use std::time::Duration;

use crate::cluster::member_flags;
use crate::ports::free_port;
use crate::process::Process;
use crate::wait;

pub struct Etcd {
    pub client_url: String,
    _process: Process,
    _dir: tempfile::TempDir,
}

fn etcd_binary() -> PathBuf {
    let path = PathBuf::from(std::env::var("ETCD_BIN").unwrap_or_else(|_| "/usr/bin/etcd".into()));
    assert!(path.exists(), "{} is missing: install Debian's etcd-server (./dev test does)", path.display());
    path
}

impl Etcd {
    pub async fn start() -> Etcd {
        Etcd::start_with(&[]).await
    }

    /// Starts etcd with `extra` flags added.
    pub async fn start_with(extra: &[&str]) -> Etcd {
        let dir = tempfile::tempdir().expect("temp dir");
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let cluster = format!("ref={peer_url}");
        let mut args = member_flags("ref", &dir.path().join("data"), &client_url, &peer_url, &cluster);
        args.extend(extra.iter().map(|s| s.to_string()));
        let process = Process::spawn(&etcd_binary(), &args, dir.path().join("etcd.log"));
        let url = client_url.clone();
        wait::until(Duration::from_secs(30), "etcd to serve", || {
            let url = url.clone();
            async move {
                let mut client = etcd_client::Client::connect([url], None).await.ok()?;
                client.status().await.ok().filter(|s| s.leader() != 0)
            }
        })
        .await;
        Etcd { client_url, _process: process, _dir: dir }
    }
}

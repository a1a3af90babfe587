//! A single-member etcd 3.4 (Debian's `etcd-server`), the reference whose
//! output Shoal's must match.

use std::path::{Path, PathBuf};
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
        Etcd::start_from(None, extra).await
    }

    /// Starts etcd on a data dir that `etcdctl snapshot restore` built from
    /// `snapshot` (which must succeed).
    pub async fn start_restored(snapshot: &Path) -> Etcd {
        Etcd::start_from(Some(snapshot), &[]).await
    }

    async fn start_from(snapshot: Option<&Path>, extra: &[&str]) -> Etcd {
        let dir = tempfile::tempdir().expect("temp dir");
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let cluster = format!("ref={peer_url}");
        let data = dir.path().join("data");
        if let Some(snapshot) = snapshot {
            let restored = crate::Etcdctl::new(client_url.clone()).run(&[
                "snapshot",
                "restore",
                &snapshot.display().to_string(),
                "--name",
                "ref",
                "--initial-cluster",
                &cluster,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--data-dir",
                &data.display().to_string(),
            ]);
            assert!(restored.success, "etcdctl snapshot restore: {restored:?}");
        }
        let mut args = member_flags("ref", &data, &client_url, &peer_url, &cluster);
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

//! `shoal up` run by a test: on a port offset and node addresses of its
//! own, so that tests running in parallel never meet. Dropping it kills
//! every process it started (by the pids in its data dir) and their
//! containers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cluster::{shoal_binary, shoalctl_binary};
use crate::ports::in_use;
use crate::process::Process;
use crate::{wait, Etcdctl};

/// The client ports of `shoal up`'s members, before the offset.
pub const CLIENT_PORTS: [u16; 3] = [2379, 22379, 32379];
/// Its member names, in that order.
pub const MEMBERS: [&str; 3] = ["infra1", "infra2", "infra3"];
/// Every process it runs.
pub const PROCESSES: [&str; 7] = ["infra1", "infra2", "infra3", "controllers-1", "controllers-2", "agent-1", "agent-2"];

/// A port offset under which all six `shoal up` ports are free right now.
fn free_offset() -> u16 {
    let base = (std::process::id() % 2000) as u16 * 13 + 1000;
    (0..200)
        .map(|i| base + i * 7)
        .find(|off| [2379u16, 2380, 22379, 22380, 32379, 32380].iter().all(|p| !in_use(p + off)))
        .expect("a free port range")
}

pub struct Up {
    process: Option<Process>,
    root: PathBuf,
    pub data_dir: PathBuf,
    pub offset: u16,
    pub endpoints: String,
    /// The nodes' addresses: node-1's, node-2's.
    pub nodes: [String; 2],
    args: Vec<String>,
    runs: usize,
}

impl Up {
    /// Starts `shoal up` with its data under `root`.
    pub fn start(root: &Path) -> Up {
        let offset = free_offset();
        let data_dir = root.join("data");
        let nodes = crate::services::node_addresses();
        let args: Vec<String> = vec![
            "up".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--port-offset".into(),
            offset.to_string(),
            "--node-addresses".into(),
            nodes.join(","),
            "--pod-cidrs".into(),
            format!("{},{}", crate::agents::pod_cidr(), crate::agents::pod_cidr()),
            "--service-cluster-ip-range".into(),
            crate::agents::service_range(),
        ];
        let endpoints = CLIENT_PORTS.map(|p| format!("http://127.0.0.1:{}", p + offset)).join(",");
        let mut up = Up { process: None, root: root.into(), data_dir, offset, endpoints, nodes, args, runs: 0 };
        up.run();
        up
    }

    /// Runs it (again) on the same data dir.
    pub fn run(&mut self) {
        self.runs += 1;
        let log = self.root.join(format!("up-{}.log", self.runs));
        self.process = Some(Process::spawn(&shoal_binary(), &self.args, log));
    }

    pub fn etcdctl(&self) -> Etcdctl {
        Etcdctl::new(self.endpoints.clone())
    }

    /// Waits until the store takes writes.
    pub async fn wait_healthy(&self) {
        let ctl = self.etcdctl();
        // Every member, not just one: clients such as etcd-client spread
        // their calls over all the endpoints.
        wait::until(Duration::from_secs(60), "shoal up to serve on every member", || async {
            (ctl.run(&["endpoint", "health"]).success && ctl.run(&["put", "probe", "1"]).success).then_some(())
        })
        .await;
    }

    /// Ctrl-C, and a clean exit.
    pub fn stop(&mut self) {
        let Some(mut up) = self.process.take() else { return };
        up.signal(Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = up.exited() {
                assert!(status.success(), "shoal up exits cleanly on Ctrl-C: {status}\n{}", up.log_tail());
                return;
            }
            assert!(Instant::now() < deadline, "shoal up did not stop:\n{}", up.log_tail());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid of one of its processes (`infra1`, `agent-2`, ...), while it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.data_dir.join(format!("{name}.pid"))).ok()?.trim().parse().ok()
    }

    /// kill -9 of every process `shoal up` runs, then of `shoal up`;
    /// containers keep running. `shoal up` is frozen first, so that it
    /// restarts nothing and its children never see it die (they would exit
    /// by themselves, and the agents stop their containers when they do).
    pub fn kill_all(&mut self) {
        let up = self.process.take();
        if let Some(up) = &up {
            up.signal(Signal::SIGSTOP);
        }
        for name in PROCESSES {
            if let Some(pid) = self.pid(name) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        if let Some(mut up) = up {
            up.kill();
        }
    }

    /// `shoalctl --endpoints=... ARGS`; its stdout.
    pub fn shoalctl(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(shoalctl_binary())
            .arg("--endpoints")
            .arg(&self.endpoints)
            .args(args)
            .output()
            .expect("run shoalctl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The first processes of the containers running on both nodes.
    pub fn container_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> =
            ["agent-1", "agent-2"].iter().flat_map(|a| crate::agents::container_pids(&self.data_dir.join(a))).collect();
        pids.sort_unstable();
        pids
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.kill_all();
        for agent in ["agent-1", "agent-2"] {
            crate::agents::kill_containers(&self.data_dir.join(agent));
        }
    }
}

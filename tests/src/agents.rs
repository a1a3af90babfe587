//! Real `shoal-agent` processes for tests, and what their containers need.
//! Dropping one kills the agent and then every container it started (by
//! the pids recorded in its data dir), and removes their cgroups: the
//! containers' supervisors run in sessions of their own and would
//! otherwise outlive the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shoal_agent::runtime::linux::record::Record;

use crate::cluster::agent_binary;
use crate::process::Process;

/// Whether this process may create namespaces and cgroups. Tests that run
/// real containers return early (and say so) without it.
pub fn can_run_containers() -> bool {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        eprintln!("skipped: running containers needs root");
    }
    root
}

/// Whether process `pid` is still running (not a zombie).
pub fn alive(pid: u32) -> bool {
    shoal_agent::runtime::linux::record::start_time(pid).is_some()
}

/// The pid a pod's status reports for its first container, while it runs.
pub fn running_pid(pod: &shoal_proto::objects::Pod) -> Option<u32> {
    let status = pod.status.as_ref()?.container_statuses.first()?;
    status.state.as_ref()?.running.as_ref()?.pid
}

/// A busybox root filesystem built by examples/busybox-rootfs.sh into `dir`.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("busybox");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/busybox-rootfs.sh");
    let out = Command::new("bash").arg(script).arg(&root).output().expect("run busybox-rootfs.sh");
    assert!(out.status.success(), "busybox-rootfs.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    root
}

pub struct Agent {
    process: Option<Process>,
    pub node: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
    log: PathBuf,
}

impl Agent {
    /// Starts an agent for node `node`, keeping its data in `dir`.
    pub fn start(endpoints: &str, dir: &Path, node: &str, extra: &[&str]) -> Agent {
        let data_dir = dir.join(format!("agent-{node}"));
        let mut args: Vec<String> = [
            "--node-name",
            node,
            "--endpoints",
            endpoints,
            "--data-dir",
            data_dir.to_str().expect("utf-8 path"),
            "--heartbeat-ttl",
            "3s",
            "--restart-backoff",
            "1s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !extra.contains(&"--pod-cidr") {
            args.extend(["--pod-cidr".to_string(), pod_cidr()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = dir.join(format!("agent-{node}.log"));
        let process = Some(Process::spawn(&agent_binary(), &args, log.clone()));
        Agent { process, node: node.into(), data_dir, args, log }
    }

    /// kill -9 of the agent alone: its containers keep running.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts the agent again on the same data dir.
    pub fn restart(&mut self) {
        self.kill();
        self.process = Some(Process::spawn(&agent_binary(), &self.args, self.log.clone()));
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(Process::pid)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first processes of the containers running now.
    pub fn container_pids(&self) -> Vec<u32> {
        container_pids(&self.data_dir)
    }
}

fn records(data_dir: &Path) -> Vec<Record> {
    std::fs::read_dir(data_dir.join("containers"))
        .map(|entries| entries.filter_map(|e| Some(Record::new(e.ok()?.path()))).collect())
        .unwrap_or_default()
}

/// The first processes of the containers running now, of the agent whose
/// data dir is `data_dir`.
pub fn container_pids(data_dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = records(data_dir).iter().filter_map(Record::live_pid).collect();
    pids.sort_unstable();
    pids
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        kill_containers(&self.data_dir);
    }
}

/// A pod CIDR no other agent on this machine has: 10.64.0.0/24 to
/// 10.79.160.0/24, one per test port held (tests run in parallel
/// processes, and two bridges on one network would answer for each
/// other's pods). Away from the partition harness's 10.100.0.0 and up,
/// `shoal up`'s 10.88.0.0/16 and the Service range 10.96.0.0/16.
pub fn pod_cidr() -> String {
    let slot = crate::ports::free_port() - 61000;
    format!("10.{}.{}.0/24", 64 + slot / 256, slot % 256)
}

/// A Service range no other test cluster on this machine has: 10.80.0.0/24
/// to 10.95.160.0/24, one per test port held. Every node on the machine
/// answers for the cluster IPs its proxy serves, so two test clusters with
/// one range could each take the other's connections.
pub fn service_range() -> String {
    let slot = crate::ports::free_port() - 61000;
    format!("10.{}.{}.0/24", 80 + slot / 256, slot % 256)
}

/// Kills every container the agent whose data dir is `data_dir` started,
/// by the pids it recorded, removes their cgroups, and takes their pod
/// networks and the node's bridge apart.
pub fn kill_containers(data_dir: &Path) {
    let records = records(data_dir);
    for record in &records {
        if let Some(pid) = record.live_pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for record in &records {
        let Ok(launch) = record.launch() else { continue };
        for dir in &launch.cgroups {
            while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    shoal_agent::net::remove_all(&data_dir.join("net"));
}

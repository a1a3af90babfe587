//! What the agent writes down about each container it starts, in
//! `<data-dir>/containers/<id>/`, so that a restarted agent finds its
//! containers again:
//! - `launch.json`: everything the supervisor and the container's first
//!   process need (written by the agent before anything starts);
//! - `pid`: the container's first process, as `<pid> <start time>` (the
//!   supervisor writes it once the process exists);
//! - `exit.json`: how it ended (the supervisor writes it after reaping);
//! - `error`: why it never got to run the command (written by the
//!   container's first process before it gives up).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How to set up and run one container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    pub id: String,
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub container: String,
    /// The restart count this instance carries.
    pub restarts: i32,
    pub started_at: String,
    pub hostname: String,
    /// The command and its arguments.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The ports it was given (containerPort 0 resolved).
    #[serde(default)]
    pub ports: Vec<shoal_proto::objects::pod::ContainerPort>,
    pub working_dir: Option<String>,
    /// The root filesystem; None runs on the host's.
    pub rootfs: Option<PathBuf>,
    pub read_only_root: bool,
    /// Mounted on the container's /tmp (shared by the pod's containers).
    pub tmp_dir: PathBuf,
    /// The pod's network namespace to join; None shares the host's network.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// What the container may do.
    #[serde(default)]
    pub security: Security,
    /// Mounted on the container's /etc/resolv.conf.
    #[serde(default)]
    pub resolv_conf: Option<PathBuf>,
    /// The container's cgroups, one per hierarchy (cgroup v1) or one (v2).
    pub cgroups: Vec<PathBuf>,
    /// The memory cgroup, for telling an OOM kill.
    pub memory_cgroup: Option<PathBuf>,
    /// The log file, and the size at which it is rotated.
    pub log: PathBuf,
    pub log_max_bytes: u64,
}

/// What a container may do: see [`super::confine`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Security {
    /// No masks, every capability, no `no_new_privs`.
    pub privileged: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The capabilities kept in the bounding set, by number.
    pub capabilities: Vec<u8>,
    pub no_new_privileges: bool,
    /// Whether the default seccomp filter applies (see [`super::seccomp`]).
    #[serde(default)]
    pub seccomp: bool,
}

/// How a container ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub code: i32,
    pub signal: Option<i32>,
    pub oom: bool,
    pub finished_at: String,
}

/// A container's directory and its files.
#[derive(Clone, Debug)]
pub struct Record {
    pub dir: PathBuf,
}

impl Record {
    pub fn new(dir: PathBuf) -> Record {
        Record { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn write_launch(&self, launch: &Launch) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        write_atomically(&self.path("launch.json"), &serde_json::to_vec_pretty(launch).map_err(io::Error::other)?)
    }

    pub fn launch(&self) -> io::Result<Launch> {
        serde_json::from_slice(&fs::read(self.path("launch.json"))?).map_err(io::Error::other)
    }

    pub fn write_pid(&self, pid: u32) -> io::Result<()> {
        let start = start_time(pid).unwrap_or(0);
        write_atomically(&self.path("pid"), format!("{pid} {start}\n").as_bytes())
    }

    /// The first process's pid, if it has one (and it is still that process).
    pub fn pid(&self) -> Option<(u32, u64)> {
        let text = fs::read_to_string(self.path("pid")).ok()?;
        let mut parts = text.split_whitespace();
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }

    /// The pid, while that very process still runs.
    pub fn live_pid(&self) -> Option<u32> {
        let (pid, start) = self.pid()?;
        (start_time(pid) == Some(start)).then_some(pid)
    }

    pub fn write_exit(&self, exit: &Exit) -> io::Result<()> {
        write_atomically(&self.path("exit.json"), &serde_json::to_vec(exit).map_err(io::Error::other)?)
    }

    pub fn exit(&self) -> Option<Exit> {
        serde_json::from_slice(&fs::read(self.path("exit.json")).ok()?).ok()
    }

    pub fn error_path(&self) -> PathBuf {
        self.path("error")
    }

    pub fn error(&self) -> Option<String> {
        fs::read_to_string(self.error_path()).ok().filter(|e| !e.trim().is_empty()).map(|e| e.trim().to_string())
    }

    pub fn supervisor_log(&self) -> PathBuf {
        self.path("supervisor.log")
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that
/// readers see the old content or the new, never a part.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// A process's start time (clock ticks after boot, field 22 of
/// /proc/PID/stat): with the pid, it names one process even after the pid
/// is reused.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    let state = after.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_names_one_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = Record::new(dir.path().join("c1"));
        let launch = Launch { id: "c1".into(), argv: vec!["/bin/true".into()], ..Default::default() };
        record.write_launch(&launch).expect("write");
        assert_eq!(record.launch().expect("read"), launch);
        assert_eq!(record.live_pid(), None);
        record.write_pid(std::process::id()).expect("pid");
        assert_eq!(record.live_pid(), Some(std::process::id()));
        let exit = Exit { code: 1, signal: None, oom: false, finished_at: "t".into() };
        record.write_exit(&exit).expect("exit");
        assert_eq!(record.exit(), Some(exit));
    }
}

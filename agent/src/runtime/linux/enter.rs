//! Probes and `exec` inside a container (`shoal-agent enter PID --
//! COMMAND...`, `shoal-agent enter PID --tcp [HOST:]PORT`, `shoal-agent
//! enter PID --http[s] HOST:PORT PATH [HEADER...]` and `shoal-agent enter
//! PID --in RECORD_DIR -- COMMAND...`): this single-threaded process joins
//! the namespaces of the container's first process, then runs the command
//! there, connects to the port, or sends the HTTP GET, in the container's
//! network. Its exit code is the probe's result (0: success), or the
//! command's. With `--in`, the command also runs as the container's own
//! processes do: in its cgroups, with its user, capabilities, seccomp
//! filter, environment and working directory, and with this process's
//! standard input.

use std::fs::File;
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sched::{setns, CloneFlags};

use super::init::DEFAULT_PATH;
use super::record::{Launch, Record};
use super::{cgroup, confine, init};

/// Joins `pid`'s namespaces; the mount namespace last, as it changes the root.
fn join(pid: u32) -> Result<(), String> {
    let kinds = [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    let mut opened = Vec::new();
    for (name, kind) in kinds {
        let file =
            File::open(format!("/proc/{pid}/ns/{name}")).map_err(|e| format!("cannot open {name} namespace: {e}"))?;
        opened.push((name, kind, file));
    }
    for (name, kind, file) in opened {
        setns(&file, kind).map_err(|e| format!("cannot join the {name} namespace: {e}"))?;
    }
    Ok(())
}

/// The exit code when the command could not be run.
const CANNOT_RUN: i32 = 126;

/// Parses `PID [--in RECORD_DIR] -- COMMAND...`, `PID --tcp [HOST:]PORT`
/// or `PID --http[s] ...` and runs the probe or command.
pub fn run(args: &[String]) -> i32 {
    let Some(pid) = args.first().and_then(|p| p.parse::<u32>().ok()) else {
        eprintln!(
            "usage: shoal-agent enter PID [--in RECORD_DIR] (-- COMMAND... | --tcp [HOST:]PORT | --http[s] HOST:PORT PATH [HEADER...])"
        );
        return 2;
    };
    let (record, args) = match args.get(1..3) {
        Some([flag, dir]) if flag == "--in" => (Some(Path::new(dir)), &args[2..]),
        _ => (None, args),
    };
    if let (Some(record), Some("--")) = (record, args.get(1).map(String::as_str)) {
        return match args.get(2..) {
            Some(command) if !command.is_empty() => exec(pid, record, command),
            _ => 2,
        };
    }
    if let Err(e) = join(pid) {
        eprintln!("{e}");
        return CANNOT_RUN;
    }
    match args.get(1).map(String::as_str) {
        Some("--tcp") => {
            let Some(address) = args.get(2).and_then(|a| crate::probe::tcp_target(a)) else { return 2 };
            match TcpStream::connect_timeout(&address, Duration::from_secs(10)) {
                Ok(_) => 0,
                Err(e) => {
                    eprintln!("dial tcp {address}: {e}");
                    1
                }
            }
        }
        Some(flag @ ("--http" | "--https")) => {
            match crate::probe::http_probe(&args[2..], Duration::from_secs(10), flag == "--https") {
                Ok(_) => 0,
                Err(e) => {
                    eprintln!("{e}");
                    1
                }
            }
        }
        Some("--") if args.len() > 2 => {
            let status = Command::new(&args[2])
                .args(&args[3..])
                .env_clear()
                .env("PATH", DEFAULT_PATH)
                .stdin(Stdio::null())
                .current_dir("/")
                .status();
            match status {
                Ok(status) => status.code().unwrap_or(1),
                Err(e) => {
                    eprintln!("cannot run {:?}: {e}", args[2]);
                    CANNOT_RUN
                }
            }
        }
        _ => 2,
    }
}

/// Runs `command` as one of the container's own processes (see the top).
fn exec(pid: u32, record_dir: &Path, command: &[String]) -> i32 {
    let record = Record::new(record_dir.to_path_buf());
    // Its pid, as the record has it with its start time: not a reused one.
    if record.live_pid() != Some(pid) {
        eprintln!("the container is not running");
        return CANNOT_RUN;
    }
    let prepared = record
        .launch()
        .map_err(|e| format!("cannot read the container's record: {e}"))
        // Its cgroups are reached through the host's /sys: before the mounts change.
        .and_then(|launch| cgroup::join(&launch.cgroups).map(|()| launch))
        .and_then(|launch| join(pid).map(|()| launch))
        .and_then(|launch| confine::drop_privileges(&launch.security).map(|()| launch));
    let launch: Launch = match prepared {
        Ok(launch) => launch,
        Err(e) => {
            eprintln!("{e}");
            return CANNOT_RUN;
        }
    };
    let mut child = init::in_container(&launch, &command[0], &command[1..]);
    if launch.working_dir.is_none() {
        child.current_dir("/");
    }
    match child.status() {
        Ok(status) => status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("exec: {:?}: executable file not found in $PATH", command[0]);
            127
        }
        Err(e) => {
            eprintln!("exec: {:?}: {e}", command[0]);
            CANNOT_RUN
        }
    }
}

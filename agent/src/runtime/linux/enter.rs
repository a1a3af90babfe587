//! Probes inside a container (`shoal-agent enter PID -- COMMAND...`,
//! `shoal-agent enter PID --tcp [HOST:]PORT` and `shoal-agent enter PID
//! --http[s] HOST:PORT PATH [HEADER...]`): this single-threaded process joins
//! the namespaces of the container's first process, then runs the command
//! there, connects to the port, or sends the HTTP GET, in the container's
//! network. Its exit code is the probe's result (0: success).

use std::fs::File;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sched::{setns, CloneFlags};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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

/// Parses `PID -- COMMAND...` or `PID --tcp [HOST:]PORT` and runs the probe.
pub fn run(args: &[String]) -> i32 {
    let Some(pid) = args.first().and_then(|p| p.parse::<u32>().ok()) else {
        eprintln!(
            "usage: shoal-agent enter PID (-- COMMAND... | --tcp [HOST:]PORT | --http[s] HOST:PORT PATH [HEADER...])"
        );
        return 2;
    };
    if let Err(e) = join(pid) {
        eprintln!("{e}");
        return 126;
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
                    126
                }
            }
        }
        _ => 2,
    }
}

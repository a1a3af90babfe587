//! The supervisor: one small process per container, which outlives the
//! agent. It makes the container's PID namespace, starts its first process
//! in it, copies its output into the log (rotating it at the size cap), and
//! writes down how it ended. It runs single-threaded (`shoal-agent
//! supervise DIR`), as `unshare` of a mount namespace requires.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sched::{unshare, CloneFlags};
use shoal_proto::objects::time;

use super::cgroup;
use super::record::{Exit, Record};

/// Supervises the container recorded in `dir`; returns the exit code.
pub fn run(dir: &Path) -> i32 {
    let record = Record::new(dir.to_path_buf());
    match supervise(&record) {
        Ok(()) => 0,
        Err(e) => {
            let _ = fs::write(record.error_path(), format!("{e}\n"));
            let _ = record.write_exit(&Exit { code: 128, signal: None, oom: false, finished_at: time::now() });
            1
        }
    }
}

fn supervise(record: &Record) -> Result<(), String> {
    let launch = record.launch().map_err(|e| format!("cannot read the container's record: {e}"))?;
    // Its own session: signals meant for the agent's group never reach it.
    let _ = nix::unistd::setsid();
    // Only the PID namespace is made here (it takes effect for the child,
    // which becomes its PID 1); the child makes the others for itself, so
    // that its mounts and pivot_root never change what this process sees.
    unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("cannot create the container's PID namespace: {e}"))?;
    let (mut output, writer) = io::pipe().map_err(|e| format!("cannot make the log pipe: {e}"))?;
    let mut child = {
        // The command (and with it the pipe's write ends) is dropped right
        // after the spawn, so that the log copy ends when the container does.
        let errors = writer.try_clone().map_err(|e| format!("cannot make the log pipe: {e}"))?;
        Command::new("/proc/self/exe")
            .arg("init")
            .arg(&record.dir)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(errors)
            .spawn()
            .map_err(|e| format!("cannot start the container's first process: {e}"))?
    };
    record.write_pid(child.id()).map_err(|e| format!("cannot record the pid: {e}"))?;
    let mut log = Log::open(launch.log.clone(), launch.log_max_bytes);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match output.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => log.write(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let status = child.wait().map_err(|e| format!("cannot wait for the container: {e}"))?;
    let signal = status.signal();
    let code = status.code().unwrap_or_else(|| 128 + signal.unwrap_or(0));
    let oom = launch.memory_cgroup.as_deref().is_some_and(cgroup::oom_killed);
    record
        .write_exit(&Exit { code, signal, oom, finished_at: time::now() })
        .map_err(|e| format!("cannot record the exit: {e}"))
}

/// A log file that is rotated once it reaches its cap: the current part and
/// the one before (`.1`) are kept.
struct Log {
    path: PathBuf,
    max: u64,
    file: Option<File>,
    size: u64,
}

impl Log {
    fn open(path: PathBuf, max: u64) -> Log {
        if let Some(parent) = path.parent() {
            let _ = fs::create_dir_all(parent);
        }
        let file = OpenOptions::new().create(true).append(true).open(&path).ok();
        let size = file.as_ref().and_then(|f| f.metadata().ok()).map_or(0, |m| m.len());
        Log { path, max: max.max(1024), file, size }
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.size + bytes.len() as u64 > self.max && self.size > 0 {
            let _ = fs::rename(&self.path, rotated(&self.path));
            self.file = File::create(&self.path).ok();
            self.size = 0;
        }
        if let Some(file) = &mut self.file {
            if file.write_all(bytes).is_ok() {
                self.size += bytes.len() as u64;
            }
        }
    }
}

/// Where the part before the current one of a rotated log goes.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_at_its_cap_and_keeps_one_part_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let mut log = Log::open(path.clone(), 1024);
        for i in 0..30 {
            log.write(format!("line {i:03} {}\n", "x".repeat(90)).as_bytes());
        }
        let current = fs::read_to_string(&path).expect("current");
        let before = fs::read_to_string(rotated(&path)).expect("rotated");
        assert!(current.len() <= 1024 && before.len() <= 1024);
        assert!(current.ends_with(&format!("line 029 {}\n", "x".repeat(90))));
        assert!(before.contains("line 019") || before.contains("line 020"));
    }
}

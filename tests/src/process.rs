//! A child process owned by a test: stdout and stderr go to a log file, and
//! dropping it kills it (SIGKILL, by its own pid) and reaps it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub struct Process {
    child: Option<Child>,
    pub log: PathBuf,
    /// Whether it leads a process group of its own, killed as a whole.
    group: bool,
}

impl Process {
    pub fn spawn(program: &Path, args: &[String], log: PathBuf) -> Process {
        Self::start(program, args, log, false)
    }

    /// A process in a group of its own (a script and its pipelines): killing
    /// it kills the whole group.
    pub fn spawn_group(program: &Path, args: &[String], log: PathBuf) -> Process {
        Self::start(program, args, log, true)
    }

    fn start(program: &Path, args: &[String], log: PathBuf, group: bool) -> Process {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open the process log");
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::null()).stdout(out.try_clone().expect("clone log handle")).stderr(out);
        if group {
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Process { child: Some(child), log, group }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.group {
                let _ = kill(Pid::from_raw(-(child.id() as i32)), Signal::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the exit; returns whether it exited successfully.
    pub fn terminate(&mut self, grace: std::time::Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = std::time::Instant::now() + grace;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Whether the process has exited (and reaps it if so).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

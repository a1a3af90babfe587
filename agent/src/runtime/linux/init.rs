//! The container's first process before it becomes the container's
//! command (`shoal-agent init DIR`, started by the supervisor as PID 1 of a
//! new PID namespace). It joins the container's cgroups and its pod's
//! network namespace (unless the pod uses the host's network), makes its
//! mount, UTS and IPC namespaces, names the host, makes the container's
//! filesystem (the host's, or the image's with pivot_root, a fresh /proc and
//! a minimal /dev), and executes the command. What goes wrong before the command runs is written to the
//! record's `error` file.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use super::record::{Launch, Record};
use super::{cgroup, confine};

pub(super) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Device nodes bound from the host into an image's /dev.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// The exit code when the command could not be run.
pub const CANNOT_RUN: i32 = 128;

pub fn run(dir: &Path) -> i32 {
    let record = Record::new(dir.to_path_buf());
    // Opened before the root changes; closed on exec.
    let Ok(mut error) = File::create(record.error_path()) else { return CANNOT_RUN };
    let message = match record.launch() {
        Ok(launch) => match prepare(&launch).and_then(|()| confine::drop_privileges(&launch.security)) {
            Ok(()) => exec(&launch),
            Err(e) => e,
        },
        Err(e) => format!("cannot read the container's record: {e}"),
    };
    let _ = writeln!(error, "{message}");
    CANNOT_RUN
}

fn prepare(launch: &Launch) -> Result<(), String> {
    cgroup::join(&launch.cgroups)?;
    if let Some(netns) = &launch.netns {
        let file = File::open(netns).map_err(|e| format!("cannot open the pod's network {}: {e}", netns.display()))?;
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| format!("cannot join the pod's network: {e}"))?;
    }
    let flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    unshare(flags).map_err(|e| format!("cannot create the container's namespaces: {e}"))?;
    let none: Option<&str> = None;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| format!("cannot make the mounts private: {e}"))?;
    nix::unistd::sethostname(&launch.hostname).map_err(|e| format!("cannot set the hostname: {e}"))?;
    let mounted = match &launch.rootfs {
        None => {
            // Before /tmp is covered: the agent's data dir may be under it.
            if let Some(resolv_conf) = &launch.resolv_conf {
                bind(resolv_conf, Path::new("/etc/resolv.conf"))?;
            }
            bind(&launch.tmp_dir, Path::new("/tmp"))?;
            mount_proc(Path::new("/proc"))
        }
        Some(root) => enter_root(root, launch),
    };
    mounted?;
    if launch.security.privileged {
        return Ok(());
    }
    confine::mask_host_paths()
}

fn bind(from: &Path, to: &Path) -> Result<(), String> {
    let none: Option<&str> = None;
    mount(Some(from), to, none, MsFlags::MS_BIND | MsFlags::MS_REC, none)
        .map_err(|e| format!("cannot bind {} on {}: {e}", from.display(), to.display()))
}

fn mount_proc(at: &Path) -> Result<(), String> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("proc"), at, Some("proc"), flags, None::<&str>).map_err(|e| format!("cannot mount /proc: {e}"))
}

fn mount_tmpfs(at: &Path, options: &str) -> Result<(), String> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    mount(Some("tmpfs"), at, Some("tmpfs"), flags, Some(options))
        .map_err(|e| format!("cannot mount a tmpfs on {}: {e}", at.display()))
}

fn enter_root(root: &Path, launch: &Launch) -> Result<(), String> {
    // pivot_root needs the new root to be a mount point.
    bind(root, root)?;
    mount_proc(&root.join("proc"))?;
    let dev = root.join("dev");
    mount_tmpfs(&dev, "mode=755,size=1m")?;
    for device in DEVICES {
        let node = dev.join(device);
        File::create(&node).map_err(|e| format!("cannot create /dev/{device}: {e}"))?;
        bind(&Path::new("/dev").join(device), &node)?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(link)).map_err(|e| format!("cannot link /dev/{link}: {e}"))?;
    }
    fs::create_dir_all(dev.join("shm")).map_err(|e| format!("cannot create /dev/shm: {e}"))?;
    mount_tmpfs(&dev.join("shm"), "mode=1777,size=64m")?;
    bind(&launch.tmp_dir, &root.join("tmp"))?;
    if let Some(resolv_conf) = &launch.resolv_conf {
        let target = root.join("etc/resolv.conf");
        if !target.exists() {
            fs::create_dir_all(root.join("etc")).map_err(|e| format!("cannot create /etc: {e}"))?;
            File::create(&target).map_err(|e| format!("cannot create /etc/resolv.conf: {e}"))?;
        }
        bind(resolv_conf, &target)?;
    }
    nix::unistd::chdir(root).map_err(|e| format!("cannot enter the root filesystem: {e}"))?;
    // The old root is stacked under the new one, then detached.
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root failed: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("cannot detach the host's filesystem: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("cannot enter /: {e}"))?;
    if launch.read_only_root {
        let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
            .map_err(|e| format!("cannot make the root read-only: {e}"))?;
    }
    Ok(())
}

/// Runs the command in place of this process; returns only on failure.
fn exec(launch: &Launch) -> String {
    let Some((program, args)) = launch.argv.split_first() else { return "no command given".into() };
    let error = in_container(launch, program, args).exec();
    format!("cannot run {program:?}: {error}")
}

/// `program` with the container's environment and working directory (the
/// container's command, or a command exec'd into it).
pub(super) fn in_container(launch: &Launch, program: &str, args: &[String]) -> Command {
    let mut command = Command::new(program);
    command.args(args).env_clear().env("PATH", DEFAULT_PATH).env("HOSTNAME", &launch.hostname).env("HOME", "/root");
    command.envs(launch.env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &launch.working_dir {
        command.current_dir(dir);
    }
    command
}

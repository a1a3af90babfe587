//! What an unprivileged container may not do, set up by its first process
//! just before it becomes the container's command: the host's sensitive
//! /proc and /sys files masked or read-only (as containerd masks them), the
//! capability bounding set cut to what the container keeps, its user and
//! group, the default seccomp filter, and `no_new_privs`. Capabilities go through the `caps` crate,
//! which wraps capset and prctl without unsafe code of ours.

use std::path::Path;

use caps::CapSet;
use nix::mount::{mount, MsFlags};
use nix::unistd::{Gid, Uid};

use super::record::Security;

/// Files that would tell the host's secrets or let a container poke it.
const MASKED: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// Readable, never writable.
const READ_ONLY: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Masks and write-protects the host's sensitive paths in this mount namespace.
pub fn mask_host_paths() -> Result<(), String> {
    let none: Option<&str> = None;
    for path in MASKED.iter().map(Path::new).filter(|p| p.exists()) {
        let done = if path.is_dir() {
            mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"))
        } else {
            mount(Some("/dev/null"), path, none, MsFlags::MS_BIND, none)
        };
        done.map_err(|e| format!("cannot mask {}: {e}", path.display()))?;
    }
    for path in READ_ONLY.iter().map(Path::new).filter(|p| p.exists()) {
        mount(Some(path), path, none, MsFlags::MS_BIND | MsFlags::MS_REC, none)
            .and_then(|()| {
                let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC;
                mount(none, path, none, flags, none)
            })
            .map_err(|e| format!("cannot make {} read-only: {e}", path.display()))?;
    }
    Ok(())
}

/// Drops what the container does not keep, then becomes its user.
pub fn drop_privileges(security: &Security) -> Result<(), String> {
    for capability in caps::all() {
        if security.capabilities.contains(&capability.index()) {
            continue;
        }
        if caps::has_cap(None, CapSet::Bounding, capability).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, capability)
                .map_err(|e| format!("cannot drop {capability} from the bounding set: {e}"))?;
        }
    }
    // Nothing is handed on through exec but what the bounding set allows.
    let _ = caps::clear(None, CapSet::Ambient);
    caps::clear(None, CapSet::Inheritable).map_err(|e| format!("cannot clear inheritable capabilities: {e}"))?;
    // Loaded while still root, so that it needs no `no_new_privs`.
    if security.seccomp {
        super::seccomp::load_default(&security.capabilities)?;
    }
    if let Some(gid) = security.gid {
        nix::unistd::setgroups(&[Gid::from_raw(gid)]).map_err(|e| format!("cannot set the groups: {e}"))?;
        nix::unistd::setgid(Gid::from_raw(gid)).map_err(|e| format!("cannot run as group {gid}: {e}"))?;
    }
    if let Some(uid) = security.uid {
        if security.gid.is_none() {
            nix::unistd::setgroups(&[]).map_err(|e| format!("cannot clear the groups: {e}"))?;
        }
        nix::unistd::setuid(Uid::from_raw(uid)).map_err(|e| format!("cannot run as user {uid}: {e}"))?;
    }
    if security.no_new_privileges {
        nix::sys::prctl::set_no_new_privs().map_err(|e| format!("cannot set no_new_privs: {e}"))?;
    }
    Ok(())
}

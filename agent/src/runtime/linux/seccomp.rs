//! The runtime's default seccomp filter (`seccompProfile: RuntimeDefault`),
//! shaped as Docker's and containerd's default profile: every system call
//! is allowed except those that reach past the container into the kernel
//! or the host (loading modules, kexec, keyrings, new namespaces, mounts,
//! the clock, raw I/O ports, BPF, io_uring ...), which fail with `EPERM`.
//! As in those profiles, a call guarded by a capability is allowed again
//! when the container keeps that capability, so `capabilities.add:
//! [SYS_ADMIN]` can still mount. `clone3` fails with `ENOSYS` instead, so
//! that the C library falls back to `clone`, whose namespace flags the
//! filter can see.
//!
//! Built with libseccomp (through the `libseccomp` crate), which knows each
//! architecture's call numbers and, unlike a filter installed by hand, can
//! load without setting `no_new_privs`: `allowPrivilegeEscalation: true`
//! keeps its meaning.

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use nix::sched::CloneFlags;
use shoal_proto::objects::security::capability;

/// Calls refused unless the container keeps the capability named (None:
/// refused always).
const REFUSED: &[(Option<&str>, &[&str])] = &[
    (None, &["add_key", "keyctl", "request_key", "get_kernel_syms", "query_module", "create_module"]),
    (None, &["uselib", "ustat", "sysfs", "_sysctl", "nfsservctl", "vm86", "vm86old", "stime"]),
    (None, &["io_uring_setup", "io_uring_enter", "io_uring_register"]),
    (Some("SYS_ADMIN"), &["mount", "umount", "umount2", "pivot_root", "unshare", "setns", "swapon", "swapoff"]),
    (Some("SYS_ADMIN"), &["open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr"]),
    (Some("SYS_ADMIN"), &["bpf", "fanotify_init", "lookup_dcookie", "name_to_handle_at", "perf_event_open"]),
    (Some("SYS_ADMIN"), &["quotactl", "quotactl_fd"]),
    (Some("SYS_MODULE"), &["init_module", "finit_module", "delete_module"]),
    (Some("SYS_BOOT"), &["reboot", "kexec_load", "kexec_file_load"]),
    (Some("SYS_TIME"), &["settimeofday", "clock_settime", "clock_adjtime", "adjtimex"]),
    (Some("SYS_PTRACE"), &["kcmp", "process_vm_readv", "process_vm_writev", "userfaultfd"]),
    (Some("SYS_RAWIO"), &["iopl", "ioperm"]),
    (Some("SYS_PACCT"), &["acct"]),
    (Some("SYS_NICE"), &["get_mempolicy", "set_mempolicy", "mbind", "move_pages"]),
    (Some("SYSLOG"), &["syslog"]),
    (Some("SYS_TTY_CONFIG"), &["vhangup"]),
    (Some("DAC_READ_SEARCH"), &["open_by_handle_at"]),
];

/// clone's flags that make namespaces.
const NAMESPACE_FLAGS: [CloneFlags; 7] = [
    CloneFlags::CLONE_NEWNS,
    CloneFlags::CLONE_NEWCGROUP,
    CloneFlags::CLONE_NEWUTS,
    CloneFlags::CLONE_NEWIPC,
    CloneFlags::CLONE_NEWUSER,
    CloneFlags::CLONE_NEWPID,
    CloneFlags::CLONE_NEWNET,
];

const EPERM: i32 = nix::errno::Errno::EPERM as i32;
const ENOSYS: i32 = nix::errno::Errno::ENOSYS as i32;

fn compatible_architectures() -> Vec<ScmpArch> {
    match ScmpArch::native() {
        ScmpArch::X8664 => vec![ScmpArch::X86, ScmpArch::X32],
        ScmpArch::Aarch64 => vec![ScmpArch::Arm],
        _ => Vec::new(),
    }
}

/// Whether `capabilities` (by number) hold capability `name`.
fn keeps(capabilities: &[u8], name: &str) -> bool {
    capability(name).is_some_and(|c| capabilities.contains(&c))
}

/// The calls refused to a container keeping `capabilities` (by number).
pub fn refused_calls(capabilities: &[u8]) -> Vec<&'static str> {
    REFUSED
        .iter()
        .filter(|(guard, _)| !guard.is_some_and(|name| keeps(capabilities, name)))
        .flat_map(|(_, calls)| calls.iter().copied())
        .collect()
}

/// Loads the default filter into this process; whatever it executes keeps
/// it. Needs `CAP_SYS_ADMIN` when `no_new_privs` is not set.
pub fn load_default(capabilities: &[u8]) -> Result<(), String> {
    let failed = |what: &str, e: libseccomp::error::SeccompError| format!("seccomp: {what}: {e}");
    let mut filter = ScmpFilterContext::new(ScmpAction::Allow).map_err(|e| failed("cannot make a filter", e))?;
    filter.set_ctl_nnp(false).map_err(|e| failed("cannot leave no_new_privs alone", e))?;
    // The compatible ABIs too, as Docker's profile has them: a filter
    // without them kills every 32-bit program.
    for arch in compatible_architectures() {
        filter.add_arch(arch).map_err(|e| failed("cannot add an architecture", e))?;
    }
    for name in refused_calls(capabilities) {
        // Rules are translated for each architecture; one that lacks the
        // call (vm86 off x86) has no rule for it.
        let Ok(call) = ScmpSyscall::from_name(name) else { continue };
        filter.add_rule(ScmpAction::Errno(EPERM), call).map_err(|e| failed(name, e))?;
    }
    if !keeps(capabilities, "SYS_ADMIN") {
        let clone = ScmpSyscall::from_name("clone").map_err(|e| failed("clone", e))?;
        // One rule per flag (rules on one call are or-ed); x86_64 and arm64
        // pass the flags first.
        for flag in NAMESPACE_FLAGS {
            let bit = flag.bits() as u64;
            let set = ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(bit), bit);
            filter.add_rule_conditional(ScmpAction::Errno(EPERM), clone, &[set]).map_err(|e| failed("clone", e))?;
        }
        let clone3 = ScmpSyscall::from_name("clone3").map_err(|e| failed("clone3", e))?;
        filter.add_rule(ScmpAction::Errno(ENOSYS), clone3).map_err(|e| failed("clone3", e))?;
    }
    filter.load().map_err(|e| failed("cannot load the filter", e))
}

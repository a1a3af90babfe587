//! Resource limits through cgroups: v2 where its controllers are enabled,
//! else v1, always inside the agent's own cgroup (one directory per agent,
//! one below it per container).

use std::fs;
use std::path::{Path, PathBuf};

/// What a container may use; None is unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<i64>,
    pub cpu_millis: Option<i64>,
    pub pids: Option<i64>,
}

/// The cgroup directories of one container.
#[derive(Clone, Debug, Default)]
pub struct Made {
    pub paths: Vec<PathBuf>,
    pub memory: Option<PathBuf>,
}

#[derive(Clone, Debug)]
enum Version {
    /// One directory per controller hierarchy: (controller, agent's directory).
    V1(Vec<(&'static str, PathBuf)>),
    /// The unified hierarchy: the agent's directory.
    V2(PathBuf),
}

#[derive(Clone, Debug)]
pub struct Cgroups {
    version: Version,
}

const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
const CPU_PERIOD_US: i64 = 100_000;

/// Mount points of cgroup filesystems: (fs type, super options, mount point).
fn cgroup_mounts() -> Vec<(String, String, PathBuf)> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split_whitespace().nth(4)?;
            let mut right = right.split_whitespace();
            let fstype = right.next()?;
            let options = right.nth(1).unwrap_or("");
            fstype.starts_with("cgroup").then(|| (fstype.to_string(), options.to_string(), PathBuf::from(mount_point)))
        })
        .collect()
}

/// This process's cgroup per hierarchy: (controllers, path).
fn own_cgroups() -> Vec<(String, String)> {
    fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

fn under(mount: &Path, path: &str) -> PathBuf {
    mount.join(path.trim_start_matches('/'))
}

impl Cgroups {
    /// Finds a writable place for containers' cgroups, named `scope` below
    /// the agent's own; None when there is none (the caller says so, once).
    pub fn detect(scope: &str) -> Result<Cgroups, String> {
        let mounts = cgroup_mounts();
        let own = own_cgroups();
        if let (Some((_, _, mount)), Some((_, path))) =
            (mounts.iter().find(|(t, _, _)| t == "cgroup2"), own.iter().find(|(c, _)| c.is_empty()))
        {
            let parent = under(mount, path);
            let enabled = fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
            if CONTROLLERS.iter().all(|c| enabled.split_whitespace().any(|e| e == *c)) {
                let base = parent.join(scope);
                let made = fs::create_dir_all(&base)
                    .and_then(|_| fs::write(base.join("cgroup.subtree_control"), "+memory +cpu +pids"));
                if made.is_ok() {
                    return Ok(Cgroups { version: Version::V2(base) });
                }
            }
        }
        let mut bases = Vec::new();
        for controller in CONTROLLERS {
            let Some((_, _, mount)) =
                mounts.iter().find(|(t, o, _)| t == "cgroup" && o.split(',').any(|opt| opt == controller))
            else {
                return Err(format!("no cgroup v1 hierarchy has the {controller} controller"));
            };
            let path = own
                .iter()
                .find(|(controllers, _)| controllers.split(',').any(|c| c == controller))
                .map_or("/", |(_, p)| p.as_str());
            let base = under(mount, path).join(scope);
            fs::create_dir_all(&base).map_err(|e| format!("cannot create cgroup {}: {e}", base.display()))?;
            bases.push((controller, base));
        }
        Ok(Cgroups { version: Version::V1(bases) })
    }

    /// Makes the container's cgroups and sets its limits.
    pub fn make(&self, id: &str, limits: &Limits) -> Result<Made, String> {
        let mut made = Made::default();
        let result = self.make_into(id, limits, &mut made);
        if result.is_err() {
            remove(&made.paths);
        }
        result.map(|_| made)
    }

    fn make_into(&self, id: &str, limits: &Limits, made: &mut Made) -> Result<(), String> {
        let set = |dir: &Path, file: &str, value: String| {
            fs::write(dir.join(file), &value).map_err(|e| format!("cannot set {file} to {value}: {e}"))
        };
        match &self.version {
            Version::V2(base) => {
                let dir = base.join(id);
                fs::create_dir_all(&dir).map_err(|e| format!("cannot create cgroup {}: {e}", dir.display()))?;
                made.paths.push(dir.clone());
                made.memory = Some(dir.clone());
                if let Some(bytes) = limits.memory_bytes {
                    set(&dir, "memory.max", bytes.to_string())?;
                    let _ = fs::write(dir.join("memory.swap.max"), "0");
                }
                if let Some(millis) = limits.cpu_millis {
                    set(&dir, "cpu.max", format!("{} {CPU_PERIOD_US}", (millis * CPU_PERIOD_US / 1000).max(1000)))?;
                }
                if let Some(pids) = limits.pids {
                    set(&dir, "pids.max", pids.to_string())?;
                }
            }
            Version::V1(bases) => {
                for (controller, base) in bases {
                    let dir = base.join(id);
                    fs::create_dir_all(&dir).map_err(|e| format!("cannot create cgroup {}: {e}", dir.display()))?;
                    made.paths.push(dir.clone());
                    match *controller {
                        "memory" => {
                            made.memory = Some(dir.clone());
                            if let Some(bytes) = limits.memory_bytes {
                                set(&dir, "memory.limit_in_bytes", bytes.to_string())?;
                                // With swap accounting, swap may not stretch the limit.
                                let _ = fs::write(dir.join("memory.memsw.limit_in_bytes"), bytes.to_string());
                            }
                        }
                        "cpu" => {
                            if let Some(millis) = limits.cpu_millis {
                                set(&dir, "cpu.cfs_period_us", CPU_PERIOD_US.to_string())?;
                                set(&dir, "cpu.cfs_quota_us", (millis * CPU_PERIOD_US / 1000).max(1000).to_string())?;
                            }
                        }
                        _ => {
                            if let Some(pids) = limits.pids {
                                set(&dir, "pids.max", pids.to_string())?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Moves the calling process into `paths`.
pub fn join(paths: &[PathBuf]) -> Result<(), String> {
    for dir in paths {
        fs::write(dir.join("cgroup.procs"), "0").map_err(|e| format!("cannot join cgroup {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Every process in the container's cgroups.
pub fn processes(paths: &[PathBuf]) -> Vec<u32> {
    let mut pids: Vec<u32> = paths
        .iter()
        .filter_map(|dir| fs::read_to_string(dir.join("cgroup.procs")).ok())
        .flat_map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<u32>>())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Whether the kernel's OOM killer has killed something in this memory cgroup.
pub fn oom_killed(memory: &Path) -> bool {
    ["memory.oom_control", "memory.events"].iter().any(|file| {
        fs::read_to_string(memory.join(file)).is_ok_and(|text| {
            text.lines().any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim().parse::<u64>().unwrap_or(0) > 0))
        })
    })
}

/// Removes the container's (empty) cgroups.
pub fn remove(paths: &[PathBuf]) {
    for dir in paths {
        let _ = fs::remove_dir(dir);
    }
}

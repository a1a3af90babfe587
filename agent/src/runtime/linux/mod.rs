//! The real runtime: each container is a process in new PID, mount, UTS and
//! IPC namespaces, in its pod's network namespace (or the host's network),
//! limited by cgroups, started and watched over by a supervisor process
//! that outlives the agent.
//!
//! The agent's data dir holds:
//! - `containers/<id>/`: each container's [`record`];
//! - `logs/<pod uid>/<container>/<restart>.log`: its output;
//! - `pods/<pod uid>/tmp`: the pod's /tmp;
//! - `images/`: unpacked image tarballs.

pub mod cgroup;
pub mod confine;
pub mod enter;
pub mod image;
pub mod init;
pub mod record;
pub mod seccomp;
pub mod supervise;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shoal_proto::objects::quantity::Quantity;
use shoal_proto::objects::time;

use super::{ContainerSpec, Listed, Run, Runtime, StartError};
use crate::net::PodNetwork;
use cgroup::{Cgroups, Limits};
use record::{Exit, Launch, Record};

/// The least memory limit a container can start with.
const MIN_MEMORY: i64 = 4 << 20;

pub struct LinuxRuntime {
    data_dir: PathBuf,
    cgroups: Option<Cgroups>,
    log_max_bytes: u64,
    exe: PathBuf,
    network: std::sync::Arc<PodNetwork>,
}

fn create_error(message: impl Into<String>) -> StartError {
    StartError { reason: "CreateContainerError".into(), message: message.into() }
}

impl LinuxRuntime {
    /// A runtime keeping its state in `data_dir`, with its cgroups under
    /// `scope` in the agent's own; `exe` is the agent binary (for the
    /// supervisor and the probes); pods get their networks from `network`.
    pub fn new(
        data_dir: &Path,
        scope: &str,
        log_max_bytes: u64,
        exe: PathBuf,
        network: std::sync::Arc<PodNetwork>,
    ) -> LinuxRuntime {
        let cgroups = match Cgroups::detect(scope) {
            Ok(cgroups) => Some(cgroups),
            Err(e) => {
                tracing::warn!(error = %e, "no writable cgroup: containers run without resource limits");
                None
            }
        };
        LinuxRuntime { data_dir: data_dir.to_path_buf(), cgroups, log_max_bytes, exe, network }
    }

    pub(crate) fn record(&self, id: &str) -> Record {
        Record::new(Self::record_dir(&self.data_dir, id))
    }

    /// A container instance's id: its pod, its name and its restart count.
    pub fn container_id(pod_uid: &str, container: &str, restarts: i32) -> String {
        format!("{pod_uid}-{container}-{restarts}")
    }

    /// Where the record of container instance `id` is kept.
    pub fn record_dir(data_dir: &Path, id: &str) -> PathBuf {
        data_dir.join("containers").join(id)
    }

    /// The directory of a container's logs: `<restart>.log` per instance.
    pub fn logs_dir(data_dir: &Path, pod_uid: &str, container: &str) -> PathBuf {
        data_dir.join("logs").join(pod_uid).join(container)
    }

    fn limits(spec: &ContainerSpec) -> Result<Limits, StartError> {
        let limits = &spec.container.resources.limits;
        let parse = |name: &str| -> Result<Option<Quantity>, StartError> {
            limits
                .get(name)
                .map(|text| Quantity::parse(text).map_err(|e| create_error(format!("limits.{name} {text:?}: {e}"))))
                .transpose()
        };
        let memory = parse("memory")?.map(|q| q.value());
        if let Some(bytes) = memory.filter(|b| *b < MIN_MEMORY) {
            return Err(create_error(format!("memory limit {bytes} is below the 4Mi a container needs to start")));
        }
        let cpu = parse("cpu")?.map(|q| q.milli_value());
        if let Some(millis) = cpu.filter(|m| *m < 1) {
            return Err(create_error(format!("cpu limit {millis}m is below the least quota, 1m")));
        }
        let pids = parse("pids")?.map(|q| q.value());
        if let Some(pids) = pids.filter(|p| *p < 1) {
            return Err(create_error(format!("pids limit {pids} leaves no room for the container's own process")));
        }
        Ok(Limits { memory_bytes: memory, cpu_millis: cpu, pids })
    }

    fn launch(&self, spec: &ContainerSpec, id: &str) -> Result<Launch, StartError> {
        let container = &spec.container;
        let argv: Vec<String> = container.command.iter().chain(&container.args).cloned().collect();
        if container.command.is_empty() {
            return Err(create_error(format!(
                "container {:?} has no command (images here have no default entrypoint)",
                container.name
            )));
        }
        let limits = Self::limits(spec)?;
        let security = Self::security(spec)?;
        let rootfs = image::resolve(container.image.as_deref(), &self.data_dir.join("images"))?;
        let network = match spec.host_network {
            true => None,
            false => Some(self.network.attach(&spec.pod_uid).map_err(|e| StartError {
                // The container waits, as it does in Kubernetes while its pod's sandbox cannot be made.
                reason: "ContainerCreating".into(),
                message: format!("cannot set up the pod's network: {e}"),
            })?),
        };
        let tmp_dir = self.data_dir.join("pods").join(&spec.pod_uid).join("tmp");
        fs::create_dir_all(&tmp_dir).map_err(|e| create_error(format!("cannot create the pod's /tmp: {e}")))?;
        // Anyone may write there, as in /tmp: a container may run as any user.
        let sticky = std::os::unix::fs::PermissionsExt::from_mode(0o1777);
        fs::set_permissions(&tmp_dir, sticky).map_err(|e| create_error(format!("cannot open the pod's /tmp: {e}")))?;
        // A pod with its own network asks this node's DNS first, as a pod asks CoreDNS.
        let resolv_conf = match &network {
            Some(_) => {
                let path = self.data_dir.join("pods").join(&spec.pod_uid).join("resolv.conf");
                let text = crate::dns::resolv_conf(self.network.cidr().gateway(), &spec.pod.namespace);
                fs::write(&path, text).map_err(|e| create_error(format!("cannot write the pod's resolv.conf: {e}")))?;
                Some(path)
            }
            None => None,
        };
        let made = match &self.cgroups {
            Some(cgroups) => cgroups.make(id, &limits).map_err(create_error)?,
            None => cgroup::Made::default(),
        };
        Ok(Launch {
            id: id.to_string(),
            pod_uid: spec.pod_uid.clone(),
            pod_namespace: spec.pod.namespace.clone(),
            pod_name: spec.pod.name.clone(),
            container: container.name.clone(),
            restarts: spec.restarts,
            started_at: time::now(),
            hostname: spec.hostname.clone(),
            argv,
            // The Services' and the node's variables first: the container's own env may override them.
            env: spec
                .service_env
                .iter()
                .cloned()
                .chain(crate::ports::environment(&spec.ports, &spec.node_ip))
                .chain(network.as_ref().map(|n| ("SHOAL_POD_IP".to_string(), n.ip.to_string())))
                .chain(container.env.iter().map(|e| (e.name.clone(), e.value.clone())))
                .collect(),
            ports: spec.ports.clone(),
            working_dir: container.working_dir.clone(),
            rootfs,
            read_only_root: container.read_only_root(),
            tmp_dir,
            netns: network.map(|n| n.netns),
            resolv_conf,
            security,
            cgroups: made.paths,
            memory_cgroup: made.memory,
            log: Self::logs_dir(&self.data_dir, &spec.pod_uid, &container.name).join(format!("{}.log", spec.restarts)),
            log_max_bytes: self.log_max_bytes,
        })
    }

    /// What the container may do, from its securityContext.
    fn security(spec: &ContainerSpec) -> Result<record::Security, StartError> {
        let context = spec.container.security_context.clone().unwrap_or_default();
        let id = |value: Option<i64>| value.and_then(|v| u32::try_from(v).ok());
        let (uid, gid) = (id(context.run_as_user), id(context.run_as_group));
        if context.run_as_non_root == Some(true) && uid.unwrap_or(0) == 0 {
            return Err(StartError {
                reason: "CreateContainerConfigError".into(),
                message: format!(
                    "container has runAsNonRoot and image will run as root (pod: \"{}_{}({})\", container: {})",
                    spec.pod.name, spec.pod.namespace, spec.pod_uid, spec.container.name
                ),
            });
        }
        if let Some(file) = context.seccomp_profile.as_ref().and_then(|p| p.localhost_profile.as_ref()) {
            return Err(StartError {
                reason: "CreateContainerConfigError".into(),
                message: format!("seccomp profile {file:?}: Localhost profiles are not supported on this node"),
            });
        }
        Ok(record::Security {
            privileged: context.is_privileged(),
            seccomp: context.default_seccomp(),
            uid,
            gid,
            capabilities: context.kept_capabilities(),
            no_new_privileges: context.no_new_privileges(),
        })
    }

    /// `shoal-agent enter PID`, and `--in RECORD` for a command that must run
    /// as one of that container's own processes (`shoalctl exec`, exec probes).
    pub fn enter(&self, pid: u32, record: Option<&Path>) -> Command {
        let mut command = Command::new(&self.exe);
        command.arg("enter").arg(pid.to_string());
        if let Some(record) = record {
            command.arg("--in").arg(record);
        }
        command
    }

    /// The record of the running container whose first process is `pid`.
    fn record_of(&self, pid: u32) -> Option<PathBuf> {
        std::fs::read_dir(self.data_dir.join("containers")).ok()?.filter_map(|e| Some(e.ok()?.path())).find(|dir| {
            let record = Record::new(dir.clone());
            record.pid().is_some_and(|(p, _)| p == pid) && record.exit().is_none()
        })
    }

    /// Kills whatever is left in the container's cgroups.
    fn kill_all(launch: &Launch) {
        for pid in cgroup::processes(&launch.cgroups) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

impl Runtime for LinuxRuntime {
    fn start(&self, spec: &ContainerSpec) -> Result<String, StartError> {
        let id = Self::container_id(&spec.pod_uid, &spec.container.name, spec.restarts);
        let record = self.record(&id);
        if record.dir.exists() {
            self.remove(&id);
        }
        let launch = self.launch(spec, &id)?;
        if let Some(parent) = launch.log.parent() {
            let _ = fs::create_dir_all(parent);
        }
        let _ = fs::remove_file(&launch.log);
        let _ = fs::remove_file(supervise::rotated(&launch.log));
        record.write_launch(&launch).map_err(|e| create_error(format!("cannot record the container: {e}")))?;
        let log = fs::File::create(record.supervisor_log()).map_err(|e| create_error(e.to_string()))?;
        let log2 = log.try_clone().map_err(|e| create_error(e.to_string()))?;
        let mut command = Command::new(&self.exe);
        command.arg("supervise").arg(&record.dir).stdin(Stdio::null()).stdout(log).stderr(log2);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().map_err(|e| create_error(format!("cannot start the supervisor: {e}")))?;
        let supervisor = child.id();
        // The supervisor is reaped here; after an agent restart, by init.
        std::thread::spawn(move || child.wait());
        let deadline = Instant::now() + Duration::from_secs(10);
        while record.pid().is_none() && record.exit().is_none() {
            if Instant::now() > deadline || record::start_time(supervisor).is_none() && record.pid().is_none() {
                return Err(create_error(format!(
                    "the supervisor did not start the container: {}",
                    fs::read_to_string(record.supervisor_log()).unwrap_or_default().trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(id)
    }

    fn state(&self, id: &str) -> Run {
        let record = self.record(id);
        let Ok(launch) = record.launch() else { return Run::Gone };
        if let Some(exit) = record.exit() {
            return Run::Exited {
                code: exit.code,
                signal: exit.signal,
                oom: exit.oom,
                started_at: launch.started_at,
                finished_at: exit.finished_at,
                message: record.error(),
            };
        }
        match record.pid() {
            Some((pid, _)) if record.live_pid().is_some() => Run::Running { pid, started_at: launch.started_at },
            Some(_) => {
                // Reaped a moment ago, perhaps: the supervisor is writing down how.
                let deadline = Instant::now() + Duration::from_millis(200);
                while record.exit().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if record.exit().is_none() {
                    // Its supervisor died with it: nobody saw how it ended.
                    let _ =
                        record.write_exit(&Exit { code: 137, signal: Some(9), oom: false, finished_at: time::now() });
                }
                self.state(id)
            }
            None => Run::Running { pid: 0, started_at: launch.started_at },
        }
    }

    async fn stop(&self, id: &str, grace: Duration) {
        let record = self.record(id);
        let Ok(launch) = record.launch() else { return };
        let ended = || record.exit().is_some() || record.live_pid().is_none();
        if let Some(pid) = record.live_pid() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while !ended() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if let Some(pid) = record.live_pid() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        Self::kill_all(&launch);
        let deadline = Instant::now() + Duration::from_secs(5);
        while record.exit().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.state(id);
    }

    fn remove(&self, id: &str) {
        let record = self.record(id);
        if let Ok(launch) = record.launch() {
            if record.live_pid().is_some() {
                if let Some((pid, _)) = record.pid() {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
            }
            Self::kill_all(&launch);
            cgroup::remove(&launch.cgroups);
        }
        let _ = fs::remove_dir_all(&record.dir);
    }

    fn remove_pod(&self, pod_uid: &str) {
        self.network.detach(pod_uid);
        let _ = fs::remove_dir_all(self.data_dir.join("logs").join(pod_uid));
        let _ = fs::remove_dir_all(self.data_dir.join("pods").join(pod_uid));
    }

    fn list(&self) -> Vec<Listed> {
        let Ok(entries) = fs::read_dir(self.data_dir.join("containers")) else { return Vec::new() };
        entries
            .filter_map(|entry| {
                let launch = Record::new(entry.ok()?.path()).launch().ok()?;
                Some(Listed {
                    id: launch.id,
                    pod_uid: launch.pod_uid,
                    container: launch.container,
                    restarts: launch.restarts,
                    ports: launch.ports,
                })
            })
            .collect()
    }

    fn pod_ip(&self, pod_uid: &str) -> Option<std::net::IpAddr> {
        self.network.address_of(pod_uid).map(std::net::IpAddr::V4)
    }

    fn exec_probe(&self, pid: u32) -> Option<Command> {
        // Exec probes run as the container's own processes do (its user,
        // capabilities, seccomp filter and cgroups), as a runtime's exec does.
        Some(self.enter(pid, self.record_of(pid).as_deref()))
    }
}
